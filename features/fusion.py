"""Several feature sets of the same videos, fused per frame (``train-rnn A.h5 B.h5 --fuse``).

Each part is one cache made by one backbone (InceptionV3 and CLIP, say) with the same frame
sampling. :class:`FusedReader` reads them as one cache whose rows are the per-frame
concatenation of the parts' rows, in the parts' order; :class:`FusedSettings` is what a run
trained on them records: every part's own settings, so each backbone can be rebuilt and
each cache checked.

Matching is by video id and by the sampled timestamps: a video is kept when every part
holds it; two parts that sample other frames of a video are refused in one line (the
sampling settings are compared first, then each video's timestamps as its rows are read).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import FeatureSettings

#: Settings every part must share: they decide which frames a row belongs to.
SHARED = ("sampling", "folder_fps")


def row_grid(settings: FeatureSettings) -> tuple:
    """What decides a cache's rows and their times: the frame sampling (``fps``,
    ``num_frames``, ``max_frames``, ``keyframes``, ``folder_fps``), and for caches with one
    row per window, the window and stride too. A window cache pooled per frame (``--pooling
    frame``) has a row at each kept frame, like a frame cache of the same sampling: the two
    line up; a window cache pooled per window lines up with window caches of the same
    window and stride only."""
    sampling = settings.sampling
    frames = (sampling.fps, sampling.num_frames, sampling.max_frames, sampling.keyframes)
    windows = (sampling.window, sampling.stride) if sampling.windowed else None
    per_window = windows is not None and settings.pooling != "frame"
    return (frames, settings.folder_fps, windows if per_window else None)


def describe_rows(settings: FeatureSettings) -> str:
    """A cache's rows in words, for messages."""
    sampling = settings.sampling
    if sampling.windowed and settings.pooling != "frame":
        return f"one row per window of {sampling.window} frames every {sampling.stride}"
    text = f"one row per kept frame ({sampling.describe().split(', windows')[0]})"
    return text


@dataclass(frozen=True)
class FusedSettings:
    """The settings of a fused feature set: one :class:`FeatureSettings` per part, in the
    order their features are concatenated.

    The fields that say which frames are kept (``sampling``, ``folder_fps``) are the parts'
    common ones; ``feature_dim`` is the sum.
    """

    parts: tuple[FeatureSettings, ...]

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise ValueError("a fused feature set has at least two parts")
        first = self.parts[0]
        for part in self.parts[1:]:
            if row_grid(part) != row_grid(first):
                raise SettingsMismatch(
                    "fused feature sets must sample the same frames (rows at the same times): "
                    f"{first.backbone} "
                    f"makes {describe_rows(first)}, {part.backbone} {describe_rows(part)} "
                    "(a window cache lines up with a frame cache when made with --pooling "
                    "frame and the same sampling, with a window cache when made with the "
                    "same --window and --stride)"
                )
            diffs = first.differences(part, ignore=(*_not_shared(), "sampling"))
            if diffs:
                raise SettingsMismatch(
                    f"fused feature sets must sample the same frames: {part.backbone} and "
                    f"{first.backbone} differ ({'; '.join(diffs)})"
                )

    @property
    def sampling(self):
        return self.parts[0].sampling

    @property
    def folder_fps(self) -> float:
        return self.parts[0].folder_fps

    @property
    def feature_dim(self) -> int:
        return sum(part.feature_dim for part in self.parts)

    @property
    def backbone(self) -> str:
        """The parts' backbones, joined with ``+`` (``InceptionV3+CLIP-ViT-B32``)."""
        return "+".join(part.backbone for part in self.parts)

    @property
    def imported(self) -> bool:
        return any(part.imported for part in self.parts)

    def to_dict(self) -> dict[str, Any]:
        """``{"fused": [part settings, ...]}``: what a run's ``config.json`` records."""
        return {"fused": [part.to_dict() for part in self.parts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusedSettings:
        """Parse what :meth:`to_dict` wrote."""
        import json

        return cls(tuple(FeatureSettings.from_json(json.dumps(p)) for p in data["fused"]))

    def digest(self) -> str:
        """SHA-256 over the parts' settings hashes, in order."""
        return hashlib.sha256("+".join(p.digest() for p in self.parts).encode()).hexdigest()

    def differences(self, other, *, ignore: tuple[str, ...] = (), folders: bool = True):
        """``name: theirs != mine`` lines, part by part (``part 2 image_size: ...``)."""
        theirs = other.parts if isinstance(other, FusedSettings) else (other,)
        if len(theirs) != len(self.parts):
            return [f"feature sets: {'+'.join(p.backbone for p in theirs)!r} != {self.backbone!r}"]
        lines = []
        for number, (mine, their) in enumerate(zip(self.parts, theirs), start=1):
            lines += [
                f"part {number} {line}"
                for line in mine.differences(their, ignore=ignore, folders=folders)
            ]
        return lines


def _not_shared() -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(FeatureSettings) if f.name not in SHARED]


def settings_of(data: dict[str, Any]) -> FeatureSettings | FusedSettings:
    """The settings a run recorded: one cache's, or a fused set's (``{"fused": [...]}``)."""
    import json

    if "fused" in data:
        return FusedSettings.from_dict(data)
    return FeatureSettings.from_json(json.dumps(data))


class FusedReader:
    """Read-only view of several caches of the same videos as one: the videos every part
    holds, each row the concatenation of the parts' rows of that frame.

    Args:
        readers: one open cache per part, in concatenation order; closed by :meth:`close`.

    Raises:
        SettingsMismatch: the parts sample other frames (settings, or a video's frame count).
    """

    def __init__(self, readers: list[CacheReader]) -> None:
        self.parts = list(readers)
        self.settings = FusedSettings(tuple(r.settings for r in self.parts))
        self.path = Path("+".join(str(r.path) for r in self.parts))
        first = self.parts[0].entries()
        common = set(first)
        for reader in self.parts[1:]:
            common &= set(reader.entries())
        self.left_out = {
            str(reader.path): len(set(reader.entries()) - common) for reader in self.parts
        }
        for reader in self.parts[1:]:
            entries = reader.entries()
            for video_id in sorted(common):
                if entries[video_id].num_frames != first[video_id].num_frames:
                    raise SettingsMismatch(
                        f"{video_id}: {reader.path} holds {entries[video_id].num_frames} "
                        f"frames, {self.parts[0].path} {first[video_id].num_frames}; fused "
                        "caches must sample the same frames (extract them with one --fps, "
                        "--num-frames or --sampling)"
                    )
        self._entries = {v: e for v, e in first.items() if v in common}

    def entries(self):
        """The videos every part holds (the first part's index entries)."""
        return dict(self._entries)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._entries

    def _fuse(self, video_id: str, rows: list) -> np.ndarray:
        first = rows[0].timestamps
        for reader, part in zip(self.parts[1:], rows[1:]):
            if not np.array_equal(part.timestamps, first):
                raise SettingsMismatch(
                    f"{video_id}: {reader.path} and {self.parts[0].path} hold other frames "
                    "(their timestamps differ); fused caches must sample the same frames"
                )
        return np.concatenate([np.asarray(r.features, np.float32) for r in rows], axis=1)

    def features(self, video_id: str) -> np.ndarray:
        """``float32 (T, sum of the parts' dims)``."""
        if video_id not in self._entries:
            raise KeyError(f"{video_id!r} is not in every part of {self.path}")
        return self._fuse(video_id, [r.rows(video_id) for r in self.parts])

    def features_many(self, video_ids: list[str]) -> dict[str, np.ndarray]:
        """:meth:`features` of many videos, each part read in file order."""
        per_part = [dict(r.rows_many(video_ids)) for r in self.parts]
        return {v: self._fuse(v, [rows[v] for rows in per_part]) for v in video_ids}

    def timestamps(self, video_id: str) -> np.ndarray:
        return self.parts[0].timestamps(video_id)

    def frame_indices(self, video_id: str) -> np.ndarray:
        return self.parts[0].frame_indices(video_id)

    def spans(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self.parts[0].spans(video_id)

    def holds_folders(self) -> bool:
        return any(r.holds_folders() for r in self.parts)

    def close(self) -> None:
        for reader in self.parts:
            reader.close()

    def __enter__(self) -> FusedReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
