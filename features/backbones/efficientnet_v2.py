"""EfficientNetV2-S (Tan & Le, 2021), ImageNet, global-average-pooled to 1280-d.

The S size: the smallest of the V2 family trained at full resolution (384 px, 83.9%
ImageNet top-1 in Keras' table against InceptionV3's 77.9% and ResNet50's 74.9%), for
users who want a modern, more accurate network and can pay for it; the B0..B3 sizes are
V1-style scaled-down variants, and MobileNetV3Large covers the fast end. The network
rescales its own input (``include_preprocessing``): it takes RGB 0..255 as it is.
"""

from __future__ import annotations

from vidcache.features.backbones.keras_applications import (
    KERAS_APPLICATIONS_URL,
    application,
    blocks_by_prefix,
    unchanged,
)
from vidcache.features.backbones.registry import Backbone, PretrainedFile, register

_FILE = "efficientnetv2-s_notop.h5"


EFFICIENTNET_V2_S = register(
    Backbone(
        name="EfficientNetV2S",
        aliases=("efficientnetv2-s",),
        feature_dim=1280,
        min_image_size=32,
        default_image_size=384,
        build=application("EfficientNetV2S", include_preprocessing=True),
        preprocess=unchanged,
        blocks=blocks_by_prefix(r"(block\d+[a-z])_"),
        preprocess_name="none (the network rescales its 0..255 input)",
        pretrained=PretrainedFile(
            name=_FILE,
            url=f"{KERAS_APPLICATIONS_URL}efficientnet_v2/{_FILE}",
            md5="af0682fb74e8c54910f2d4393339c070",  # keras.applications.efficientnet_v2
        ),
    )
)
