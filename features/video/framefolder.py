"""Folders of numbered images read as videos: each image a frame, at an assumed rate.
An image is opened only when the sampler keeps it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vidcache.features.errors import VideoDecodeError
from vidcache.features.settings import SamplingSpec
from vidcache.features.video.discover import frame_files
from vidcache.features.video.sampling import sample
from vidcache.features.video.videoinfo import VideoInfo, failure_reason

__all__ = ["FrameFolderReader", "LazyImage"]


class FrameFolderReader:
    """Frames of a folder of numbered images, at a fixed assumed rate.

    Args:
        path: the folder.
        fps: the rate the frames were taken at (timestamps are ``index / fps``).
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        try:
            self._files = frame_files(self.path)
        except OSError as exc:
            raise VideoDecodeError(failure_reason(exc)) from None
        if not self._files:
            raise VideoDecodeError("frame folder holds no images")
        width, height = self._open(self._files[0]).size
        self.info = VideoInfo(
            fps, len(self._files) / fps, len(self._files), width, height, "images"
        )

    def _open(self, file: Path) -> Image.Image:
        try:
            image = Image.open(file)
            image.load()
            return image
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoDecodeError(f"cannot read frame {file.name} ({exc})") from None

    def count_frames(self) -> int:
        return len(self._files)

    def sampled(self, sampling: SamplingSpec) -> Iterator[tuple[int, float, LazyImage]]:
        """``(source_index, seconds, image)`` of each image ``sampling`` keeps (every
        image counts as a keyframe)."""
        return sample(self.frames(), sampling, len(self._files))

    def frames(self) -> Iterator[tuple[float, Image.Image]]:
        for index, file in enumerate(self._files):
            yield index / self.info.fps, LazyImage(self, file)

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameFolderReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LazyImage:
    """An image file opened only when the sampler keeps it."""

    def __init__(self, reader: FrameFolderReader, file: Path) -> None:
        self._reader, self.file = reader, file

    def load(self) -> Image.Image:
        return self._reader._open(self.file)
