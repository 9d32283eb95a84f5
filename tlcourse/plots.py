"""Course plots: training histories, image grids and 2-D maps of features.

matplotlib and scikit-learn are imported only when a plot is drawn."""
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


EMBEDDING_METHODS = ("pca", "tsne")


def embed_2d(features, method: str = "pca", *, seed: int = 0):
    """Map feature vectors (N, D) to 2-D points (N, 2) with scikit-learn, for plotting.

    ``"pca"`` keeps the two directions of largest variance: distances along them are real, and
    the same projection could be applied to new points. ``"tsne"`` (van der Maaten & Hinton 2008)
    keeps neighbourhoods instead: clusters are trustworthy, distances between clusters and their
    sizes are not. Features are first reduced to at most 50 dimensions by PCA, the usual way to
    make t-SNE fast and less noisy. ``seed`` makes both repeat exactly.
    """
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in EMBEDDING_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {EMBEDDING_METHODS}")
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be one vector per row, shape (N, D); got {features.shape}; "
                         "flatten image-shaped features with features.reshape(len(features), -1)")
    if len(features) < 3 or features.shape[1] < 2:
        raise ValueError(f"need at least 3 vectors of at least 2 dimensions, got {features.shape}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)  # scikit-learn needs perplexity < N
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def plot_embedding(
    features,
    labels=None,
    classes: Sequence[str] | None = None,
    *,
    domains=None,
    domain_names: Sequence[str] | None = None,
    method: str = "pca",
    seed: int = 0,
    ax=None,
    title: str | None = None,
):
    """Scatter the features in 2-D (see :func:`embed_2d`), coloured by class, by domain, or both.

    labels / classes: integer class per row and the class names; one panel coloured by class.
    domains / domain_names: integer domain per row (e.g. 0 = source, 1 = target) and their names;
        one panel coloured by domain, next to the class panel when both are given. Both panels show
        the same points, so a learner can see whether classes separate and whether domains mix.
    ax: an Axes (or one per panel) to draw into; by default a new Figure.

    Returns the Figure. In Jupyter it is shown at once; assign it (``fig = plot_embedding(...)``)
    so that it is not shown a second time.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    points = embed_2d(features, method, seed=seed)
    panels = []
    if labels is not None:
        panels.append(("class", _check_groups(labels, len(points), "labels"), classes))
    if domains is not None:
        panels.append(("domain", _check_groups(domains, len(points), "domains"), domain_names))
    if not panels:
        panels.append(("", np.zeros(len(points), dtype=int), None))

    if ax is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False,
                                 constrained_layout=True)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(panels):
            raise ValueError(f"this plot has {len(panels)} panel(s) but {len(axes)} Axes were given")
        fig = axes[0].figure
    colours = plt.get_cmap("tab10" if max(len(np.unique(g)) for _, g, _ in panels) <= 10 else "tab20")
    axis_name = {"pca": "principal component", "tsne": "t-SNE dimension"}[method]
    for axis, (kind, groups, names) in zip(axes, panels):
        for number, group in enumerate(np.unique(groups)):
            chosen = groups == group
            name = names[group] if names is not None else (str(group) if kind else None)
            axis.scatter(points[chosen, 0], points[chosen, 1], s=9, alpha=0.7, color=colours(number % colours.N),
                         label=name, linewidths=0)
        axis.set_xlabel(f"{axis_name} 1")
        axis.set_ylabel(f"{axis_name} 2")
        axis.set_xticks([])
        axis.set_yticks([])
        if kind:
            axis.set_title(f"coloured by {kind}", fontsize="medium")
            axis.legend(fontsize="x-small", markerscale=1.5, loc="best", ncols=1 + (len(np.unique(groups)) > 8))
    if title:
        fig.suptitle(title)
    _show_now(fig)
    return fig


def _check_groups(values, count: int, name: str):
    import numpy as np

    values = np.asarray(values)
    if values.shape != (count,):
        raise ValueError(f"{name} must hold one integer per feature row ({count}), got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be integers (indices into the names), got {values.dtype}")
    return values


def _show_now(fig) -> None:
    """Under Jupyter's inline backend, display the figure now and release it, so that figures drawn
    in one cell appear in the order they were made and none is left over for the next cell."""
    import matplotlib
    import matplotlib.pyplot as plt

    if "inline" in matplotlib.get_backend():
        from IPython.display import display

        display(fig)
        plt.close(fig)


def plot_zoo(table, x: str = "gflops", y: str = "acc@1", *, title: str | None = None, figsize=(6.5, 4.0)):
    """Accuracy against cost for the backbones of a ``tlcourse.zoo.ZooTable`` (``tlcourse.torch.zoo_table()``): one bubble per model,
    its area proportional to the parameter count, x on a log scale. ``x`` is ``"gflops"``,
    ``"latency_ms"`` (after ``tlcourse.torch.zoo_table(latency=True)``) or ``"params_m"``; rows missing ``x`` or
    ``y`` are left out. Assign the returned Figure (``fig = plot_zoo(...)``)."""
    import matplotlib.pyplot as plt

    from tlcourse.zoo import ZOO_COLUMNS

    rows = [row for row in table.rows if row.get(x) is not None and row.get(y) is not None]
    if not rows:
        raise ValueError(f"no backbone in the table has both {x!r} and {y!r}; columns: {', '.join(table.columns)}")
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    largest = max(row.get("params_m") or 1.0 for row in rows)
    for row in rows:
        area = 60 + 1400 * (row.get("params_m") or 1.0) / largest
        colour = "tab:orange" if row.get("profile") == "quick" else "tab:blue"
        ax.scatter(row[x], row[y], s=area, alpha=0.5, color=colour, edgecolor="k", linewidth=0.5)
        ax.annotate(row["name"], (row[x], row[y]), textcoords="offset points", xytext=(6, 6), fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel(ZOO_COLUMNS.get(x, x) + " (log scale)")
    ax.set_ylabel("ImageNet " + ZOO_COLUMNS.get(y, y))
    ax.margins(x=0.25, y=0.15)
    ax.set_title(title or "bubble area ~ parameters; orange: the quick profile's backbone", fontsize="small")
    _show_now(fig)
    return fig


def show_top5(image, predictions, *, title: str | None = None, figsize=(8.0, 2.6), show: bool = True):
    """One photo beside a bar chart of its top-5 classes per framework.

    ``predictions`` maps a label (``"PyTorch"``, ``"Keras"``) to ``[(index, name, probability), ...]``
    as ``tlcourse.lite0.decode_predictions`` returns for one image. Assign the returned Figure;
    ``show=False`` only draws it (for a widget that shows it as a picture)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 1 + len(predictions), figsize=figsize, constrained_layout=True,
                             gridspec_kw={"width_ratios": [1] + [1.4] * len(predictions)})
    image = np.asarray(image)
    axes[0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    axes[0].axis("off")
    if title:
        axes[0].set_title(title, fontsize="small")
    for ax, (label, top) in zip(axes[1:], predictions.items()):
        names = [name for _, name, _ in top][::-1]
        ax.barh(names, [p for _, _, p in top][::-1], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
        ax.set_title(label, fontsize="small")
        ax.tick_params(axis="y", labelsize="small")
    if show:
        _show_now(fig)
    return fig


# -- confusion matrices, probes per layer and results side by side --------------------------------
def plot_confusion(labels, predictions, classes: Sequence[str] | None = None, *, ax=None, title: str | None = None,
                   show: bool = True):
    """The confusion matrix of integer ``labels`` (rows: the true class) against ``predictions``
    (columns: the predicted class), each cell the number of images, the diagonal the correct ones.

    A model that has collapsed to one class shows a single filled column. Assign the returned
    Figure (``fig = plot_confusion(...)``) so that Jupyter does not show it twice; ``show=False``
    leaves it undisplayed (for a widget to render).
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels and predictions must be two equally long 1-D arrays, got {labels.shape} "
                         f"and {predictions.shape}; pass class indices, e.g. probabilities.argmax(1)")
    count = len(classes) if classes is not None else int(max(labels.max(), predictions.max())) + 1
    matrix = confusion_matrix(labels, predictions, labels=list(range(count)))
    names = list(classes) if classes is not None else [str(i) for i in range(count)]
    if ax is None:
        side = 1.2 + 0.45 * count
        fig, ax = plt.subplots(figsize=(side + 0.8, side), constrained_layout=True)
    fig = ax.figure
    ax.imshow(matrix, cmap="Blues", vmin=0)
    for (row, column), value in np.ndenumerate(matrix):
        ax.text(column, row, str(value), ha="center", va="center", fontsize="small",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(count), names, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(count), names, fontsize="small")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = float(np.trace(matrix)) / max(1, matrix.sum())
    ax.set_title(title or f"accuracy {accuracy:.0%}", fontsize="medium")
    if show:
        _show_now(fig)
    return fig


def plot_layer_probe(scores: Mapping[str, float], *, chance: float | None = None, widths: Mapping[str, int] | None = None,
                     title: str | None = None, ax=None):
    """Probe accuracy per layer, input to output: ``scores`` maps a block name to the test accuracy
    of a head trained on that block's features (``tlcourse.features.probe_layers``).

    ``chance``: draws the accuracy of guessing as a dashed line. ``widths``: the feature width per
    block, written under its name. The best layer is ringed. Assign the returned Figure.
    """
    import matplotlib.pyplot as plt

    if not scores:
        raise ValueError("no scores to plot: pass {block name: accuracy}")
    names = list(scores)
    values = [float(scores[name]) for name in names]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.62 * len(names) + 1.5), 3.4), constrained_layout=True)
    fig = ax.figure
    positions = list(range(len(names)))
    ax.plot(positions, values, marker="o", color="tab:blue")
    best = max(positions, key=lambda i: values[i])
    ax.plot([best], [values[best]], marker="o", markersize=13, markerfacecolor="none", color="tab:red",
            label=f"best: {names[best]} ({values[best]:.0%})")
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle="--", linewidth=1, label=f"chance ({chance:.0%})")
    ticks = [f"{name}\n{widths[name]}" if widths and name in widths else name for name in names]
    ax.set_xticks(positions, ticks, fontsize="small")
    ax.set_xlabel("layer the features come from (input → output)" + (", and its width" if widths else ""))
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small", loc="lower right")
    if title:
        ax.set_title(title)
    _show_now(fig)
    return fig


def plot_results(rows: Sequence[Mapping], metrics: Sequence[str] = ("accuracy", "seconds"), *, label: str = "method",
                 title: str | None = None, log_scale: Sequence[str] = ()):
    """Horizontal bars, one panel per metric, one bar per row: e.g. heads and end-to-end training
    compared on accuracy and on time. ``rows`` are dicts holding ``label`` and every metric (the rows
    of ``tlcourse.history.Table`` or of ``features.compare_heads``); metrics named in ``log_scale``
    get a logarithmic axis (for times that differ a hundredfold). Assign the returned Figure.
    """
    import matplotlib.pyplot as plt

    rows = list(rows)
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not rows:
        raise ValueError("no rows to plot")
    for metric in (label, *metrics):
        missing = [i for i, row in enumerate(rows) if metric not in row]
        if missing:
            raise KeyError(f"rows {missing} have no {metric!r}; their keys are {sorted(rows[missing[0]])}")
    names = [str(row[label]) for row in rows][::-1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.2, 0.42 * len(rows) + 1.2),
                             squeeze=False, constrained_layout=True, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        values = [float(row[metric]) for row in rows][::-1]
        bars = ax.barh(names, values, color="tab:blue")
        is_fraction = "accuracy" in metric
        ax.bar_label(bars, labels=[f"{v:.0%}" if is_fraction else f"{v:.3g}" for v in values], padding=2,
                     fontsize="x-small")
        if metric in log_scale:
            ax.set_xscale("log")
        elif is_fraction:
            ax.set_xlim(0, 1.12)
        ax.set_xlabel(metric.replace("_", " "))
    if title:
        fig.suptitle(title)
    _show_now(fig)
    return fig


# -- zero-shot: attribute tables, predicted attributes, the seen/unseen trade-off (chapter 07) ------
def plot_attribute_table(table, unseen=(), *, max_classes: int = 40, max_attributes: int = 40, ax=None,
                         title: str | None = None):
    """Heat map of a ``tlcourse.zeroshot.AttributeTable``: one row per class, one column per attribute.

    Rows of the ``unseen`` labels go below a line, their names in red, so a learner sees that they are
    described exactly like the seen ones. A bigger table (CUB: 200 x 312) is cut to the first
    ``max_classes`` rows (half seen, half unseen) and the ``max_attributes`` attributes that vary most
    between classes; the title says so. Assign the returned Figure (``fig = plot_attribute_table(...)``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    unseen = [int(k) for k in unseen]
    is_unseen = np.isin(table.labels, unseen)
    seen_rows, unseen_rows = np.flatnonzero(~is_unseen), np.flatnonzero(is_unseen)
    if len(table) > max_classes:
        half = max_classes // 2 if len(unseen_rows) else max_classes
        seen_rows, unseen_rows = seen_rows[: max_classes - min(half, len(unseen_rows))], unseen_rows[:half]
    rows = np.concatenate([seen_rows, unseen_rows]).astype(int)
    columns = np.arange(len(table.attributes))
    if len(columns) > max_attributes:
        columns = np.sort(np.argsort(-table.values.var(axis=0), kind="stable")[:max_attributes])
    values = table.values[np.ix_(rows, columns)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.6 + 0.32 * len(columns), 0.9 + 0.26 * len(rows)), constrained_layout=True)
    fig = ax.figure
    high = max(1.0, float(values.max()))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=high, aspect="auto", interpolation="nearest")
    if not table.is_binary:
        fig.colorbar(image, ax=ax, shrink=0.6, label="share of images with the attribute")
    ax.set_xticks(range(len(columns)), [table.attributes[m] for m in columns], rotation=90, fontsize="small")
    ax.set_yticks(range(len(rows)), [table.classes[r] for r in rows], fontsize="small")
    for tick, row in zip(ax.get_yticklabels(), rows):
        if is_unseen[row]:
            tick.set_color("tab:red")
    if len(seen_rows) and len(unseen_rows):
        ax.axhline(len(seen_rows) - 0.5, color="tab:red", linewidth=2)
    shown = "" if len(rows) == len(table) and len(columns) == len(table.attributes) else (
        f" ({len(rows)} of {len(table)} classes, {len(columns)} of {len(table.attributes)} attributes)")
    ax.set_title(title or f"attribute table: seen classes above the red line, unseen below{shown}", fontsize="medium")
    _show_now(fig)
    return fig


def plot_attribute_prediction(table, label: int, probabilities, *, images=None, max_attributes: int = 24,
                              title: str | None = None):
    """One class's attribute signature beside what a model (DAP) reads off that class's images.

    ``table``: an ``AttributeTable`` holding the class; ``label``: its dataset label;
    ``probabilities``: (N, A) predicted attribute probabilities for N images of the class
    (``DAP.attribute_proba``). Grey bars are the table's values, blue dots the median prediction
    with its spread (10th to 90th percentile). ``images``: a few of the class's images, drawn on the
    left. With more than ``max_attributes`` attributes, those the class has most are shown.
    Assign the returned Figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    row = table.index_of([label])[0]
    signature = table.values[row]
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(signature):
        raise ValueError(f"probabilities must be (images, {len(signature)} attributes), got {probabilities.shape}; "
                         "pass model.attribute_proba(features_of_this_class)")
    columns = np.arange(len(signature))
    if len(columns) > max_attributes:
        columns = np.sort(np.argsort(-signature, kind="stable")[:max_attributes])
    images = [] if images is None else list(images)[:4]
    fig = plt.figure(figsize=(2.0 + 0.42 * len(columns) + (1.2 if images else 0), 3.4), constrained_layout=True)
    ratios = [1, 0.9 + 0.42 * len(columns)] if images else [0.001, 1]
    grid = fig.add_gridspec(max(1, len(images)), 2, width_ratios=ratios)
    for i, image in enumerate(images):
        picture = fig.add_subplot(grid[i, 0])
        picture.imshow(image, interpolation="nearest")
        picture.axis("off")
    ax = fig.add_subplot(grid[:, 1])
    x = np.arange(len(columns))
    ax.bar(x, signature[columns], color="0.8", edgecolor="0.4", label="attribute table")
    low, middle, high = np.percentile(probabilities[:, columns], [10, 50, 90], axis=0)
    ax.errorbar(x, middle, yerr=[middle - low, high - middle], fmt="o", color="tab:blue", capsize=3,
                label=f"predicted: median of {len(probabilities)} images, 10th-90th percentile")
    ax.set_xticks(x, [table.attributes[m] for m in columns], rotation=90, fontsize="small")
    ax.set_ylim(0, 1.32)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_ylabel("has the attribute")
    ax.legend(fontsize="x-small", loc="upper center", ncols=2)
    ax.set_title(title or table.classes[row], fontsize="medium")
    _show_now(fig)
    return fig


def plot_seen_unseen(curves: Mapping[str, Mapping], points: Mapping | None = None, *, ax=None,
                     title: str | None = None):
    """Generalised zero-shot trade-off: seen-class accuracy against unseen-class accuracy, one line
    per model, as calibrated stacking's calibration grows (``zeroshot.seen_unseen_curve``; the
    legend gives each curve's area, AUSUC). ``points`` maps a label to a ``GZSLResult`` (or a
    ``(seen, unseen)`` pair) drawn as a marker: e.g. no calibration and the validated one.
    Assign the returned Figure.
    """
    import matplotlib.pyplot as plt

    if not curves and not points:
        raise ValueError("nothing to plot: pass {model name: seen_unseen_curve(...)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 4.2), constrained_layout=True)
    fig = ax.figure
    for name, curve in curves.items():
        ax.plot(curve["unseen"], curve["seen"], marker=".", markersize=4, label=f"{name} (AUSUC {curve['ausuc']:.2f})")
    for (label, result), marker in zip((points or {}).items(), "os^Dv*PX"):
        seen, unseen = (result.seen, result.unseen) if hasattr(result, "seen") else result
        ax.plot([unseen], [seen], marker=marker, markersize=10, linestyle="none", markerfacecolor="none",
                markeredgewidth=2, label=label)
    ax.set_xlabel("accuracy on unseen classes' images")
    ax.set_ylabel("accuracy on seen classes' images")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.legend(fontsize="x-small", loc="lower left")
    ax.set_title(title or "seen vs unseen accuracy as the calibration grows", fontsize="medium")
    _show_now(fig)
    return fig


# -- few labels: accuracy against the number of labels per class (chapter 05) ----------------------
def plot_accuracy_vs_labels(rows: Sequence[Mapping], *, method: str = "method", labels: str = "per_class",
                            metric: str = "accuracy", chance: float | None = None, title: str | None = None,
                            ax=None):
    """One line per method: mean ``metric`` against labels per class (log axis), a band from min to max.

    ``rows`` are dicts with ``method``, ``labels`` and ``metric`` keys, one per run (several seeds of a
    setting are averaged). Assign the returned Figure (``fig = plot_accuracy_vs_labels(...)``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    rows = list(rows)
    if not rows:
        raise ValueError("no rows to plot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.8), constrained_layout=True)
    else:
        fig = ax.figure
    for name in dict.fromkeys(row[method] for row in rows):
        counts = sorted({row[labels] for row in rows if row[method] == name})
        values = [[float(row[metric]) for row in rows if row[method] == name and row[labels] == n] for n in counts]
        ax.plot(counts, [np.mean(v) for v in values], marker="o", label=str(name))
        ax.fill_between(counts, [min(v) for v in values], [max(v) for v in values], alpha=0.12)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    counts = sorted({row[labels] for row in rows})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("training labels per class")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    _show_now(fig)
    return fig
