"""The backbone table: one :class:`Backbone` per CNN vidcache can extract features with.

The shape of ``keras.applications``' table: a name, the input sizes it accepts, how frames
are preprocessed, the feature dimension, and where its real (pretrained) weights come from
with their checksum. Adding a backbone is one module that calls :func:`register`; nothing
else in vidcache names a particular network.

This module does not import TensorFlow: an entry's ``build`` and ``preprocess`` do, when they
are called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidcache.features.plugins import load_plugins

#: The backbone of every cache made before the registry existed, and the default.
DEFAULT_BACKBONE = "InceptionV3"

#: Modules that register vidcache's own backbones, imported on first lookup.
_BUILTIN_MODULES = (
    "vidcache.features.backbones.inception_v3",
    "vidcache.features.backbones.resnet50",
    "vidcache.features.backbones.efficientnet_v2",
    "vidcache.features.backbones.mobilenet_v3",
    "vidcache.features.backbones.clip",
    "vidcache.features.backbones.videoprism",
    "vidcache.features.backbones.audio",
)
#: How an audio backbone pools its units over a row's span (the only pooling it has).
AUDIO_POOLING = "mean"
#: The poolings of a clip backbone (``--pooling``), the default first: one row per window,
#: or one per kept frame (:mod:`features.video.windowrows`).
WINDOW_POOLINGS = ("window", "frame")
#: Entry-point group through which other installed packages add backbones: each entry
#: point names a module (or callable) that calls :func:`register` when loaded.
ENTRY_POINT_GROUP = "vidcache.backbones"


@dataclass(frozen=True)
class PretrainedFile:
    """A pretrained weights file Keras publishes, kept in the Keras cache.

    Attributes:
        name: the file name in ``$KERAS_HOME/models``.
        url: where Keras downloads it from.
        md5: its MD5, as ``keras.applications`` checks it.
        label: what the weights were trained on, for messages. Defaults to ``"ImageNet"``.
    """

    name: str
    url: str
    md5: str
    label: str = "ImageNet"


@dataclass(frozen=True)
class Backbone:
    """One CNN: what it takes, what it gives, how it is built.

    Attributes:
        name: the name recorded in a cache's settings (``backbone``) and given on the
            command line.
        feature_dim: length of the pooled feature vector of one frame.
        min_image_size: the smallest square input side the network accepts.
        default_image_size: the side it was trained at.
        build: ``build(input_shape) -> keras.Model``, without weights (randomly
            initialised), frames in (preprocessed), pooled features out.
        preprocess: ``preprocess(float32 tensor of 0..255 RGB) -> tensor`` fed to the model.
        preprocess_name: how the settings record the preprocessing.
        pooling: how the network's last feature map becomes one vector. Defaults to ``"avg"``.
        pretrained: the ``--weights imagenet`` file, or ``None`` when there is none.
        aliases: other spellings accepted on the command line (``resnet50``); any name is
            matched without regard to case. The settings record ``name``.
        load_folder: ``load_folder(model, path)`` loads real weights from a folder (a
            keras-hub preset) into the built model; ``None`` when the backbone only loads
            Keras weights files.
        real_weights: where real weights come from, in words, for backbones without a
            ``pretrained`` file (``vidcache weights --list`` prints it).
        extra: the vidcache extra the backbone needs installed (``"hub"``), or ``None``.
        blocks: ``blocks(model) -> [(block name, its last layer's name), ...]`` in order:
            where ``train-e2e --unfreeze-from BLOCK`` may cut the network (everything after
            a block's last layer must depend on that layer's output alone); ``None`` when
            the network cannot be fine-tuned end to end.
        window: frames per window of a *clip* backbone, which takes ``(window, s, s, 3)``
            inputs and gives one vector per frame of the window ``(window, feature_dim)``;
            ``None`` (the default) for a frame backbone (``(s, s, 3)`` in, one vector out).
        poolings: the poolings a clip backbone offers (``--pooling``), the default first;
            empty for a frame backbone, whose ``pooling`` is fixed.
        image_multiple: the input side must be a multiple of this (a transformer whose
            patches must tile the frame). Defaults to 1.
        sample_rate: an *audio* backbone's rate (samples per second of mono sound it
            hears); ``None`` (the default) for a backbone of pictures. An audio backbone
            takes no images (``image_size`` 0) and pools its units over each row's span
            (:mod:`features.audio.rows`).
        hear: ``hear(model, preset) -> hearing``, an audio backbone's computation
            (``hearing.units(samples) -> (times, vectors)``), given what ``build`` made
            (``None`` for a backbone without weights) and the preset folder its weights
            came from (or ``None``).
        audio_input: what ``build`` takes, for an audio backbone with a network.
        weightless: the backbone has no weights at all (``logmel``): ``--weights`` is
            refused and the cache records ``weights`` ``"none"``.
    """

    name: str
    feature_dim: int
    min_image_size: int
    default_image_size: int
    build: Callable[[tuple[int, int, int]], Any]
    preprocess: Callable[[Any], Any]
    preprocess_name: str
    pooling: str = "avg"
    pretrained: PretrainedFile | None = None
    aliases: tuple[str, ...] = ()
    load_folder: Callable[[Any, Any], None] | None = None
    real_weights: str = ""
    extra: str | None = None
    blocks: Callable[[Any], list[tuple[str, str]]] | None = None
    window: int | None = None
    poolings: tuple[str, ...] = ()
    image_multiple: int = 1
    sample_rate: int | None = None
    hear: Callable[[Any, Any], Any] | None = None
    audio_input: tuple[int, ...] = ()
    weightless: bool = False

    @property
    def hears(self) -> bool:
        """Whether this is an audio backbone (sound in, not pictures)."""
        return self.sample_rate is not None

    @property
    def takes_windows(self) -> bool:
        """Whether this is a clip backbone (windows of frames in)."""
        return self.window is not None

    def input_shape(self, image_size: int) -> tuple[int, ...]:
        """The shape of one input: a frame, or a window of frames."""
        if self.hears:
            return self.audio_input
        frame = (image_size, image_size, 3)
        return (self.window, *frame) if self.window is not None else frame

    def check_sampling(self, window: int | None, pooling: str) -> None:
        """Raise ``ValueError`` unless this backbone makes rows of ``window``/``pooling``
        (a clip backbone: its own window and one of its poolings; a frame backbone: no
        window)."""
        if self.hears:  # any window of the frames' grid; the span's mean of units
            if pooling != AUDIO_POOLING:
                raise ValueError(
                    f"{self.name} pools its units by their {AUDIO_POOLING}. "
                    f"Received: pooling={pooling!r}"
                )
            return
        if self.window is None:
            if window is not None:
                raise ValueError(
                    f"{self.name} makes one vector per frame; --window needs a clip backbone "
                    f"({', '.join(clip_backbone_names()) or 'none installed'})"
                )
            return  # its pooling is what its caches recorded: read, never remade otherwise
        if window != self.window:
            raise ValueError(
                f"{self.name} takes windows of {self.window} frames (--window {self.window}). "
                f"Received: window={window}"
            )
        if pooling not in self.poolings:
            raise ValueError(
                f"{self.name} pools by {' or '.join(self.poolings)}. Received: pooling={pooling!r}"
            )

    def check_image_size(self, image_size: int) -> None:
        """Raise ``ValueError`` when the network cannot take ``image_size`` inputs."""
        if self.hears:
            if image_size != 0:
                raise ValueError(
                    f"{self.name} hears sound and takes no images. Received: "
                    f"image_size={image_size}"
                )
            return
        if image_size < self.min_image_size:
            raise ValueError(
                f"image_size must be at least {self.min_image_size} for {self.name}. "
                f"Received: image_size={image_size}"
            )
        if image_size % self.image_multiple:
            raise ValueError(
                f"image_size must be a multiple of {self.image_multiple} for {self.name} (its "
                f"patches tile the frame). Received: image_size={image_size}"
            )

    def settings_fields(self) -> dict[str, Any]:
        """The :class:`~vidcache.features.settings.FeatureSettings` fields this backbone
        fixes (``backbone``, ``pooling``, ``feature_dim``, ``preprocess``; and an audio
        backbone's ``sample_rate``)."""
        fields = {
            "backbone": self.name,
            "pooling": self.pooling,
            "feature_dim": self.feature_dim,
            "preprocess": self.preprocess_name,
        }
        if self.hears:
            fields["sample_rate"] = self.sample_rate
        return fields


_REGISTRY: dict[str, Backbone] = {}
_builtins_loaded = False


def register(backbone: Backbone, *, replace: bool = False) -> Backbone:
    """Add ``backbone`` to the table under its name.

    Args:
        backbone: the entry.
        replace: allow replacing an entry of the same name. Defaults to ``False``.

    Raises:
        ValueError: the name is taken and ``replace`` is false.
    """
    if not replace and backbone.name in _REGISTRY and _REGISTRY[backbone.name] != backbone:
        raise ValueError(f"a backbone named {backbone.name!r} is already registered")
    for spelling in (backbone.name, *backbone.aliases):
        other = _lookup(spelling)
        if other is not None and other.name != backbone.name:
            raise ValueError(f"{spelling!r} already names the backbone {other.name!r}")
    _REGISTRY[backbone.name] = backbone
    return backbone


def _lookup(name: str) -> Backbone | None:
    """The entry called ``name`` or one of its aliases, regardless of case."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    folded = name.casefold()
    for entry in _REGISTRY.values():
        if folded in (s.casefold() for s in (entry.name, *entry.aliases)):
            return entry
    return None


def unregister(name: str) -> None:
    """Remove an entry (tests that register a toy backbone clean up with this)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins(
        ENTRY_POINT_GROUP, "backbone", lambda loaded: loaded() if callable(loaded) else None
    )


def get_backbone(name: str = DEFAULT_BACKBONE) -> Backbone:
    """The registered backbone called ``name``.

    Raises:
        ValueError: no backbone has that name (the message lists the known ones).
    """
    _load_builtins()
    found = _lookup(name)
    if found is None:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(backbone_names())}")
    return found


def clip_backbone_names() -> list[str]:
    """Names of the registered clip backbones (windows of frames in)."""
    return [name for name in backbone_names() if _REGISTRY[name].takes_windows]


def audio_backbone_names() -> list[str]:
    """Names of the registered audio backbones (sound in)."""
    return [name for name in backbone_names() if _REGISTRY[name].hears]


def visual_backbone_names() -> list[str]:
    """Names of the registered backbones of pictures (frames or windows in)."""
    return [name for name in backbone_names() if not _REGISTRY[name].hears]


def backbone_names() -> list[str]:
    """Names of the registered backbones, the default first."""
    _load_builtins()
    return sorted(_REGISTRY, key=lambda name: (name != DEFAULT_BACKBONE, name))
