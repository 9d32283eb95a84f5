"""Images per second of our EfficientNet-Lite0 next to the library EfficientNet-B0, in both frameworks.

    python benchmarks/backbones.py [--sizes 96 128 224] [--batch 16] [--threads N] [--channels-last]
                                   [--steps 3] [--seconds 6]

For each framework, input size and mode it runs one warm-up batch per model, then rounds that
time one batch of Lite0 and one of B0 in turn (at least ``--steps`` rounds and ``--seconds``
seconds), and reports the fastest batch of each:
on a shared 2-core machine, other processes only ever slow a batch down, so the minimum is the
steadiest estimate, and interleaving exposes both models to the same conditions. Modes: inference
(eval mode, no gradients) and training (one SGD step per batch, every layer trainable).
The models are ``tlcourse``'s Lite0 against ``torchvision.models.efficientnet_b0(weights=None)``
and ``keras.applications.EfficientNetB0(weights=None)``; weights do not change the speed, so all
start random. The last column is Lite0 / B0 in the same framework (the target is >= 0.9).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

# torchvision before TensorFlow: torchvision loads triton, which crashes once TensorFlow is loaded.
import torch
import torchvision

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402

import tlcourse.keras  # noqa: E402
import tlcourse.torch  # noqa: E402

NUM_CLASSES = 1000


def _interleaved_rates(ours, theirs, batch: int, steps: int, seconds: float) -> tuple[float, float]:
    """Images/s of two step functions, from each one's fastest batch.

    Rounds (one batch of each, in turn) repeat until there have been ``steps`` of them and
    ``seconds`` have passed, so quick small-size measurements get more chances at a quiet moment.
    """
    ours()  # warm-up: allocations, graph tracing
    theirs()
    best = [float("inf"), float("inf")]
    began, rounds = time.perf_counter(), 0
    while rounds < steps or (time.perf_counter() - began < seconds and rounds < 100):
        for index, step in enumerate((ours, theirs)):
            start = time.perf_counter()
            step()
            best[index] = min(best[index], time.perf_counter() - start)
        rounds += 1
    return batch / best[0], batch / best[1]


def torch_steps(model: torch.nn.Module, size: int, batch: int, channels_last: bool = False):
    """(inference step, training step) closures for a torch model on a fixed random batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=generator)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def infer():
        model.eval()
        with torch.inference_mode():
            model(x)

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return infer, train


def keras_steps(model: keras.Model, size: int, batch: int):
    """(inference step, training step) closures for a Keras model on a fixed random batch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, batch)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return (lambda: model.predict_on_batch(x)), (lambda: model.train_on_batch(x, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 224])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads per framework")
    parser.add_argument(
        "--channels-last", action="store_true", help="run both torch models in channels_last memory format"
    )
    parser.add_argument("--steps", type=int, default=3, help="at least this many timed rounds per measurement")
    parser.add_argument("--seconds", type=float, default=6.0, help="and keep timing rounds for this long")
    args = parser.parse_args()

    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    torch.set_num_threads(args.threads)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    layout = "channels_last" if args.channels_last else "NCHW"
    print(
        f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} | "
        f"{args.threads} thread(s) per framework | torch {torch.__version__} ({layout}), "
        f"torchvision {torchvision.__version__}, keras {keras.__version__}\n"
        f"batch {args.batch}; each number is the fastest batch of >= {args.steps} interleaved rounds "
        f"and >= {args.seconds:g} s, after 1 warm-up"
    )

    rows = []  # (framework, size, mode, Lite0 img/s, B0 img/s)
    for size in args.sizes:
        ours = torch_steps(tlcourse.torch.build_lite0(weights=None), size, args.batch, args.channels_last)
        theirs = torch_steps(torchvision.models.efficientnet_b0(weights=None), size, args.batch, args.channels_last)
        for mode, our_step, their_step in zip(("inference", "training"), ours, theirs):
            rates = _interleaved_rates(our_step, their_step, args.batch, args.steps, args.seconds)
            rows.append(("torch", size, mode, *rates))

        keras.backend.clear_session()
        ours = keras_steps(tlcourse.keras.build_lite0(weights=None), size, args.batch)
        b0 = keras.applications.EfficientNetB0(
            weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES, classifier_activation=None
        )
        theirs = keras_steps(b0, size, args.batch)
        for mode, our_step, their_step in zip(("inference", "training"), ours, theirs):
            rates = _interleaved_rates(our_step, their_step, args.batch, args.steps, args.seconds)
            rows.append(("keras", size, mode, *rates))

    header = f"{'framework':<9} {'size':>4}  {'mode':<9} {'Lite0 img/s':>11} {'B0 img/s':>9} {'Lite0/B0':>8}"
    print(header)
    print("-" * len(header))
    for framework in ("torch", "keras"):
        for name, size, mode, mine, library in rows:
            if name == framework:
                print(f"{framework:<9} {size:>4}  {mode:<9} {mine:>11.1f} {library:>9.1f} {mine / library:>7.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes on the machine skew these numbers)")

if __name__ == "__main__":
    main()
