"""End-to-end model: a backbone's top blocks and the stage-two head, trained together.

``frames (B, T, S, S, 3) uint8 -> the backbone's preprocessing (InceptionV3: Rescaling,
x / 127.5 - 1) -> FrameWise(backbone, avg-pooled) -> the stage-two model (standardise,
LSTM, softmax)``. Every backbone whose registry entry lists its ``blocks`` can be cut
there (InceptionV3 ``mixedN``, ResNet50 ``convS_blockB``, EfficientNetV2S ``blockNx``,
MobileNetV3Large ``expanded_conv_N``). Built from a stage-two run and the backbone that
made its cache, it predicts exactly what the run predicts on the same frames before any
training step.

Fine-tuning rules (Keras' own): layers up to the cut stay frozen; every
BatchNormalization layer is frozen, which in Keras 3 also keeps it in inference mode.

Cut caching: frozen layers never change, so the activation at the cut (the output of the
last frozen block) can be computed once per frame; the *top* model (the same layer objects
from the cut to the pooled output) then trains on it with exactly the same forward and
backward passes as the full network.
"""

from __future__ import annotations

import numpy as np

from vidcache.features.backbone import import_tensorflow
from vidcache.features.errors import VidcacheError

import_tensorflow()  # quietly, before Keras pulls it in
import keras  # noqa: E402  (the layer below must be registered at import, for loading)

DEFAULT_UNFREEZE = "mixed9"  # the top two inception blocks (mixed9, mixed10)
#: InceptionV3's blocks as (name, last layer): what ``--unfreeze-from`` meant before other
#: backbones could be fine-tuned.
_INCEPTION_BLOCKS = [(f"mixed{i}", f"mixed{i}") for i in range(11)]


class E2EError(VidcacheError):
    """The end-to-end model cannot be built as asked."""


def default_unfreeze(blocks: list[tuple[str, str]]) -> str:
    """The default ``--unfreeze-from``: the last two blocks train (``mixed9`` for
    InceptionV3)."""
    return blocks[-2][0]


def cut_layer_name(unfreeze_from: str, blocks: list[tuple[str, str]] | None = None) -> str | None:
    """The last frozen layer for ``--unfreeze-from``: block B trains B and every block after
    it, so the cut is the last layer of the block before B; ``all`` trains everything (no
    cut).

    Args:
        unfreeze_from: a block name (not the first block) or ``all``.
        blocks: the backbone's ``(block, last layer)`` list (:attr:`Backbone.blocks`).
            Defaults to InceptionV3's ``mixed0`` .. ``mixed10``.

    Raises:
        E2EError: not one of the blocks after the first, nor ``all``.
    """
    if unfreeze_from == "all":
        return None
    blocks = _INCEPTION_BLOCKS if blocks is None else blocks
    names = [name for name, _ in blocks]
    if unfreeze_from not in names[1:]:
        raise E2EError(
            f"--unfreeze-from must be {names[1]} ... {names[-1]} or all. Received: {unfreeze_from}"
        )
    return blocks[names.index(unfreeze_from) - 1][1]


def freeze(backbone, cut: str | None) -> int:
    """Make layers after ``cut`` trainable and the rest frozen; BN always frozen.

    Returns:
        The number of trainable weights.
    """

    names = [layer.name for layer in backbone.layers]
    first = 0 if cut is None else names.index(cut) + 1
    for index, layer in enumerate(backbone.layers):
        trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
    return len(backbone.trainable_weights)


def split_backbone(backbone, cut: str):
    """``(bottom, top)``: frames -> activation at ``cut``, and that activation -> features.

    Both share ``backbone``'s layer objects, so training ``top`` trains ``backbone``.
    """

    tensor = backbone.get_layer(cut).output
    return keras.Model(backbone.input, tensor, name="bottom"), keras.Model(
        tensor, backbone.output, name="top"
    )


@keras.saving.register_keras_serializable(package="vidcache")
class FrameWise(keras.layers.Wrapper):
    """Apply an image model to every frame: ``(B, T, ...) -> (B, T, D)``.

    Time is folded into the batch, so the CNN runs once on ``B * T`` frames. (Keras'
    ``TimeDistributed`` runs a dynamic number of steps through ``vectorized_map``, which
    gave wrong outputs for InceptionV3 inside compiled training and evaluation steps:
    validation accuracy 0.167 where the same model and data give 0.833.)
    """

    def call(self, inputs, training=None):
        shape = keras.ops.shape(inputs)
        frames = keras.ops.reshape(inputs, (-1, *inputs.shape[2:]))
        features = self.layer(frames, training=training)
        return keras.ops.reshape(features, (shape[0], shape[1], features.shape[-1]))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], inner[-1])


@keras.saving.register_keras_serializable(package="vidcache")
class BackbonePreprocess(keras.layers.Layer):
    """A registered backbone's own preprocessing (0..255 RGB in), by the backbone's name,
    so a saved end-to-end model carries it."""

    def __init__(self, backbone: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs):
        from vidcache.features.backbones import get_backbone

        return get_backbone(self.backbone).preprocess(keras.ops.cast(inputs, "float32"))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def build_e2e(
    head,
    backbone,
    image_size: int,
    cut_input_shape: tuple | None = None,
    backbone_name: str = "InceptionV3",
):
    """The trainable end-to-end model.

    Args:
        head: the stage-two model (features -> probabilities).
        backbone: the CNN (preprocessed frames -> pooled features), already frozen by
            :func:`freeze`.
        image_size: side of the frames.
        cut_input_shape: when given, the model takes cached activations of this per-frame
            shape instead of frames, and runs only ``backbone``'s layers after the cut
            (``backbone`` must then be the *top* model of :func:`split_backbone`).
        backbone_name: the registered backbone, whose preprocessing the model applies
            (InceptionV3's ``x / 127.5 - 1`` as a ``Rescaling`` layer, as before the
            registry). Defaults to ``"InceptionV3"``.
    """
    if cut_input_shape is None:
        frames = keras.Input((None, image_size, image_size, 3), dtype="uint8", name="frames")
        if backbone_name == "InceptionV3":
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(frames)
        else:
            x = BackbonePreprocess(backbone_name, name="preprocess")(frames)
        inputs = frames
    else:
        inputs = keras.Input((None, *cut_input_shape), name="cut_activations")
        x = inputs
    features = FrameWise(backbone, name="cnn")(x)
    return keras.Model(inputs, head(features), name="vidcache_e2e")


def length_batches(lengths: list[int], batch_size: int, seed: int | None) -> list[list[int]]:
    """Batches of indices whose sequences have equal length (no padding frames through the
    CNN), shuffled by ``seed`` (``None``: in order)."""
    by_length: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        by_length.setdefault(length, []).append(index)
    rng = np.random.default_rng(seed) if seed is not None else None
    batches = []
    for length in sorted(by_length):
        members = by_length[length]
        if rng is not None:
            members = [members[i] for i in rng.permutation(len(members))]
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def bytes_per_frame(backbone, cut: str | None, cached: bool = False) -> int:
    """Estimated memory one frame costs in a training step.

    The float32 outputs of every layer after the cut are kept for the backward pass and get
    gradients of the same size (x2); the frozen part runs forward only, so its cost is about
    its two largest consecutive outputs (nothing of it when its output is cached).
    """
    names = [layer.name for layer in backbone.layers]
    first = 0 if cut is None else names.index(cut) + 1

    def size(layer) -> int:
        return int(np.prod(layer.output.shape[1:])) * 4

    trainable = sum(size(layer) for layer in backbone.layers[first:])
    frozen = 0 if cached else 2 * max((size(layer) for layer in backbone.layers[:first]), default=0)
    return 2 * trainable + frozen


def fit_batch_size(batch_size: int, frames_per_video: int, per_frame: int, available: int) -> int:
    """The largest batch (videos per step, at most ``batch_size``) whose estimated training
    memory stays under 60% of ``available`` bytes.

    Raises:
        E2EError: not even one video fits.
    """
    budget = 0.6 * available
    fitting = int(budget // max(1, per_frame * frames_per_video))
    if fitting < 1:
        need = per_frame * frames_per_video / 2**30
        raise E2EError(
            f"one video of {frames_per_video} frames needs about {need:.1f} GiB to train end to "
            f"end, more than 60% of the {available / 2**30:.1f} GiB available; use --cache-cut, "
            "a later --unfreeze-from, or fewer frames per clip"
        )
    return min(batch_size, fitting)


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``), or the physical total."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
