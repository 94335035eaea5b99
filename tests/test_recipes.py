"""docs/recipes.md: each recipe's command, parsed by the real ``extract`` command, samples
and windows a generated 30 fps video into the rows the recipe's formula says (frame
indices and times), the network left out."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from vidcache.features.backbones import WeightsSpec
from vidcache.features.synthetic import write_video
from vidcache.features.video.decode import VideoReader
from vidcache.features.video.windowrows import row_times
from vidcache.pipeline.cli.extract import extract
from vidcache.pipeline.cli.extract_settings import requested_run

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
FRAMES, RATE = 80, 30  # 2.67 s at 30 fps


def _commands() -> dict[str, list[str]]:
    """The recipe commands of docs/recipes.md, by their output file."""
    block = re.search(r"```bash\n(.*?)```", RECIPES.read_text(encoding="utf-8"), re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("extract")]
    return {words[words.index("-o") + 1]: words for words in commands}


def _expected_actionformer():
    # 16-frame windows every 4 frames: frames 4k..4k+15, centred at (4k + 8) / 30 s
    return [((4 * k + 8) / 30, 4 * k + 8, (4 * k, 4 * k + 15)) for k in range(17)]


def _expected_mstcn():
    # every other frame (15 fps), each from the window of kept places k-8..k+7 (clamped)
    kept = FRAMES // 2
    rows = []
    for k in range(kept):
        start = min(max(k - 8, 0), kept - 16)
        rows.append((2 * k / 30, 2 * k, (2 * start, 2 * (start + 15))))
    return rows


def _expected_clip4clip():
    return [(float(k), 30 * k, (30 * k, 30 * k)) for k in range(3)]  # 1 fps, < 12 frames


def _expected_videomae():
    # every 4th frame, 16 per window: one full window (frames 0..60), then a short one
    return [(32 / 30, 32, (0, 60)), (72 / 30, 72, (64, 76))]


EXPECTED = {
    "thumos-prism.h5": _expected_actionformer,
    "salads-prism.h5": _expected_mstcn,
    "msrvtt-clip.h5": _expected_clip4clip,
    "kinetics-prism.h5": _expected_videomae,
}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FRAMES, 32, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("recipes") / "clip.mp4", frames, RATE)


def test_every_recipe_command_is_checked():
    assert sorted(_commands()) == sorted(EXPECTED)


@pytest.mark.parametrize("output", sorted(EXPECTED))
def test_a_recipe_samples_the_frames_and_windows_it_says(video, output):
    words = _commands()[output]
    words[1] = str(video)  # the folder of the recipe: here, the generated video
    params = extract.make_context("extract", words[1:]).params
    config = requested_run(
        WeightsSpec("random"), params["fps"], params["num_frames"], params["max_frames"],
        params["sampling"], params["image_size"], params["resize"], params["folder_fps"],
        params["backbone"], params["precision"], params["dtype"], params["batch_size"],
        window=params["window"], stride=params["stride"], pooling=params["pooling"],
    )  # fmt: skip
    sampling = config.sampling
    with VideoReader(video) as reader:
        kept = [(index, time) for index, time, _ in reader.sampled(sampling)]
    rows = row_times(kept, sampling.window, sampling.stride, config.pooling)
    expected = EXPECTED[output]()
    assert [(index, span[:2]) for _, index, span in rows] == [(i, s) for _, i, s in expected]
    np.testing.assert_allclose([t for t, _, _ in rows], [t for t, _, _ in expected], atol=1e-9)
    for time, _, span in rows:  # a span's times are its first and last frame's, at 30 fps
        np.testing.assert_allclose(span[2:], np.array(span[:2]) / RATE, atol=1e-9)
