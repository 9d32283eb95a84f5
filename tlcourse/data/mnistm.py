"""The MNIST-M construction (Ganin et al., 2016): digits blended over random photo patches.

Each digit gets a patch of its own size, cropped at a random place from a randomly chosen photo;
the blended image is the absolute difference ``|patch - digit|`` in every colour channel. Where the
digit's stroke is dark (0) the photo shows through unchanged; where it is bright (255) the photo's
colours are inverted, so the digit stays readable whatever the background.

The same function builds MNIST-M in both profiles: MNIST over BSDS500 photos in ``full``,
scikit-learn's digits over the photos shipped with scikit-learn and scikit-image in ``quick``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def blend_on_photos(digits: np.ndarray, photos: Sequence[np.ndarray] | np.ndarray, seed: int) -> np.ndarray:
    """Blend each digit over a random patch of a random photo by absolute difference.

    Parameters
    ----------
    digits:
        uint8 array of shape (N, H, W) or (N, H, W, 1): white strokes (255) on black (0).
    photos:
        a list (or a 4-D array) of uint8 RGB photos of shape (h, w, 3), each at least H x W.
    seed:
        the seed of the photo and crop choices; the same seed always gives the same images.

    Returns
    -------
    uint8 array of shape (N, H, W, 3), ``|patch - digit|`` per channel.
    """
    digits = np.asarray(digits)
    if digits.ndim == 4 and digits.shape[-1] == 1:
        digits = digits[..., 0]
    if digits.dtype != np.uint8 or digits.ndim != 3:
        raise ValueError(
            f"digits must be a uint8 array of shape (N, H, W) or (N, H, W, 1); got {digits.dtype} "
            f"with shape {digits.shape}. Scale float images to 0..255 and cast with .astype(np.uint8)."
        )
    n, height, width = digits.shape
    photos = [_check_photo(i, photo, height, width) for i, photo in enumerate(photos)]
    if not photos:
        raise ValueError("photos is empty: give at least one RGB photo to crop backgrounds from")

    rng = np.random.default_rng(seed)
    which = rng.integers(len(photos), size=n)
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    patches = np.empty((n, height, width, 3), np.uint8)
    for p, photo in enumerate(photos):
        idx = np.flatnonzero(which == p)
        top = rng.integers(photo.shape[0] - height + 1, size=len(idx))
        left = rng.integers(photo.shape[1] - width + 1, size=len(idx))
        patches[idx] = photo[top[:, None, None] + rows, left[:, None, None] + cols]

    blended = np.abs(patches.astype(np.int16) - digits[..., None].astype(np.int16))
    return blended.astype(np.uint8)


def _check_photo(i: int, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(
            f"photo {i} must be a uint8 RGB array of shape (h, w, 3); got {photo.dtype} with shape "
            f"{photo.shape}. Convert grey photos with np.repeat(photo[..., None], 3, axis=-1)."
        )
    if photo.shape[0] < height or photo.shape[1] < width:
        raise ValueError(f"photo {i} ({photo.shape[0]}x{photo.shape[1]}) is smaller than a digit ({height}x{width})")
    return photo
