"""The framework-neutral History record and plot_histories."""
import math
import subprocess
import sys

import pytest

from tlcourse.history import COLUMNS, History


def two_stage_history() -> History:
    history = History(meta={"framework": "torch"})
    for loss, val_loss in [(1.0, 1.1), (0.8, 0.9)]:
        history.add(stage="top", loss=loss, accuracy=0.5, val_loss=val_loss, val_accuracy=0.6, lr=1e-3, seconds=2.0)
    history.add(stage="block7", loss=0.5, accuracy=0.8, val_loss=0.7, val_accuracy=0.75, lr=1e-4, seconds=3.0,
                penalty=0.01)
    return history


def test_rows_columns_and_stages():
    history = two_stage_history()
    assert len(history) == 3 and history.last_epoch == 3
    assert history["epoch"] == [1, 2, 3]
    assert history["val_loss"] == [1.1, 0.9, 0.7]
    assert history["penalty"] == [None, None, 0.01]  # extra metrics are columns too
    assert history.columns == [*COLUMNS, "penalty"]
    assert history.stages == [("top", 1, 2), ("block7", 3, 3)]
    assert history[-1]["stage"] == "block7"
    assert history.best("val_loss")["epoch"] == 3 and history.best("accuracy")["epoch"] == 3
    with pytest.raises(KeyError, match="no column 'domain_loss'"):
        history.column("domain_loss")


def test_numpy_scalars_become_python_numbers():
    np = pytest.importorskip("numpy")
    row = History().add(loss=np.float32(0.5), accuracy=np.float64(0.25), correct=np.int64(3))
    assert type(row["loss"]) is float and type(row["accuracy"]) is float and type(row["correct"]) is int


def test_extend_numbers_epochs_continuously():
    first, second = History(), History()
    for _ in range(2):
        first.add(stage="top", loss=1.0)
    for _ in range(3):
        second.add(stage="all", loss=0.5)  # numbered 1..3 on its own
    joined = History().extend(first).extend(second)
    assert joined["epoch"] == [1, 2, 3, 4, 5]
    assert joined["stage"] == ["top", "top", "all", "all", "all"]
    assert first["epoch"] == [1, 2] and second["epoch"] == [1, 2, 3]  # inputs untouched
    # a history that already continues (fit(..., history=h)) keeps its numbering
    continued = History().extend(first).extend(History(rows=[{**row, "epoch": row["epoch"] + 2} for row in second.rows]))
    assert continued["epoch"] == [1, 2, 3, 4, 5]


def test_json_round_trip(tmp_path):
    history = two_stage_history()
    history.add(stage="block7", loss=math.nan, lr=1e-4)  # a diverged epoch
    loaded = History.load(history.save(tmp_path / "run.json"))
    assert loaded.meta == {"framework": "torch"}
    assert loaded.rows[:-1] == history.rows[:-1]
    assert math.isnan(loaded[-1]["loss"]) and loaded[-1]["val_loss"] is None
    with pytest.raises(ValueError, match="not a tlcourse history"):
        History.from_dict({"rows": []})


def test_to_rows_fills_every_column():
    rows = two_stage_history().to_rows()
    assert [list(row) for row in rows] == [[*COLUMNS, "penalty"]] * 3
    assert rows[0]["penalty"] is None and rows[2]["penalty"] == 0.01


def test_importing_history_and_plots_loads_no_framework():
    code = ("import sys, tlcourse.history, tlcourse.plots; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plot_histories_draws_a_line_per_history_and_stage_boundaries():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcourse.plots import STAGE_BOUNDARY, plot_histories

    keras_run = two_stage_history()
    keras_run.rows = [{**row, "val_loss": row["val_loss"] + 0.1} for row in keras_run.rows]
    fig = plot_histories({"torch": two_stage_history(), "keras": keras_run}, metrics=("val_loss", "val_accuracy"))
    try:
        assert len(fig.axes) == 2
        for ax in fig.axes:
            curves = [line for line in ax.get_lines() if line.get_gid() != STAGE_BOUNDARY]
            boundaries = [line for line in ax.get_lines() if line.get_gid() == STAGE_BOUNDARY]
            assert [line.get_label() for line in curves] == ["torch", "keras"]
            assert [line.get_xdata()[0] for line in boundaries] == [2.5]
            assert list(curves[0].get_xdata()) == [1, 2, 3]
        assert list(fig.axes[0].get_lines()[1].get_ydata()) == pytest.approx([1.2, 1.0, 0.8])
        assert fig.axes[0].get_ylabel() == "validation loss"
        assert {text.get_text() for text in fig.axes[0].texts} == {"top", "block7"}
    finally:
        plt.close(fig)


def test_plot_histories_skips_metrics_a_run_did_not_record():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcourse.plots import plot_histories

    no_validation = History()
    no_validation.add(loss=1.0)
    fig = plot_histories(no_validation, metrics=("loss", "val_loss"))
    try:
        assert len(fig.axes[0].get_lines()) == 1 and len(fig.axes[1].get_lines()) == 0
    finally:
        plt.close(fig)
