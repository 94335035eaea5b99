"""MobileNetV3-Large (Howard et al., 2019), ImageNet, global-average-pooled to 960-d: the
fast one, for CPUs and live prediction. The network rescales its own input
(``include_preprocessing``): it takes RGB 0..255 as it is."""

from __future__ import annotations

from vidcache.features.backbones.keras_applications import (
    KERAS_APPLICATIONS_URL,
    application,
    blocks_by_prefix,
    unchanged,
)
from vidcache.features.backbones.registry import Backbone, PretrainedFile, register

_FILE = "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"


MOBILENET_V3_LARGE = register(
    Backbone(
        name="MobileNetV3Large",
        aliases=("mobilenetv3-large",),
        feature_dim=960,
        min_image_size=32,
        default_image_size=224,
        build=application("MobileNetV3Large", include_preprocessing=True),
        preprocess=unchanged,
        blocks=blocks_by_prefix(r"(expanded_conv(?:_\d+)?)_"),
        preprocess_name="none (the network rescales its 0..255 input)",
        pretrained=PretrainedFile(
            name=_FILE,
            url=f"{KERAS_APPLICATIONS_URL}mobilenet_v3/{_FILE}",
            md5="07fb09a5933dd0c8eaafa16978110389",  # keras.applications.mobilenet_v3
        ),
    )
)
