"""freeze / unfreeze / summary on EfficientNet-Lite0, in PyTorch and Keras, and their parity."""
import numpy as np
import pytest

from tlcourse import lite0 as spec
from tlcourse.data.card import Split
from tlcourse.stages import resolve_blocks

NAMES = spec.BLOCK_NAMES


def tiny_split(n: int = 8, size: int = 32, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 4, n))


# -- the shared block arithmetic ---------------------------------------------------------------
@pytest.mark.parametrize("choice, expected", [
    ("head", ("head",)),
    ("top", ("top", "head")),
    ("block7", ("block7", "top", "head")),
    ("block6", ("block6", "block7", "top", "head")),
    (("block6", "block7"), ("block6", "block7")),
    (("head", "stem"), ("stem", "head")),
    (2, ("top", "head")),
    (0, ()),
    ("all", NAMES),
])
def test_resolve_blocks(choice, expected):
    assert resolve_blocks(choice, NAMES) == expected


@pytest.mark.parametrize("bad", ["block8", ("block1", "classifier"), 11, -1])
def test_resolve_blocks_refuses_unknown_blocks(bad):
    with pytest.raises(ValueError, match="block"):
        resolve_blocks(bad, NAMES)


# -- PyTorch ------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")
import tlcourse.torch as tt  # noqa: E402
from tlcourse.torch import freezing as tfreeze  # noqa: E402


@pytest.fixture(scope="module")
def torch_model():
    return tt.build_lite0(weights=None)


def test_torch_summary_counts_every_parameter(torch_model):
    tfreeze.unfreeze(torch_model, "all", train_batchnorm=True)
    table = tfreeze.summary(torch_model)
    assert [row.block for row in table] == list(NAMES)
    assert table.total == table.trainable == spec.PARAMETER_COUNT == 4_652_008
    assert table.total == sum(p.numel() for p in torch_model.parameters())
    assert "total" in str(table) and "4,652,008" in str(table) and "<table>" in table._repr_html_()


def test_torch_freeze_then_unfreeze_block7(torch_model):
    tfreeze.freeze(torch_model)
    assert tfreeze.summary(torch_model).trainable == 0
    tfreeze.unfreeze(torch_model, "block7")
    table = tfreeze.summary(torch_model)
    assert table.trainable_blocks() == ["block7", "top", "head"]
    assert not any(p.requires_grad for p in torch_model.block7.a.bn.parameters())  # BN stays frozen
    assert torch_model.block7.a.dwconv.weight.requires_grad
    tfreeze.unfreeze(torch_model, "block7", train_batchnorm=True)
    assert all(p.requires_grad for p in torch_model.block7.a.bn.parameters())


def test_torch_blocks_names_the_supported_models():
    with pytest.raises(TypeError, match="EfficientNet-Lite0"):
        tfreeze.blocks(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_torch_training_moves_only_unfrozen_blocks(train_batchnorm):
    model = tt.build_lite0(weights=None)
    tfreeze.freeze(model)
    tfreeze.unfreeze(model, "block7", train_batchnorm=train_batchnorm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tt.fit(model, tiny_split(), epochs=1, lr=1e-2, batch_size=8, progress=False, seed=0)
    after = {k: v.cpu() for k, v in model.state_dict().items()}  # fit moves it to CUDA when present
    for key in before:
        if key.startswith(("stem.", "block1.", "block6.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["block7.a.dwconv.weight"], after["block7.a.dwconv.weight"])
    assert not torch.equal(before["top.classifier.weight"], after["top.classifier.weight"])
    stats_moved = not torch.equal(before["block7.a.bn.running_mean"], after["block7.a.bn.running_mean"])
    gamma_moved = not torch.equal(before["block7.a.bn.weight"], after["block7.a.bn.weight"])
    assert stats_moved == gamma_moved == train_batchnorm


# -- Keras --------------------------------------------------------------------------------------
keras = pytest.importorskip("keras")
import tlcourse.keras as tk  # noqa: E402
from tlcourse.keras import freezing as kfreeze  # noqa: E402


@pytest.fixture(scope="module")
def keras_model():
    return tk.build_lite0(weights=None)


def test_keras_summary_counts_every_parameter(keras_model):
    kfreeze.unfreeze(keras_model, "all", train_batchnorm=True)
    table = kfreeze.summary(keras_model)
    assert table.total == table.trainable == spec.PARAMETER_COUNT
    # Keras' own count adds BatchNorm's moving statistics, which are not parameters
    moving = sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights)
    assert keras_model.count_params() == spec.PARAMETER_COUNT + moving


def test_keras_freeze_then_unfreeze_block7(keras_model):
    kfreeze.freeze(keras_model)
    assert not keras_model.trainable_weights
    kfreeze.unfreeze(keras_model, "block7")
    assert kfreeze.summary(keras_model).trainable_blocks() == ["block7", "top", "head"]
    assert not keras_model.get_layer("block7a_bn").trainable
    assert keras_model.get_layer("block7a_dwconv").trainable
    assert {w.path.split("/")[0] for w in keras_model.trainable_weights} >= {"block7a_dwconv", "top_classifier"}


def test_keras_unfreeze_after_model_trainable_false(keras_model):
    keras_model.trainable = False  # the usual Keras recipe for "freeze the base"
    kfreeze.unfreeze(keras_model, "head")
    assert kfreeze.summary(keras_model).trainable_blocks() == ["head"]
    assert {w.path.split("/")[0] for w in keras_model.trainable_weights} == {"top_classifier"}


@pytest.mark.slow
@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_keras_training_moves_only_unfrozen_blocks(train_batchnorm):
    model = tk.build_lite0(weights=None)
    kfreeze.freeze(model)
    kfreeze.unfreeze(model, "block7", train_batchnorm=train_batchnorm)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    tk.fit(model, tiny_split(), epochs=1, lr=1e-2, batch_size=8, progress=False, seed=0)
    after = {layer.name: layer.get_weights() for layer in model.layers}

    def same(name):
        return all(np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))

    for layer in model.layers:
        if layer.name.startswith(("stem_", "block1", "block6")):
            assert same(layer.name), layer.name
    assert not same("block7a_dwconv")
    assert not same("top_classifier")
    gamma_moved = not np.array_equal(before["block7a_bn"][0], after["block7a_bn"][0])
    stats_moved = not np.array_equal(before["block7a_bn"][2], after["block7a_bn"][2])  # moving mean
    assert stats_moved == gamma_moved == train_batchnorm


# -- parity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("choice, train_batchnorm", [
    ("top", False), ("block6", False), (("block3", "block5"), True), (3, True), ("all", False),
])
def test_summary_parity(torch_model, keras_model, choice, train_batchnorm):
    for freezing, model in ((tfreeze, torch_model), (kfreeze, keras_model)):
        freezing.freeze(model)
        freezing.unfreeze(model, choice, train_batchnorm=train_batchnorm)
    torch_rows = tfreeze.summary(torch_model).as_tuples()
    assert torch_rows == kfreeze.summary(keras_model).as_tuples()
    assert sum(t + f for _, t, f in torch_rows) == spec.PARAMETER_COUNT


# -- a frozen block computes what it was pretrained to compute, in training mode too -------------
@pytest.mark.slow
def test_stochastic_depth_runs_in_trainable_blocks_only_in_both_frameworks():
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    import tlcourse.torch as tt
    import tlcourse.keras as tk
    from tlcourse.torch.freezing import keep_frozen_layers_in_eval

    images = tiny_split(4, 64).images
    torch_model, keras_model = tt.build_lite0(weights=None), tk.build_lite0(weights=None)
    x_torch, x_keras = tt.preprocess(images, 64), tk.preprocess(images, 64)

    def torch_logits(model):  # in training mode, as fit runs it
        model.train()
        keep_frozen_layers_in_eval(model)
        with torch.no_grad():
            return model(x_torch)

    features = keras.Model(keras_model.input, keras_model.get_layer("top_pool").output)
    for framework, freeze, unfreeze, twice in [
        ("torch", tt.freeze, tt.unfreeze, lambda: (torch_logits(torch_model), torch_logits(torch_model))),
        ("keras", tk.freeze, tk.unfreeze, lambda: (features(x_keras, training=True), features(x_keras, training=True))),
    ]:
        model = torch_model if framework == "torch" else keras_model
        freeze(model)
        first, second = twice()
        assert np.array_equal(np.asarray(first), np.asarray(second)), f"{framework}: a frozen block dropped a branch"
        unfreeze(model, "block6")
        first, second = twice()
        assert not np.allclose(np.asarray(first), np.asarray(second)), f"{framework}: no stochastic depth while training"
