"""What PyTorch tells the course's set-up cell and ``tlcourse doctor``: the device it trains on."""
from __future__ import annotations

import torch


def device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_report() -> str:
    """One line: the GPUs torch sees, with its CUDA version, or that it trains on the CPU."""
    if not torch.cuda.is_available():
        return "none: training runs on the CPU"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"CUDA {torch.version.cuda}: " + ", ".join(names)
