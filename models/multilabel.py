"""The loss of ``--task multilabel --class-weight balanced``."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable("vidcache")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy per class, its positive term weighted by ``positive_weight``
    (one per class: negatives over positives in the training split, so a rare label's few
    positives count as much as its many negatives); the mean over classes per video.

    ``y_true (B, C)`` 0/1, ``y_pred (B, C)`` sigmoid probabilities.
    """

    def __init__(self, positive_weight, name: str = "weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weight = [float(w) for w in np.ravel(positive_weight)]

    def call(self, y_true, y_pred):
        p = ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon())
        y = ops.cast(y_true, p.dtype)
        w = ops.convert_to_tensor(self.positive_weight, dtype=p.dtype)
        return -ops.mean(w * y * ops.log(p) + (1 - y) * ops.log(1 - p), axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weight": self.positive_weight}
