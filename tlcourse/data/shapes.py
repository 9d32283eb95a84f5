"""Procedural shapes whose classes are attribute combinations, for zero-shot learning.

A class is a shape, a colour and a fill, e.g. "filled red circle". Every class is described by the
same binary attributes (is it a circle? is it red? is it filled? ...), so a model that has learnt
to recognise the attributes on some classes can name a class it has never seen from its
description alone. A few combinations are held out: their images appear only in the test split.

Position, size, rotation, exact colour and the noisy grey background vary from image to image;
everything is drawn from one seeded generator, so the set is identical on every run.
"""
from __future__ import annotations

import itertools

import numpy as np

from tlcourse.data.registry import Raw

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue")
FILLS = ("filled", "outlined")
ATTRIBUTE_NAMES = SHAPES + COLOURS + FILLS

# Held out of training: together they use every shape, every colour and both fills, and every
# attribute value still appears in several seen classes.
UNSEEN = (
    ("outlined", "green", "circle"),
    ("filled", "blue", "square"),
    ("filled", "red", "triangle"),
    ("outlined", "blue", "triangle"),
)

SIZE = 32
SUPERSAMPLE = 4  # draw on a 4x finer grid and average, for anti-aliased edges
OUTLINE_WIDTH = 2.5  # pixels

_RGB = {"red": (215, 40, 40), "green": (40, 170, 50), "blue": (45, 75, 220)}


def class_names() -> tuple[str, ...]:
    """Every combination, as "<fill> <colour> <shape>"."""
    return tuple(f"{f} {c} {s}" for s, c, f in itertools.product(SHAPES, COLOURS, FILLS))


def attribute_table() -> np.ndarray:
    """(classes x attributes) table of 0/1: row k says which attributes class k has."""
    rows = [[float(a in name.split()) for a in ATTRIBUTE_NAMES] for name in class_names()]
    return np.array(rows)


def build(seed: int = 0, train: int = 40, val: int = 10, test: int = 20) -> Raw:
    """The shapes dataset: ``train``/``val``/``test`` images per seen class, ``test`` per unseen one."""
    names = class_names()
    unseen = tuple(names.index(" ".join(combo)) for combo in UNSEEN)
    rng = np.random.default_rng(seed)

    images, labels, parts = [], [], {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        fill, colour, shape = name.split()
        counts = {"test": test} if label in unseen else {"train": train, "val": val, "test": test}
        for part, count in counts.items():
            start = len(labels)
            for _ in range(count):
                images.append(draw(shape, colour, fill, rng))
                labels.append(label)
            parts[part].extend(range(start, len(labels)))

    splits = {part: rng.permutation(np.array(idx, dtype=np.int64)) for part, idx in parts.items()}
    return Raw(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        classes=names,
        splits=splits,
        attributes=attribute_table(),
        attribute_names=ATTRIBUTE_NAMES,
        unseen=unseen,
    )


def draw(shape: str, colour: str, fill: str, rng: np.random.Generator) -> np.ndarray:
    """One SIZE x SIZE RGB uint8 image of the shape on a noisy grey background."""
    radius = rng.uniform(5.0, 9.0)
    # How far the shape reaches from its centre, so it always fits inside the image.
    reach = radius * {"circle": 1.0, "square": 1.15, "triangle": 1.4}[shape]
    cx, cy = rng.uniform(reach + 1, SIZE - reach - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)

    coverage = _coverage(shape, fill, radius, cx, cy, angle)[..., None]
    background = rng.uniform(70, 180) + rng.normal(0, 10, size=(SIZE, SIZE, 1))
    ink = np.clip(np.array(_RGB[colour]) + rng.uniform(-25, 25, size=3), 0, 255)
    image = background * (1 - coverage) + ink * coverage
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _coverage(shape: str, fill: str, radius: float, cx: float, cy: float, angle: float) -> np.ndarray:
    """Fraction of each pixel covered by the shape (0..1), shape (SIZE, SIZE)."""
    fine = (np.arange(SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    y, x = np.meshgrid(fine - cy, fine - cx, indexing="ij")
    # Rotate the grid instead of the shape.
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)

    # Each shape is {distance <= level} for a distance that grows one unit per pixel outward, so
    # an outline of width w is simply {level - w < distance <= level}.
    if shape == "circle":
        distance, level = np.hypot(u, v), radius
    elif shape == "square":
        distance, level = np.maximum(np.abs(u), np.abs(v)), 0.8 * radius
    elif shape == "triangle":
        # An equilateral triangle is where the projections on its three edge normals are small.
        normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2 + k * 2 * np.pi / 3 for k in range(3))]
        distance = np.max([u * nu + v * nv for nu, nv in normals], axis=0)
        level = 0.7 * radius  # inradius of a triangle reaching 1.4 * radius
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")

    inside = distance <= level
    if fill == "outlined":
        inside &= distance > level - OUTLINE_WIDTH
    return inside.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))
