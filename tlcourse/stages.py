"""Which blocks train when: the framework-neutral half of freezing and staged unfreezing.

``tlcourse.torch`` and ``tlcourse.keras`` both turn a chapter's words ("unfreeze down to block6",
"the last two blocks", "everything") into the same tuple of block names with
:func:`resolve_blocks`, so a schedule of :class:`Stage` rows trains the same blocks in both
frameworks. :class:`ParameterTable` is the per-block trainable / frozen count that both
``summary()`` functions return. Importing this module imports neither torch nor TensorFlow.

Every catalogue backbone's blocks end in ``top`` (its last pretrained layers) and ``head`` (the
classifier alone): ``"head"`` is feature extraction, nothing pretrained trains.

>>> names = ("stem", "block1", "block2", "top", "head")
>>> resolve_blocks("head", names)
('head',)
>>> resolve_blocks("block2", names)
('block2', 'top', 'head')
>>> resolve_blocks(("block1", "head"), names)
('block1', 'head')
>>> resolve_blocks(3, names)
('block2', 'top', 'head')
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

from tlcourse.history import History

BlockSpec = Union[str, int, Sequence[str]]

# The block that holds a model's classifier (the new one after swap_head) and nothing pretrained.
HEAD_BLOCK = "head"


def resolve_blocks(blocks: BlockSpec, block_names: Sequence[str]) -> tuple[str, ...]:
    """The block names that ``blocks`` selects, in input-to-output order.

    - a single name, e.g. ``"block6"``: that block and every block above it, up to the head
      ("unfreeze down to block6"); ``"head"`` is the classifier alone;
    - ``"all"``: every block;
    - an int ``n``: the last ``n`` blocks (``1`` is the head alone, ``0`` none);
    - a list or tuple of names: exactly those blocks.
    """
    names = tuple(block_names)
    if isinstance(blocks, bool):
        raise TypeError("blocks must be a block name, 'all', an int or a list of names, not a bool")
    if isinstance(blocks, int):
        if not 0 <= blocks <= len(names):
            raise ValueError(f"blocks={blocks}: this model has {len(names)} blocks ({', '.join(names)})")
        return names[len(names) - blocks:]
    if isinstance(blocks, str):
        if blocks == "all":
            return names
        _check_known(blocks, names)
        return names[names.index(blocks):]
    chosen = list(blocks)
    if not all(isinstance(name, str) for name in chosen):
        raise TypeError(f"blocks must be a block name, 'all', an int or a list of names, got {blocks!r}")
    for name in chosen:
        _check_known(name, names)
    return tuple(name for name in names if name in chosen)


def _check_known(name: str, names: tuple[str, ...]) -> None:
    if name not in names:
        raise ValueError(f"unknown block {name!r}; this model's blocks are {', '.join(names)} (or 'all')")


def describe_blocks(blocks: BlockSpec) -> str:
    """A short label for a block choice, used as the stage name in a History."""
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        return f"last{blocks}"
    if isinstance(blocks, str):
        return blocks
    return "+".join(blocks)


def block_lr_factors(trainable: Sequence[str], block_names: Sequence[str],
                     lr_decay: float | Mapping[str, float] | None) -> dict[str, float]:
    """Per trainable block, the factor on the stage's learning rate (discriminative learning rates).

    The highest trainable block gets 1; each block below it gets ``lr_decay`` times the one above,
    counted over the model's blocks (so a skipped block still counts as one step down).
    ``lr_decay=None`` gives every block 1. A dict ``{block name: factor}`` sets the factors
    directly: 0 keeps a block still, and a trainable block the dict leaves out gets 1.
    """
    if lr_decay is None:
        return {name: 1.0 for name in trainable}
    if isinstance(lr_decay, Mapping):
        return _chosen_factors(trainable, block_names, lr_decay)
    if not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"lr_decay must be in (0, 1], e.g. 0.5 halves the rate per block down; got {lr_decay}")
    names = tuple(block_names)
    if not trainable:
        return {}
    highest = max(names.index(name) for name in trainable)
    return {name: lr_decay ** (highest - names.index(name)) for name in trainable}


def _chosen_factors(trainable: Sequence[str], block_names: Sequence[str],
                    factors: Mapping[str, float]) -> dict[str, float]:
    for name, factor in factors.items():
        _check_known(name, tuple(block_names))
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 0:
            raise ValueError(f"the factor for {name!r} must be a number >= 0 (0 keeps the block still), "
                             f"got {factor!r}")
    return {name: float(factors.get(name, 1.0)) for name in trainable}


@dataclass(frozen=True)
class Stage:
    """One stage of staged unfreezing: train ``blocks`` (see :func:`resolve_blocks`) for ``epochs``
    epochs at learning rate ``lr``; every other block stays frozen. ``name`` labels the History rows
    (default: the block choice, e.g. ``"block7"``)."""

    blocks: BlockSpec
    epochs: int
    lr: float
    name: str | None = None

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"Stage epochs must be a non-negative int, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"Stage lr must be positive, got {self.lr!r}")

    @property
    def label(self) -> str:
        return self.name if self.name is not None else describe_blocks(self.blocks)


@dataclass(frozen=True)
class BlockCount:
    block: str
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


class ParameterTable:
    """Trainable and frozen parameter counts per block; prints as a table, shows as HTML in Jupyter.

    Counts parameters (weights a gradient can reach), not BatchNorm's running statistics, so the
    PyTorch and Keras twins of a model give the same numbers. ``rows`` is a list of
    :class:`BlockCount`; ``table.trainable`` / ``table.frozen`` / ``table.total`` are the sums.
    """

    def __init__(self, rows: Sequence[BlockCount]):
        self.rows = list(rows)

    @property
    def trainable(self) -> int:
        return sum(row.trainable for row in self.rows)

    @property
    def frozen(self) -> int:
        return sum(row.frozen for row in self.rows)

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def as_tuples(self) -> list[tuple[str, int, int]]:
        """``(block, trainable, frozen)`` per block: handy for comparing two models."""
        return [(row.block, row.trainable, row.frozen) for row in self.rows]

    def trainable_blocks(self) -> list[str]:
        return [row.block for row in self.rows if row.trainable]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def _lines(self) -> list[tuple[str, str, str]]:
        lines = [(row.block, f"{row.trainable:,}", f"{row.frozen:,}") for row in self.rows]
        lines.append(("total", f"{self.trainable:,}", f"{self.frozen:,}"))
        return lines

    def __str__(self) -> str:
        header = ("block", "trainable", "frozen")
        lines = self._lines()
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]

        def fmt(line):
            return f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:>{widths[2]}}"

        rule = "-" * len(fmt(header))
        return "\n".join([fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(block)}</td><td style='text-align:right'>{trainable}</td>"
            f"<td style='text-align:right'>{frozen}</td></tr>"
            for block, trainable, frozen in self._lines()
        )
        return f"<table><tr><th>block</th><th>trainable</th><th>frozen</th></tr>{cells}</table>"


def check_head_arguments(num_classes, hidden, dropout) -> tuple[int, ...]:
    """Validate ``swap_head``'s arguments (both frameworks); returns ``hidden`` as a tuple."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not all(isinstance(width, int) and width > 0 for width in hidden):
        raise ValueError(f"hidden must be a tuple of positive layer widths, e.g. (256,), got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return hidden


def check_staged_arguments(stages, optimizer, fit_kwargs: dict) -> list[Stage]:
    """What both frameworks' ``fit_staged`` refuse, with the fix; returns the stages as a list."""
    if not isinstance(optimizer, str):
        raise TypeError("fit_staged builds a new optimizer for every stage: pass its name ('adam' or 'sgd')")
    for reserved in ("lr", "epochs", "stage"):
        if reserved in fit_kwargs:
            raise TypeError(f"fit_staged takes {reserved!r} from each Stage, not as a keyword argument")
    stages = list(stages)
    if not stages or not all(isinstance(stage, Stage) for stage in stages):
        raise ValueError("stages must be a non-empty list of tlcourse.stages.Stage(blocks, epochs, lr)")
    return stages


def run_stages(model, train, val, stages, *, framework: str, apply_stage: Callable, fit: Callable,
               layerwise_optimizer: Callable, train_batchnorm: bool, lr_decay: float | None, optimizer: str,
               history, fit_kwargs: dict):
    """``fit_staged`` in either framework, given that framework's ``apply_stage``, ``fit`` and
    ``layerwise_optimizer``: for each stage, freeze all, unfreeze its blocks and fit, the History
    continuing across stages (a new one for ``framework`` when no stage trains)."""
    stages = check_staged_arguments(stages, optimizer, fit_kwargs)
    for stage in stages:
        if stage.epochs == 0:
            continue
        apply_stage(model, stage, train_batchnorm)
        opt = optimizer
        if lr_decay is not None:
            # the options fit() would have given a named optimizer; fit ignores them for a ready-made one
            opt = layerwise_optimizer(model, stage.lr, lr_decay, optimizer, weight_decay=fit_kwargs.get("weight_decay", 0.0),
                                      momentum=fit_kwargs.get("momentum", 0.9), nesterov=fit_kwargs.get("nesterov", False))
        history = fit(model, train, val, stage.epochs, lr=stage.lr, optimizer=opt, stage=stage.label,
                      history=history, **fit_kwargs)
    return history if history is not None else History(meta={"framework": framework})
