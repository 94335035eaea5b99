"""What the keras-hub backbones (CLIP, VideoPrism) share: importing keras-hub (the ``hub``
extra) with one line when it is missing, and reading a local preset folder."""

from __future__ import annotations

from pathlib import Path

from vidcache.features.errors import WeightsUnavailable

INSTALL = "pip install 'vidcache[hub]'"


def keras_hub(name: str):
    """The ``keras_hub`` module, or one line naming the extra to install.

    Raises:
        WeightsUnavailable: keras-hub is not installed.
    """
    try:
        import keras_hub
    except ImportError:
        raise WeightsUnavailable(
            f"the {name} backbone needs keras-hub, which is not installed: {INSTALL}"
        ) from None
    return keras_hub


def load_preset(name: str, model_size: int, preset_size: int, path: Path, kind: str):
    """A keras-hub backbone from the preset folder ``path``, after checking that the model
    being loaded takes the preset's frame size.

    Args:
        name: the vidcache backbone, for messages.
        model_size: the input side of the model the weights go into.
        preset_size: the side the entry's preset weights are for.
        path: the folder.
        kind: the keras-hub class name under ``keras_hub.models`` (``CLIPBackbone``...).

    Raises:
        WeightsUnavailable: another size, or a folder keras-hub cannot read as a preset.
    """
    hub = keras_hub(name)
    if model_size != preset_size:
        raise WeightsUnavailable(
            f"{name} preset weights are for {preset_size} px frames; extract with "
            f"--image-size {preset_size} (got {model_size})"
        )
    try:
        return getattr(hub.models, kind).from_preset(str(path), load_weights=True)
    except Exception as exc:  # keras-hub raises ValueError, FileNotFoundError, OSError...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        what = kind.removesuffix("Backbone")
        raise WeightsUnavailable(
            f"{path} is not a keras-hub {what} preset folder: {reason[:300]}"
        ) from None
