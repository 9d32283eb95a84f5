"""Confusion matrices, per-layer probes, results tables and the head explorer of chapters 03 and 04."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tlcourse import features, plots, widgets  # noqa: E402
from tlcourse.history import History, Table, results_table  # noqa: E402


def _cell_texts(ax):
    return [t.get_text() for t in ax.texts]


def test_confusion_counts_each_true_predicted_pair():
    fig = plots.plot_confusion([0, 0, 1, 2], [0, 1, 1, 1], classes=["a", "b", "c"])
    image = fig.axes[0].images[0].get_array()
    assert image.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert fig.axes[0].get_title() == "accuracy 50%"
    plt.close(fig)


def test_confusion_of_a_collapsed_model_fills_one_column():
    fig = plots.plot_confusion(np.arange(4) % 2, np.zeros(4, int))
    image = np.asarray(fig.axes[0].images[0].get_array())
    assert image[:, 1].sum() == 0 and image[:, 0].sum() == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="argmax"):
        plots.plot_confusion([0, 1], np.zeros((2, 2)))


def test_layer_probe_rings_the_best_layer_and_draws_chance():
    fig = plots.plot_layer_probe({"stem": 0.4, "block1": 0.9, "top": 0.7}, chance=1 / 3, widths={"stem": 32})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["best: block1 (90%)", "chance (33%)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stem\n32", "block1", "top"]
    plt.close(fig)


def test_plot_results_draws_one_bar_per_row_and_panel_per_metric():
    rows = [{"method": "logistic", "accuracy": 0.8, "seconds": 0.02},
            {"method": "fine-tune", "accuracy": 0.7, "seconds": 9.0}]
    fig = plots.plot_results(rows, log_scale=("seconds",))
    assert len(fig.axes) == 2
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]
    assert [ax.get_xlabel() for ax in fig.axes] == ["accuracy", "seconds"]
    assert fig.axes[1].get_xscale() == "log"
    plt.close(fig)
    with pytest.raises(KeyError, match="seconds"):
        plots.plot_results([{"method": "x", "accuracy": 1.0}])


def test_table_prints_aligned_and_formats_columns():
    table = Table([{"kind": "svm", "accuracy": 0.8125, "n": 3}, {"kind": "dense", "accuracy": 1.0}],
                  formats={"accuracy": "{:.1%}"})
    text = str(table).splitlines()
    assert text[0].split() == ["kind", "accuracy", "n"]
    assert text[2].split() == ["svm", "81.2%", "3"] and text[3].split() == ["dense", "100.0%", "-"]
    assert "<td style='text-align:right'>81.2%</td>" in table._repr_html_()
    assert table.column("kind") == ["svm", "dense"]


def test_results_table_summarises_each_run():
    staged = History()
    staged.add(stage="top", val_loss=1.0, val_accuracy=0.5, seconds=2.0)
    staged.add(stage="all", val_loss=0.8, val_accuracy=0.75, seconds=3.0)
    staged.add(stage="all", val_loss=0.9, val_accuracy=0.7, seconds=3.0)
    table = results_table({"2 stages": staged}, test_accuracy={"2 stages": 0.6})
    row = table.rows[0]
    assert row["stages"] == "top → all" and row["epochs"] == 3 and row["seconds"] == 8.0
    assert row["val_accuracy"] == 0.7 and row["best_val_accuracy"] == 0.75 and row["test_accuracy"] == 0.6
    assert "60.0%" in str(table)
    with pytest.raises(ValueError, match="no epochs"):
        results_table({"empty": History()})


def _blobs(seed, informative):
    """Two classes; only the ``informative`` layer separates them."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], 30)
    by_layer = {}
    for layer in ("low", "high"):
        x = rng.normal(size=(60, 5))
        if layer == informative:
            x[:, 0] += 10 * labels
        by_layer[layer] = x.astype(np.float32)
    return by_layer, labels


def test_probe_layers_finds_the_informative_layer():
    scores = features.probe_layers(_blobs(0, "high"), _blobs(1, "high"))
    assert list(scores) == ["low", "high"]
    assert scores["high"] == 1.0 and scores["low"] < 0.8
    with pytest.raises(ValueError, match="no test features"):
        features.probe_layers(_blobs(0, "high"), ({"low": _blobs(1, "high")[0]["low"]}, np.repeat([0, 1], 30)))


def test_head_explorer_trains_the_chosen_head_on_the_chosen_layer():
    box = widgets.head_explorer(_blobs(0, "high"), _blobs(1, "high"), classes=["a", "b"], kinds=["logistic", "svm"])
    (layer, kind), picture = box.children[0].children, box.children[1]
    assert list(layer.options) == ["low", "high"] and layer.value == "high"
    first = picture.value
    assert first[:4] == b"\x89PNG"
    layer.value = "low"  # retrains on the other layer and redraws
    assert picture.value != first
    kind.value = "svm"
    with pytest.raises(ValueError, match="share no layer"):
        widgets.head_explorer(({"a": np.zeros((2, 2))}, [0, 1]), ({"b": np.zeros((2, 2))}, [0, 1]))
