"""Small synthetic videos for the demo and the tests (no media files are ever committed).

The demo classes differ only in the ORDER of their frames: a square that ``grow``\\s, one
that ``shrink``\\s, and one that grows then shrinks (``pulse``) are made of exactly the same
frames, only reordered, so the mean of a clip's frames carries nothing about its class
while the sequence does. Colours (a small palette) and position vary per clip and are drawn
the same way for every class. Clips are written at 5 fps, the default sampling rate, so
extraction keeps every frame and the sampled frames are the same set in every class too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

DEMO_CLASSES = ("grow", "shrink", "pulse")

# (container extension, codec, pixel format): real-world variety, all in PyAV's wheels.
DEMO_FORMATS = (
    ("mp4", "libx264", "yuv420p"),
    ("avi", "mpeg4", "yuv420p"),
    ("webm", "libvpx-vp9", "yuv420p"),
    ("mkv", "ffv1", "yuv420p"),
    ("avi", "mjpeg", "yuvj420p"),
)


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB ``uint8`` frames ``(H, W, 3)`` into a video file.

    ``codec="libx264rgb", pix_fmt="rgb24", options={"crf": "0"}`` is lossless, for tests
    that compare decoded frames exactly. H.264 needs even width and height.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # bitexact: no random segment ids or dates (Matroska/WebM), so the same frames always
    # give the same bytes and a regenerated demo is recognised as unchanged by re-runs.
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = None
        for array in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height = array.shape[1], array.shape[0]
                stream.pix_fmt = pix_fmt
                stream.options = dict(options or {})
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode())
    return path


def write_frame_folder(folder: Path, frames: Iterable[np.ndarray], ext: str = "png") -> Path:
    """Write frames as ``frame_00001.<ext>``, ``frame_00002.<ext>``... in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, array in enumerate(frames, start=1):
        Image.fromarray(array).save(folder / f"frame_{index:05d}.{ext}")
    return folder


def _sizes(kind: str, count: int, low: float, high: float) -> np.ndarray:
    """The square's size per frame: the same ``count`` sizes in every class, only reordered."""
    sizes = np.linspace(low, high, count)
    if kind == "grow":
        return sizes
    if kind == "shrink":
        return sizes[::-1]
    if kind == "pulse":  # up through every other size, down through the rest
        return np.concatenate([sizes[0::2], sizes[1::2][::-1]])
    raise ValueError(f"unknown demo class. Received: kind={kind}")


# Square and background colours: a small palette, so that with a few dozen clips the order
# of the frames, not the look of a clip, is what a model has to learn.
PALETTE = (
    ((20, 20, 20), (240, 240, 240)),
    ((20, 30, 90), (250, 220, 40)),
    ((110, 110, 110), (220, 40, 40)),
)
# What a person would call them: (background, square), for the demo captions.
COLOUR_NAMES = (("black", "white"), ("blue", "yellow"), ("grey", "red"))

# Three ways to say each motion: captions are several references per clip, as in MSVD.
_MOTIONS = {
    "grow": ("grows", "gets bigger", "is growing"),
    "shrink": ("shrinks", "gets smaller", "is shrinking"),
    "pulse": ("grows and then shrinks", "gets bigger then smaller", "is pulsing"),
}


def _palette_index(seed: int) -> int:
    # The first draw of render_clip's generator.
    return int(np.random.default_rng(seed).integers(len(PALETTE)))


def describe_clip(kind: str, seed: int = 0) -> list[str]:
    """Reference captions of the clip ``render_clip(kind, ..., seed=seed)`` draws: its
    square's colour, its background and its motion, said three ways."""
    background, square = COLOUR_NAMES[_palette_index(seed)]
    first, second, third = _MOTIONS[kind]
    return [
        f"a {square} square {first}",
        f"a {square} square {second} on a {background} background",
        f"the {square} square {third}",
    ]


def square_sizes(kind: str, num_frames: int) -> np.ndarray:
    """The side of the square in each frame of a clip, as a fraction of the frame's
    shorter side (the demo's per-frame regression target)."""
    return _sizes(kind, num_frames, 0.15, 0.8)


def motion_segments(kind: str, num_frames: int) -> list[tuple[str, int, int]]:
    """``(label, first frame, end frame)`` of each phase of a clip (end exclusive):
    ``grows`` while the square gets bigger, ``shrinks`` while it gets smaller (a pulse
    grows up to its largest size, at frame ``num_frames // 2``, then shrinks)."""
    if kind == "grow":
        return [("grows", 0, num_frames)]
    if kind == "shrink":
        return [("shrinks", 0, num_frames)]
    if kind == "pulse":
        peak = num_frames // 2  # the first frame of sizes[1::2][::-1] (or the last of [0::2])
        phases = [("grows", 0, peak + 1), ("shrinks", peak + 1, num_frames)]
        return [(label, a, b) for label, a, b in phases if b > a]
    raise ValueError(f"unknown demo class. Received: kind={kind}")


def clip_tags(kind: str, num_frames: int, seed: int = 0) -> list[str]:
    """A clip's labels for multi-label runs: its motions (``grows``, ``shrinks``: a pulse
    has both), ``<colour> square`` and ``<colour> background``."""
    background, square = COLOUR_NAMES[_palette_index(seed)]
    motions = [label for label, *_ in motion_segments(kind, num_frames)]
    return [*motions, f"{square} square", f"{background} background"]


def render_clip(
    kind: str, num_frames: int, width: int = 128, height: int = 96, seed: int = 0
) -> list[np.ndarray]:
    """RGB frames of one demo clip: a square that grows, shrinks or pulses.

    The seed picks the colours (from :data:`PALETTE`) and jitters the position; the same
    seed gives the same frames in every class, in another order.
    """
    rng = np.random.default_rng(seed)
    background, colour = PALETTE[int(rng.integers(len(PALETTE)))]  # see _palette_index
    side = min(width, height)
    centre_x = width / 2 + rng.uniform(-0.1, 0.1) * width
    centre_y = height / 2 + rng.uniform(-0.1, 0.1) * height
    frames = []
    for size in _sizes(kind, num_frames, 0.15 * side, 0.8 * side):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = background
        half = size / 2
        top, bottom = int(max(0, centre_y - half)), int(min(height, centre_y + half))
        left, right = int(max(0, centre_x - half)), int(min(width, centre_x + half))
        frame[top:bottom, left:right] = colour
        frames.append(frame)
    return frames


def _with_sound(stem: Path, clip: int, frames, kind: str, fps: int) -> Path:
    """A demo clip with a soundtrack whose pitch follows the square's side."""
    from vidcache.features.audio.synthetic import SOUND_FORMATS, glide, write_av

    ext, codec, pix_fmt, audio = SOUND_FORMATS[clip % len(SOUND_FORMATS)]
    pitches = 200.0 + 8.0 * _sizes(kind, len(frames), 0, 96)
    rate = 48000 if audio == "opus" else 16000
    path = stem.with_name(f"{stem.name}.{ext}")
    return write_av(path, frames, fps, glide(pitches, 1.0 / fps, rate), rate, audio,
                    video_codec=codec, pix_fmt=pix_fmt)  # fmt: skip


def make_demo_dataset(
    root: Path,
    clips_per_class: int = 8,
    classes: Sequence[str] = DEMO_CLASSES,
    fps: int = 5,
    seconds: float = 3.0,
    width: int = 128,
    height: int = 96,
    seed: int = 0,
    sound: bool = False,
) -> list[Path]:
    """Write a UCF101-style tree ``root/<class>/<class>_cNN.<ext>`` of synthetic clips,
    with what was drawn: ``root/captions.csv`` (``path,caption``, three per clip, see
    :func:`describe_clip`), ``root/targets.csv`` (``path,time,size``: the square's side
    at each frame, see :func:`square_sizes`), ``root/segments.csv``
    (``video,start,end,label``: when the square grows and when it shrinks, see
    :func:`motion_segments`) and ``root/tags.csv`` (``path,label``, several labels joined
    by ``;``, see :func:`clip_tags`: ``extract-features --labels tags.csv`` makes a
    multi-label cache).

    Formats rotate over :data:`DEMO_FORMATS`, and the last clip of each class is a folder
    of numbered PNG frames, so the demo exercises every input kind. With ``sound``, every
    clip is a file with a soundtrack (formats rotating over
    :data:`features.audio.synthetic.SOUND_FORMATS`: AAC, Opus, PCM): a tone whose pitch
    follows the square's side (200 Hz + 8 Hz a pixel), so the sound tells the classes
    apart as the pictures do. Deterministic for a given ``seed``.

    Returns:
        The paths written (files and frame folders).
    """
    root = Path(root)
    written = []
    captions, targets = [("path", "caption")], [("path", "time", "size")]
    segments = [("video", "start", "end", "label")]
    tags = [("path", "label")]
    num_frames = max(2, round(fps * seconds))
    for kind in classes:
        for clip in range(clips_per_class):
            # The same appearance (colours, position) for clip k of every class.
            clip_seed = seed * 1000 + clip
            frames = render_clip(kind, num_frames, width, height, clip_seed)
            name = f"{kind}_c{clip + 1:02d}"
            if sound:
                path = _with_sound(root / kind / name, clip, frames, kind, fps)
            elif clip == clips_per_class - 1:
                path = write_frame_folder(root / kind / name, frames)
            else:
                ext, codec, pix_fmt = DEMO_FORMATS[clip % len(DEMO_FORMATS)]
                path = write_video(root / kind / f"{name}.{ext}", frames, fps, codec, pix_fmt)
            written.append(path)
            video_id = path.relative_to(root).as_posix()
            captions.extend((video_id, text) for text in describe_clip(kind, clip_seed))
            for index, size in enumerate(square_sizes(kind, num_frames)):
                targets.append((video_id, f"{index / fps:.6g}", f"{size:.6f}"))
            for label, first, end in motion_segments(kind, num_frames):
                segments.append((video_id, f"{first / fps:.6g}", f"{end / fps:.6g}", label))
            tags.append((video_id, ";".join(clip_tags(kind, num_frames, clip_seed))))
    for name, rows in (
        ("captions.csv", captions), ("targets.csv", targets), ("segments.csv", segments),
        ("tags.csv", tags),
    ):  # fmt: skip
        with open(root / name, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
    return written
