"""What does ``extract_features`` cost over calling the model yourself?

    python benchmarks/feature_extraction.py [--images 256] [--size 96] [--batch 64] [--repeats 5] [--layer top]

For each framework, EfficientNet-Lite0 with ImageNet weights, the same uint8 images cut into the
same batches. Three contenders take turns on each batch, ``--repeats`` rounds over all batches,
and each keeps its fastest batch: load from other processes only ever slows a batch down, so on a
shared 2-core machine the minimum is the steadiest estimate, and taking turns exposes all three
to the same conditions.

* ``model(x)``: the network alone on the batch preprocessed beforehand, under
  ``torch.inference_mode()`` (PyTorch) or called with ``training=False`` (Keras);
* ``preprocess + model(x)``: what a learner would write, starting from uint8 images;
* ``extract_features``: one ``tlcourse`` call per batch with ``cache=False`` (no disk, no
  hashing), which also preprocesses, pools and copies the features out. Calling it per batch
  charges its per-call set-up (block map, hooks or sub-model) to every batch, which a real call
  over a whole split pays once.

The images already have ``--size`` pixels, so preprocessing only converts and normalises. The
target, a ratio of at least 0.95, is for extract_features over ``preprocess + model(x)``: both
start from the same uint8 batch. The ratio over ``model(x)`` alone is printed too; the gap between
the two is what preprocessing costs (about a tenth of a batch in PyTorch at 96 px).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import tlcourse.keras as tk  # before keras/torch: sets the backend and loads triton first (tlcourse/_coexist.py)
import tlcourse.torch as tt
import keras
import torch


def best_rates(contenders: dict, batch_count: int, batch: int, repeats: int) -> dict[str, float]:
    """Images/s of each contender ``run(batch_index)``, from its fastest batch, taking turns."""
    for run in contenders.values():
        run(0)  # warm-up: allocations, kernels picked per shape
    best = {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for index in range(batch_count):
            for name, run in contenders.items():
                start = time.perf_counter()
                run(index)
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: batch / seconds for name, seconds in best.items()}


def batches(images: np.ndarray, batch: int) -> list[np.ndarray]:
    """Whole batches only, so every timed batch has the same size."""
    return [images[start : start + batch] for start in range(0, len(images) - batch + 1, batch)]


def torch_contenders(chunks, size, layer) -> dict:
    model = tt.build_lite0()
    ready = [tt.preprocess(chunk, size) for chunk in chunks]

    def model_alone(index):
        with torch.inference_mode():
            model(ready[index])

    def with_preprocess(index):
        with torch.inference_mode():
            model(tt.preprocess(chunks[index], size))

    def extract(index):
        tt.extract_features(model, chunks[index], layer, size=size, cache=False, progress=False)

    return {"model(x)": model_alone, "preprocess + model(x)": with_preprocess, "extract_features": extract}


def keras_contenders(chunks, size, layer) -> dict:
    model = tk.build_lite0()
    ready = [tk.preprocess(chunk, size) for chunk in chunks]

    def model_alone(index):
        keras.ops.convert_to_numpy(model(ready[index], training=False))

    def with_preprocess(index):
        keras.ops.convert_to_numpy(model(tk.preprocess(chunks[index], size), training=False))

    def extract(index):
        tk.extract_features(model, chunks[index], layer, size=size, cache=False, progress=False)

    return {"model(x)": model_alone, "preprocess + model(x)": with_preprocess, "extract_features": extract}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="rounded down to whole batches")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--layer", default="top")
    args = parser.parse_args()

    images = np.random.default_rng(0).integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    chunks = batches(images, args.batch)
    if not chunks:
        parser.error(f"--images {args.images} is less than one batch of {args.batch}")
    print(
        f"EfficientNet-Lite0, {args.images} images at {args.size} px, batches of {args.batch}, layer {args.layer!r}, "
        f"fastest batch of {args.repeats} rounds; {platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), keras {keras.__version__}"
    )
    header = f"{'framework':<10}{'model(x)':>12}{'prep+model':>12}{'extract':>12}{'ratio':>8}{'vs model(x)':>13}"
    print(header)
    print("-" * len(header))
    for framework, contenders in (("torch", torch_contenders), ("keras", keras_contenders)):
        rates = best_rates(contenders(chunks, args.size, args.layer), len(chunks), args.batch, args.repeats)
        alone, prepared, extract = rates["model(x)"], rates["preprocess + model(x)"], rates["extract_features"]
        print(f"{framework:<10}{alone:>12.1f}{prepared:>12.1f}{extract:>12.1f}{extract / prepared:>8.2f}{extract / alone:>13.2f}")
    print("images/s; ratio = extract / (preprocess + model(x)), target >= 0.95; last column = extract / model(x) alone")


if __name__ == "__main__":
    main()
