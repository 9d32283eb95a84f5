"""Does domain-adversarial training help on unlabelled target digits? Prints one table.

For each framework, the paper's small MNIST network (conv 5x5 32, max-pool, conv 5x5 48, max-pool;
label head 100-100-10; domain head behind a gradient-reversal layer) is trained three ways through
the same loop, ``fit_dann``:

- source only: labelled source digits, no domain loss (``adapt=False``), the lower bound;
- DANN: labelled source digits plus the target's training images without their labels;
- train on target: the labelled target training digits (``adapt=False``), the upper bound.

Accuracy is on the target's fixed test split (the recipe was chosen on its validation split), the
mean over ``--seeds`` runs with the lowest and highest in brackets; "seconds" is one run's time.
The recipe comes from ``tlcourse.dann.recipe()``:

- quick: digits_rgb → digits_on_photos (scikit-learn's digits, 28x28, and the same digits blended
  over photo patches, about 1,100 training images per domain): the paper's network with 16 and 32
  filters and BatchNorm after each convolution, 25 epochs of batches of 16; see ``RECIPES["quick"]``.
- full: MNIST → MNIST-M (55,000 training digits; downloads on first use, a GPU recommended):
  the paper's network and schedules (SGD, momentum 0.9, lr 0.01 annealed as 0.01 / (1 + 10 p)^0.75,
  reversal weight 2 / (1 + exp(-10 p)) - 1), batches of 128 source + 128 target images, 30 epochs,
  the paper's domain head 100-1; MNIST's grey digits are repeated over three channels to match MNIST-M.
  The paper reports 52.25% source only, 76.66% DANN, 95.96% train on target.

Usage: python benchmarks/dann.py [--profile quick|full] [--seeds 3] [--frameworks torch keras] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import time


def _framework(name: str):
    if name == "torch":
        import tlcourse.torch as fw
    else:
        import tlcourse.keras as fw
    return fw


def _spread(scores: list[float]) -> str:
    mean = 100 * sum(scores) / len(scores)
    return f"{mean:5.1f}% [{100 * min(scores):4.1f}-{100 * max(scores):5.1f}]"


def _limit_threads(frameworks: list[str], threads: int) -> None:
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(threads)
    if "keras" in frameworks:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def run(fw, method: str, source, target, recipe, seed: int) -> tuple[float, float]:
    """Train one model ``method``'s way; return (target test accuracy, seconds)."""

    import tlcourse

    tlcourse.seed_everything(seed)
    from tlcourse.dann import to_rgb

    model = fw.build_dann_digits(num_classes=len(target.classes), input_shape=target.image_shape,
                                 **recipe.model_kwargs())
    started = time.perf_counter()
    if method == "DANN":
        fw.fit_dann(model, to_rgb(source.train), target.train.images, seed=seed, progress=False,
                    **recipe.fit_kwargs())
    elif method == "source only":
        fw.fit_dann(model, to_rgb(source.train), adapt=False, seed=seed, progress=False, **recipe.fit_kwargs())
    else:
        fw.fit_dann(model, target.train, adapt=False, seed=seed, progress=False, **recipe.fit_kwargs())
    seconds = time.perf_counter() - started
    return fw.evaluate(model, target.test)["accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "full"], default=None,
                        help="dataset pair and recipe (default: TLCOURSE_PROFILE, else quick)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell, seeds 0..N-1 (default 3)")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per framework (default: theirs); 1 helps on a machine shared with other jobs")
    args = parser.parse_args()
    if args.profile:
        os.environ["TLCOURSE_PROFILE"] = args.profile

    from tlcourse import data, dann

    recipe = dann.recipe()
    for name in args.frameworks:  # torch before keras: see tlcourse/_coexist.py
        _framework(name)
    if args.threads:
        _limit_threads(args.frameworks, args.threads)
    source, target = data.load(recipe.source), data.load(recipe.target)
    settings = ", ".join(f"{key} {value}" for key, value in recipe.fit_kwargs().items())
    print(f"{recipe.source} -> {recipe.target} ({recipe.profile}): {len(source.train)} source and "
          f"{len(target.train)} target training images, {len(target.test)} target test images")
    print(f"recipe: {settings}, lambda rising to 1.0, "
          f"domain head {'-'.join(map(str, recipe.domain_hidden))}-1, "
          f"convolutions of {recipe.filters[0]} and {recipe.filters[1]} filters"
          f"{' with BatchNorm' if recipe.batchnorm else ''}, "
          f"images in [0, 1]; {recipe.note}")
    threads = f"{args.threads} thread(s) per framework" if args.threads else "the frameworks' default threads"
    print(f"target test accuracy, mean [min-max] of {args.seeds} seeds; {threads}")
    header = f"{'framework':9s} {'method':15s} {'target test':>19s} {'seconds/run':>11s}"
    print(header)
    print("-" * len(header))
    for name in args.frameworks:
        fw = _framework(name)
        means = {}
        for method in ("source only", "DANN", "train on target"):
            scores, seconds = [], []
            for seed in range(args.seeds):
                accuracy, took = run(fw, method, source, target, recipe, seed)
                scores.append(accuracy)
                seconds.append(took)
            means[method] = sum(scores) / len(scores)
            print(f"{name:9s} {method:15s} {_spread(scores):>19s} {sum(seconds) / len(seconds):11.1f}", flush=True)
        gain = 100 * (means["DANN"] - means["source only"])
        print(f"{name:9s} {'DANN gain':15s} {gain:+18.1f}  points over source only", flush=True)


if __name__ == "__main__":
    main()
