"""Making a run's features again: the backbone and weights its feature settings name,
checked against the checksum they recorded (``predict``, ``evaluate`` on videos,
``train-e2e``)."""

from __future__ import annotations

from pathlib import Path

from vidcache.features.backbone import FeatureExtractor, WeightsSpec
from vidcache.features.errors import SettingsMismatch, WeightsUnavailable
from vidcache.features.fusion import FusedSettings
from vidcache.features.settings import FeatureSettings

__all__ = ["build_extractor", "feature_parts", "part_cache", "weights_for"]


def weights_for(settings: FeatureSettings, weights_path: Path | None = None) -> WeightsSpec:
    """The weights that made the run's cache; a weights file must be given again by path.

    Raises:
        WeightsUnavailable: the run used a weights file and none was given.
    """
    if settings.imported:
        raise WeightsUnavailable(
            f"the run's features were made by another tool and imported ({settings.backbone}, "
            "'vidcache import'); vidcache cannot make them from videos: import the new "
            "videos' features the same way and give that cache instead"
        )
    try:
        recorded = WeightsSpec.from_identity(settings.weights)
    except ValueError as exc:
        raise WeightsUnavailable(
            f"the run's feature settings name no weights vidcache makes: {exc}"
        ) from None
    if recorded.kind != "file":
        return recorded
    if weights_path is None:
        raise WeightsUnavailable(
            f"the run's features were made with the weights file {recorded.file_name}; "
            "pass it with --weights PATH"
        )
    return WeightsSpec.parse(str(weights_path))


def build_extractor(settings: FeatureSettings, weights_path: Path | None, batch_size: int):
    """A CNN that reproduces the run's features, or an error saying why it cannot.

    Raises:
        SettingsMismatch: the weights found are not the ones the run's cache was made with.
    """
    if settings.hears:
        from vidcache.features.audio.extractor import AudioExtractor

        weights = weights_for(settings, weights_path)
        extractor = AudioExtractor(weights, settings.precision, settings.backbone)
    else:
        extractor = FeatureExtractor(
            settings.image_size,
            weights_for(settings, weights_path),
            settings.precision,
            batch_size,
            settings.backbone,
        )
    if extractor.weights_sha256 != settings.weights_sha256:
        raise SettingsMismatch(
            f"cannot reproduce the run's features: the weights ({settings.weights}) have checksum "
            f"{extractor.weights_sha256[:12]}, the run's cache was made with "
            f"{settings.weights_sha256[:12]}"
        )
    return extractor


def feature_parts(settings: FeatureSettings | FusedSettings) -> tuple[FeatureSettings, ...]:
    """The feature sets a run reads: one, or each part of a fused set."""
    return settings.parts if isinstance(settings, FusedSettings) else (settings,)


def part_cache(cache: Path, number: int, settings: FeatureSettings, parts: int) -> Path:
    """Where part ``number`` of a fused run's features goes, given the ``cache`` path the
    user named: ``cache`` itself for a run of one feature set, else
    ``STEM.N-BACKBONE.h5`` beside it."""
    cache = Path(cache)
    if parts == 1:
        return cache
    return cache.with_name(f"{cache.stem}.{number}-{settings.backbone}.h5")
