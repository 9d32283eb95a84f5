"""Training, evaluation and prediction for Keras classifiers; mirrors ``tlcourse.torch.train``.

Models output logits. Data comes in as numpy (uint8 NHWC images, integer labels): a ``Split`` or
an ``(images, labels)`` pair, fed through ``tf.data``. ``transform`` turns a uint8 batch into a
float NHWC batch (default: scale to [0, 1]); write it with ``keras.ops`` / ``tf`` ops so it runs
inside the pipeline (a numpy-only function also works, through ``tf.numpy_function``, slower).
``augment`` then alters float training batches, e.g. ``keras.layers.RandomFlip("horizontal")``.

``fit`` calls ``model.compile`` and ``model.fit``; callbacks fill the shared ``History``, stop
early (``keras.callbacks.EarlyStopping``), and write a checkpoint that ``resume=True`` continues.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tlcourse.data.card import Split
from tlcourse.history import History
from tlcourse.keras.conservative import L2SP
from tlcourse.training import as_split, check_logits_shape, checked_fit_inputs, hint_on_refused_input, lr_factor, run_record

__all__ = ["fit", "evaluate", "predict"]

_CHECKPOINT_FORMAT = "tlcourse.keras.fit/1"


# -- data -----------------------------------------------------------------------------------
def default_transform(images):
    """uint8 NHWC batch → float32 NHWC in [0, 1]."""
    return keras.ops.cast(images, "float32") / 255.0


def _pipeline(split: Split, batch_size: int, transform, *, labels=True, augment=None,
              order_seed: int | None = None, epochs: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Batches of ``split`` through ``transform`` (and ``augment``).

    With ``order_seed`` the dataset holds the shuffled batches of epochs ``epochs[0]..epochs[1]-1``
    back to back, each epoch's order a function of the seed and the epoch only, so a resumed run
    sees the same batches as an uninterrupted one.
    """
    images, targets = tf.constant(split.images), tf.constant(split.labels.astype(np.int64))
    count = len(split)
    if order_seed is None:
        positions = tf.data.Dataset.range(count).batch(batch_size)
    else:
        def epoch_batches(epoch):
            seed = tf.stack([tf.constant(order_seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=seed)
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        positions = tf.data.Dataset.range(*epochs).flat_map(epoch_batches)
    batches = positions.map(lambda idx: (tf.gather(images, idx), tf.gather(targets, idx)))
    batches = _map_images(batches, transform or default_transform, split.images[:1])
    if augment is not None:
        batches = batches.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if not labels:
        batches = batches.map(lambda x, y: x)
    return batches.prefetch(tf.data.AUTOTUNE)


def _map_images(batches: tf.data.Dataset, transform: Callable, sample: np.ndarray) -> tf.data.Dataset:
    try:
        return batches.map(lambda x, y: (transform(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    except Exception:  # noqa: BLE001 - any failure to trace means "not written with tf/keras ops"
        pass
    # A numpy-only transform cannot run inside the tf.data graph: call back into Python per batch.
    shape = np.asarray(transform(sample)).shape[1:]

    def run(images):
        return np.asarray(transform(images), dtype=np.float32)

    def mapped(x, y):
        out = tf.numpy_function(run, [x], tf.float32)
        out.set_shape((None, *shape))
        return out, y

    return batches.map(mapped)


# -- optimisation -------------------------------------------------------------------------------
def _make_optimizer(optimizer, lr, momentum, nesterov, weight_decay, clip_grad_norm) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if clip_grad_norm is not None:
            optimizer.global_clipnorm = clip_grad_norm
        return optimizer
    common = dict(learning_rate=lr, weight_decay=weight_decay or None, global_clipnorm=clip_grad_norm)
    if optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if optimizer == "sgd":
        return keras.optimizers.SGD(momentum=momentum, nesterov=nesterov, **common)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or a keras.optimizers.Optimizer")


class _PenalisedLoss(keras.losses.Loss):
    """Cross-entropy plus ``penalty(model)``: the way a penalty enters Keras' compiled train step.

    The penalty's value is also written to ``last_penalty`` for :class:`_PenaltyMean` to report.
    """

    def __init__(self, penalty: Callable, model: keras.Model):
        super().__init__(name="penalised_crossentropy")
        self.penalty, self.model = penalty, model
        self.crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        self.last_penalty = keras.Variable(0.0, trainable=False, name="last_penalty")

    def call(self, y_true, y_pred):
        extra = keras.ops.cast(self.penalty(self.model), "float32")
        self.last_penalty.assign(keras.ops.stop_gradient(extra))
        return self.crossentropy(y_true, y_pred) + extra  # averaged over the batch: mean CE + penalty


class _PenaltyMean(keras.metrics.Mean):
    """The penalty that the loss just computed, averaged over the epoch (weighted by batch size, like the loss)."""

    def __init__(self, loss: _PenalisedLoss):
        super().__init__(name="penalty")
        self.loss = loss

    def update_state(self, y_true, y_pred=None, sample_weight=None):
        batch = keras.ops.cast(keras.ops.shape(y_true)[0], "float32")
        return super().update_state(self.loss.last_penalty, sample_weight=batch)


def _check_penalty_without_decay(penalty, opt: keras.optimizers.Optimizer, weight_decay: float) -> None:
    """An L2 or L2-SP penalty and weight decay would pull the same weights twice, to different points."""
    if isinstance(penalty, L2SP) and (weight_decay or opt.weight_decay):
        raise ValueError(f"{type(penalty).__name__} already pulls the weights (towards {penalty.pulls_towards}); "
                         "drop the weight decay: weight_decay=0 and an optimizer built without it")


def _seed_generators(model: keras.Model) -> list:
    """The random-state variables of the model's layers (Dropout, random augmentation layers)."""
    return [gen for layer in model._flatten_layers() for gen in getattr(layer, "_seed_generators", [])]


# -- callbacks --------------------------------------------------------------------------------------
class _Recorder(keras.callbacks.Callback):
    """Adds a History row at the end of every epoch."""

    def __init__(self, history: History, epoch_offset: int, stage: str):
        super().__init__()
        self.history, self.epoch_offset, self.stage = history, epoch_offset, stage

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        # Keras keeps the rate in float32: record the shortest decimal of that float32 (0.01, not 0.0099999998)
        self.lr = float(str(np.float32(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        # with a penalty, Keras' "loss" is cross-entropy + penalty; the row's loss is the cross-entropy alone
        extra = {"penalty": logs["penalty"]} if "penalty" in logs else {}
        self.history.add(
            epoch=self.epoch_offset + epoch + 1, stage=self.stage,
            loss=logs.get("crossentropy", logs.get("loss")), accuracy=logs.get("accuracy"),
            val_loss=logs.get("val_crossentropy", logs.get("val_loss")), val_accuracy=logs.get("val_accuracy"),
            lr=self.lr, seconds=time.perf_counter() - self.started, **extra,
        )


class _ProgressBar(keras.callbacks.Callback):
    """A tqdm.auto bar per epoch, closed with the epoch's numbers (the same look as tlcourse.torch)."""

    async_safe = True  # lets keras run on_train_batch_end off the training thread

    def __init__(self, history: History, stage: str):
        super().__init__()
        self.history, self.stage = history, stage

    def on_epoch_begin(self, epoch, logs=None):
        label = f"epoch {self.history.last_epoch + 1}" + (f" [{self.stage}]" if self.stage else "")
        self.bar = tqdm(total=self.params["steps"], desc=label, unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update()

    def on_epoch_end(self, epoch, logs=None):
        row = self.history[-1]
        self.bar.set_postfix_str(", ".join(
            f"{name} {row[name]:.4f}" for name in ("loss", "accuracy", "val_loss", "val_accuracy")
            if row.get(name) is not None), refresh=False)
        self.bar.close()


class _EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on val_loss, restoring the best weights, able to resume its count."""

    def __init__(self, patience: int, resumed: dict | None = None, monitor: str = "val_loss"):
        super().__init__(monitor=monitor, patience=patience, restore_best_weights=True)
        self.resumed = resumed

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the count, so put the checkpointed one back after it
        if self.resumed:
            self.best, self.wait = self.resumed["best"], self.resumed["wait"]
            self.best_epoch, self.best_weights = self.resumed["best_epoch"], self.resumed["best_weights"]


class _Checkpoint(keras.callbacks.Callback):
    """Saves weights, optimizer variables, random states, history and progress after each epoch."""

    def __init__(self, path: Path, run: dict, history: History, stopper: _EarlyStopping | None, penalty=None):
        super().__init__()
        self.path, self.run, self.history, self.stopper, self.penalty = path, run, history, stopper, penalty

    def on_epoch_end(self, epoch, logs=None):
        state = {**self.run, "epochs_done": epoch + 1, "stopped_early": bool(self.model.stop_training),
                 "history": self.history.to_dict()}
        _save_checkpoint(self.path, self.model, state, self.stopper, self.penalty)


def _save_checkpoint(path: Path, model: keras.Model, state: dict, stopper: _EarlyStopping | None,
                     penalty=None) -> None:
    arrays = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    if hasattr(penalty, "state_dict"):  # the penalty's fixed data, e.g. L2SP's pretrained snapshot
        snapshot = penalty.state_dict()
        state["penalty"] = list(snapshot)
        arrays |= {f"penalty_{i}": np.asarray(value) for i, value in enumerate(snapshot.values())}
    arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays |= {f"seed_{i}": keras.ops.convert_to_numpy(g.state) for i, g in enumerate(_seed_generators(model))}
    if stopper is not None:
        state["early_stopping"] = {"best": stopper.best, "wait": stopper.wait, "best_epoch": stopper.best_epoch}
        for i, w in enumerate(stopper.best_weights or []):
            arrays[f"best_{i}"] = w
    arrays["state"] = np.array(json.dumps(state))
    partial = Path(f"{path}.partial")
    with open(partial, "wb") as file:  # a file object, so numpy does not append ".npz" to the name
        np.savez(file, **arrays)
    os.replace(partial, path)  # a run killed mid-save leaves the previous checkpoint intact


def _load_checkpoint(path: Path, model: keras.Model, penalty=None) -> tuple[dict, list | None]:
    """Load weights, optimizer variables, random states (and the penalty's snapshot); return (state, best weights)."""
    with np.load(path) as stored:
        state = json.loads(str(stored["state"]))
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a tlcourse.keras.fit checkpoint")
        def listed(prefix):
            return [stored[f"{prefix}_{i}"] for i in range(sum(k.startswith(prefix + "_") for k in stored))]
        model.set_weights(listed("weight"))
        model.optimizer.build(model.trainable_variables)
        for variable, value in zip(model.optimizer.variables, listed("optimizer"), strict=True):
            variable.assign(value)
        for generator, value in zip(_seed_generators(model), listed("seed"), strict=True):
            generator.state.assign(value)
        if "penalty" in state and hasattr(penalty, "load_state_dict"):
            penalty.load_state_dict(dict(zip(state["penalty"], listed("penalty"), strict=True)))
        best = listed("best") or None
    return state, best


# -- the loop -------------------------------------------------------------------------------------
def fit(
    model: keras.Model,
    train,
    val=None,
    epochs: int = 1,
    *,
    lr: float = 1e-3,
    optimizer: str | keras.optimizers.Optimizer = "adam",
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
    penalty: Callable[[keras.Model], object] | None = None,
) -> History:
    """Train ``model`` (which outputs logits) with sparse cross-entropy for ``epochs`` epochs.

    train, val: a ``Split`` or an ``(images, labels)`` pair of uint8 NHWC images and integer labels.
    optimizer: ``"adam"``, ``"sgd"`` (with ``momentum`` and optionally ``nesterov``), or a
        ready-made ``keras.optimizers.Optimizer`` (then ``lr``, ``momentum`` and ``weight_decay`` are
        its own). Only trainable weights are optimised. The model is compiled afresh on every call.
    weight_decay: decoupled decay (Keras' ``weight_decay``), the same maths as tlcourse.torch.
    schedule: ``"step"``, ``"cosine"`` or a function epoch → factor, applied to ``lr`` once per epoch.
    clip_grad_norm: clip the global gradient norm to this value (``global_clipnorm``).
    early_stopping: patience in epochs on val_loss; the best epoch's weights are restored at the end.
    checkpoint: a file saved after every epoch (weights, optimizer variables, random states,
        history); ``resume=True`` continues from it when it exists (and starts afresh when it does not).
    stage: label written in every row, e.g. the block unfrozen in this stage.
    seed: seeds Python, numpy, TensorFlow and the model's own random layers, so a run repeats.
    history: a History to append to (in place), epochs continuing from its last one.
    penalty: a function ``model -> scalar tensor`` (written with ``keras.ops``) added to the loss at
        every step inside the compiled train step, such as ``tlcourse.keras.L2SP(model)`` or
        ``L2(model)``; the History's ``penalty`` column is its mean over each epoch, and ``loss``
        stays the cross-entropy alone. An L2SP/L2 penalty cannot be combined with weight decay,
        and its snapshot is kept in the checkpoint.
    """
    train, val = checked_fit_inputs(train, val, early_stopping=early_stopping, resume=resume, checkpoint=checkpoint,
                                    penalty=penalty, seed=seed)
    _check_num_classes(model, train, transform)
    if not model.trainable_weights:
        raise ValueError("every weight is frozen, so there is nothing to train; unfreeze some layers first")
    if seed is not None:
        for i, generator in enumerate(_seed_generators(model)):  # Dropout & co. draw from these
            generator.state.assign(np.array([seed + i, 0], dtype=generator.state.dtype))

    opt = _make_optimizer(optimizer, lr, momentum, nesterov, weight_decay, clip_grad_norm)
    _check_penalty_without_decay(penalty, opt, weight_decay)
    base_lr = float(keras.ops.convert_to_numpy(opt.learning_rate))  # before a checkpoint overwrites it
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if penalty is not None:
        loss = _PenalisedLoss(penalty, model)
        metrics += [keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="crossentropy"),
                    _PenaltyMean(loss)]
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    if history is None:
        history = History(meta={"framework": "keras"})
    # each epoch's order depends only on this seed and the epoch number (see _pipeline)
    shuffle_seed = seed if seed is not None else int(np.random.randint(2**31 - 1))
    run = run_record(_CHECKPOINT_FORMAT, history.last_epoch, shuffle_seed)
    resumed_stopper = None
    if resume and Path(checkpoint).exists():
        saved, best_weights = _load_checkpoint(Path(checkpoint), model, penalty)
        history.rows[:] = History.from_dict(saved.pop("history")).rows
        run.update((key, saved[key]) for key in run)
        if early_stopping is not None and "early_stopping" in saved:
            resumed_stopper = {**saved["early_stopping"], "best_weights": best_weights}

    monitor = "val_crossentropy" if penalty is not None else "val_loss"  # the data's loss, as in tlcourse.torch
    stopper = _EarlyStopping(early_stopping, resumed_stopper, monitor) if early_stopping is not None else None
    first_epoch = run["epochs_done"]
    if run["stopped_early"] or first_epoch >= epochs:  # the checkpointed run had finished
        if resumed_stopper and resumed_stopper["best_weights"]:
            model.set_weights(resumed_stopper["best_weights"])
            history.meta["restored_epoch"] = run["epoch_offset"] + resumed_stopper["best_epoch"] + 1
        return history

    callbacks = []
    if schedule is not None:
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, _: base_lr * lr_factor(schedule, epoch, epochs)))
    callbacks.append(_Recorder(history, run["epoch_offset"], stage))
    if stopper is not None:
        callbacks.append(stopper)
    if checkpoint is not None:
        callbacks.append(_Checkpoint(Path(checkpoint), run, history, stopper, penalty))
    if progress:
        callbacks.append(_ProgressBar(history, stage))

    steps = math.ceil(len(train) / batch_size)
    train_batches = _pipeline(train, batch_size, transform, augment=augment,
                              order_seed=run["shuffle_seed"] + run["epoch_offset"], epochs=(first_epoch, epochs))
    val_batches = _pipeline(val, batch_size, transform) if val is not None else None
    model.fit(train_batches, validation_data=val_batches, epochs=epochs, initial_epoch=first_epoch,
              steps_per_epoch=steps, shuffle=False,  # _pipeline already shuffles, reproducibly
              callbacks=callbacks, verbose=0)
    if stopper is not None and stopper.best_weights is not None:
        history.meta["restored_epoch"] = run["epoch_offset"] + stopper.best_epoch + 1
    return history


def _check_num_classes(model: keras.Model, train: Split, transform) -> None:
    with hint_on_refused_input(train.images, ValueError):
        logits = model((transform or default_transform)(train.images[:2]), training=False)
    check_logits_shape(tuple(logits.shape), train.labels)


# -- evaluation ---------------------------------------------------------------------------------
def _all_logits(model: keras.Model, images: np.ndarray, batch_size: int, transform) -> np.ndarray:
    split = as_split((images, np.zeros(len(images), dtype=np.int64)), "images")
    return np.asarray(model.predict(_pipeline(split, batch_size, transform, labels=False), verbose=0), np.float64)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def evaluate(model: keras.Model, data, batch_size: int = 32, transform: Callable | None = None) -> dict:
    """Mean cross-entropy and accuracy on ``data`` (a Split or (images, labels)), in inference mode.

    Returns ``{"loss": float, "accuracy": float}``.
    """
    split = as_split(data, "data")
    log_probabilities = _log_softmax(_all_logits(model, split.images, batch_size, transform))
    picked = log_probabilities[np.arange(len(split)), split.labels]
    return {"loss": float(-picked.mean()),
            "accuracy": float(np.mean(log_probabilities.argmax(1) == split.labels))}


def predict(model: keras.Model, images, batch_size: int = 32, transform: Callable | None = None) -> np.ndarray:
    """Class probabilities (softmax of the model's logits), a float32 array of shape (N, classes).

    ``images``: uint8 NHWC images (or a Split). For logits, call the model itself.
    """
    if isinstance(images, Split):
        images = images.images
    images = np.asarray(images)
    as_split((images, np.zeros(len(images), dtype=np.int64)), "images")
    with hint_on_refused_input(images, ValueError):
        logits = _all_logits(model, images, batch_size, transform)
    return np.exp(_log_softmax(logits)).astype(np.float32)
