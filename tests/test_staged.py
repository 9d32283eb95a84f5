"""Staged unfreezing: the shared schedule, both frameworks' fit_staged, discriminative learning rates."""
import numpy as np
import pytest

from tlcourse import lite0 as spec
from tlcourse.data.card import Split
from tlcourse.stages import Stage, block_lr_factors, resolve_blocks

NAMES = spec.BLOCK_NAMES
SCHEDULE = [Stage("head", 1, 1e-2), Stage("block7", 1, 1e-3), Stage(("block5", "block6"), 1, 1e-4, name="middle"),
            Stage(4, 1, 1e-4), Stage("all", 1, 1e-5)]


def tiny_split(n: int = 8, size: int = 32, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 4, n))


def test_stage_labels_and_schedule():
    assert [stage.label for stage in SCHEDULE] == ["head", "block7", "middle", "last4", "all"]
    assert resolve_blocks(SCHEDULE[0].blocks, NAMES) == ("head",)
    assert resolve_blocks(SCHEDULE[1].blocks, NAMES) == ("block7", "top", "head")
    with pytest.raises(ValueError, match="lr"):
        Stage("top", 1, 0.0)


def test_block_lr_factors():
    assert block_lr_factors(("block6", "block7", "top"), NAMES, 0.5) == {"block6": 0.25, "block7": 0.5, "top": 1.0}
    assert block_lr_factors(("block6", "block7"), NAMES, None) == {"block6": 1.0, "block7": 1.0}
    with pytest.raises(ValueError, match="lr_decay"):
        block_lr_factors(("top",), NAMES, 2.0)


torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
import tlcourse.torch as tt  # noqa: E402
import tlcourse.keras as tk  # noqa: E402
from tlcourse.keras import freezing as kfreeze, staged as kstaged  # noqa: E402
from tlcourse.torch import freezing as tfreeze, layerwise as tlayerwise, staged as tstaged  # noqa: E402


def test_schedule_gives_the_same_trainable_sets_in_both_frameworks():
    torch_model, keras_model = tt.build_lite0(weights=None), tk.build_lite0(weights=None)
    for stage in SCHEDULE:
        for train_batchnorm in (False, True):
            chosen = tstaged.apply_stage(torch_model, stage, train_batchnorm)
            assert kstaged.apply_stage(keras_model, stage, train_batchnorm) == chosen
            torch_rows = tfreeze.summary(torch_model).as_tuples()
            assert torch_rows == kfreeze.summary(keras_model).as_tuples(), stage
            assert [block for block, trainable, _ in torch_rows if trainable] == list(chosen)


def test_torch_param_groups_halve_down_the_blocks():
    model = tt.build_lite0(weights=None)
    tstaged.apply_stage(model, Stage("block6", 1, 1e-3))
    groups = tlayerwise.block_param_groups(model, 1e-3, lr_decay=0.5)
    assert [(g["block"], g["lr"]) for g in groups] == [("head", 1e-3), ("top", 5e-4), ("block7", 2.5e-4),
                                                       ("block6", 1.25e-4)]
    grouped = sum(p.numel() for g in groups for p in g["params"])
    assert grouped == tfreeze.summary(model).trainable


@pytest.mark.slow
@pytest.mark.parametrize("lr_decay", [None, 0.5])
def test_torch_fit_staged(lr_decay):
    model = tt.build_lite0(num_classes=4, weights=None)
    block6 = {k: v.clone() for k, v in model.block6.state_dict().items()}
    block7 = model.block7.a.dwconv.weight.detach().clone()
    stages = [Stage("head", 1, 1e-2), Stage("block7", 1, 1e-3)]
    history = tstaged.fit_staged(model, tiny_split(), tiny_split(seed=1), stages, lr_decay=lr_decay,
                                 batch_size=8, progress=False, seed=0)
    assert history["epoch"] == [1, 2] and history["stage"] == ["head", "block7"]
    assert history["lr"] == [1e-2, 1e-3] and None not in history["val_loss"]
    assert all(torch.equal(v, model.block6.state_dict()[k].cpu()) for k, v in block6.items())
    assert not torch.equal(block7, model.block7.a.dwconv.weight.detach().cpu())
    assert tfreeze.summary(model).trainable_blocks() == ["block7", "top", "head"]


@pytest.mark.slow
def test_torch_fit_staged_continues_a_history():
    model = tt.build_lite0(num_classes=4, weights=None)
    first = tstaged.fit_staged(model, tiny_split(), stages=[Stage("top", 1, 1e-2)], batch_size=8, progress=False)
    both = tstaged.fit_staged(model, tiny_split(), stages=[Stage("block7", 1, 1e-3)], history=first,
                              batch_size=8, progress=False)
    assert both is first and both["epoch"] == [1, 2] and both["stage"] == ["top", "block7"]
    with pytest.raises(TypeError, match="Stage"):
        tstaged.fit_staged(model, tiny_split(), stages=[Stage("top", 1, 1e-2)], lr=0.1)


@pytest.mark.slow
def test_keras_fit_staged():
    model = tk.build_lite0(num_classes=4, weights=None)
    block6 = [layer.get_weights() for layer in model.layers if layer.name.startswith("block6")]
    block7 = model.get_layer("block7a_dwconv").get_weights()[0].copy()
    stages = [Stage("top", 1, 1e-2), Stage("block7", 1, 1e-3)]
    history = kstaged.fit_staged(model, tiny_split(), tiny_split(seed=1), stages, batch_size=8,
                                 progress=False, seed=0)
    assert history["epoch"] == [1, 2] and history["stage"] == ["top", "block7"]
    assert history["lr"] == [1e-2, 1e-3] and None not in history["val_loss"]
    after = [layer.get_weights() for layer in model.layers if layer.name.startswith("block6")]
    assert all(np.array_equal(a, b) for old, new in zip(block6, after) for a, b in zip(old, new))
    assert not np.array_equal(block7, model.get_layer("block7a_dwconv").get_weights()[0])


def one_sgd_step_deltas(framework: str, lr_decay):
    """Weight changes of one plain-SGD step in stage "block7", from the same start in both runs."""
    stage = [Stage("block7", 1, 1e-2)]
    options = dict(optimizer="sgd", momentum=0.0, batch_size=8, progress=False, seed=0, lr_decay=lr_decay)
    if framework == "torch":
        torch.manual_seed(0)
        model = tt.build_lite0(num_classes=4, weights=None)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        tstaged.fit_staged(model, tiny_split(), stages=stage, **options)
        end = {k: v.cpu() for k, v in model.state_dict().items()}
        return {key: (end[key] - start[key]).numpy() for key in ("block7.a.dwconv.weight", "top.classifier.weight")}
    keras.utils.set_random_seed(0)
    model = tk.build_lite0(num_classes=4, weights=None)
    names = ("block7a_dwconv", "top_classifier")
    start = {name: model.get_layer(name).get_weights()[0].copy() for name in names}
    kstaged.fit_staged(model, tiny_split(), stages=stage, **options)
    return {name: model.get_layer(name).get_weights()[0] - start[name] for name in names}


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_lr_decay_halves_the_step_at_each_block_down(framework):
    plain, decayed = one_sgd_step_deltas(framework, None), one_sgd_step_deltas(framework, 0.5)
    (lower, top) = plain
    assert np.abs(plain[lower]).max() > 0 and np.abs(plain[top]).max() > 0
    scale = np.abs(plain[lower]).max()
    assert np.abs(decayed[lower] - 0.25 * plain[lower]).max() <= 1e-3 * scale  # block7 is two blocks below the head
    assert np.abs(decayed[top] - plain[top]).max() <= 1e-3 * np.abs(plain[top]).max()

