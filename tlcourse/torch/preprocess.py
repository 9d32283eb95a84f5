"""Turn uint8 RGB images into the float input an ImageNet-trained PyTorch network expects."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tlcourse import lite0 as spec


def preprocess(
    images,
    size: int = spec.INPUT_SIZE,
    *,
    crop: bool = False,
    gray_to_rgb: bool = False,
    mean=spec.IMAGENET_MEAN,
    std=spec.IMAGENET_STD,
) -> torch.Tensor:
    """uint8 images ``(N, H, W, 3)`` -> float32 tensor ``(N, 3, size, size)``, ready for the model.

    Step by step (``tlcourse.keras.preprocess`` does the same in Keras and returns NHWC):

    1. check the batch: uint8, RGB, channels last (a clear error names the fix otherwise);
       grayscale ``(N, H, W)`` or ``(N, H, W, 1)`` is copied to RGB only with ``gray_to_rgb=True``;
    2. with ``crop=True``, keep the largest centred square (otherwise the whole image is used and
       a non-square photo is squeezed to a square);
    3. resize to ``size`` x ``size``, bilinear with antialiasing when shrinking (as PIL does);
    4. scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel (ImageNet's, which
       the EfficientNet-Lite0 weights expect);
    5. reorder to channels first, NCHW.

    The result is on the CPU; move it with ``.to(device)``.
    """
    batch = spec.checked_and_cropped(images, crop=crop, gray_to_rgb=gray_to_rgb)
    x = torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous()
