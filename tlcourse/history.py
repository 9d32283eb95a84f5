"""One training record for both frameworks: a row per epoch.

``tlcourse.torch.fit`` and ``tlcourse.keras.fit`` both return a :class:`History`, so plots and
comparison tables never need to know which framework trained the model. Plain Python: importing
this module imports neither torch nor TensorFlow.

>>> h = History()
>>> h.add(stage="top", loss=1.2, accuracy=0.55, lr=1e-3, seconds=4.0)["epoch"]
1
>>> h["loss"]
[1.2]
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# Every row has these, in this order; anything else a chapter records (a domain loss, a penalty)
# becomes an extra column after them.
COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")

_FORMAT = "tlcourse.history/1"


def _plain(value: Any) -> Any:
    """Numpy and framework scalars become Python numbers, so rows compare and serialise simply."""
    if value is None or type(value) in (bool, int, float, str):  # np.float64 subclasses float: not enough
        return value
    if hasattr(value, "item"):  # numpy scalar, 0-d array, torch or tf scalar tensor
        return value.item()
    if hasattr(value, "numpy"):
        return value.numpy().item()
    return value


@dataclass
class History:
    """Per-epoch rows of ``epoch, stage, loss, accuracy, val_loss, val_accuracy, lr, seconds`` + extras.

    Epochs count from 1 and keep counting across stages; ``stage`` labels which part of a staged
    schedule an epoch belongs to. ``meta`` holds free information about the run (framework, ...).
    """

    rows: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------
    def add(self, *, epoch: int | None = None, stage: str = "", **values: Any) -> dict:
        """Append one epoch's row and return it. ``epoch`` defaults to the next number."""
        row = {"epoch": self.last_epoch + 1 if epoch is None else int(epoch), "stage": str(stage)}
        for name in COLUMNS[2:]:
            row[name] = _plain(values.pop(name, None))
        row.update({name: _plain(value) for name, value in values.items()})
        self.rows.append(row)
        return row

    def extend(self, other: History) -> History:
        """Append ``other``'s rows, renumbering its epochs to continue after this history's last."""
        if not other.rows:
            return self
        shift = self.last_epoch - other.rows[0]["epoch"] + 1
        self.rows.extend({**row, "epoch": row["epoch"] + shift} for row in other.rows)
        self.meta = {**other.meta, **self.meta}
        return self

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, key: str | int):
        """``history["val_loss"]`` is a column as a list; ``history[-1]`` is a row."""
        return self.column(key) if isinstance(key, str) else self.rows[key]

    def column(self, name: str) -> list:
        """One column as a list, ``None`` where an epoch did not record it."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; this history has {', '.join(self.columns)}")
        return [row.get(name) for row in self.rows]

    @property
    def columns(self) -> list[str]:
        """The standard columns, then any extra ones in the order they first appeared."""
        names = list(COLUMNS)
        for row in self.rows:
            names.extend(name for name in row if name not in names)
        return names

    @property
    def last_epoch(self) -> int:
        return self.rows[-1]["epoch"] if self.rows else 0

    @property
    def stages(self) -> list[tuple[str, int, int]]:
        """Consecutive runs of one stage label as ``(stage, first_epoch, last_epoch)``."""
        runs: list[tuple[str, int, int]] = []
        for row in self.rows:
            if runs and runs[-1][0] == row["stage"]:
                runs[-1] = (row["stage"], runs[-1][1], row["epoch"])
            else:
                runs.append((row["stage"], row["epoch"], row["epoch"]))
        return runs

    def best(self, metric: str = "val_loss", lower_is_better: bool | None = None) -> dict:
        """The row with the best value of ``metric``; by default lower wins for losses, higher otherwise."""
        scored = [row for row in self.rows if _is_number(row.get(metric))]
        if not scored:
            raise ValueError(f"no epoch recorded a value for {metric!r}")
        if lower_is_better is None:
            lower_is_better = "loss" in metric
        return (min if lower_is_better else max)(scored, key=lambda row: row[metric])

    def to_rows(self) -> list[dict]:
        """Rows with every column present (``None`` where missing): ready for a table or DataFrame."""
        columns = self.columns
        return [{name: row.get(name) for name in columns} for row in self.rows]

    # -- saving -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "meta": dict(self.meta), "rows": [dict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, data: dict) -> History:
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a tlcourse history (format {data.get('format')!r}, expected {_FORMAT!r})")
        return cls(rows=[dict(row) for row in data["rows"]], meta=dict(data.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        """Write the history as JSON (a diverged run's NaN losses are kept as ``NaN``)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        if not self.rows:
            return "History(empty)"
        stages = " → ".join(name or "-" for name, _, _ in self.stages)
        last = self.rows[-1]
        shown = ", ".join(
            f"{name}={last[name]:.4g}" for name in ("loss", "val_loss", "val_accuracy") if _is_number(last.get(name))
        )
        return f"History({len(self.rows)} epochs, stages {stages}; last: {shown})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class Table:
    """A small results table, one dict per row: prints as text, shows as HTML in Jupyter.

    ``formats`` maps a column to a format string (``{"accuracy": "{:.1%}"}``); floats without
    one print with 4 significant digits. ``table.rows`` are the plain dicts, e.g. for
    ``plots.plot_results(table.rows, ...)``.
    """

    def __init__(self, rows, columns=None, formats: dict | None = None):
        self.rows = [dict(row) for row in rows]
        if columns is None:
            columns = []
            for row in self.rows:
                columns.extend(name for name in row if name not in columns)
        self.columns = list(columns)
        self.formats = dict(formats or {})

    def _cell(self, column: str, value: Any) -> str:
        if value is None:
            return "-"
        if column in self.formats:
            return self.formats[column].format(value)
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    def _lines(self) -> list[list[str]]:
        return [[self._cell(c, row.get(c)) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        lines = self._lines()
        widths = [max(len(c), *(len(line[i]) for line in lines)) if lines else len(c) for i, c in enumerate(self.columns)]

        def fmt(cells):
            first = f"{cells[0]:<{widths[0]}}"
            return "  ".join([first, *(f"{cell:>{w}}" for cell, w in zip(cells[1:], widths[1:]))])

        header = fmt(self.columns)
        return "\n".join([header, "-" * len(header), *map(fmt, lines)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:{'left' if i == 0 else 'right'}'>{html.escape(cell)}</td>"
                             for i, cell in enumerate(line)) + "</tr>"
            for line in self._lines()
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def column(self, name: str) -> list:
        return [row.get(name) for row in self.rows]


def results_table(histories: dict, **extra: dict) -> Table:
    """One row per named History, for comparing runs: its stages, epochs, training seconds, the
    last epoch's validation loss and accuracy, and the best validation accuracy of any epoch.

    ``extra`` adds columns, each a mapping from run name to value, e.g.
    ``results_table(runs, test_accuracy={"scratch": 0.41, ...})``.
    """
    rows = []
    for name, history in histories.items():
        if not history.rows:
            raise ValueError(f"run {name!r} has no epochs")
        last = history.rows[-1]
        accuracies = [a for a in history.column("val_accuracy") if _is_number(a)] if "val_accuracy" in history.columns else []
        row = {
            "run": name,
            "stages": " → ".join(stage or "-" for stage, _, _ in history.stages),
            "epochs": len(history.rows),
            "seconds": sum(s for s in history.column("seconds") if _is_number(s)),
            "val_loss": last.get("val_loss"),
            "val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": max(accuracies) if accuracies else None,
        }
        for column, values in extra.items():
            row[column] = values.get(name)
        rows.append(row)
    percent = "{:.1%}"
    formats = {"seconds": "{:.1f}", "val_loss": "{:.3f}", "val_accuracy": percent, "best_val_accuracy": percent}
    formats.update({column: percent for column in extra if "accuracy" in column})
    return Table(rows, formats=formats)
