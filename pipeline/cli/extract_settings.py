"""``extract``'s feature options as one :class:`ExtractConfig`: copied from another cache or
run (``--like``, refusing explicit options that would contradict it), or checked and put
together from the command line."""

from __future__ import annotations

import math
from pathlib import Path

import click

__all__ = ["requested_run", "settings_of"]

_FEATURE_OPTIONS = (
    "fps", "num_frames", "max_frames", "sampling", "image_size", "resize", "folder_fps", "seed",
    "precision", "dtype", "backbone", "window", "stride", "pooling", "audio_span",
)  # fmt: skip


def settings_of(like: Path, weights: str):
    """The feature settings of ``--like`` and the weights to make them with, refusing
    explicit feature options that would contradict them."""
    from vidcache.features.backbones import WeightsSpec, backbone_names
    from vidcache.pipeline.extraction.local import settings_like

    context = click.get_current_context()
    given = [
        "--" + name.replace("_", "-")
        for name in _FEATURE_OPTIONS
        if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(f"--like {like} sets the feature settings; drop {', '.join(given)}")
    settings = settings_like(like)
    try:
        recorded = WeightsSpec.from_identity(settings.weights)
    except ValueError:
        raise click.ClickException(
            f"{like} holds features vidcache did not make ({settings.weights}); "
            "--like copies the settings of vidcache's own caches and runs"
        ) from None
    known = backbone_names()
    if settings.backbone not in known:
        raise click.ClickException(
            f"{like} was made with the backbone {settings.backbone}, which this installation "
            f"does not have ({', '.join(known)})"
        )
    if recorded.kind != "file":
        return settings, recorded
    source = context.get_parameter_source("weights")
    if source != click.core.ParameterSource.COMMANDLINE or Path(weights).name != recorded.file_name:
        raise click.ClickException(
            f"{like} was made with the weights file {recorded.file_name}; give that "
            "file with --weights PATH"
        )
    return settings, WeightsSpec.parse(weights)


def _audio_checks(entry, spec, image_size, window, audio_span):
    """An audio backbone's options in one line each; the weights it is built with."""
    from vidcache.features.backbones import WeightsSpec

    context = click.get_current_context()
    given = context.get_parameter_source("weights") == click.core.ParameterSource.COMMANDLINE
    if image_size is not None:
        raise click.UsageError(f"{entry.name} hears sound and takes no images: drop --image-size")
    if audio_span is not None and not 0 < audio_span <= 60:  # NaN passes click's range
        raise click.BadParameter(
            f"{audio_span} is not in the range 0<x<=60.", param_hint="'--audio-span'"
        )
    if window is not None and audio_span is not None:
        raise click.UsageError(
            "--audio-span sets what a frame row hears; a window row hears its window: drop one"
        )
    if entry.weightless:
        if given:
            raise click.UsageError(f"{entry.name} is computed, not learned: drop --weights")
        return WeightsSpec("none")
    return spec


def requested_run(
    spec, fps, num_frames, max_frames, sampling, image_size, resize, folder_fps, backbone,
    precision, dtype, batch_size, window=None, stride=None, pooling=None, audio_span=None,
):  # fmt: skip
    """The run the feature options ask for, checked (one line for options that do not go
    together, a size the backbone cannot take, or windows a backbone does not make)."""
    from vidcache.features.backbones import get_backbone
    from vidcache.features.settings import SamplingSpec
    from vidcache.pipeline.extraction.config import ExtractConfig

    entry = get_backbone(backbone)
    for hint, value in (("--fps", fps), ("--folder-fps", folder_fps)):
        if value is not None and not math.isfinite(value):  # click's ranges let NaN pass
            raise click.BadParameter(f"{value} is not a finite number.", param_hint=f"'{hint}'")
    if entry.hears:
        spec = _audio_checks(entry, spec, image_size, window, audio_span)
        image_size = 0
    elif audio_span is not None:
        raise click.UsageError(
            f"--audio-span sets what an audio backbone's rows hear; {entry.name} sees frames"
        )
    if image_size is None:
        image_size = entry.default_image_size
    if image_size < entry.min_image_size:
        raise click.BadParameter(
            f"{image_size} is not in the range x>={entry.min_image_size} ({backbone}'s "
            "smallest input).",
            param_hint="'--image-size'",
        )
    if num_frames is not None and fps is not None:
        raise click.UsageError("--num-frames cannot be used with --fps")
    if num_frames is not None and max_frames is not None:
        raise click.UsageError("--num-frames cannot be used with --max-frames")
    if num_frames is not None and sampling == "keyframes":
        raise click.UsageError(
            "--num-frames cannot be used with --sampling keyframes (thin keyframes with --fps)"
        )
    if num_frames is None and fps is None:
        fps = 5.0
    try:
        entry.check_image_size(image_size)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--image-size'") from None
    if entry.takes_windows and window is None:
        window = entry.window  # a clip backbone's own window unless told
    if stride is not None and window is None:
        raise click.UsageError("--stride needs --window")
    if pooling is not None and not entry.takes_windows:
        raise click.UsageError(
            f"--pooling chooses a clip backbone's rows; {entry.name} makes one per frame"
        )
    try:
        entry.check_sampling(window, pooling or entry.pooling)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return ExtractConfig(
        weights=spec,
        image_size=image_size,
        resize=resize,
        sampling=SamplingSpec(
            fps=fps or None,
            num_frames=num_frames,
            max_frames=max_frames,
            keyframes=sampling == "keyframes",
            window=window,
            stride=stride,
        ),
        pooling=pooling,
        audio_span=audio_span,
        folder_fps=folder_fps,
        precision=precision,
        dtype=dtype,
        batch_size=batch_size,
        backbone=backbone,
    )
