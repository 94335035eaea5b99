"""CLIP's image tower (Radford et al., 2021) through keras-hub: ViT-B/32 and ViT-L/14.

The per-frame features of current video captioning and retrieval work (CLIP4Clip and the
captioners built on it) are CLIP ViT-B/32 *image embeddings*: the class token of the
vision transformer's last layer, layer-normed, through CLIP's learnt projection into the
joint image-text space (512-d for B/32, 768-d for L/14). That is what these entries
extract, and what their settings record (``pooling``: ``cls-projected``; not the
pre-projection class token of the transformer's width).

Preprocessing is CLIP's: vidcache scales the short side to the input size and crops the
centre (``--resize center-crop``, the default; vidcache scales bilinearly where OpenAI's
code scales bicubically), then each channel is normalised with CLIP's mean and standard
deviation over 0..1 pixels.

Real weights are a keras-hub preset folder (``clip_vit_base_patch32``, ...), downloaded
once on a machine with network access (``keras_hub.models.CLIPBackbone.from_preset(
"clip_vit_base_patch32")`` fills ``~/.cache/kagglehub``; or Kaggle's
``keras/clip/keras/clip_vit_base_patch32``) and given as ``--weights FOLDER``. Its vision
tower must have this entry's shape (checked, one line when not). Both need the ``hub``
extra (``pip install 'vidcache[hub]'``: keras-hub); without it, choosing them is one line.

Random initialisation (``--weights random``) builds the same network at any input size from
one patch up (the position table follows the size), so tests run at 75 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vidcache.features.backbones.hub import keras_hub, load_preset
from vidcache.features.backbones.registry import Backbone, register
from vidcache.features.errors import WeightsUnavailable

#: CLIP's per-channel normalisation of 0..1 RGB (OpenAI's ``clip/clip.py``); plain tuples,
#: so that listing the backbones (``--help``) imports no NumPy. Both become the same float32
#: constants inside the model as NumPy float32 arrays did.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionTower:
    """The shape of one CLIP image tower (keras-hub's ``CLIPVisionEncoder`` arguments)."""

    patch_size: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    intermediate_dim: int
    projection_dim: int
    image_size: int
    activation: str = "quick_gelu"

    #: The fields that are ``CLIPVisionEncoder`` arguments of the same name.
    ENCODER_FIELDS = ("patch_size", "hidden_dim", "num_layers", "num_heads", "intermediate_dim")

    def encoder_arguments(self) -> dict:
        """``CLIPVisionEncoder`` keyword arguments (the input shape apart)."""
        arguments = {field: getattr(self, field) for field in self.ENCODER_FIELDS}
        return {**arguments, "intermediate_activation": self.activation}

    @classmethod
    def of(cls, clip) -> VisionTower:
        """The tower of a keras-hub ``CLIPBackbone``."""
        vision = clip.vision_encoder
        return cls(
            **{field: getattr(vision, field) for field in cls.ENCODER_FIELDS},
            projection_dim=clip.projection_dim,
            image_size=vision.image_shape[0],
            activation=vision.intermediate_activation,
        )


def _preprocess(frames):
    return (frames / 255.0 - MEAN) / STD


def _builder(name: str, tower: VisionTower):
    def build(input_shape: tuple[int, int, int]):
        import keras

        hub = keras_hub(name)
        encoder = hub.models.CLIPVisionEncoder(
            **tower.encoder_arguments(), image_shape=tuple(input_shape), name="vision_encoder"
        )
        images = keras.Input(input_shape, name="images")
        tokens = encoder({"images": images})
        # CLIP's pooled output: the class token of the last, layer-normed layer...
        pooled = tokens[:, 0, :]
        # ...projected into the joint image-text space (no bias, as in CLIP).
        embedding = keras.layers.Dense(
            tower.projection_dim, use_bias=False, name="vision_projection"
        )(pooled)
        return keras.Model(images, embedding, name=name)

    return build


def _loader(name: str, tower: VisionTower):
    def load_folder(model, path: Path) -> None:
        clip = load_preset(name, model.input_shape[1], tower.image_size, path, "CLIPBackbone")
        vision = clip.vision_encoder
        found = VisionTower.of(clip)
        if found != tower:
            raise WeightsUnavailable(
                f"{path} holds another CLIP (patch {found.patch_size}, width "
                f"{found.hidden_dim}, {found.num_layers} layers, {found.image_size} px, "
                f"{found.projection_dim}-d) than {name} (patch {tower.patch_size}, width "
                f"{tower.hidden_dim}, {tower.num_layers} layers, {tower.image_size} px, "
                f"{tower.projection_dim}-d)"
            )
        model.get_layer("vision_encoder").set_weights(vision.get_weights())
        model.get_layer("vision_projection").set_weights(clip.vision_projection.get_weights())

    return load_folder


def clip_backbone(name: str, tower: VisionTower, preset: str, aliases: tuple[str, ...]) -> Backbone:
    """A :class:`Backbone` entry for one CLIP image tower whose real weights are the
    keras-hub preset ``preset``."""
    return Backbone(
        name=name,
        aliases=aliases,
        feature_dim=tower.projection_dim,
        min_image_size=tower.patch_size,
        default_image_size=tower.image_size,
        build=_builder(name, tower),
        preprocess=_preprocess,
        preprocess_name="clip: (x / 255 - mean) / std, OpenAI CLIP's mean and std",
        pooling="cls-projected",
        load_folder=_loader(name, tower),
        real_weights=(
            f"the keras-hub preset folder {preset} (Kaggle keras/clip/keras/{preset}), "
            "given as --weights FOLDER"
        ),
        extra="hub",
    )


CLIP_VIT_B32 = register(
    clip_backbone(
        "CLIP-ViT-B32",
        VisionTower(32, 768, 12, 12, 3072, projection_dim=512, image_size=224),
        "clip_vit_base_patch32",
        aliases=("clip-vit-b32", "clip"),
    )
)
CLIP_VIT_L14 = register(
    clip_backbone(
        "CLIP-ViT-L14",
        VisionTower(14, 1024, 24, 16, 4096, projection_dim=768, image_size=224),
        "clip_vit_large_patch14",
        aliases=("clip-vit-l14",),
    )
)
