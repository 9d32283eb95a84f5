"""The catalogue measured in PyTorch: ImageNet metadata from torchvision, and a model's size and speed.

``zoo_table`` sets each backbone of :mod:`tlcourse.zoo`'s catalogue in one row: accuracy from the
weights' metadata (offline), parameters, weight layers and GFLOPs counted on the model built with
random weights, and, if asked, its latency on this machine.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tlcourse import lite0 as _lite0
from tlcourse.torch.backbones import _weights_enum, backbone as build_backbone
from tlcourse.zoo import NAMES, ZooTable, card


def imagenet_metadata(name: str) -> dict:
    """ImageNet facts of a backbone from torchvision's weight metadata, read offline.

    Returns ``{"acc@1", "acc@5", "num_params", "gflops", "file_size_mb", "categories", "recipe",
    "weights"}``. The accuracies are torchvision's (single 224-crop ImageNet-1k validation); the
    Keras weights of the same architecture score a little differently. EfficientNet-Lite0 is not
    in torchvision: its numbers are those published with the TensorFlow release, and its GFLOPs
    are left ``None``.
    """
    backbone = card(name)
    if backbone.torch_weights is None:
        categories = list(_lite0.imagenet_categories())
        return {
            "acc@1": 75.1,  # FP32 accuracy in tensorflow/tpu, models/official/efficientnet/lite/README.md
            "acc@5": None,
            "num_params": _lite0.PARAMETER_COUNT,
            "gflops": None,
            "file_size_mb": None,
            "categories": categories,
            "recipe": "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
            "weights": _lite0.WEIGHTS_WHEEL,
        }
    meta = _weights_enum(backbone).meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    return {
        "acc@1": metrics["acc@1"],
        "acc@5": metrics["acc@5"],
        "num_params": meta["num_params"],
        "gflops": meta.get("_ops"),
        "file_size_mb": meta.get("_file_size"),
        "categories": list(meta["categories"]),
        "recipe": meta.get("recipe"),
        "weights": backbone.torch_weights,
    }


def count_gflops(model, size: int = 224) -> float:
    """Billions of multiply-adds of one forward pass of a PyTorch ``model`` on a ``size`` image.

    Counted with ``torch.utils.flop_counter`` (which counts a multiply-add as two operations) and
    halved, the convention of torchvision's weight metadata (``meta["_ops"]``, "GFLOPS"), so the
    numbers agree with it; this is how EfficientNet-Lite0, which torchvision lacks, gets its own.
    """
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops() / 2e9


def weight_layers(model) -> int:
    """Convolutions plus fully connected layers of a PyTorch model: the layers that hold weights
    and transform features (VGG16's 13 + 3 = 16, the number in its name). BatchNorm, activations
    and pooling are not counted; Keras's "depth" column counts those too, so it is larger."""
    return sum(isinstance(module, (nn.Conv2d, nn.Linear)) for module in model.modules())


def measure_latency(model, size: int = 224, batch: int = 1, repeats: int = 5, warmup: int = 1) -> float:
    """Milliseconds of one forward pass of a PyTorch ``model`` on a ``(batch, 3, size, size)``
    input, on the model's device and this machine's threads: the fastest of ``repeats`` passes
    after ``warmup`` untimed ones. Other programs on a busy machine only ever slow a pass down, so
    the fastest is the steadiest estimate of what the model itself costs. Random weights time the
    same as trained ones. The number depends on the machine: compare backbones within one run."""
    device = next(model.parameters()).device
    x = torch.zeros(batch, 3, size, size, device=device)
    timings = []
    model.eval()
    with torch.inference_mode():
        for attempt in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if attempt >= warmup:
                timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def zoo_table(names=NAMES, *, latency: bool = False, size: int = 224, repeats: int = 5) -> ZooTable:
    """The catalogue as a table: ImageNet accuracy from the libraries' metadata, and parameters,
    weight layers and GFLOPs counted on the PyTorch model, built with random weights (offline).

    ``latency=True`` adds the milliseconds of one image of ``size`` pixels on this machine
    (:func:`measure_latency`), which vary from run to run. Imports torch (and torchvision).
    """
    return ZooTable([_zoo_row(name, latency, size, repeats) for name in names])


def _zoo_row(name: str, latency: bool, size: int, repeats: int) -> dict:
    """One row of :func:`zoo_table`; the model is gone (and its memory handed back) when it returns,
    so VGG16's half a gigabyte of weights never sits beside the next model's."""
    meta = imagenet_metadata(name)
    model = build_backbone(name, weights=None)
    params = sum(p.numel() for p in model.parameters())
    if params != meta["num_params"]:  # pragma: no cover - would mean a different architecture
        raise AssertionError(f"{name}: {params} parameters, but its metadata says {meta['num_params']}")
    gflops = meta["gflops"] if meta["gflops"] is not None else round(count_gflops(model, 224), 3)
    row = {
        "name": name,
        "profile": card(name).profile,
        "acc@1": meta["acc@1"],
        "acc@5": meta["acc@5"],
        "params_m": params / 1e6,
        "weight_layers": weight_layers(model),
        "gflops": gflops,
        "file_size_mb": meta["file_size_mb"],
    }
    if latency:
        row["latency_ms"] = measure_latency(model, size=size, repeats=repeats)
    return row
