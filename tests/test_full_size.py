"""The real thing at full size: 299x299 InceptionV3, through the command line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.cache import CacheReader
from vidcache.features.synthetic import make_demo_dataset
from vidcache.pipeline.cli import cli

pytestmark = pytest.mark.slow


def test_full_size_inceptionv3_on_every_demo_format(tmp_path):
    make_demo_dataset(tmp_path / "v", clips_per_class=6, classes=("grow",), seconds=1.0)
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(tmp_path / "v"),
            "-o",
            str(out),
            "--weights",
            "random",
            "--num-frames",
            "3",
            "--folder-fps",
            "10",
            "-q",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"{out}: 6 extracted, 0 already cached, 0 failed" in result.output
    with CacheReader(out) as reader:
        assert reader.settings.image_size == 299 and reader.settings.feature_dim == 2048
        codecs = set()
        for video_id, entry in reader.entries().items():
            features = reader.features(video_id)
            assert features.shape == (3, 2048) and np.isfinite(features).all()
            assert (features >= 0).all()  # ReLU then average pooling
            codecs.add(entry.codec)
    assert codecs == {"h264", "mpeg4", "vp9", "ffv1", "mjpeg", "images"}
    summary = json.loads(CliRunner().invoke(cli, ["inspect", str(out), "--json"]).output)
    assert summary["frames"] == 18
