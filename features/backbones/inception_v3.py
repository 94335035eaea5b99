"""InceptionV3 (Szegedy et al., 2016), ImageNet, global-average-pooled to 2048-d: the
default backbone and the one every cache made before the registry records."""

from __future__ import annotations

from vidcache.features.backbones.registry import Backbone, PretrainedFile, register

_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _build(input_shape: tuple[int, int, int]):
    import keras

    return keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=input_shape, pooling="avg"
    )


def _blocks(model) -> list[tuple[str, str]]:
    """The eleven inception blocks, ``mixed0`` .. ``mixed10``: each is its own last layer."""
    return [(f"mixed{i}", f"mixed{i}") for i in range(11)]


def _preprocess(frames):
    import keras

    return keras.applications.inception_v3.preprocess_input(frames)


INCEPTION_V3 = register(
    Backbone(
        name="InceptionV3",
        feature_dim=2048,
        min_image_size=75,
        default_image_size=299,
        build=_build,
        preprocess=_preprocess,
        blocks=_blocks,
        preprocess_name="keras.applications.inception_v3.preprocess_input",
        pretrained=PretrainedFile(
            name=_FILE,
            url="https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
            + _FILE,
            md5="bcbd6486424b2319ff4ef7d526e38f63",  # keras.applications.inception_v3
        ),
    )
)
