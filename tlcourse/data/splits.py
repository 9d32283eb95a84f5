"""Fixed, stratified train/val/test splits and deterministic subsampling."""
from __future__ import annotations

import zlib

import numpy as np


def name_seed(name: str) -> int:
    """A stable seed from a dataset's name, so its splits never depend on global RNG state."""
    return zlib.crc32(name.encode("utf-8"))


def stratified_split(labels: np.ndarray, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> tuple[np.ndarray, ...]:
    """Index arrays for each split, each class divided in the given fractions, in shuffled order."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.min() < 0 or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.append(chunk)
    return tuple(rng.permutation(np.concatenate(p)) if p else np.array([], int) for p in parts)


def stratified_take(labels: np.ndarray, limit: int | None = None, per_class: int | None = None) -> np.ndarray:
    """Indices of a class-balanced subset, taken from the front of the (already shuffled) split.

    ``per_class`` keeps at most that many of each class; ``limit`` keeps at most that many in all,
    with the classes in their original proportions (every class keeps at least one where it can).
    The result keeps the split's order, so a smaller subset is a prefix-like subset of a larger one.
    """
    keep = np.ones(len(labels), bool)
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            keep[idx[per_class:]] = False
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        idx = np.flatnonzero(keep)
        if len(idx) > limit:
            classes, counts = np.unique(labels[idx], return_counts=True)
            quota = np.maximum(1, np.floor(counts * limit / len(idx))).astype(int)
            # Hand out what rounding left over to the largest classes first.
            for i in np.argsort(-counts)[: max(0, limit - quota.sum())]:
                quota[i] += 1
            keep[:] = False
            for label, q in zip(classes, quota):
                keep[idx[labels[idx] == label][:q]] = True
    return np.flatnonzero(keep)
