"""Does ImageNet pre-training help on the quick profile's targets? Prints one table.

For each embedded real-image target and each framework, EfficientNet-Lite0 starts once from its
ImageNet weights and once from random weights, and is then used two ways:

- linear probe: frozen features at "top" (1280 numbers per image) and a logistic-regression head;
- fine-tune: a new classifier trained alone for a few epochs (Adam, lr 1e-3), then every layer
  for a few more at a tenth of that rate: the staged recipe of chapter 04.

Accuracy is on each target's fixed test split, the mean over ``--seeds`` runs (the seed sets the
random initial weights and the order of training batches), with the lowest and highest in brackets.
Usage: python benchmarks/transfer.py [--size 96] [--seeds 3]
"""
from __future__ import annotations

import argparse
import time

import tlcourse
from tlcourse import data
from tlcourse.features import train_head

TARGETS = {"photo_patches": 50, "textures": None}  # target -> training labels kept per class


def _framework(name: str):
    if name == "torch":
        import tlcourse.torch as fw
    else:
        import tlcourse.keras as fw
    return fw


def linear_probe(fw, ds, weights: str | None, size: int) -> float:
    backbone = fw.build_lite0(weights=weights)
    kwargs = dict(layer="top", size=size, gray_to_rgb=True, cache=False, progress=False)
    train = fw.extract_features(backbone, ds.train, **kwargs)
    test = fw.extract_features(backbone, ds.test, **kwargs)
    head = train_head("logistic", train, ds.train.labels)
    return float((head.predict(test) == ds.test.labels).mean())


def fine_tune(fw, ds, weights: str | None, size: int, epochs: int, seed: int) -> float:
    model = fw.build_lite0(num_classes=ds.num_classes, weights=weights)

    def transform(images):
        return fw.preprocess(images, size, gray_to_rgb=True)

    stages = [fw.Stage("top", epochs=epochs, lr=1e-3), fw.Stage("all", epochs=epochs, lr=1e-4)]
    fw.fit_staged(model, ds.train, stages=stages, batch_size=32, transform=transform, seed=seed, progress=False)
    return fw.evaluate(model, ds.test, transform=transform)["accuracy"]


def _spread(scores: list[float]) -> str:
    mean = 100 * sum(scores) / len(scores)
    return f"{mean:5.1f}% [{100 * min(scores):4.1f}-{100 * max(scores):5.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="input size in pixels (default 96)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each fine-tuning stage (default 2)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell, seeds 0..N-1 (default 3)")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    args = parser.parse_args()

    print(f"EfficientNet-Lite0 at {args.size} px; fine-tune: {args.epochs} epochs of the head (lr 1e-3), "
          f"then {args.epochs} of all layers (lr 1e-4), Adam; mean [min-max] of {args.seeds} seeds")
    header = (f"{'target':14s} {'train':>5s} {'test':>5s} {'framework':9s} {'method':13s} "
              f"{'ImageNet':>19s} {'random init':>19s} {'gain':>6s} {'seconds':>7s}")
    print(header)
    print("-" * len(header))
    for target, per_class in TARGETS.items():
        ds = data.load(target, per_class=per_class)
        for name in args.frameworks:
            fw = _framework(name)
            for method in ("linear probe", "fine-tune"):
                start = time.perf_counter()
                scores = {"imagenet": [], None: []}
                for seed in range(args.seeds):
                    for weights in scores:
                        tlcourse.seed_everything(seed)
                        if method == "linear probe":
                            scores[weights].append(linear_probe(fw, ds, weights, args.size))
                        else:
                            scores[weights].append(fine_tune(fw, ds, weights, args.size, args.epochs, seed))
                seconds = time.perf_counter() - start
                gain = 100 * (sum(scores["imagenet"]) - sum(scores[None])) / args.seeds
                print(
                    f"{target:14s} {len(ds.train):5d} {len(ds.test):5d} {name:9s} {method:13s} "
                    f"{_spread(scores['imagenet']):>19s} {_spread(scores[None]):>19s} {gain:+6.1f} {seconds:7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
