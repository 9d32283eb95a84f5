"""Training, evaluation and prediction for PyTorch classifiers; ``tlcourse.keras.train`` mirrors it.

Models output logits. Data comes in as numpy (uint8 NHWC images, integer labels): a ``Split`` or
an ``(images, labels)`` pair. ``transform`` turns a uint8 batch into a float NCHW tensor (default:
scale to [0, 1]); ``augment`` then alters float training batches, on the training device.

On CUDA the loop uses mixed precision (float16 autocast with a GradScaler) and channels_last; on
CPU, a ``seed`` makes a run repeat exactly, and ``resume=True`` continues a checkpointed run to the
very numbers an uninterrupted one reaches.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

from tlcourse.data.card import Split
from tlcourse.history import History
from tlcourse.torch.conservative import L2SP
from tlcourse.torch.freezing import keep_frozen_layers_in_eval
from tlcourse.training import as_split, check_logits_shape, checked_fit_inputs, hint_on_refused_input, lr_factor, run_record

__all__ = ["fit", "evaluate", "predict"]

_CHECKPOINT_FORMAT = "tlcourse.torch.fit/1"


# -- data -----------------------------------------------------------------------------------
def default_transform(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy → float32 NCHW tensor in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)


class _Batches(torch.utils.data.Dataset):
    """Indexed by a list of positions: one call fetches and transforms a whole batch."""

    def __init__(self, split: Split, transform: Callable):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, positions):
        positions = np.sort(positions)  # slicing in order is faster; the batch's order is irrelevant
        images = self.transform(self.split.images[positions])
        labels = torch.from_numpy(self.split.labels[positions].astype(np.int64))
        return images, labels


def _loader(split: Split, batch_size: int, transform, device: torch.device, generator=None) -> DataLoader:
    batches = _Batches(split, transform or default_transform)
    order = RandomSampler(batches, generator=generator) if generator is not None else SequentialSampler(batches)
    return DataLoader(
        batches,
        sampler=BatchSampler(order, batch_size, drop_last=False),
        batch_size=None,  # the sampler already yields whole batches
        pin_memory=device.type == "cuda",
    )


# -- model state ------------------------------------------------------------------------------
def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _rng_states() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "python": random.getstate(),
    }


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


# -- optimisation -------------------------------------------------------------------------------
def _adam(parameters, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW with ``weight_decay``) over ``parameters`` (tensors or parameter groups).

    It uses PyTorch's fused kernel, which updates every tensor in one call: the same maths as the
    default, and on 2 CPU cores about 15% off a step of Lite0's upper blocks.
    """
    kind = torch.optim.AdamW if weight_decay else torch.optim.Adam
    options = {"weight_decay": weight_decay} if weight_decay else {}
    return kind(parameters, lr=lr, fused=True, **options)


def _make_optimizer(model, optimizer, lr, momentum, nesterov, weight_decay) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer  # built by the caller, e.g. with per-layer learning rates
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("every parameter is frozen, so there is nothing to train; unfreeze some layers first")
    if optimizer == "adam":
        return _adam(trainable, lr, weight_decay)
    if optimizer == "sgd":
        # weight decay is applied decoupled in the loop (see _decay_weights), as in Keras
        return torch.optim.SGD(trainable, lr=lr, momentum=momentum, nesterov=nesterov)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or a torch.optim.Optimizer")


@torch.no_grad()
def _decay_weights(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Decoupled weight decay for SGD, w ← w·(1 − lr·wd): the same maths as Keras' weight_decay."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.mul_(1 - group["lr"] * weight_decay)


class _EarlyStopping:
    """Stop when val_loss has not improved for ``patience`` epochs; remember the best weights."""

    def __init__(self, patience: int):
        self.patience, self.best, self.wait, self.best_epoch, self.best_state = patience, math.inf, 0, 0, None

    def update(self, val_loss: float, epoch: int, model: nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.best:
            self.best, self.wait, self.best_epoch = val_loss, 0, epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        return self.wait >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait, self.best_epoch, self.best_state = (
            state["best"], state["wait"], state["best_epoch"], state["best_state"])


# -- the loop -------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train,
    val=None,
    epochs: int = 1,
    *,
    lr: float = 1e-3,
    optimizer: str | torch.optim.Optimizer = "adam",
    momentum: float = 0.9,
    nesterov: bool = False,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    schedule: str | Callable[[int], float] | None = None,
    clip_grad_norm: float | None = None,
    early_stopping: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    stage: str = "",
    transform: Callable | None = None,
    augment: Callable | None = None,
    seed: int | None = None,
    progress: bool = True,
    history: History | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> History:
    """Train ``model`` (which outputs logits) with cross-entropy for ``epochs`` epochs.

    train, val: a ``Split`` or an ``(images, labels)`` pair of uint8 NHWC images and integer labels.
    optimizer: ``"adam"``, ``"sgd"`` (with ``momentum`` and optionally ``nesterov``), or a
        ready-made ``torch.optim.Optimizer`` (then ``lr``, ``momentum`` and ``weight_decay`` are its own).
        Only parameters with ``requires_grad`` are optimised.
    weight_decay: decoupled decay (AdamW-style) for both optimizers, the same maths as Keras.
    schedule: ``"step"``, ``"cosine"`` or a function epoch → factor, applied to ``lr`` once per epoch.
    clip_grad_norm: clip the global gradient norm to this value.
    early_stopping: patience in epochs on val_loss; the best epoch's weights are restored at the end.
    checkpoint: a file saved after every epoch (model, optimizer, schedule, random states, history);
        ``resume=True`` continues from it when it exists (and starts afresh when it does not).
    stage: label written in every row, e.g. the block unfrozen in this stage.
    history: a History to append to (in place), epochs continuing from its last one.
    penalty: a function ``model -> scalar tensor`` added to the loss at every step, such as
        ``tlcourse.torch.L2SP(model)`` or ``L2(model)``; the History's ``penalty`` column is its
        mean over each epoch, and ``loss`` stays the cross-entropy alone. An L2SP/L2 penalty
        cannot be combined with weight decay, and its snapshot is kept in the checkpoint.

    Moves the model to CUDA when present (channels_last there), leaves it in eval mode and returns
    the History.
    """
    train, val = checked_fit_inputs(train, val, early_stopping=early_stopping, resume=resume, checkpoint=checkpoint,
                                    penalty=penalty, seed=seed)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    _check_num_classes(model, train, transform, device)

    opt = _make_optimizer(model, optimizer, lr, momentum, nesterov, weight_decay)
    _check_penalty_without_decay(penalty, opt, weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(schedule, epoch, epochs))
        if schedule is not None else None
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    stopper = _EarlyStopping(early_stopping) if early_stopping is not None else None
    if history is None:
        history = History(meta={"framework": "torch"})
    # without a seed, the batch order's seed comes from torch's generator (seeded by seed_everything)
    shuffle_seed = seed if seed is not None else int(torch.randint(2**31 - 1, ()).item())
    run = run_record(_CHECKPOINT_FORMAT, history.last_epoch, shuffle_seed)

    if resume and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint} is not a tlcourse.torch.fit checkpoint")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if stopper is not None and saved["early_stopping"] is not None:
            stopper.load_state_dict(saved["early_stopping"])
        _set_rng_states(saved["rng"])
        history.rows[:] = History.from_dict(saved["history"]).rows
        run.update((key, saved[key]) for key in run)
        if saved.get("penalty") is not None and hasattr(penalty, "load_state_dict"):
            penalty.load_state_dict(saved["penalty"])  # the snapshot the run started from, not today's weights

    shuffler = torch.Generator()
    train_loader = _loader(train, batch_size, transform, device, generator=shuffler)
    val_loader = _loader(val, batch_size, transform, device) if val is not None else None
    first_epoch = run["epochs_done"] if not run["stopped_early"] else epochs
    for epoch in range(first_epoch, epochs):
        started = time.perf_counter()
        number = run["epoch_offset"] + epoch + 1
        shuffler.manual_seed(run["shuffle_seed"] + number)
        epoch_lr = opt.param_groups[0]["lr"]
        bar = tqdm(total=len(train_loader), disable=not progress, unit="batch",
                   desc=f"epoch {number}" + (f" [{stage}]" if stage else ""))
        row = _train_epoch(model, train_loader, opt, scaler, device, bar=bar, augment=augment,
                           clip_grad_norm=clip_grad_norm, penalty=penalty,
                           sgd_weight_decay=weight_decay if isinstance(optimizer, str) and optimizer == "sgd" else 0)
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            scores = _score(model, val_loader, device)
            row.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        row = history.add(epoch=number, stage=stage, lr=epoch_lr, seconds=time.perf_counter() - started, **row)
        bar.set_postfix_str(_describe(row), refresh=False)
        bar.close()

        if stopper is not None:
            run["stopped_early"] = stopper.update(row["val_loss"], number, model)
        run["epochs_done"] = epoch + 1
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                **run, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(), "early_stopping": stopper.state_dict() if stopper is not None else None,
                "rng": _rng_states(), "history": history.to_dict(),
                "penalty": penalty.state_dict() if hasattr(penalty, "state_dict") else None,
            })
        if run["stopped_early"]:
            break

    if stopper is not None and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        history.meta["restored_epoch"] = stopper.best_epoch
    model.eval()  # ready for predictions; a hand-written loop calls model.train() itself
    return history


def _train_epoch(model, loader, opt, scaler, device, *, bar, augment, clip_grad_norm, penalty,
                 sgd_weight_decay) -> dict:
    """One pass over the training batches; returns the epoch's mean loss, accuracy (and penalty)."""
    model.train()
    keep_frozen_layers_in_eval(model)
    on_cuda = device.type == "cuda"
    trainable = [p for group in opt.param_groups for p in group["params"]]
    loss_sum = torch.zeros((), device=device)
    penalty_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if on_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        if augment is not None:
            images = augment(images)
        with torch.autocast(device.type, dtype=torch.float16, enabled=on_cuda):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        objective = loss
        if penalty is not None:
            extra = penalty(model)  # outside autocast: a sum over millions of weights wants float32
            objective = loss + extra
            penalty_sum += extra.detach().float() * len(labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        if clip_grad_norm is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(trainable, clip_grad_norm)
        if sgd_weight_decay:
            _decay_weights(opt, sgd_weight_decay)
        scaler.step(opt)
        scaler.update()
        # accumulated on the device: no GPU→CPU sync inside the epoch
        loss_sum += loss.detach().float() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        bar.update()
    count = len(loader.dataset)
    scores = {"loss": loss_sum.item() / count, "accuracy": correct.item() / count}
    if penalty is not None:
        scores["penalty"] = penalty_sum.item() / count
    return scores


def _check_penalty_without_decay(penalty, opt: torch.optim.Optimizer, weight_decay: float) -> None:
    """An L2 or L2-SP penalty and weight decay would pull the same weights twice, to different points."""
    if isinstance(penalty, L2SP) and (weight_decay or any(g.get("weight_decay") for g in opt.param_groups)):
        raise ValueError(f"{type(penalty).__name__} already pulls the weights (towards {penalty.pulls_towards}); "
                         "drop the weight decay: weight_decay=0 and an optimizer built without it")


def _save_checkpoint(path, state: dict) -> None:
    partial = Path(f"{path}.partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a run killed mid-save leaves the previous checkpoint intact


def _check_num_classes(model: nn.Module, train: Split, transform, device: torch.device) -> None:
    """Fail early, with the fix, when the head is too small for the labels."""
    was_training = model.training
    model.eval()
    with torch.inference_mode(), hint_on_refused_input(train.images, RuntimeError):
        logits = model((transform or default_transform)(train.images[:2]).to(device))
    model.train(was_training)
    check_logits_shape(tuple(logits.shape), train.labels)


def _describe(row: dict) -> str:
    parts = [f"{name} {row[name]:.4f}" for name in ("loss", "accuracy", "val_loss", "val_accuracy")
              if row.get(name) is not None]
    return ", ".join(parts)


# -- evaluation ---------------------------------------------------------------------------------
def _logits(model: nn.Module, loader: DataLoader, device: torch.device):
    """Yield (logits, labels) batches in inference mode, leaving the model's mode as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            for images, labels in loader:
                images = images.to(device, non_blocking=True)
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                yield model(images).float(), labels.to(device, non_blocking=True)
    finally:
        if was_training:
            model.train()
            keep_frozen_layers_in_eval(model)


def _score(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for logits, labels in _logits(model, loader, device):
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
    count = len(loader.dataset)
    return {"loss": loss_sum.item() / count, "accuracy": correct.item() / count}


def evaluate(model: nn.Module, data, batch_size: int = 32, transform: Callable | None = None) -> dict:
    """Mean cross-entropy and accuracy on ``data`` (a Split or (images, labels)), in eval mode.

    Runs on the device the model is on. Returns ``{"loss": float, "accuracy": float}``.
    """
    split = as_split(data, "data")
    device = _device_of(model)
    return _score(model, _loader(split, batch_size, transform, device), device)


def predict(model: nn.Module, images, batch_size: int = 32, transform: Callable | None = None) -> np.ndarray:
    """Class probabilities (softmax of the model's logits), a float32 array of shape (N, classes).

    ``images``: uint8 NHWC images (or a Split). For logits, call the model itself.
    """
    if isinstance(images, Split):
        images = images.images
    images = np.asarray(images)
    split = as_split((images, np.zeros(len(images), dtype=np.int64)), "images")
    device = _device_of(model)
    loader = _loader(split, batch_size, transform, device)
    with hint_on_refused_input(split.images, RuntimeError):
        probabilities = [logits.softmax(1).cpu() for logits, _ in _logits(model, loader, device)]
    return torch.cat(probabilities).numpy()
