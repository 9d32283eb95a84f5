"""Conservative fine-tuning with few labels: frozen vs fine-tune vs L2 vs L2-SP vs layer-wise rates. Prints one table.

EfficientNet-Lite0 with its ImageNet weights gets a new head for the target (photo_patches by
default), with 5, 20 and 100 training labels per class. Everything below block7 stays frozen, so
its output maps are computed once (``block_inputs``) and each run trains ``upper_blocks``:

- frozen: the new head alone, every pretrained weight fixed;
- fine-tune: block7, the top block and the head, no penalty;
- L2: the same, plus ``L2(model)``: alpha/2 ||w||^2 on the pretrained weights, beta/2 on the head;
- L2-SP: the same, plus ``L2SP(model)``: alpha/2 ||w - w0||^2, beta/2 ||w_head||^2;
- layer-wise: the same blocks, no penalty, block7 at a tenth of the top's learning rate.

Adam, ``--lr``, ``--epochs`` epochs, alpha and beta at the library's defaults (0.1 and 0.01).
Accuracy is on the target's fixed test split, the mean over ``--seeds`` runs (the seed sets the new
head's start and the order of batches), lowest and highest in brackets; seconds are per run, the
maps' one-off computation listed apart.
Usage: python benchmarks/conservative.py [--target photo_patches] [--size 64] [--epochs 10] [--lr 3e-3] [--seeds 3]
"""
from __future__ import annotations

import argparse
import time

import tlcourse
from tlcourse import data

METHODS = ("frozen", "fine-tune", "L2", "L2-SP", "layer-wise")
LABELS_PER_CLASS = (5, 20, 100)
SPLIT_AT = "block7"  # trained: block7, top and the head; the blocks below are cached


def _framework(name: str):
    if name == "torch":
        import tlcourse.torch as fw
    else:
        import tlcourse.keras as fw
    return fw


def _train_head_only(name: str, model) -> None:
    if name == "torch":
        model.top.classifier.requires_grad_(True)
    else:
        model.get_layer("top_classifier").trainable = True


def run(name: str, fw, method: str, num_classes: int, train, test, args, seed: int) -> float:
    tlcourse.seed_everything(seed)
    model = fw.swap_head(fw.build_lite0(weights="imagenet"), num_classes=num_classes)
    upper = fw.upper_blocks(model, SPLIT_AT)
    fw.freeze(model)
    if method == "frozen":
        _train_head_only(name, model)
    else:
        fw.unfreeze(model, SPLIT_AT)  # BatchNorm stays frozen, as the cached maps need below it anyway
    options = dict(lr=args.lr, batch_size=args.batch_size, transform=fw.maps_transform, seed=seed, progress=False)
    if method == "L2":
        options["penalty"] = fw.L2(model)
    elif method == "L2-SP":
        options["penalty"] = fw.L2SP(model)
    elif method == "layer-wise":
        options["optimizer"] = fw.layerwise_optimizer(model, args.lr, {SPLIT_AT: 0.1})
    fw.fit(upper, train, epochs=args.epochs, **options)
    return fw.evaluate(upper, test, transform=fw.maps_transform)["accuracy"]


def _spread(scores: list[float]) -> str:
    mean = 100 * sum(scores) / len(scores)
    return f"{mean:5.1f}% [{100 * min(scores):4.1f}-{100 * max(scores):5.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="photo_patches", help="an embedded classification dataset")
    parser.add_argument("--size", type=int, default=64, help="input size in pixels (default 64)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per run (default 10)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (default 16)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate at the top (default 3e-3)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell, seeds 0..N-1 (default 3)")
    parser.add_argument("--labels", type=int, nargs="+", default=list(LABELS_PER_CLASS),
                        help="training labels per class (default 5 20 100)")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    for name in args.frameworks:  # tlcourse.torch must load before tlcourse.keras
        _framework(name)

    print(f"{args.target}, EfficientNet-Lite0 at {args.size} px, {SPLIT_AT} and up trained on cached maps; "
          f"Adam lr {args.lr:g}, {args.epochs} epochs of batches of {args.batch_size}; mean [min-max] of {args.seeds} seeds")
    header = (f"{'framework':9s} {'labels/class':>12s} {'train':>5s} {'test':>5s} {'method':10s} "
              f"{'test accuracy':>19s} {'s/run':>6s}")
    print(header)
    print("-" * len(header))
    for name in args.frameworks:
        fw = _framework(name)
        for per_class in args.labels:
            ds = data.load(args.target, per_class=per_class)
            started = time.perf_counter()
            backbone = fw.build_lite0(weights="imagenet")
            train, test = (fw.block_inputs(backbone, split, SPLIT_AT, size=args.size, gray_to_rgb=True)
                           for split in (ds.train, ds.test))
            print(f"{name:9s} {per_class:12d} {len(ds.train):5d} {len(ds.test):5d} {'(maps)':10s} "
                  f"{'':>19s} {time.perf_counter() - started:6.1f}", flush=True)
            for method in args.methods:
                started = time.perf_counter()
                scores = [run(name, fw, method, ds.num_classes, train, test, args, seed) for seed in range(args.seeds)]
                seconds = (time.perf_counter() - started) / args.seeds
                print(f"{name:9s} {per_class:12d} {len(ds.train):5d} {len(ds.test):5d} {method:10s} "
                      f"{_spread(scores):>19s} {seconds:6.1f}", flush=True)


if __name__ == "__main__":
    main()
