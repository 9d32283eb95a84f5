"""Conservative fine-tuning on real photos: frozen vs fine-tune vs L2 vs L2-SP vs layer-wise rates.

The study chapter 05 plots. EfficientNet-Lite0 with its ImageNet weights gets a new head for the
shipped flowers (like ImageNet) and EuroSAT (satellite tiles, unlike it), with 10 and 60 training
photos per class. Everything below block7 stays frozen, so its output maps are computed once
(``block_inputs``) and each run trains ``upper_blocks``:

- frozen: the new head alone, every pretrained weight fixed (chapter 03's probe, chapter 04's
  "feature extraction");
- fine-tune: block7, the top block and the head, no penalty;
- L2: the same, plus ``L2(model)``: alpha/2 ||w||^2 on the pretrained weights, beta/2 on the head;
- L2-SP: the same, plus ``L2SP(model)``: alpha/2 ||w - w0||^2, beta/2 ||w_head||^2;
- layer-wise: the same blocks, no penalty, block7 at a tenth of the rate of the top and the head.

SGD with momentum 0.9, as Li et al. (ICML 2018) trained L2-SP, for ``--epochs`` epochs of batches of
16; alpha and beta at the library's defaults (0.1 and 0.01). Every method is run at each learning
rate of ``--lrs``; the chapter's recipe takes, per method, the rate with the best mean validation
accuracy, and only then reads the test split. Each run records validation and test accuracy, the
drift ``||w_S - w0_S||`` and its first and last training loss.

Writes ``tlcourse/studies/conservative.json`` (package data, read by chapter 05).
Usage: python benchmarks/conservative.py [--seeds 3] [--epochs 15] [--lrs 0.01 0.001] [--labels 10 60]
       [--frameworks torch keras]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import staged_unfreezing as staged  # noqa: E402  (the script next to this one: its processor() and writer)

import tlcourse  # noqa: E402
from tlcourse import data  # noqa: E402

STUDY = Path(__file__).resolve().parents[1] / "tlcourse" / "studies" / "conservative.json"
METHODS = ("frozen", "fine-tune", "L2", "L2-SP", "layer-wise")
SETS = {"flowers": 112, "eurosat": 64}  # shipped set -> input size in pixels
SPLIT_AT = "block7"  # trained: block7, top and the head; the blocks below are cached


def framework(name: str):
    if name == "torch":
        import tlcourse.torch as fw
    else:
        import tlcourse.keras as fw
    return fw


def train_head_only(name: str, model) -> None:
    if name == "torch":
        model.top.classifier.requires_grad_(True)
    else:
        model.get_layer("top_classifier").trainable = True


def run(name: str, method: str, num_classes: int, maps: dict, lr: float, epochs: int, seed: int) -> dict:
    """One training run on cached maps; returns its scores, drift and losses."""
    fw = framework(name)
    tlcourse.seed_everything(seed)
    model = fw.swap_head(fw.build_lite0(weights="imagenet"), num_classes=num_classes)
    upper, ruler = fw.upper_blocks(model, SPLIT_AT), fw.L2SP(model)
    fw.freeze(model)
    if method == "frozen":
        train_head_only(name, model)
    else:
        fw.unfreeze(model, SPLIT_AT)  # BatchNorm stays frozen, as the cached maps need below it anyway
    options = dict(lr=lr, optimizer="sgd", momentum=0.9, batch_size=16, transform=fw.maps_transform, seed=seed,
                   progress=False)
    if method == "L2":
        options["penalty"] = fw.L2(model)
    elif method == "L2-SP":
        options["penalty"] = fw.L2SP(model)
    elif method == "layer-wise":
        options["optimizer"] = fw.layerwise_optimizer(model, lr, {SPLIT_AT: 0.1}, optimizer="sgd", momentum=0.9)
    started = time.perf_counter()
    history = fw.fit(upper, maps["train"], epochs=epochs, **options)
    seconds = time.perf_counter() - started
    score = {split: fw.evaluate(upper, maps[split], transform=fw.maps_transform)["accuracy"] for split in ("val", "test")}
    return {"seed": seed, "val_accuracy": score["val"], "test_accuracy": score["test"], "drift": ruler.drift(model),
            "first_loss": history.rows[0]["loss"], "last_loss": history.rows[-1]["loss"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell, seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.001], help="SGD learning rates to try")
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 60], help="training photos per class")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    parser.add_argument("--out", default=str(STUDY))
    args = parser.parse_args()
    for name in ("torch", "keras"):  # tlcourse.torch must load before tlcourse.keras
        if name in args.frameworks:
            framework(name)
    import torch

    study = {"command": "python benchmarks/conservative.py " + " ".join(sys.argv[1:]),
             "processor": staged.processor(), "threads": torch.get_num_threads(), "split_at": SPLIT_AT,
             "optimizer": "sgd, momentum 0.9, batches of 16", "epochs": args.epochs, "lrs": args.lrs,
             "alpha": 0.1, "beta": 0.01, "sets": {}}
    for set_name, size in SETS.items():
        study["sets"][set_name] = {"size": size, "per_class": {}}
        for per_class in args.labels:
            ds = data.load(set_name, per_class=per_class)
            cell = study["sets"][set_name]["per_class"][str(per_class)] = {
                "train": len(ds.train), "val": len(ds.val), "test": len(ds.test), "runs": {}}
            for name in args.frameworks:
                fw = framework(name)
                backbone = fw.build_lite0(weights="imagenet")
                maps = {split: fw.block_inputs(backbone, getattr(ds, split), SPLIT_AT, size=size)
                        for split in ("train", "val", "test")}
                for method in METHODS:
                    for lr in args.lrs:
                        runs = [run(name, method, ds.num_classes, maps, lr, args.epochs, seed) for seed in range(args.seeds)]
                        cell["runs"].setdefault(name, {}).setdefault(method, {})[f"{lr:g}"] = runs
                        mean = lambda key: sum(r[key] for r in runs) / len(runs)
                        print(f"{set_name:8s} {per_class:3d}/class {name:5s} {method:10s} lr {lr:<6g} "
                              f"val {mean('val_accuracy'):.3f} test {mean('test_accuracy'):.3f} "
                              f"drift {mean('drift'):7.2f} loss {mean('first_loss'):.2f}->{mean('last_loss'):.3f} "
                              f"{mean('seconds'):5.1f} s/run", flush=True)
                staged.write_study(study, args.out)  # after every cell: a killed run keeps what it finished


if __name__ == "__main__":
    main()
