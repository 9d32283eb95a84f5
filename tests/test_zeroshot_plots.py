"""Chapter 07's plots: the attribute table heat map, one class's predicted attributes, the seen/unseen curve."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tlcourse import plots  # noqa: E402
from tlcourse import zeroshot as zs  # noqa: E402

TABLE = zs.AttributeTable([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], ("a", "b", "c", "d"), ("x", "y", "z"))


def test_attribute_table_puts_unseen_rows_below_a_line_in_red():
    fig = plots.plot_attribute_table(TABLE, unseen=[1])
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["a", "c", "d", "b"]
    assert np.asarray(ax.images[0].get_array()).tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 1]]
    red = [t.get_text() for t in ax.get_yticklabels() if t.get_color() == "tab:red"]
    assert red == ["b"]
    assert [line.get_ydata()[0] for line in ax.lines] == [2.5]
    plt.close(fig)


def test_a_big_continuous_table_is_cut_to_the_most_varying_attributes():
    rng = np.random.default_rng(0)
    values = rng.random((60, 50)) * 0.1
    values[:, 7] = np.linspace(0, 1, 60)  # the attribute that varies most
    table = zs.AttributeTable(values, [f"c{k}" for k in range(60)], [f"a{m}" for m in range(50)])
    fig = plots.plot_attribute_table(table, unseen=range(50, 60), max_classes=10, max_attributes=5)
    ax = fig.axes[0]
    assert np.asarray(ax.images[0].get_array()).shape == (10, 5)
    assert "a7" in [t.get_text() for t in ax.get_xticklabels()]
    assert [t.get_text() for t in ax.get_yticklabels()][-5:] == [f"c{k}" for k in range(50, 55)]
    assert "10 of 60 classes, 5 of 50 attributes" in ax.get_title()
    assert len(fig.axes) == 2  # a colour bar for continuous values
    plt.close(fig)


def test_attribute_prediction_draws_the_signature_and_the_median_prediction():
    probabilities = np.array([[0.9, 0.1, 0.2], [0.7, 0.3, 0.4], [0.8, 0.2, 0.9]])
    fig = plots.plot_attribute_prediction(TABLE, 2, probabilities, images=np.zeros((5, 8, 8, 3), np.uint8))
    ax = fig.axes[-1]
    assert len(fig.axes) == 5  # four images at most, and the bars
    assert [bar.get_height() for bar in ax.patches] == [1, 1, 0]
    assert ax.get_title() == "c"
    dots = ax.lines[0].get_ydata()
    assert np.allclose(dots, [0.8, 0.2, 0.4])
    plt.close(fig)
    with pytest.raises(ValueError, match="attribute_proba"):
        plots.plot_attribute_prediction(TABLE, 2, np.zeros((3, 2)))


def test_seen_unseen_plot_names_each_curve_with_its_area_and_marks_points():
    curve = {"seen": np.array([0.9, 0.6, 0.0]), "unseen": np.array([0.1, 0.7, 0.95]), "ausuc": 0.61}
    result = zs.GZSLResult(0.6, 0.7, zs.harmonic_mean(0.6, 0.7))
    fig = plots.plot_seen_unseen({"ESZSL": curve}, {"calibrated": result, "by hand": (0.9, 0.1)})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ESZSL (AUSUC 0.61)", "calibrated", "by hand"]
    assert ax.lines[1].get_xdata()[0] == 0.7 and ax.lines[1].get_ydata()[0] == 0.6
    assert ax.lines[2].get_xdata()[0] == 0.1
    plt.close(fig)
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_seen_unseen({})
