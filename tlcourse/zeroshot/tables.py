"""Class-attribute tables: which attributes each class has, the side information of zero-shot learning.

A table has one row per class and one column per attribute. Values are 0/1 ("a zebra has
stripes") or continuous ("73% of annotators saw a hooked bill"). Each row also carries the integer
label it stands for in a dataset, so a table of a few classes still predicts the dataset's own
labels: ``table.subset(ds.unseen).labels`` are the unseen classes' labels, not 0, 1, 2, ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["AttributeTable"]


@dataclass(frozen=True, eq=False)
class AttributeTable:
    """``values[k, m]``: how much class ``classes[k]`` (dataset label ``labels[k]``) has ``attributes[m]``.

    >>> table = AttributeTable([[1, 0], [0, 1]], classes=("zebra", "dolphin"), attributes=("stripes", "fins"))
    >>> table.subset(["dolphin"]).labels
    array([1])
    """

    values: np.ndarray
    classes: tuple[str, ...]
    attributes: tuple[str, ...]
    labels: np.ndarray | None = None

    def __post_init__(self):
        values = np.array(self.values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(
                f"an attribute table is 2-D (classes x attributes), got an array of shape {values.shape}"
            )
        classes, attributes = tuple(map(str, self.classes)), tuple(map(str, self.attributes))
        n_classes, n_attributes = values.shape
        if len(classes) != n_classes:
            hint = " (is the table transposed?)" if len(classes) == n_attributes else ""
            raise ValueError(
                f"the table has {n_classes} rows (classes) but {len(classes)} class names were given{hint}"
            )
        if len(attributes) != n_attributes:
            hint = " (is the table transposed?)" if len(attributes) == n_classes else ""
            raise ValueError(
                f"the table has {n_attributes} columns (attributes) but {len(attributes)} attribute names "
                f"were given{hint}"
            )
        if not np.isfinite(values).all():
            raise ValueError("the attribute table holds NaN or infinite values; fill or drop them first")
        for kind, names in (("class", classes), ("attribute", attributes)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique; repeated: {repeated}")
        labels = np.arange(n_classes) if self.labels is None else np.asarray(self.labels)
        if labels.shape != (n_classes,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {n_classes} integers, one per row, got {labels!r}")
        if len(np.unique(labels)) != n_classes:
            raise ValueError(f"labels must be unique, got {labels.tolist()}")
        values.setflags(write=False)
        labels = labels.astype(np.int64)
        labels.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "labels", labels)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_dataset(cls, dataset) -> "AttributeTable":
        """The whole table of a zero-shot :class:`~tlcourse.data.Dataset` (``data.load("shapes")``)."""
        if getattr(dataset, "attributes", None) is None:
            name = getattr(getattr(dataset, "card", None), "name", "this dataset")
            raise ValueError(
                f"{name} has no attribute table; zero-shot datasets are those whose card task is 'zero-shot' "
                "(`tlcourse datasets` lists them)"
            )
        return cls(dataset.attributes, dataset.classes, dataset.attribute_names)

    def subset(self, classes: Sequence) -> "AttributeTable":
        """The rows of some classes, given by name or by label, in the order given."""
        rows = [self._row(c) for c in classes]
        if not rows:
            raise ValueError("no classes given")
        return AttributeTable(self.values[rows], [self.classes[r] for r in rows], self.attributes, self.labels[rows])

    def _row(self, key) -> int:
        if isinstance(key, str):
            if key not in self.classes:
                raise KeyError(f"no class {key!r} in the table; its classes are {list(self.classes)}")
            return self.classes.index(key)
        found = np.flatnonzero(self.labels == int(key))
        if not len(found):
            raise KeyError(f"no class with label {key} in the table; its labels are {self.labels.tolist()}")
        return int(found[0])

    # -- views ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def is_binary(self) -> bool:
        return bool(np.isin(self.values, (0.0, 1.0)).all())

    def binary(self, threshold: float | None = None) -> "AttributeTable":
        """0/1 version: 1 where a value exceeds ``threshold`` (default: the table's mean value).

        A binary table is returned as it is. Thresholding continuous values at their mean is how
        Lampert et al. turned Animals with Attributes' continuous matrix into its binary one.
        """
        if self.is_binary:
            return self
        cut = float(self.values.mean()) if threshold is None else float(threshold)
        return AttributeTable((self.values > cut).astype(float), self.classes, self.attributes, self.labels)

    def index_of(self, labels) -> np.ndarray:
        """Row positions of dataset ``labels``; a label that is not in the table raises a clear error."""
        labels = np.asarray(labels)
        lookup = {int(label): row for row, label in enumerate(self.labels)}
        missing = sorted({int(v) for v in np.unique(labels)} - set(lookup))
        if missing:
            raise ValueError(
                f"labels {missing} are not classes of the attribute table (its labels are {self.labels.tolist()}); "
                "fit on the table of the classes the training images belong to, e.g. table.subset(ds.seen)"
            )
        return np.array([lookup[int(v)] for v in labels.ravel()], dtype=np.int64).reshape(labels.shape)

    def check_attributes(self, other: "AttributeTable") -> None:
        """Fail clearly unless ``other`` describes classes with the same attributes, in the same order."""
        if other.attributes != self.attributes:
            if len(other.attributes) != len(self.attributes):
                detail = f"{len(self.attributes)} attributes here, {len(other.attributes)} there"
            else:
                first = next(i for i, (a, b) in enumerate(zip(self.attributes, other.attributes)) if a != b)
                detail = f"column {first} is {self.attributes[first]!r} here but {other.attributes[first]!r} there"
            raise ValueError(
                f"the candidate classes' table does not have the attributes the model was trained with ({detail}); "
                "take both tables from the same AttributeTable with .subset()"
            )

    def __repr__(self) -> str:
        kind = "binary" if self.is_binary else "continuous"
        return f"AttributeTable({len(self.classes)} classes x {len(self.attributes)} {kind} attributes)"
