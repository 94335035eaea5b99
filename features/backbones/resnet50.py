"""ResNet50 (He et al., 2015), ImageNet, global-average-pooled to 2048-d: the classic
baseline of video feature work (video_features, most action-recognition papers)."""

from __future__ import annotations

from vidcache.features.backbones.keras_applications import (
    KERAS_APPLICATIONS_URL,
    application,
    blocks_by_prefix,
)
from vidcache.features.backbones.registry import Backbone, PretrainedFile, register

_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _preprocess(frames):
    import keras

    return keras.applications.resnet.preprocess_input(frames)  # RGB->BGR, ImageNet means


RESNET50 = register(
    Backbone(
        name="ResNet50",
        aliases=("resnet50",),
        feature_dim=2048,
        min_image_size=32,
        default_image_size=224,
        build=application("ResNet50"),
        preprocess=_preprocess,
        blocks=blocks_by_prefix(r"(conv\d_block\d+)_"),
        preprocess_name="keras.applications.resnet.preprocess_input",
        pretrained=PretrainedFile(
            name=_FILE,
            url=f"{KERAS_APPLICATIONS_URL}resnet/{_FILE}",
            md5="4d473c1dd8becc155b73f8504c6f6626",  # keras.applications.resnet
        ),
    )
)
