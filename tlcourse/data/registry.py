"""The one loader: dataset name in, :class:`Dataset` out, whatever the source."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tlcourse.config import profile as active_profile
from tlcourse.data.card import Card, Dataset, Split
from tlcourse.data.splits import name_seed, stratified_split, stratified_take


@dataclass(frozen=True)
class Raw:
    """What a builder hands the loader.

    Either all images with ``fractions`` for a stratified split, or ``splits`` already fixed by the
    source (``{"train": idx, "val": idx, "test": idx}`` into ``images``).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    splits: dict | None = None
    attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] | None = None
    unseen: tuple[int, ...] = ()
    extra: dict | None = None  # goes to Dataset.extra; a "files" list (one per image) is split with the images


_BUILDERS: dict[str, Callable[[], Raw]] = {}
_CARDS: dict[str, Card] = {}
_RAW_CACHE: dict[str, Raw] = {}


def register(card: Card, builder: Callable[[], Raw]) -> None:
    """Make ``load(card.name)`` call ``builder`` (once per process; the result is kept)."""
    if card.profile not in ("quick", "full"):
        raise ValueError(f"card {card.name!r}: profile must be 'quick' or 'full', not {card.profile!r}")
    _CARDS[card.name] = card
    _BUILDERS[card.name] = builder


def cards(profile: str | None = None) -> list[Card]:
    """Every registered card, or those of one profile."""
    _ensure_registered()
    return [c for c in _CARDS.values() if profile is None or c.profile == profile]


def card(name: str) -> Card:
    _ensure_registered()
    return _CARDS[_check_name(name)]


def names(profile: str | None = None) -> list[str]:
    return [c.name for c in cards(profile)]


def for_profile(quick: str, full: str) -> str:
    """The dataset name to use under the active profile: ``load(for_profile("digits", "mnist"))``."""
    return quick if active_profile() == "quick" else full


def load(name: str, limit: int | None = None, per_class: int | None = None) -> Dataset:
    """Load a dataset by name with its fixed train/val/test splits.

    ``limit`` caps every split at that many images (class-balanced, always the same ones);
    ``per_class`` keeps at most that many training images of each class (validation and test are
    left whole), for few-label experiments. Images are uint8 NHWC; labels are int64.
    """
    _ensure_registered()
    name = _check_name(name)
    raw = _RAW_CACHE.get(name)
    if raw is None:
        raw = _BUILDERS[name]()
        _check_raw(name, raw)
        raw.images.setflags(write=False)
        raw.labels.setflags(write=False)
        _RAW_CACHE[name] = raw

    if raw.splits is not None:
        parts = [np.asarray(raw.splits[k]) for k in ("train", "val", "test")]
    else:
        parts = list(stratified_split(raw.labels, raw.fractions, seed=name_seed(name)))

    splits, files = [], (raw.extra or {}).get("files")
    extra = dict(raw.extra or {})
    if files is not None:
        extra["files"] = {}  # one file name per image, split by split
    for which, idx in zip(("train", "val", "test"), parts):
        keep = stratified_take(raw.labels[idx], limit=limit, per_class=per_class if which == "train" else None)
        idx = idx[keep]
        splits.append(Split(raw.images[idx], raw.labels[idx].astype(np.int64)))
        if files is not None:
            extra["files"][which] = tuple(files[i] for i in idx)

    return Dataset(
        *splits,
        classes=raw.classes,
        card=_CARDS[name],
        attributes=raw.attributes,
        attribute_names=raw.attribute_names,
        unseen=tuple(raw.unseen),
        extra=extra,
    )


def _check_name(name: str) -> str:
    if name in _CARDS:
        return name
    close = difflib.get_close_matches(name, list(_CARDS), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise KeyError(
        f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(_CARDS))} "
        "(`tlcourse datasets` lists them with their cards)."
    )


def _check_raw(name: str, raw: Raw) -> None:
    if raw.images.dtype != np.uint8 or raw.images.ndim != 4:
        raise TypeError(f"builder of {name!r} returned {raw.images.dtype} {raw.images.shape}; expected uint8 NHWC")
    if len(raw.classes) <= int(raw.labels.max()):
        raise ValueError(f"builder of {name!r}: label {int(raw.labels.max())} but only {len(raw.classes)} classes")


def _ensure_registered() -> None:
    # The catalogues register themselves on import; importing them here keeps `tlcourse.data` cheap
    # to import and the registry complete whichever entry point is used first.
    from tlcourse.data import attributes, embedded, full  # noqa: F401
