"""How much does tlcourse's fit cost over the plainest loop that trains the same model on the same data?

    python benchmarks/loop_overhead.py [--images 2048] [--epochs 4] [--repeats 5] [--threads N]

Compares images per second of
  * ``tlcourse.torch.fit`` with a hand-written PyTorch loop (shuffle, slice, scale, step), and
  * ``tlcourse.keras.fit`` with a bare ``model.fit`` on float arrays scaled once beforehand,
on a small CNN with 32x32 images. "steady" uses the fastest epoch after the first (tracing and
warm-up excluded); "whole call" divides all images by the call's wall time, set-up included;
"per CPU-s" divides them by the CPU time the process spent, which other load on the machine
disturbs least (use it with --threads 1 on a shared machine). Every contender runs ``--repeats``
times, interleaved with its rivals in rotating order, and keeps its best: other load only ever
slows a run down, so the best runs compare fairest. The target is a ratio of at least 0.95.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np

import tlcourse.keras  # before keras: sets the backend, and loads triton before TensorFlow (tlcourse/_coexist.py)
import tlcourse.torch
import keras
import tensorflow as tf
import torch
import torch.nn.functional as F
from torch import nn

CLASSES, SIZE, BATCH = 10, 32, 64


def make_data(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, CLASSES, count)


def torch_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES),
    )


def keras_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(64, 3, strides=2, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(64, 3, strides=2, padding="same"), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(CLASSES),
    ])


def hand_written_torch(images, labels, epochs) -> tuple[list[float], float]:
    """The loop a learner would write: per-epoch seconds and the whole call's seconds."""
    started = time.perf_counter()
    model = torch_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(images)).numpy()
        for first in range(0, len(images), BATCH):
            batch = order[first:first + BATCH]
            x = torch.from_numpy(images[batch]).permute(0, 3, 1, 2).float().div_(255)
            y = torch.from_numpy(labels[batch])
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - epoch_start)
    return seconds, time.perf_counter() - started


def tlcourse_torch(images, labels, epochs, progress=False) -> tuple[list[float], float]:
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # keep the bars out of the table
        history = tlcourse.torch.fit(torch_model(), (images, labels), epochs=epochs, batch_size=BATCH,
                                     progress=progress)
    return history["seconds"], time.perf_counter() - started


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def bare_keras(images, labels, epochs) -> tuple[list[float], float]:
    started = time.perf_counter()
    model = keras_model()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    timer = _EpochTimer()
    model.fit(images.astype("float32") / 255, labels, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.seconds, time.perf_counter() - started


def tlcourse_keras(images, labels, epochs, progress=False) -> tuple[list[float], float]:
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        history = tlcourse.keras.fit(keras_model(), (images, labels), epochs=epochs, batch_size=BATCH,
                                     progress=progress)
    return history["seconds"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per framework (0: their defaults); 1 steadies timings on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    images, labels = make_data(args.images)

    contenders = {
        "torch": [("hand-written loop", hand_written_torch), ("tlcourse.torch.fit", tlcourse_torch),
                  ("tlcourse.torch.fit, progress bar", lambda *a: tlcourse_torch(*a, progress=True))],
        "keras": [("bare model.fit", bare_keras), ("tlcourse.keras.fit", tlcourse_keras),
                  ("tlcourse.keras.fit, progress bar", lambda *a: tlcourse_keras(*a, progress=True))],
    }
    best: dict[str, tuple[float, float, float]] = {}
    for runs in contenders.values():  # one framework at a time, so the other's idle threads stay out of it
        for repeat in range(args.repeats):
            shift = repeat % len(runs)  # rotate who goes first: the first run after a pause is often slower
            for name, run in runs[shift:] + runs[:shift]:
                time.sleep(1)  # let the previous run's worker threads go idle
                cpu_started = time.process_time()
                seconds, whole = run(images, labels, args.epochs)
                cpu = time.process_time() - cpu_started
                total = args.images * args.epochs
                speeds = (args.images / min(seconds[1:]), total / whole, total / cpu)
                best[name] = tuple(map(max, best.get(name, (0.0, 0.0, 0.0)), speeds))

    print(f"{args.images} images {SIZE}x{SIZE}, batch {BATCH}, {args.epochs} epochs, best of {args.repeats}; "
          f"torch {torch.__version__} on {torch.get_num_threads()} threads, keras {keras.__version__} on "
          f"{args.threads or 'default'} threads")
    header = f"{'loop':34}" + "".join(f" {column:>{width}} {'ratio':>6}" for column, width in
                                      (("steady img/s", 12), ("whole call", 10), ("per CPU-s", 9)))
    print(header)
    print("-" * len(header))
    for runs in contenders.values():
        reference = best[runs[0][0]]
        for name, _ in runs:
            cells = "".join(f" {speed:{width}.0f} {speed / ref:6.2f}"
                            for speed, ref, width in zip(best[name], reference, (12, 10, 9)))
            print(f"{name:34}{cells}")


if __name__ == "__main__":
    main()
