"""Which profile is active, where the cache lives, and seeding.

Everything here is plain Python: importing it never imports torch or TensorFlow.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable

PROFILES = ("quick", "full")
DEFAULT_PROFILE = "quick"

_seed: int | None = None
_framework_seeders: list[Callable[[int], None]] = []


def profile() -> str:
    """The active profile: ``TLCOURSE_PROFILE`` (``quick`` or ``full``), ``quick`` when unset."""
    name = os.environ.get("TLCOURSE_PROFILE", "").strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"TLCOURSE_PROFILE={name!r} is not a profile; set it to one of {', '.join(PROFILES)} "
            "(quick: embedded data, offline; full: ImageNet weights and real datasets)."
        )
    return name


def home() -> Path:
    """The one cache root: ``TLCOURSE_HOME``, else ``~/.cache/tlcourse``. Not created here."""
    root = os.environ.get("TLCOURSE_HOME", "").strip()
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tlcourse"


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created on first use."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def course_seed() -> int:
    """The seed the chapters use: ``TLCOURSE_SEED``, 0 when unset.

    Rerunning the course with another value (``make check-claims`` does) shows which of a chapter's
    claims depend on one lucky draw.
    """
    text = os.environ.get("TLCOURSE_SEED", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"TLCOURSE_SEED={text!r} is not a whole number; set it to one (e.g. 1) or unset it") from None


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and whichever frameworks are loaded (or get loaded later).

    The seed is remembered, so ``tlcourse.torch`` and ``tlcourse.keras`` apply it when they are
    first imported; seeding does not force either framework to load.
    """
    global _seed
    _seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(_seed)
    random.seed(_seed)
    import numpy as np

    np.random.seed(_seed)
    for seed_framework in _framework_seeders:
        seed_framework(_seed)
    return _seed


def when_seeded(seed_framework: Callable[[int], None]) -> None:
    """Have :func:`seed_everything` call ``seed_framework(seed)`` from now on, and now if a seed is set.

    ``tlcourse.torch`` and ``tlcourse.keras`` register their framework's seeding here when they are
    imported, so that this module never imports a framework.
    """
    _framework_seeders.append(seed_framework)
    if _seed is not None:
        seed_framework(_seed)


def current_seed() -> int | None:
    """The seed last given to :func:`seed_everything`, or ``None``."""
    return _seed
