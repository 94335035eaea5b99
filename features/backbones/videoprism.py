"""VideoPrism's video encoder (Zhao et al., 2024) through keras-hub: a clip backbone.

VideoPrism is a factorised video transformer: a ViT over the patches of each frame
(spatial layers), then a transformer over the frames at each patch position (temporal
layers). keras-hub's ``VideoPrismBackbone`` in video-only mode (``num_text_layers=0``, the
``videoprism_public_v1_base``/``_large`` presets) maps a window of ``(16, 288, 288, 3)``
frames to tokens ``(16, 256, D)``: 16 frames x 16 x 16 patches of 18 px. Its own docstring
says so ("video features for each patch in each frame"), and VideoPrism's model card uses
those spatio-temporal tokens as the frozen features, pooled by the task.

vidcache pools them (``--pooling``):

- ``window`` (default): the mean of all the window's tokens, one vector per window;
- ``frame``: the mean of each frame's own 256 tokens, one vector per kept frame (the
  tokens have seen the whole window through the temporal layers).

The entry's model does the per-frame mean (``(W, D)`` per window); the window mean of those
is the mean of all tokens (each frame has as many), taken in
:mod:`features.video.windowrows`. Preprocessing is VideoPrism's: RGB scaled to [0, 1]
(the VideoPrism repository feeds ``[0.0, 1.0]`` frames at 288 x 288). vidcache centre-crops
to the square first (``--resize``).

Real weights: a keras-hub preset folder (``videoprism_public_v1_base``, downloaded once
where Kaggle is reachable, e.g. ``keras_hub.models.VideoPrismBackbone.from_preset(
"videoprism_public_v1_base")``, or Kaggle ``keras/videoprism/keras/videoprism_public_v1_base``)
given as ``--weights FOLDER``; its configuration must match the entry (checked, one line).
The LvT presets (with a text tower) pool by attention into one vector per clip and are not
offered. ``--weights random`` builds the same network at any input size, for tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vidcache.features.backbones.hub import keras_hub, load_preset
from vidcache.features.backbones.registry import WINDOW_POOLINGS, Backbone, register
from vidcache.features.errors import WeightsUnavailable


@dataclass(frozen=True)
class VideoTower:
    """The shape of a video-only VideoPrism (``VideoPrismBackbone`` arguments)."""

    num_frames: int
    patch_size: int
    hidden_dim: int
    intermediate_dim: int
    num_heads: int
    num_spatial_layers: int
    num_temporal_layers: int
    image_size: int

    def arguments(self, image_size: int) -> dict:
        """``VideoPrismBackbone`` keyword arguments at ``image_size``."""
        fields = asdict(self)
        del fields["image_size"]
        return {
            **fields,
            "num_auxiliary_layers": 0,
            "num_text_layers": 0,
            "image_shape": (image_size, image_size, 3),
        }

    @classmethod
    def of(cls, backbone) -> VideoTower:
        """The tower of a keras-hub ``VideoPrismBackbone``."""
        names = [name for name in cls.__dataclass_fields__ if name != "image_size"]
        fields = {name: getattr(backbone, name) for name in names}
        fields["image_size"] = backbone.image_shape[0]
        return cls(**fields)

    def describe(self) -> str:
        return (
            f"{self.num_frames} frames, patch {self.patch_size}, width {self.hidden_dim}, "
            f"{self.num_spatial_layers}+{self.num_temporal_layers} layers, {self.image_size} px"
        )


def _preprocess(frames):
    return frames / 255.0


def _builder(name: str, tower: VideoTower):
    def build(input_shape: tuple[int, ...]):
        import keras

        hub = keras_hub(name)
        window, size = input_shape[0], input_shape[1]
        if window != tower.num_frames:
            raise ValueError(f"{name} takes {tower.num_frames} frames. Received: {window}")
        encoder = hub.models.VideoPrismBackbone(**tower.arguments(size), name="videoprism")
        clips = keras.Input(tuple(input_shape), name="clips")
        tokens = encoder(clips)  # (batch, frames, patches, width)
        per_frame = keras.layers.Lambda(
            lambda x: keras.ops.mean(x, axis=2), name="frame_token_mean"
        )(tokens)
        return keras.Model(clips, per_frame, name=name)

    return build


def _loader(name: str, tower: VideoTower):
    def load_folder(model, path: Path) -> None:
        size = model.input_shape[2]
        preset = load_preset(name, size, tower.image_size, path, "VideoPrismBackbone")
        if getattr(preset, "num_text_layers", 0):
            raise WeightsUnavailable(
                f"{path} is a VideoPrism LvT preset (video and text); {name} takes the "
                "video-only presets (videoprism_public_v1_base / _large)"
            )
        found = VideoTower.of(preset)
        if found != tower:
            raise WeightsUnavailable(
                f"{path} holds another VideoPrism ({found.describe()}) than {name} "
                f"({tower.describe()})"
            )
        model.get_layer("videoprism").set_weights(preset.get_weights())

    return load_folder


def videoprism_backbone(name: str, tower: VideoTower, preset: str, aliases=()) -> Backbone:
    """A :class:`Backbone` entry for a video-only VideoPrism whose real weights are the
    keras-hub preset ``preset``."""
    return Backbone(
        name=name,
        aliases=tuple(aliases),
        feature_dim=tower.hidden_dim,
        min_image_size=tower.patch_size,
        default_image_size=tower.image_size,
        build=_builder(name, tower),
        preprocess=_preprocess,
        preprocess_name="videoprism: x / 255 (RGB in [0, 1])",
        pooling=WINDOW_POOLINGS[0],
        load_folder=_loader(name, tower),
        real_weights=(
            f"the keras-hub preset folder {preset} (Kaggle keras/videoprism/keras/{preset}), "
            "given as --weights FOLDER"
        ),
        extra="hub",
        window=tower.num_frames,
        poolings=WINDOW_POOLINGS,
        image_multiple=tower.patch_size,
    )


VIDEOPRISM_BASE = register(
    videoprism_backbone(
        "videoprism-base",
        VideoTower(16, 18, 768, 3072, 12, 12, 4, image_size=288),
        "videoprism_public_v1_base",
    )
)
VIDEOPRISM_LARGE = register(
    videoprism_backbone(
        "videoprism-large",
        VideoTower(16, 18, 1024, 4096, 16, 24, 4, image_size=288),
        "videoprism_public_v1_large",
    )
)
