"""How like ImageNet are the shipped photo sets? Linear probes on each block of a frozen backbone.

For each set (the quick profile's ``flowers`` and ``eurosat``, or any folder given with
``--folder``) and each framework, EfficientNet-Lite0 with its ImageNet weights is frozen and its
pooled features are read at several blocks:

- **which block reads the set best**: a logistic-regression probe (C = 0.1) per block, scored by
  5-fold cross-validation on the train and validation images together (the test split is not
  used); mean accuracy per block, and how far the top block falls short of the best one;
- **the linear probe**: the usual recipe, logistic regression on the top block's features with C
  chosen on the validation split among 0.01, 0.1 and 1, then the test split scored once.

The top block's features are the most specific to ImageNet's 1,000 classes (Yosinski et al., 2014,
"How transferable are features in deep neural networks?"): a target like ImageNet is read best
there, while for a target unlike ImageNet earlier, more generic blocks do as well or better. The
cards of the shipped sets record the verdict.

Usage: python benchmarks/real_photos.py [--frameworks torch keras] [--folder PATH --size 128]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tlcourse import data
from tlcourse.features import make_head, train_head

LAYERS = ("block2", "block3", "block4", "block5", "block6", "top")
C_GRID = (0.01, 0.1, 1.0)
SETS = {"flowers": 128, "eurosat": 64}  # set -> input size: flowers scaled down, EuroSAT at its own 64 px


def _framework(name: str):
    if name == "torch":
        import tlcourse.torch as fw
    else:
        import tlcourse.keras as fw
    return fw


def block_scores(features: dict, labels: np.ndarray) -> dict[str, float]:
    """5-fold cross-validated accuracy of a logistic probe on each block's features."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return {layer: float(cross_val_score(make_head("logistic", C=0.1), features[layer], labels, cv=folds).mean())
            for layer in LAYERS}


def linear_probe(train, val, test, labels) -> tuple[float, float]:
    """(chosen C, test accuracy) of the top-block probe whose C is best on validation."""
    heads = [(c, train_head("logistic", train, labels[0], C=c)) for c in C_GRID]
    c, head = max(heads, key=lambda pair: np.mean(pair[1].predict(val) == labels[1]))
    return c, float(np.mean(head.predict(test) == labels[2]))


def measure(fw, ds, size: int):
    backbone = fw.build_lite0(weights="imagenet")
    start = time.perf_counter()
    kwargs = dict(layer=list(LAYERS), size=size, cache=False, progress=False)
    train, val, test = (fw.extract_features(backbone, split, **kwargs) for split in (ds.train, ds.val, ds.test))
    seconds = time.perf_counter() - start
    seen = {layer: np.concatenate([train[layer], val[layer]]) for layer in LAYERS}
    scores = block_scores(seen, np.concatenate([ds.train.labels, ds.val.labels]))
    probe = linear_probe(train["top"], val["top"], test["top"], (ds.train.labels, ds.val.labels, ds.test.labels))
    return scores, probe, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    parser.add_argument("--folder", help="measure this from_folder layout instead of the shipped sets")
    parser.add_argument("--size", type=int, default=128, help="input size for --folder (default 128)")
    args = parser.parse_args()

    targets = {args.folder: args.size} if args.folder else SETS
    print("EfficientNet-Lite0, ImageNet weights, frozen. Per block: logistic probe (C=0.1), 5-fold CV accuracy (%) "
          "on train+val; 'top-best': how far the top block falls short of the best block; 'probe test': "
          f"top-block probe, C from {C_GRID} chosen on val, test accuracy")
    header = (f"{'set':10s} {'px':>3s} {'framework':9s} " + " ".join(f"{layer:>6s}" for layer in LAYERS)
              + f" {'best':>6s} {'top-best':>8s} {'probe test':>10s} {'seconds':>7s}")
    print(header)
    print("-" * len(header))
    for target, size in targets.items():
        ds = data.from_folder(target, size=size, progress=False) if args.folder else data.load(target)
        name = ds.card.name
        for framework in args.frameworks:
            scores, (_, test_accuracy), seconds = measure(_framework(framework), ds, size)
            best = max(LAYERS, key=scores.get)
            cells = " ".join(f"{100 * scores[layer]:6.1f}" for layer in LAYERS)
            gap = 100 * (scores["top"] - scores[best])
            print(f"{name:10s} {size:3d} {framework:9s} {cells} {best:>6s} {gap:8.1f} {100 * test_accuracy:9.1f}% "
                  f"{seconds:7.1f}", flush=True)
        print(f"{name:10s} {len(ds.train)} train / {len(ds.val)} val / {len(ds.test)} test images, "
              f"{ds.num_classes} classes: chance {100 / ds.num_classes:.0f}%")


if __name__ == "__main__":
    main()
