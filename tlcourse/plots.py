"""Course plots: training histories and image grids. matplotlib is imported only when a plot is drawn."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tlcourse.history import History

_LABELS = {
    "loss": "training loss",
    "accuracy": "training accuracy",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "lr": "learning rate",
    "seconds": "seconds per epoch",
}

STAGE_BOUNDARY = "stage-boundary"  # gid of the vertical lines between stages


def plot_histories(
    histories: Mapping[str, History] | History,
    metrics: Sequence[str] = ("val_loss", "val_accuracy"),
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Plot one panel per metric, one line per history, with dotted lines where stages change.

    ``histories`` maps a label (``"torch"``, ``"keras"``, ``"3-stage"``, ...) to a History; a single
    History is drawn unlabelled. In Jupyter the figure is shown at once; assign the returned Figure
    (``fig = plot_histories(...)``) so that it is not shown a second time.
    """
    import matplotlib.pyplot as plt

    if isinstance(histories, History):
        histories = {"": histories}
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not histories:
        raise ValueError("nothing to plot: pass at least one History")

    fig, axes = plt.subplots(
        1, len(metrics), figsize=figsize or (4.5 * len(metrics), 3.5), squeeze=False, constrained_layout=True
    )
    axes = axes[0]
    boundaries = _stage_boundaries(histories.values())
    for ax, metric in zip(axes, metrics):
        for label, history in histories.items():
            values = history.column(metric) if metric in history.columns else []
            if all(value is None for value in values):
                continue  # this run never recorded the metric (no validation set, say)
            ax.plot(
                history.column("epoch"),
                [math.nan if value is None else value for value in values],
                marker="o" if len(values) <= 30 else None,
                markersize=3,
                label=label or None,
            )
        for x in boundaries:
            ax.axvline(x, color="0.6", linestyle=":", linewidth=1, gid=STAGE_BOUNDARY)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_LABELS.get(metric, metric.replace("_", " ")))
        if metric == "lr":
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if any(label for label in histories):
            ax.legend(fontsize="small")
    _label_stages(axes[0], next(iter(histories.values())))
    if title:
        fig.suptitle(title)
    _show_now(fig)
    return fig


def _stage_boundaries(histories) -> list[float]:
    """x positions halfway between the last epoch of one stage and the first of the next."""
    return sorted({first - 0.5 for history in histories for _, first, _ in history.stages[1:]})


def _label_stages(ax, history: History) -> None:
    if len(history.stages) < 2:
        return
    for name, first, last in history.stages:
        ax.text(
            (first + last) / 2, 1.0, name, transform=ax.get_xaxis_transform(),
            ha="center", va="bottom", fontsize="x-small", color="0.4",
        )


def show_images(images, labels=None, classes=None, *, n: int = 16, columns: int = 8, title: str | None = None, size: float = 1.2):
    """Show the first ``n`` images of a uint8 NHWC batch (or a Split) in a grid, captioned by class.

    Grey images (one channel) are drawn in grey. In Jupyter the grid is shown at once; assign the
    returned Figure (``grid = show_images(...)``) so that it is not shown a second time.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if hasattr(images, "images") and hasattr(images, "labels"):
        images, labels = images.images, images.labels if labels is None else labels
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {images.shape}; add a channel axis with images[..., None]")
    n = min(n, len(images))
    rows = max(1, math.ceil(n / columns))
    cols = min(columns, n)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + (0.3 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  vmin=0, vmax=255, interpolation="nearest")
        if labels is not None:
            label = int(labels[i])
            ax.set_title(classes[label] if classes is not None else str(label), fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _show_now(fig)
    return fig


def _show_now(fig) -> None:
    """Under Jupyter's inline backend, display the figure now and release it, so that figures drawn
    in one cell appear in the order they were made and none is left over for the next cell."""
    import matplotlib
    import matplotlib.pyplot as plt

    if "inline" in matplotlib.get_backend():
        from IPython.display import display

        display(fig)
        plt.close(fig)
