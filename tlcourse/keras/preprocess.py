"""Turn uint8 RGB images into the float input an ImageNet-trained Keras network expects."""
from __future__ import annotations

import keras
import numpy as np

from tlcourse import lite0 as spec


def preprocess(
    images,
    size: int = spec.INPUT_SIZE,
    *,
    crop: bool = False,
    gray_to_rgb: bool = False,
    mean=spec.IMAGENET_MEAN,
    std=spec.IMAGENET_STD,
):
    """uint8 images ``(N, H, W, 3)`` -> float32 tensor ``(N, size, size, 3)``, ready for the model.

    Step by step (``tlcourse.torch.preprocess`` does the same in PyTorch and returns NCHW):

    1. check the batch: uint8, RGB, channels last (a clear error names the fix otherwise);
       grayscale ``(N, H, W)`` or ``(N, H, W, 1)`` is copied to RGB only with ``gray_to_rgb=True``;
    2. with ``crop=True``, keep the largest centred square (otherwise the whole image is used and
       a non-square photo is squeezed to a square);
    3. resize to ``size`` x ``size``, bilinear with antialiasing when shrinking (as PIL does);
    4. scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel (ImageNet's, which
       the EfficientNet-Lite0 weights expect);
    5. keep channels last, NHWC, Keras's layout.
    """
    batch = spec.checked_and_cropped(images, crop=crop, gray_to_rgb=gray_to_rgb)
    x = keras.ops.convert_to_tensor(np.ascontiguousarray(batch), dtype="float32")
    if tuple(batch.shape[1:3]) != (size, size):
        x = keras.ops.image.resize(x, (size, size), interpolation="bilinear", antialias=True)
    mean = np.asarray(mean, dtype="float32") * 255.0
    std = np.asarray(std, dtype="float32") * 255.0
    return (x - mean) / std
