"""The zoo as a table (tlcourse.torch.zoo_table and its measurements), the sample photos, and the
plots drawn from them. Models are built with random weights; only small ones are timed."""
import numpy as np
import pytest

import tlcourse.torch as tt
from tlcourse import zoo


@pytest.fixture(scope="module")
def table():
    return tt.zoo_table()


def test_table_has_a_row_per_backbone_with_the_libraries_metadata(table):
    assert [row["name"] for row in table] == list(zoo.NAMES)
    vgg = table.row("vgg16")
    meta = tt.imagenet_metadata("vgg16")
    assert vgg["acc@1"] == meta["acc@1"] and vgg["acc@5"] == meta["acc@5"]
    assert vgg["params_m"] == pytest.approx(138.357544)
    assert vgg["weight_layers"] == 16  # 13 convolutions + 3 fully connected: the 16 in its name
    assert table.row("efficientnet_lite0")["acc@5"] is None
    assert "latency_ms" not in table.columns
    with pytest.raises(KeyError, match="Known backbones"):
        table.row("alexnet")


def test_lite0_gets_its_gflops_counted_with_torchvisions_convention(table):
    # the count reproduces torchvision's published number for a model it has
    resnet = tt.backbone("resnet50", weights=None)
    assert tt.count_gflops(resnet) == pytest.approx(tt.imagenet_metadata("resnet50")["gflops"], rel=1e-3)
    lite0 = table.row("efficientnet_lite0")["gflops"]
    assert 0.3 < lite0 < table.row("resnet50")["gflops"] / 5


def test_text_and_html_show_every_column_and_dashes_for_missing(table):
    text = str(table)
    assert text.splitlines()[0].split()[:2] == ["backbone", "profile"]
    lite0_line = next(line for line in text.splitlines() if line.startswith("efficientnet_lite0"))
    assert " - " in lite0_line
    assert table._repr_html_().count("<tr>") == len(zoo.NAMES) + 1


def test_latency_is_measured_and_can_be_dropped_again():
    timed = tt.zoo_table(names=("efficientnet_lite0", "mobilenet_v3_small"), latency=True, size=64, repeats=2)
    assert all(value > 0 for value in timed.column("latency_ms"))
    assert "latency_ms" in timed.columns
    plain = timed.drop("latency_ms")
    assert "latency_ms" not in plain.columns and all("latency_ms" not in row for row in plain)
    assert "latency_ms" in timed.columns  # drop returns a new table


def test_sample_photos_are_square_rgb_uint8_and_repeat():
    photos = zoo.sample_photos(size=64)
    assert photos.names == ("chelsea", "coffee", "astronaut", "rocket", "camera", "china", "flower")
    assert photos.images.shape == (7, 64, 64, 3) and photos.images.dtype == np.uint8
    assert len(photos.sources) == 7
    camera = photos.images[photos.names.index("camera")]
    assert np.array_equal(camera[..., 0], camera[..., 2])  # grey copied into R, G and B
    assert np.array_equal(photos.images, zoo.sample_photos(size=64).images)
    assert not np.array_equal(photos.images, zoo.sample_photos(size=64, crop=True).images)


def test_lite0_recognises_the_cat_and_the_espresso():
    import torch

    import tlcourse.torch as tt
    from tlcourse.lite0 import decode_predictions

    photos = zoo.sample_photos()
    with torch.inference_mode():
        top = decode_predictions(tt.build_lite0()(tt.preprocess(photos.images[:2])).numpy())
    assert [t[0][1] for t in top] == ["Egyptian cat", "espresso"]


def test_plot_zoo_draws_a_bubble_per_backbone(table):
    import matplotlib

    matplotlib.use("Agg")
    from tlcourse import plots

    fig = plots.plot_zoo(table)
    ax = fig.axes[0]
    assert len(ax.collections) == len(zoo.NAMES) and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="latency_ms"):
        plots.plot_zoo(table, x="latency_ms")


def test_each_of_the_four_situations_gets_its_own_strategy():
    suggestions = {zoo.suggest_strategy(small, like) for small in (True, False) for like in (True, False)}
    assert len(suggestions) == 4
    assert zoo.suggest_strategy(small=True, like_imagenet=True).startswith("feature extractor")
    assert "scratch" in zoo.suggest_strategy(small=False, like_imagenet=False)
