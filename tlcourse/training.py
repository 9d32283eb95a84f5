"""The parts of a training loop that do not depend on the framework: input checks and schedules."""
from __future__ import annotations

import contextlib
import math

import numpy as np

from tlcourse.config import seed_everything
from tlcourse.data.card import Dataset, Split


def as_split(data, name: str) -> Split:
    if isinstance(data, Dataset):
        raise TypeError(f"{name} is a whole Dataset; pass one split, e.g. fit(model, ds.train, ds.val)")
    images, labels = (data.images, data.labels) if isinstance(data, Split) else (np.asarray(part) for part in data)
    check_image_array(images, name)
    split = data if isinstance(data, Split) else Split(images, labels)
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
        raise ValueError(f"{name} labels must be class indices 0..C-1 (integers), got {labels.dtype}")
    return split


def check_image_array(images: np.ndarray, name: str) -> None:
    """Refuse, naming the fix, what ``fit`` / ``evaluate`` / ``predict`` cannot read as uint8 NHWC images."""
    subject = "the images" if name == "images" else f"the {name} images"
    if images.dtype != np.uint8:
        fix = ("from floats in [0, 1] pass (images * 255).round().astype('uint8'), from floats in 0..255 "
               "images.round().astype('uint8')" if np.issubdtype(images.dtype, np.floating)
               else "pass images.astype('uint8') if the values are 0..255")
        raise TypeError(f"{subject} are {images.dtype}, but tlcourse takes uint8 pixels 0..255: {fix}")
    if images.ndim == 3 and images.shape[-1] in (3, 4):
        raise ValueError(f"{subject} have shape {images.shape}: one image, not a batch; pass images[None], a batch of one")
    if images.ndim == 3:
        raise ValueError(f"{subject} have shape {images.shape}: grey images without a channel axis; pass "
                         "np.repeat(images[..., None], 3, axis=-1) for a network that takes RGB (images[..., None] for a grey one)")
    if images.ndim != 4:
        raise ValueError(f"{subject} should be a batch shaped (N, H, W, 3), got shape {images.shape}")
    if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3):
        raise ValueError(f"{subject} have shape {images.shape}, which looks channels-first (N, C, H, W); "
                         "pass channels-last, images.transpose(0, 2, 3, 1)")
    if images.shape[-1] == 4:
        raise ValueError(f"{subject} have 4 channels (RGBA?), shape {images.shape}; drop the alpha channel with images[..., :3]")


@contextlib.contextmanager
def hint_on_refused_input(images: np.ndarray, refusal: type[Exception]):
    """Turn the framework's raw error (``refusal``) for a grey batch fed to an RGB network into one
    that names the fix; any other error passes unchanged."""
    try:
        yield
    except refusal as error:
        if not (images.ndim == 4 and images.shape[-1] == 1):
            raise
        raise ValueError(f"the images are grey, shape {images.shape}, and the network refused them (it takes RGB?); "
                         "pass np.repeat(images, 3, axis=-1)") from error


def checked_fit_inputs(train, val, *, early_stopping, resume: bool, checkpoint, penalty, seed):
    """``fit``'s data and options, checked the same way in both frameworks: returns ``(train, val)``
    as Splits, after seeding everything when ``seed`` is given."""
    train = as_split(train, "train")
    if not len(train):
        raise ValueError("the training split is empty")
    val = as_split(val, "val") if val is not None else None
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping watches val_loss: pass a validation split, fit(model, train, val, ...)")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path> to resume from")
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty must be a function model -> scalar tensor, such as L2SP(model); got {penalty!r}")
    if seed is not None:
        seed_everything(seed)
    return train, val


def check_logits_shape(shape, labels: np.ndarray) -> None:
    """Fail early, with the fix, when a model's logits (``shape``, for a small batch) cannot fit the labels."""
    if len(shape) != 2:
        raise ValueError(f"the model should output logits of shape (batch, classes), got {tuple(shape)}")
    needed = int(labels.max()) + 1
    if shape[1] < needed:
        raise ValueError(f"the model outputs {shape[1]} classes but the labels go up to {needed - 1}; "
                         f"give it a {needed}-class head, e.g. swap_head(model, num_classes={needed})")


def run_record(checkpoint_format: str, epoch_offset: int, shuffle_seed: int) -> dict:
    """What ``fit`` keeps about a run in its checkpoint, beside the weights. This call's first epoch is
    numbered ``epoch_offset + 1``; each epoch's batch order depends only on ``shuffle_seed`` and the
    epoch number, so a resumed run sees the same batches."""
    return {"format": checkpoint_format, "epoch_offset": epoch_offset, "shuffle_seed": shuffle_seed,
            "epochs_done": 0, "stopped_early": False}


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
