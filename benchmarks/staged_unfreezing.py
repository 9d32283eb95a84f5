"""Seven ways to train EfficientNet-Lite0 on real photos, three seeds each: the study chapter 04 plots.

The five schedules of the chapter (scratch, all at once, two stages to block7, two stages to all,
three stages to all), plus feature extraction (the new head alone) and "all at once" with
discriminative rates (the head at 1e-3, each block below at 0.3 times the rate of the one above),
on the shipped flowers (like ImageNet) and EuroSAT (unlike it). PyTorch, Adam, batch 16, per-image
random crops and flips for every run. BatchNorm stays frozen in the pretrained runs and trains in
scratch, whose freshly initialised statistics (mean 0, variance 1) describe nothing.

Every stage keeps its best epoch (``early_stopping`` with a patience as long as the stage restores
the weights of its lowest validation loss), and a run ends with the best of its stages' ends, again
by validation loss: the test split is scored once, on that model. Scratch gets twice the epochs of
the others, so that it is not judged before it could learn.

Writes ``tlcourse/studies/staged_unfreezing.json`` (every epoch of every run, and each run's test
accuracy), which ships inside the package for chapter 04 to plot.
Usage: python benchmarks/staged_unfreezing.py [--seeds 3] [--sets flowers eurosat] [--out PATH]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import tlcourse
from tlcourse import data

SETS = {"flowers": 112, "eurosat": 64}  # set -> input size
STUDY = Path(__file__).resolve().parents[1] / "tlcourse" / "studies" / "staged_unfreezing.json"  # package data
HEAD, LOW = 1e-3, 1e-4
SCHEDULES = {  # name -> (ImageNet weights?, [(blocks, epochs, lr)], lr_decay)
    "feature extraction": (True, [("head", 8, HEAD)], None),
    "scratch": (False, [("all", 16, HEAD)], None),
    "all at once": (True, [("all", 8, LOW)], None),
    "all at once, per-block rates": (True, [("all", 8, HEAD)], 0.3),
    "2 stages to block7": (True, [("head", 3, HEAD), ("block7", 5, LOW)], None),
    "2 stages to all": (True, [("head", 3, HEAD), ("all", 5, LOW)], None),
    "3 stages to all": (True, [("head", 3, HEAD), ("block5", 2, LOW), ("all", 3, LOW)], None),
}


def augmenter(size: int):
    import torch
    from torchvision.transforms import v2

    crop_and_flip = v2.Compose([v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    return lambda batch: torch.stack([crop_and_flip(image) for image in batch])


def processor() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else platform.processor() or platform.machine()


def run(tt, ds, size: int, name: str, seed: int) -> dict:
    pretrained, stages, lr_decay = SCHEDULES[name]
    tlcourse.seed_everything(seed)
    model = tt.swap_head(tt.backbone("efficientnet_lite0", weights="imagenet" if pretrained else None),
                         num_classes=ds.num_classes)
    options = dict(transform=lambda images: tt.preprocess(images, size), augment=augmenter(size), batch_size=16,
                   seed=seed, progress=False, lr_decay=lr_decay, train_batchnorm=not pretrained)
    history, best = None, None
    started = time.perf_counter()
    for blocks, epochs, lr in stages:
        done = len(history) if history is not None else 0
        history = tt.fit_staged(model, ds.train, ds.val, [tt.Stage(blocks, epochs, lr)], history=history,
                                early_stopping=epochs, **options)
        stage_best = min(row["val_loss"] for row in history.to_rows()[done:])
        if best is None or stage_best < best[0]:
            best = (stage_best, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    seconds = time.perf_counter() - started
    test = tt.evaluate(model, ds.test, transform=options["transform"])["accuracy"]
    return {"seed": seed, "seconds": seconds, "test_accuracy": test, "epochs": history.to_rows()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--out", default=str(STUDY))
    args = parser.parse_args()

    import tlcourse.torch as tt
    import torch

    study = {"command": "python benchmarks/staged_unfreezing.py", "framework": f"torch {torch.__version__}",
             "processor": processor(), "threads": torch.get_num_threads(),
             "schedules": {name: {"pretrained": p, "stages": s, "lr_decay": d} for name, (p, s, d) in SCHEDULES.items()},
             "sets": {}}
    for set_name in args.sets:
        ds, size = data.load(set_name), SETS[set_name]
        runs = {}
        print(f"{ds} at {size} px")
        for name in SCHEDULES:
            runs[name] = [run(tt, ds, size, name, seed) for seed in range(args.seeds)]
            scores = [r["test_accuracy"] for r in runs[name]]
            print(f"  {name:30s} test {100 * np.mean(scores):5.1f}% [{100 * min(scores):4.1f}-{100 * max(scores):5.1f}]"
                  f"  {np.mean([r['seconds'] for r in runs[name]]):5.0f} s per run", flush=True)
        study["sets"][set_name] = {"size": size, "classes": ds.num_classes, "train": len(ds.train),
                                   "val": len(ds.val), "test": len(ds.test), "runs": runs}
    write_study(study, args.out)


def write_study(study: dict, path) -> None:
    partial = Path(str(path) + ".partial")  # renamed into place: a killed run leaves the previous file whole
    partial.write_text(json.dumps(study, indent=1))
    os.replace(partial, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
