"""The notebooks' ipywidgets controls and the plain functions behind them."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tlcourse import widgets  # noqa: E402


def _fake_top5(label):
    return [(i, f"{label} class {i}", p) for i, p in enumerate((0.5, 0.2, 0.1, 0.1, 0.05))]


def test_top5_browser_offers_every_photo_and_redraws_on_change():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    box = widgets.top5_browser(["a", "b"], images, {"PyTorch": [_fake_top5("a"), _fake_top5("b")]})
    dropdown = box.children[0]
    assert list(dropdown.options) == ["a", "b"] and dropdown.value == "a"
    dropdown.value = "b"  # runs the observer; must not raise
    with pytest.raises(ValueError, match="predictions for 1 images"):
        widgets.top5_browser(["a", "b"], images, {"Keras": [_fake_top5("a")]})


@pytest.fixture(params=["torch", "keras"])
def lite0(request):
    if request.param == "torch":
        import tlcourse.torch as framework
    else:
        import tlcourse.keras as framework
    return framework, framework.build_lite0(num_classes=3, weights=None)


def test_frozen_blocks_summary_counts_and_leaves_the_model_as_it_was(lite0):
    framework, model = lite0
    framework.freeze(model)
    framework.unfreeze(model, "head")
    before = framework.summary(model).as_tuples()
    names = list(framework.blocks(model))

    nothing_frozen = widgets.frozen_blocks_summary(model, 0)
    all_frozen = widgets.frozen_blocks_summary(model, len(names))
    head_only = widgets.frozen_blocks_summary(model, len(names) - 1)
    assert all_frozen.trainable == 0
    assert 0 < head_only.trainable < nothing_frozen.trainable < nothing_frozen.total
    assert head_only.trainable_blocks() == ["head"]
    assert framework.summary(model).as_tuples() == before  # only looked
    with pytest.raises(ValueError, match="between 0 and"):
        widgets.frozen_blocks_summary(model, len(names) + 1)


def test_torch_and_keras_agree_on_the_counts():
    import tlcourse.torch as tt
    import tlcourse.keras as tk

    torch_model, keras_model = tt.build_lite0(weights=None), tk.build_lite0(weights=None)
    for frozen in (0, 5, 9):
        assert (widgets.frozen_blocks_summary(torch_model, frozen).as_tuples()
                == widgets.frozen_blocks_summary(keras_model, frozen).as_tuples())


def test_freeze_slider_starts_at_the_models_own_state(lite0):
    framework, model = lite0
    assert widgets.freeze_slider(model).children[0].value == 0  # nothing frozen yet
    framework.freeze(model)
    framework.unfreeze(model, "head")
    box = widgets.freeze_slider(model)
    slider = box.children[0]
    assert slider.max == len(framework.blocks(model)) and slider.value == slider.max - 1
    slider.value = 0  # runs the observer; must not raise


def test_controls_show_pictures_and_text_not_cell_output(lite0):
    framework, model = lite0
    box = widgets.top5_browser(["a"], np.zeros((1, 8, 8, 3), np.uint8), {"PyTorch": [_fake_top5("a")]})
    assert box.children[1].value[:8] == b"\x89PNG\r\n\x1a\n"
    slider_box = widgets.freeze_slider(model)
    shown = slider_box.children[1].value
    assert shown.startswith("<pre>frozen: none") and "parameters train" in shown
