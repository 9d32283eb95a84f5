"""Dataset cards and the record every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Card:
    """What a dataset is, where it comes from and what it may be used for."""

    name: str
    task: str  # "classification", "domain-adaptation target", "zero-shot"
    classes: tuple[str, ...]
    licence: str
    source: str
    size: str  # human-readable: "1,797 images, 8x8 grey"
    profile: str  # "quick" (embedded, offline) or "full" (downloaded once)
    chapters: tuple[int, ...] = ()
    # Position in the transfer rule of thumb: is the target like ImageNet photos, and is it small?
    like_imagenet: bool | None = None
    small: bool | None = None
    description: str = ""


@dataclass(frozen=True)
class Split:
    """One split: uint8 images in NHWC order and integer labels."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {self.images.dtype} with shape {self.images.shape}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: fixed train/val/test splits, class names and the card.

    ``attributes`` (classes x attributes) and ``attribute_names`` are set for zero-shot sets;
    ``unseen`` lists the class indices kept out of training there (their images are in ``test``
    only, beside test images of the ``seen`` classes, as generalised zero-shot needs).
    """

    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    card: Card
    attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] | None = None
    unseen: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def seen(self) -> tuple[int, ...]:
        """The class indices that training images show: every class but the ``unseen`` ones."""
        return tuple(k for k in range(len(self.classes)) if k not in self.unseen)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def __repr__(self) -> str:
        h, w, c = self.image_shape
        return (
            f"Dataset({self.card.name!r}: {len(self.train)} train / {len(self.val)} val / "
            f"{len(self.test)} test, {h}x{w}x{c}, {self.num_classes} classes)"
        )


def cards_markdown(cards) -> str:
    """A Markdown table of cards: name, profile, task, classes, size, source, licence, chapters."""
    lines = ["| name | profile | task | classes | size | source | licence | chapters |", "|---|---|---|---|---|---|---|---|"]
    for c in cards:
        chapters = ", ".join(f"{n:02d}" for n in c.chapters) or "-"
        cells = (f"`{c.name}`", c.profile, c.task, str(len(c.classes)), c.size, c.source, c.licence, chapters)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
