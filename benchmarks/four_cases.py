"""The four-case rule of thumb, measured: four strategies on a set like ImageNet and one unlike it,
each with few and with more labels. The table chapter 01 prints.

The rule (Yosinski et al. 2014; the CS231n transfer-learning notes) picks a strategy from two
questions: is the labelled set small or larger, and does it look like ImageNet's photos? Here the
shipped flowers (like ImageNet) and EuroSAT (satellite tiles, unlike it), with 10 training photos
per class (small) and every shipped training photo, 60 per class (larger), on EfficientNet-Lite0:

- feature extractor: ImageNet weights frozen, the new head alone;
- partial fine-tune: the head, then ``block7`` and ``top`` at a tenth of the rate;
- full fine-tune: the head, then the whole network at a tenth of the rate;
- scratch: random weights, the whole network, twice the epochs.

Each run is chapter 04's study run (``benchmarks/staged_unfreezing.py``: the same schedules, per-image
crops and flips, the best epoch by validation loss, the test split scored once). Validation and test
splits are the full shipped ones at both sizes. The larger-set runs are the ones that study already
made, read from its file, unless ``--rerun-larger``; the small-set runs are made here.

Writes ``tlcourse/studies/four_cases.json``, which ships inside the package for chapter 01.
Usage: python benchmarks/four_cases.py [--seeds 3] [--small 10] [--rerun-larger]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import staged_unfreezing as staged  # noqa: E402  (the script next to this one)

from tlcourse import data  # noqa: E402

STUDY = Path(__file__).resolve().parents[1] / "tlcourse" / "studies" / "four_cases.json"  # package data
STRATEGIES = {  # strategy -> the staged study's schedule that implements it
    "feature extractor": "feature extraction",
    "partial fine-tune": "2 stages to block7",
    "full fine-tune": "2 stages to all",
    "scratch": "scratch",
}


def summary(run: dict) -> dict:
    return {"seed": run["seed"], "test_accuracy": run["test_accuracy"], "seconds": run["seconds"],
            "best_val_accuracy": max(row["val_accuracy"] for row in run["epochs"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--small", type=int, default=10, help="training photos per class in the small case")
    parser.add_argument("--rerun-larger", action="store_true", help="train the larger-set runs again")
    parser.add_argument("--out", default=str(STUDY))
    args = parser.parse_args()

    import tlcourse.torch as tt
    import torch

    earlier = json.loads(staged.STUDY.read_text())
    study = {"command": "python benchmarks/four_cases.py", "framework": f"torch {torch.__version__}",
             "processor": staged.processor(), "threads": torch.get_num_threads(),
             "strategies": {strategy: {"schedule": name, **dict(zip(("pretrained", "stages", "lr_decay"), staged.SCHEDULES[name]))}
                            for strategy, name in STRATEGIES.items()},
             "sets": {}}
    for set_name, size in staged.SETS.items():
        full = data.load(set_name)
        per_class_all = len(full.train) // full.num_classes
        cases = {}
        for per_class in (args.small, per_class_all):
            ds = data.load(set_name, per_class=per_class) if per_class < per_class_all else full
            reuse = per_class == per_class_all and not args.rerun_larger
            print(f"{ds} at {size} px" + (f" (runs from {staged.STUDY.name})" if reuse else ""))
            runs = {}
            for strategy, name in STRATEGIES.items():
                if reuse:
                    made = earlier["sets"][set_name]["runs"][name][: args.seeds]
                else:
                    made = [staged.run(tt, ds, size, name, seed) for seed in range(args.seeds)]
                runs[strategy] = [summary(run) for run in made]
                scores = [run["test_accuracy"] for run in runs[strategy]]
                print(f"  {strategy:20s} test {100 * np.mean(scores):5.1f}% [{100 * min(scores):4.1f}-{100 * max(scores):5.1f}]",
                      flush=True)
            cases[str(per_class)] = {"train": len(ds.train), "from": staged.STUDY.name if reuse else STUDY.name,
                                     "processor": earlier["processor"] if reuse else study["processor"], "runs": runs}
        study["sets"][set_name] = {"size": size, "classes": full.num_classes, "val": len(full.val),
                                   "test": len(full.test), "like_imagenet": data.card(set_name).like_imagenet,
                                   "per_class": cases}
    staged.write_study(study, args.out)


if __name__ == "__main__":
    main()
