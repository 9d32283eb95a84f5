"""What a notebook's first cell calls: show the profile, device and versions in one line each."""
from __future__ import annotations

import importlib.metadata
import importlib.util

from tlcourse.config import course_seed, home, profile, seed_everything
from tlcourse.memory import configure_malloc, release_after_every_cell


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def framework_versions() -> dict[str, str | None]:
    """Installed versions of the frameworks and key libraries (``None`` when missing), without importing them."""
    tf = _version("tensorflow") or _version("tensorflow-cpu")
    return {
        "tlcourse": _version("tlcourse"),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "tensorflow": tf,
        "keras": _version("keras"),
        "scikit-learn": _version("scikit-learn"),
    }


def device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``. Imports ``tlcourse.torch`` only if torch is installed."""
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    from tlcourse.torch.setup import device as torch_device

    return torch_device()


def setup(verbose: bool = True) -> dict:
    """Report the active profile, the device and the versions; returns them as a dict.

    Called first in a notebook, it also limits glibc's malloc arenas (see :mod:`tlcourse.memory`)
    before PyTorch or TensorFlow start their threads, and seeds everything with
    :func:`~tlcourse.config.course_seed` (``info["seed"]``, which the chapters pass on to every run).
    """
    configure_malloc()
    release_after_every_cell()
    info = {"profile": profile(), "seed": seed_everything(course_seed()), "device": device(),
            "cache": str(home()), **framework_versions()}
    if verbose:
        print(f"profile : {info['profile']}   (set TLCOURSE_PROFILE=full for the full-size backbones and datasets)")
        print(f"seed    : {info['seed']}   (set TLCOURSE_SEED to rerun the chapters with another one)")
        print(f"device  : {info['device']}")
        print(f"cache   : {info['cache']}")
        versions = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("profile", "seed", "device", "cache") and v)
        print(f"versions: {versions}")
    return info
