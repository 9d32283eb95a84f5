"""Small ipywidgets controls for exploring in the notebooks. Each returns a widget to display;
the work they do lives in plain functions next to them, which the tests call directly.

ipywidgets is imported when a control is built; neither torch nor TensorFlow is imported here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from tlcourse.frameworks import half_for

__all__ = ["top5_browser", "frozen_blocks_summary", "freeze_slider", "head_explorer"]


def _png(fig) -> bytes:
    """The figure as PNG bytes, then released (a widget shows the picture, not the figure)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def top5_browser(names: Sequence[str], images, predictions: Mapping[str, Sequence]):
    """A dropdown of photos; picking one shows it beside its top-5 classes per framework.

    ``images``: uint8 ``(N, H, W, 3)``; ``predictions`` maps a label (``"PyTorch"``) to one
    ``decode_predictions`` list per image, computed beforehand, so browsing runs no model. The
    chart is an ``ipywidgets.Image``, so the control's output is the same wherever it runs.
    """
    import ipywidgets as widgets

    from tlcourse.plots import show_top5

    names = list(names)
    for label, decoded in predictions.items():
        if len(decoded) != len(names):
            raise ValueError(f"{label!r} has predictions for {len(decoded)} images, but there are {len(names)} photos")
    if len(images) != len(names):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    choice = widgets.Dropdown(options=names, value=names[0], description="photo")
    picture = widgets.Image(format="png")

    def render(change=None):
        index = names.index(choice.value)
        fig = show_top5(images[index], {label: decoded[index] for label, decoded in predictions.items()},
                        title=choice.value, show=False)
        picture.value = _png(fig)

    choice.observe(render, names="value")
    render()
    box = widgets.VBox([choice, picture])
    box.render = render  # for tests and for redrawing by hand
    return box


# -- how many parameters train when the first k blocks are frozen --------------------------------
def frozen_blocks_summary(model, frozen: int):
    """The ``summary`` table of ``model`` had its first ``frozen`` blocks been frozen and the rest
    unfrozen (BatchNorm kept frozen, the library's default), in PyTorch or Keras. The model's own
    trainable flags are put back afterwards, so this only looks."""
    framework = half_for(model)
    names = list(framework.blocks(model))
    if not 0 <= frozen <= len(names):
        raise ValueError(f"frozen must be between 0 and {len(names)} (the model's blocks: {', '.join(names)})")
    saved = framework.trainable_flags(model)
    try:
        framework.freeze(model)
        if frozen < len(names):
            framework.unfreeze(model, names[frozen:])
        return framework.summary(model)
    finally:
        framework.restore_trainable_flags(model, saved)


def freeze_slider(model):
    """A slider for how many blocks, counted from the input, stay frozen (it starts at the model's
    own state); it shows the resulting trainable and frozen parameters per block. Only looks: the
    model's flags do not change."""
    import ipywidgets as widgets

    framework = half_for(model)
    names = list(framework.blocks(model))
    current = next((i for i, row in enumerate(framework.summary(model)) if row.trainable), len(names))
    slider = widgets.IntSlider(value=current, min=0, max=len(names), description="frozen blocks",
                               style={"description_width": "initial"})
    text = widgets.HTML()

    def render(change=None):
        import html

        table = frozen_blocks_summary(model, slider.value)
        lines = [f"frozen: {', '.join(names[: slider.value]) or 'none'}", str(table),
                 f"{table.trainable:,} of {table.total:,} parameters train "
                 f"({100 * table.trainable / table.total:.1f}%)"]
        text.value = f"<pre>{html.escape(chr(10).join(lines))}</pre>"

    slider.observe(render, names="value")
    render()
    box = widgets.VBox([slider, text])
    box.render = render
    return box


# -- which layer, which head: probing bottleneck features -----------------------------------------
def head_explorer(train: tuple, test: tuple, classes: Sequence[str] | None = None, kinds: Sequence[str] | None = None):
    """Two dropdowns, the layer the features come from and the kind of head; each choice trains that
    head on that layer's features (seconds at most) and shows its test accuracy and confusion matrix.

    ``train`` / ``test``: ``({layer: features}, labels)`` pairs, as ``extract_features(model, split,
    [layers])`` returns the dicts. Nothing runs the backbone again: the features are already there.
    """
    import ipywidgets as widgets
    import numpy as np

    from tlcourse.features import HEAD_KINDS, train_head
    from tlcourse.plots import plot_confusion

    (train_by_layer, train_labels), (test_by_layer, test_labels) = train, test
    layers = [layer for layer in train_by_layer if layer in test_by_layer]
    if not layers:
        raise ValueError("train and test share no layer; pass the dicts extract_features returned for a list of layers")
    kinds = list(kinds or HEAD_KINDS)
    layer = widgets.Dropdown(options=layers, value=layers[-1], description="layer")
    kind = widgets.Dropdown(options=kinds, value=kinds[0], description="head")
    picture = widgets.Image(format="png")

    def render(change=None):
        head = train_head(kind.value, train_by_layer[layer.value], train_labels)
        predicted = head.predict(test_by_layer[layer.value])
        accuracy = float(np.mean(predicted == np.asarray(test_labels)))
        width = np.asarray(train_by_layer[layer.value]).shape[1]
        fig = plot_confusion(test_labels, predicted, classes, show=False,
                             title=f"{kind.value} head on {layer.value} ({width} features): {accuracy:.0%}")
        picture.value = _png(fig)

    layer.observe(render, names="value")
    kind.observe(render, names="value")
    render()
    box = widgets.VBox([widgets.HBox([layer, kind]), picture])
    box.render = render
    return box
