"""The parts of a training loop that do not depend on the framework: input checks and schedules."""
from __future__ import annotations

import math

import numpy as np

from tlcourse.data.card import Dataset, Split


def as_split(data, name: str) -> Split:
    if isinstance(data, Dataset):
        raise TypeError(f"{name} is a whole Dataset; pass one split, e.g. fit(model, ds.train, ds.val)")
    split = data if isinstance(data, Split) else Split(*(np.asarray(part) for part in data))
    images, labels = split.images, split.labels
    if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3):
        raise ValueError(f"{name} images have shape {images.shape}, which looks channels-first; "
                         "pass NHWC, e.g. images.transpose(0, 2, 3, 1)")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
        raise ValueError(f"{name} labels must be class indices 0..C-1 (integers), got {labels.dtype}")
    return split


def lr_factor(schedule, epoch: int, epochs: int) -> float:
    """The learning-rate multiplier for ``epoch`` (0-based, within one fit call of ``epochs``).

    ``"step"`` divides by 10 at half and at three quarters of the epochs; ``"cosine"`` follows half
    a cosine from 1 towards 0; a callable maps the epoch to a factor; ``None`` keeps 1.
    """
    if schedule is None:
        return 1.0
    if callable(schedule):
        return float(schedule(epoch))
    if schedule == "step":
        milestones = {m for m in (epochs // 2, (3 * epochs) // 4) if m > 0}
        return 0.1 ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"unknown schedule {schedule!r}; use 'step', 'cosine', a function epoch -> factor, or None")
