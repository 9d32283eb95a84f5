"""Chapter 05's helpers: L2SP.drift in both frameworks and the accuracy-vs-labels plot."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import tlcourse.torch as tt  # noqa: E402  (torch first: see tlcourse/_coexist.py)
from tlcourse import plots  # noqa: E402

from tests.test_conservative import keras_net, nudge_keras, nudge_torch, torch_net  # noqa: E402


def test_drift_is_zero_at_the_start_and_the_norm_of_the_move_after():
    model = torch_net()
    penalty = tt.L2SP(model, alpha=2.0, beta=0.0)
    assert penalty.drift(model) == 0.0
    nudge_torch(model)
    model.classifier.requires_grad_(False)  # the head never counts; frozen transferred weights do
    expected = np.sqrt(sum(((p.detach().numpy().astype(np.float64) - penalty.reference[n].numpy()) ** 2).sum()
                           for n, p in model.named_parameters() if not n.startswith("classifier")))
    assert penalty.drift(model) == pytest.approx(expected)
    with pytest.raises(TypeError, match="L2SP"):
        tt.L2(model).drift(model)


def test_drift_is_the_same_in_keras():
    tk = pytest.importorskip("tlcourse.keras")
    model = keras_net()
    penalty = tk.L2SP(model)
    assert penalty.drift(model) == 0.0
    nudge_keras(model)
    moved = [w for w in model.trainable_weights if "top_classifier" not in w.path]
    expected = np.sqrt(sum(np.sum((w.numpy().astype(np.float64) - penalty.reference[w.path].numpy()) ** 2)
                           for w in moved))
    assert penalty.drift(model) == pytest.approx(expected, rel=1e-6)


def test_accuracy_vs_labels_plot_averages_seeds():
    import matplotlib
    matplotlib.use("Agg")
    rows = [{"method": m, "per_class": n, "accuracy": acc}
            for m in ("frozen", "L2-SP") for n in (5, 20) for acc in (0.4, 0.6)]
    fig = plots.plot_accuracy_vs_labels(rows, chance=1 / 6)
    lines = [line for line in fig.axes[0].lines if line.get_label() in ("frozen", "L2-SP")]
    assert len(lines) == 2 and list(lines[0].get_ydata()) == [0.5, 0.5]
    with pytest.raises(ValueError):
        plots.plot_accuracy_vs_labels([])
