"""Choosing a DANN recipe without target labels: what each signal would have picked. Prints one table.

Chapter 06's quick recipe was chosen on the target's *labelled* validation split, which unsupervised
adaptation does not have. This script trains DANN with each of several candidate settings (the ones
``tlcourse.dann.RECIPES`` records trying) on the quick pair (digits_rgb -> digits_on_photos), three
seeds each, in PyTorch, and scores every run by four signals:

- target val: accuracy on the target's labelled validation split (what the recipe was chosen on;
  not available without target labels);
- source val: accuracy on the source's held-out validation split (needs no target label);
- domain head: how far DANN's own domain head is from guessing, |accuracy - 50%|, on the source and
  target validation images, each domain passed through the network on its own with BatchNorm using
  that batch's statistics, as in training (in eval mode the running statistics pool the two domains
  and the head sees features it was not trained on); lower is "more confused", the adversary's aim
  (needs no target label). An accuracy below 50% is no more confused than the same distance above:
  the head still tells the domains apart, with the labels swapped;
- reverse validation (Ganin et al. 2016, after Zhong et al. 2010): the trained network labels the
  target's training images; a second DANN, trained the other way round (those pseudo-labelled
  target images as its source, the source training images unlabelled as its target), is scored on
  the held-out source validation split (needs no target label; costs a second training).

For each signal it reports the setting it would choose (best mean over the seeds) and that
setting's target *test* accuracy, beside the best test accuracy of any setting, and the rank
correlation (Spearman) between the signal and the test accuracy over the settings.

Writes ``tlcourse/studies/dann_selection.json`` (package data, read by chapter 06).
Usage: python benchmarks/dann_selection.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import staged_unfreezing as staged  # noqa: E402  (the script next to this one: its processor() and writer)

STUDY = Path(__file__).resolve().parents[1] / "tlcourse" / "studies" / "dann_selection.json"
SIGNALS = ("target val", "source val", "domain head", "reverse validation")
LOWER_IS_BETTER = {"domain head"}


def candidates() -> dict:
    """Setting name -> Recipe: the quick recipe and the alternatives its notes record."""
    from tlcourse.dann import recipe

    quick = recipe("quick")
    paper = dataclasses.replace(quick, batchnorm=False, filters=(32, 48), domain_hidden=(100,))
    return {
        "paper's network, domain head 100-1": paper,
        "BatchNorm, domain head 100-1": dataclasses.replace(quick, domain_hidden=(100,)),
        "BatchNorm, domain head 100-100-1": dataclasses.replace(quick, domain_hidden=(100, 100)),
        "BatchNorm, domain head 512-512-1 (the quick recipe)": quick,
        "the quick recipe, 15 epochs": dataclasses.replace(quick, epochs=15),
        "the quick recipe, 40 epochs": dataclasses.replace(quick, epochs=40),
        "the quick recipe, filters 32 and 48": dataclasses.replace(quick, filters=(32, 48)),
    }


def run(setting, source, target, seed: int) -> dict:
    import torch

    import tlcourse
    import tlcourse.torch as tt
    from tlcourse.dann import to_rgb

    def build():
        return tt.build_dann_digits(len(target.classes), target.image_shape, **setting.model_kwargs())

    tlcourse.seed_everything(seed)
    model = build()
    started = time.perf_counter()
    tt.fit_dann(model, to_rgb(source.train), target.train.images, seed=seed, progress=False, **setting.fit_kwargs())
    scores = {"target val": tt.evaluate(model, target.val)["accuracy"],
              "source val": tt.evaluate(model, to_rgb(source.val))["accuracy"],
              "test": tt.evaluate(model, target.test)["accuracy"]}
    scores["domain head accuracy"] = domain_head_accuracy(model, to_rgb(source.val).images, target.val.images)
    scores["domain head"] = abs(scores["domain head accuracy"] - 0.5)
    pseudo = tt.predict(model, target.train.images).argmax(axis=1)
    tlcourse.seed_everything(seed)
    reverse = build()
    tt.fit_dann(reverse, (target.train.images, pseudo), to_rgb(source.train).images, seed=seed, progress=False,
                **setting.fit_kwargs())
    scores["reverse validation"] = tt.evaluate(reverse, to_rgb(source.val))["accuracy"]
    scores["seconds"] = time.perf_counter() - started
    return {"seed": seed, **scores}


def domain_head_accuracy(model, source_images: np.ndarray, target_images: np.ndarray) -> float:
    """How often the domain head names each image's domain, BatchNorm normalising each domain on its own.

    ``fit_dann`` sends the source and the target batch through the features one after the other, so
    the head was trained on features normalised per domain; it is scored the same way here, on a
    copy (BatchNorm in training mode would update the model's running statistics).
    """
    import copy

    import torch

    from tlcourse.torch.train import default_transform

    probe = copy.deepcopy(model).eval()
    for module in probe.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()
    device = next(probe.parameters()).device
    correct = 0
    with torch.no_grad():
        for domain, images in enumerate((source_images, target_images)):
            features = probe.features(default_transform(images).to(device))
            correct += int(((probe.domain_logits(features) > 0).long() == domain).sum())
    return correct / (len(source_images) + len(target_images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(STUDY))
    args = parser.parse_args()
    import torch

    import tlcourse.torch  # noqa: F401  (before any TensorFlow, as everywhere in the course)
    from tlcourse import data
    from tlcourse.dann import recipe

    quick = recipe("quick")
    source, target = data.load(quick.source), data.load(quick.target)
    study = {"command": "python benchmarks/dann_selection.py " + " ".join(sys.argv[1:]),
             "processor": staged.processor(), "threads": torch.get_num_threads(), "framework": "torch",
             "source": quick.source, "target": quick.target, "signals": list(SIGNALS),
             "lower_is_better": sorted(LOWER_IS_BETTER), "settings": {}}
    for name, setting in candidates().items():
        runs = [run(setting, source, target, seed) for seed in range(args.seeds)]
        study["settings"][name] = {"recipe": {k: v for k, v in dataclasses.asdict(setting).items() if k != "note"},
                                   "runs": runs}
        mean = lambda key: np.mean([r[key] for r in runs])
        print(f"{name:52s} " + " ".join(f"{s} {mean(s):.3f}" for s in SIGNALS) +
              f" | test {mean('test'):.3f}  {mean('seconds'):.0f} s/run", flush=True)
        staged.write_study(study, args.out)  # after every setting: a killed run keeps what it finished

    summarise(study)


def summarise(study: dict) -> None:
    """Print what each signal picks, and its rank correlation with the test accuracy."""
    from scipy.stats import spearmanr

    names = list(study["settings"])
    test = [np.mean([r["test"] for r in study["settings"][n]["runs"]]) for n in names]
    print(f"\nbest test accuracy of any setting: {max(test):.1%} ({names[int(np.argmax(test))]})")
    for signal in SIGNALS:
        values = [np.mean([r[signal] for r in study["settings"][n]["runs"]]) for n in names]
        pick = int(np.argmin(values) if signal in LOWER_IS_BETTER else np.argmax(values))
        sign = -1 if signal in LOWER_IS_BETTER else 1
        print(f"{signal:20s} picks {names[pick]:52s} test {test[pick]:.1%}; "
              f"rank correlation with test {spearmanr(sign * np.asarray(values), test).statistic:+.2f}")


if __name__ == "__main__":
    main()
