"""Zero-shot learning on the shapes: DAP, IAP and ESZSL over ImageNet features. Prints one table.

EfficientNet-Lite0 with its ImageNet weights (PyTorch) turns every shapes image into features at a
few layers and input sizes. For each model, the layer and size are chosen on validation images of
seen classes only, by hiding some seen classes and naming them from their attributes
(``tlcourse.zeroshot.class_split_validation``); the same validation picks the calibration for
calibrated stacking. The test split is used once, for the numbers printed:

- ZSL: per-class mean accuracy on the unseen classes' images, named among the unseen classes
  (chance is 1 / number of unseen classes);
- GZSL: every test image named among all classes; per-class mean accuracy on seen and on unseen
  classes' images, and their harmonic mean H, without and with calibrated stacking.

Usage: python benchmarks/zeroshot.py [--sizes 48 64] [--layers block5 block6 top] [--cache]
"""
from __future__ import annotations

import argparse
import time

from tlcourse import data
from tlcourse import zeroshot as zs

MODELS = {"DAP": zs.DAP(), "IAP": zs.IAP(), "ESZSL": zs.ESZSL(gamma=10.0, lam=1.0)}


def extract(ds, sizes, layers, cache: bool) -> dict:
    """{(size, layer): {"train"|"val"|"test": features}} from one pass per size and split."""
    import tlcourse.torch as tt

    backbone = tt.build_lite0(weights="imagenet")
    features = {}
    for size in sizes:
        for split in ("train", "val", "test"):
            per_layer = tt.extract_features(backbone, getattr(ds, split), list(layers), size=size,
                                            cache=cache, progress=False)
            for layer, values in per_layer.items():
                features.setdefault((size, layer), {})[split] = values
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 64], help="input sizes to try (default 48 64)")
    parser.add_argument("--layers", nargs="+", default=["block5", "block6", "top"],
                        help="Lite0 layers to try (default block5 block6 top)")
    parser.add_argument("--cache", action="store_true", help="reuse features cached on disk by an earlier run")
    args = parser.parse_args()

    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    ds = data.load("shapes")
    table = zs.AttributeTable.from_dataset(ds)
    seen_table, unseen_table = table.subset(ds.seen), table.subset(ds.unseen)
    features = extract(ds, args.sizes, args.layers, args.cache)
    extracted = time.perf_counter() - start

    print(f"shapes: {len(ds.seen)} seen classes ({len(ds.train)} train / {len(ds.val)} val images), "
          f"{len(ds.unseen)} unseen; test: {len(ds.test)} images of all {ds.num_classes} classes")
    print(f"EfficientNet-Lite0, ImageNet weights, PyTorch; features extracted in {extracted:.1f} s")
    print(f"ZSL chance: {1 / len(ds.unseen):.1%}; layer and size chosen on validation (seen classes only)")
    header = (f"{'model':6s} {'layer':7s} {'size':>4s} {'val ZSL':>7s} {'ZSL':>6s} "
              f"{'GZSL seen':>9s} {'unseen':>6s} {'H':>6s} {'| calibrated: seen':>18s} {'unseen':>6s} {'H':>6s} "
              f"{'seconds':>7s}")
    print(header)
    print("-" * len(header))
    with threadpool_limits(limits=1):  # small matrices: one BLAS thread is faster on a shared CPU
        for name, estimator in MODELS.items():
            began = time.perf_counter()
            validation = {
                key: zs.class_split_validation(estimator, (f["train"], ds.train.labels), (f["val"], ds.val.labels),
                                               seen_table)
                for key, f in features.items()
            }
            (size, layer), chosen = max(validation.items(), key=lambda item: item[1]["accuracy"])
            f = features[(size, layer)]
            model = clone(estimator).fit(f["train"], ds.train.labels, seen_table)
            zsl = zs.evaluate_zsl(model, f["test"], ds.test.labels, unseen_table)
            plain = zs.evaluate_gzsl(model, f["test"], ds.test.labels, table, seen=ds.seen)
            calibrated = zs.evaluate_gzsl(model, f["test"], ds.test.labels, table, seen=ds.seen,
                                          calibration=chosen["calibration"])
            seconds = time.perf_counter() - began
            print(f"{name:6s} {layer:7s} {size:4d} {chosen['accuracy']:7.1%} {zsl:6.1%} "
                  f"{plain.seen:9.1%} {plain.unseen:6.1%} {plain.harmonic:6.1%} "
                  f"{calibrated.seen:18.1%} {calibrated.unseen:6.1%} {calibrated.harmonic:6.1%} {seconds:7.1f}",
                  flush=True)
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
