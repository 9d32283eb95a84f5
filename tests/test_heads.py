"""swap_head in both frameworks, and the Sequential-on-Functional pitfall in Keras."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
import tlcourse.torch as tt  # noqa: E402
import tlcourse.keras as tk  # noqa: E402
from tlcourse.keras import freezing as kfreeze  # noqa: E402
from tlcourse.keras.heads import explain_sequential_on_functional, swap_head as keras_swap_head  # noqa: E402
from tlcourse.torch import freezing as tfreeze  # noqa: E402
from tlcourse.torch.heads import swap_head as torch_swap_head  # noqa: E402

IMAGES = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def torch_base():
    return tt.build_lite0(weights=None)


@pytest.fixture(scope="module")
def keras_base():
    return tk.build_lite0(weights=None)


def torch_head_params(model):
    return sum(p.numel() for name, p in model.top.named_parameters() if not name.startswith(("conv.", "bn.")))


def keras_head_params(model):
    return sum(layer.count_params() for layer in model.layers
               if layer.name.startswith(("top_classifier", "top_hidden")))


@pytest.mark.parametrize("hidden", [(), (64,), (32, 16)])
def test_head_parameter_counts_match(torch_base, keras_base, hidden):
    torch_model = torch_swap_head(torch_base, 5, hidden=hidden, dropout=0.3)
    keras_model = keras_swap_head(keras_base, 5, hidden=hidden, dropout=0.3)
    widths = (1280, *hidden, 5)
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert torch_head_params(torch_model) == keras_head_params(keras_model) == expected
    assert tfreeze.summary(torch_model).as_tuples() == kfreeze.summary(keras_model).as_tuples()


def test_torch_swap_head_output_and_sharing(torch_base):
    model = torch_swap_head(torch_base, 7, hidden=(16,))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(IMAGES).permute(0, 3, 1, 2))
    assert logits.shape == (3, 7)
    assert model.block3 is torch_base.block3 and model.top.conv is torch_base.top.conv
    assert torch_base.top.classifier.out_features == 1000  # the old model keeps its head
    tfreeze.freeze(model)
    tfreeze.unfreeze(model, "top")
    assert model.top.hidden1.weight.requires_grad and model.top.classifier.weight.requires_grad
    assert not model.top.bn.weight.requires_grad


def test_torch_swapped_model_trains(torch_base):
    model = torch_swap_head(torch_base, 3)
    tfreeze.freeze(model)
    tfreeze.unfreeze(model, "top")
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, 8))
    history = tt.fit(model, data, epochs=1, batch_size=8, progress=False)
    assert len(history) == 1


def test_keras_swap_head_output_and_sharing(keras_base):
    model = keras_swap_head(keras_base, 7, hidden=(16,))
    assert tuple(model(IMAGES, training=False).shape) == (3, 7)
    assert model.get_layer("block3a_dwconv") is keras_base.get_layer("block3a_dwconv")
    assert keras_base.get_layer("top_classifier").units == 1000
    kfreeze.freeze(model)
    kfreeze.unfreeze(model, "top")
    trained = {w.path.split("/")[0] for w in model.trainable_weights}
    assert {"top_hidden1", "top_classifier", "top_conv"} <= trained
    assert "top_bn" not in trained


def test_bad_head_arguments(torch_base, keras_base):
    for swap, base in ((torch_swap_head, torch_base), (keras_swap_head, keras_base)):
        with pytest.raises(ValueError, match="num_classes"):
            swap(base, 0)
        with pytest.raises(ValueError, match="dropout"):
            swap(base, 3, dropout=1.5)


def test_sequential_add_on_functional_base_fails_and_is_explained(keras_base):
    head = keras.Sequential([keras.layers.Dense(10)])
    with pytest.raises(AttributeError, match="add") as caught:
        keras_base.add(head)  # what a learner writes after a Sequential tutorial
    message = explain_sequential_on_functional(caught.value)
    assert "AttributeError" in message and "keras.Model(base.input" in message and "swap_head" in message


def test_sequential_around_functional_base_hides_its_blocks(keras_base):
    wrapped = keras.Sequential([keras_base, keras.layers.Dense(10)])
    with pytest.raises(TypeError, match="swap_head"):
        kfreeze.blocks(wrapped)
