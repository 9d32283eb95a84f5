"""Conservative fine-tuning in both frameworks: L2-SP and L2 penalties in fit, layer-wise learning rates."""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
import tlcourse.torch as tt  # noqa: E402  (torch first: see tlcourse/_coexist.py)
import tlcourse.keras as tk  # noqa: E402
import keras  # noqa: E402
from torch import nn  # noqa: E402

from tlcourse.data.card import Split  # noqa: E402
from tlcourse.history import History  # noqa: E402
from tlcourse.keras.lite0 import assign_torch_state  # noqa: E402

ALPHA, BETA = 0.3, 0.05


def quadrant_images(n: int, seed: int) -> Split:
    """16x16 noise images; the label says which quadrant is brighter (4 classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, n)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] += 100
    return Split(images, labels)


TRAIN, VAL = quadrant_images(48, seed=0), quadrant_images(16, seed=1)


def same_numbers(a: History, b: History) -> bool:
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h.rows]  # noqa: E731
    return strip(a) == strip(b)


# -- tiny models: a "backbone" (conv, bn) and a head named as swap_head names it ----------------------
def torch_net(seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, stride=2, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(2), flatten=nn.Flatten(), classifier=nn.Linear(16, 4),
    )).to(dtype)


def keras_net(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    images = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(images)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.AveragePooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(images, keras.layers.Dense(4, name="top_classifier")(x))


def nudge_torch(model: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def nudge_keras(model: keras.Model, scale: float = 0.1, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(w.numpy() + scale * rng.standard_normal(w.shape).astype("float32"))


def expected_penalty(weights: dict, reference: dict, head: set, towards_zero: bool = False) -> float:
    """alpha/2 sum (w - w0)^2 over the transferred weights + beta/2 sum w^2 over the head, in float64."""
    total = 0.0
    for name, value in weights.items():
        value = np.asarray(value, np.float64)
        if name in head:
            total += BETA / 2 * np.sum(value ** 2)
        else:
            anchor = 0.0 if towards_zero else np.asarray(reference[name], np.float64)
            total += ALPHA / 2 * np.sum((value - anchor) ** 2)
    return total


# -- the penalty's value and gradient -------------------------------------------------------------------
def test_torch_l2sp_is_zero_at_the_pretrained_point_and_its_gradient_is_the_pull():
    model = torch_net()
    penalty = tt.L2SP(model, alpha=ALPHA, beta=BETA)
    head = {"classifier.weight", "classifier.bias"}
    assert set(penalty.reference) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias"}
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    # at the pretrained point only the head's beta part is left, and the alpha part is exactly 0
    assert penalty(model).item() == pytest.approx(expected_penalty({n: start[n] for n in head}, {}, head))
    assert tt.L2SP(model, alpha=ALPHA, beta=0.0)(model).item() == 0.0

    nudge_torch(model)
    value = penalty(model)
    now = {name: p.detach() for name, p in model.named_parameters()}
    assert value.item() == pytest.approx(expected_penalty(now, start, head), rel=1e-6)
    value.backward()
    for name, p in model.named_parameters():
        pull = BETA * now[name] if name in head else ALPHA * (now[name] - start[name])
        torch.testing.assert_close(p.grad, pull, rtol=1e-5, atol=1e-7)


def test_torch_penalty_gradient_matches_finite_differences():
    model = torch_net(dtype=torch.float64)
    penalty = tt.L2SP(model, alpha=ALPHA, beta=BETA)
    nudge_torch(model)
    penalty(model).backward()
    params = list(model.parameters())
    direction = [torch.randn_like(p) for p in params]
    predicted = sum((p.grad * d).sum() for p, d in zip(params, direction)).item()
    step = 1e-5
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * step * d)
            values.append(penalty(model).item())
            for p, d in zip(params, direction):
                p.sub_(sign * step * d)
    assert (values[0] - values[1]) / (2 * step) == pytest.approx(predicted, rel=1e-6)


def test_keras_l2sp_is_zero_at_the_pretrained_point_and_its_gradient_is_the_pull():
    import tensorflow as tf

    model = keras_net()
    penalty = tk.L2SP(model, alpha=ALPHA, beta=BETA)
    head = {"top_classifier/kernel", "top_classifier/bias"}
    assert set(penalty.reference) == {"conv/kernel", "conv/bias", "bn/gamma", "bn/beta"}
    start = {w.path: w.numpy().copy() for w in model.trainable_weights}
    assert float(penalty(model)) == pytest.approx(expected_penalty({n: start[n] for n in head}, {}, head), rel=1e-6)
    assert float(tk.L2SP(model, alpha=ALPHA, beta=0.0)(model)) == 0.0

    nudge_keras(model)
    with tf.GradientTape() as tape:
        value = penalty(model)
    now = {w.path: w.numpy() for w in model.trainable_weights}
    assert float(value) == pytest.approx(expected_penalty(now, start, head), rel=1e-6)
    for w, grad in zip(model.trainable_weights, tape.gradient(value, model.trainable_weights)):
        pull = BETA * now[w.path] if w.path in head else ALPHA * (now[w.path] - start[w.path])
        np.testing.assert_allclose(grad.numpy(), pull, rtol=1e-5, atol=1e-7)


def test_plain_l2_pulls_every_weight_towards_zero():
    torch_model, keras_model = torch_net(), keras_net()
    torch_weights = {n: p.detach() for n, p in torch_model.named_parameters()}
    torch_head = {"classifier.weight", "classifier.bias"}
    assert tt.L2(torch_model, ALPHA, BETA)(torch_model).item() == pytest.approx(
        expected_penalty(torch_weights, {}, torch_head, towards_zero=True), rel=1e-6)
    keras_weights = {w.path: w.numpy() for w in keras_model.trainable_weights}
    keras_head = {"top_classifier/kernel", "top_classifier/bias"}
    assert float(tk.L2(keras_model, ALPHA, BETA)(keras_model)) == pytest.approx(
        expected_penalty(keras_weights, {}, keras_head, towards_zero=True), rel=1e-6)
    assert tt.L2(torch_model).reference == {} and tk.L2(keras_model).reference == {}


def test_frozen_weights_add_nothing():
    model = torch_net()
    penalty = tt.L2SP(model, alpha=ALPHA, beta=BETA)
    nudge_torch(model)
    trained_alone = penalty(model).item()
    model.conv.requires_grad_(False)
    without_conv = penalty(model).item()
    conv_part = ALPHA / 2 * sum(((p.detach() - penalty.reference[f"conv.{n}"]) ** 2).sum().item()
                                for n, p in model.conv.named_parameters())
    assert conv_part > 0 and without_conv == pytest.approx(trained_alone - conv_part, rel=1e-6)
    model.requires_grad_(False)
    assert penalty(model).item() == 0.0

    keras_model = keras_net()
    keras_penalty = tk.L2SP(keras_model, alpha=ALPHA, beta=BETA)
    nudge_keras(keras_model)
    everything = float(keras_penalty(keras_model))
    classifier = keras_model.get_layer("top_classifier")
    head_part = BETA / 2 * sum(np.sum(w.numpy().astype(np.float64) ** 2) for w in classifier.weights)
    classifier.trainable = False
    assert head_part > 0 and float(keras_penalty(keras_model)) == pytest.approx(everything - head_part, rel=1e-5)


def test_the_same_weights_give_the_same_penalty_in_both_frameworks():
    torch_model = tt.swap_head(tt.build_lite0(weights="imagenet"), num_classes=6)
    keras_model = tk.swap_head(tk.build_lite0(weights="imagenet"), num_classes=6)
    assign_torch_state(keras_model, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    penalties = {"torch": tt.L2SP(torch_model, ALPHA, BETA), "keras": tk.L2SP(keras_model, ALPHA, BETA)}
    assert tt.L2SP(torch_model, ALPHA, 0.0)(torch_model).item() == 0.0  # at the pretrained point
    assert float(tk.L2SP(keras_model, ALPHA, 0.0)(keras_model)) == 0.0

    nudge_torch(torch_model, scale=0.01)
    assign_torch_state(keras_model, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    for blocks in ("top", "block6", "all"):
        tt.unfreeze(tt.freeze(torch_model), blocks)  # BatchNorm stays frozen: not penalised
        tk.unfreeze(tk.freeze(keras_model), blocks)
        for name in ("L2SP", "L2"):
            torch_value = getattr(tt, name)(torch_model, ALPHA, BETA) if name == "L2" else penalties["torch"]
            keras_value = getattr(tk, name)(keras_model, ALPHA, BETA) if name == "L2" else penalties["keras"]
            a, b = torch_value(torch_model).item(), float(keras_value(keras_model))
            assert a > 0 and b == pytest.approx(a, rel=1e-5), (blocks, name)


# -- misuse ------------------------------------------------------------------------------------------------
def test_misuse_gets_an_error_that_names_the_fix():
    headless = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), pool=nn.AdaptiveAvgPool2d(1)))
    with pytest.raises(ValueError, match=r"swap_head\(backbone, num_classes\)"):
        tt.L2SP(headless)
    tt.L2(headless)  # plain L2 needs no head
    keras_headless = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")])
    with pytest.raises(ValueError, match=r"swap_head\(backbone, num_classes\)"):
        tk.L2SP(keras_headless)

    penalty = tt.L2SP(torch_net())
    grown = torch_net()
    grown.conv = nn.Conv2d(3, 4, 5, stride=2, padding=2)  # another backbone than the snapshot's
    with pytest.raises(ValueError, match="penalty = L2SP"):
        penalty(grown)
    with pytest.raises(ValueError, match="weight_decay=0"):
        tt.fit(torch_net(), TRAIN, penalty=tt.L2SP(torch_net()), weight_decay=1e-4, progress=False)
    with pytest.raises(ValueError, match="weight_decay=0"):
        tk.fit(keras_net(), TRAIN, penalty=tk.L2(keras_net()), weight_decay=1e-4, progress=False)
    with pytest.raises(ValueError, match=">= 0"):
        tt.L2SP(torch_net(), alpha=-1)


# -- inside fit ----------------------------------------------------------------------------------------------
def one_step(framework: str, penalty_kind: str | None):
    """Weights before and after one plain-SGD step on the whole of TRAIN, from a nudged start,
    with the pretrained snapshot taken before the nudge; and the History."""
    fw, make = (tt, torch_net) if framework == "torch" else (tk, keras_net)
    model = make()
    penalty = getattr(fw, penalty_kind)(model, ALPHA, BETA) if penalty_kind else None
    (nudge_torch if framework == "torch" else nudge_keras)(model)
    if framework == "torch":
        model.bn.requires_grad_(False)  # also checks that a frozen layer is neither penalised nor moved
        weights = lambda: {n: p.detach().clone().numpy() for n, p in model.named_parameters()}  # noqa: E731
    else:
        model.get_layer("bn").trainable = False
        weights = lambda: {w.path: w.numpy().copy() for w in model.weights if "moving" not in w.path}  # noqa: E731
    before = weights()
    history = fw.fit(model, TRAIN, epochs=1, lr=0.5, optimizer="sgd", momentum=0.0, batch_size=len(TRAIN),
                     penalty=penalty, seed=0, progress=False)
    return before, weights(), history, penalty


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_fit_adds_the_penalty_to_the_loss_and_records_it(framework):
    """One SGD step with the penalty moves each weight by an extra -lr * alpha * (w - w0) (-lr * beta * w in the head)."""
    start, plain, plain_history, _ = one_step(framework, None)
    _, pulled, history, penalty = one_step(framework, "L2SP")
    head = {"classifier.weight", "classifier.bias", "top_classifier/kernel", "top_classifier/bias"}
    frozen = {"bn.weight", "bn.bias", "bn/gamma", "bn/beta"}
    reference = {name: np.asarray(value) for name, value in penalty.state_dict().items()}
    for name, value in start.items():
        if name in frozen:
            assert np.array_equal(pulled[name], value) and np.array_equal(plain[name], value)
            continue
        pull = BETA * value if name in head else ALPHA * (value - reference[name])
        np.testing.assert_allclose(pulled[name] - plain[name], -0.5 * pull, rtol=1e-4, atol=1e-6, err_msg=name)
    trained = {name: value for name, value in start.items() if name not in frozen}
    assert history["penalty"][0] == pytest.approx(expected_penalty(trained, reference, head), rel=1e-5)
    assert "penalty" not in plain_history.columns
    assert history["loss"][0] == pytest.approx(plain_history["loss"][0], rel=1e-5)  # the loss column is the CE alone


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_resume_with_a_penalty_reaches_the_same_numbers(framework, tmp_path):
    """The snapshot comes back from the checkpoint: a penalty made from other weights does not matter."""
    class Interrupted(Exception):
        pass

    fw, make = (tt, torch_net) if framework == "torch" else (tk, keras_net)

    def crash_at_epoch_3(epoch):
        if epoch == 2:
            raise Interrupted
        return 1.0

    settings = dict(epochs=3, lr=0.05, optimizer="adam", batch_size=16, seed=7, progress=False)
    straight = make()
    straight_history = fw.fit(straight, TRAIN, VAL, penalty=fw.L2SP(straight, ALPHA, BETA), schedule=lambda e: 1.0,
                              **settings)
    with pytest.raises(Interrupted):
        crashing = make()
        fw.fit(crashing, TRAIN, VAL, penalty=fw.L2SP(crashing, ALPHA, BETA), schedule=crash_at_epoch_3,
               checkpoint=tmp_path / "run.ckpt", **settings)
    resumed = make(seed=99)
    resumed_history = fw.fit(resumed, TRAIN, VAL, penalty=fw.L2SP(resumed, ALPHA, BETA), schedule=lambda e: 1.0,
                             checkpoint=tmp_path / "run.ckpt", resume=True, **settings)
    assert resumed_history["epoch"] == [1, 2, 3] and None not in resumed_history["penalty"]
    assert same_numbers(straight_history, resumed_history)


# -- layer-wise learning rates ----------------------------------------------------------------------------
def tiny_images(n: int = 8, size: int = 32) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 4, n))


def test_torch_layerwise_optimizer_groups():
    model = tt.build_lite0(num_classes=4, weights=None)
    tt.unfreeze(tt.freeze(model), "block5")
    opt = tt.layerwise_optimizer(model, 1e-3, 0.5)
    assert [(g["block"], g["lr"]) for g in opt.param_groups] == [
        ("head", 1e-3), ("top", 5e-4), ("block7", 2.5e-4), ("block6", 1.25e-4), ("block5", 6.25e-5)]
    opt = tt.layerwise_optimizer(model, 1e-3, {"block5": 0, "block6": 0.01})
    assert [(g["block"], g["lr"]) for g in opt.param_groups] == [
        ("head", 1e-3), ("top", 1e-3), ("block7", 1e-3), ("block6", 1e-5), ("block5", 0.0)]
    with pytest.raises(ValueError, match="unknown block 'block9'"):
        tt.layerwise_optimizer(model, 1e-3, {"block9": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        tt.layerwise_optimizer(model, 1e-3, {"block6": -0.1})


LR = 1e-2
FACTORS = {"block6": 0.0, "block7": 0.1}  # top and head: 1


def block_moves(framework: str) -> dict[str, float]:
    """The largest change of any weight per block after one Adam step (with weight decay) in fit."""
    fw = tt if framework == "torch" else tk
    model = fw.build_lite0(num_classes=4, weights=None)
    fw.unfreeze(fw.freeze(model), "block6")
    if framework == "torch":
        state = lambda: {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}  # noqa: E731
        block_of = lambda name: "head" if name.startswith("top.classifier") else name.split(".")[0]  # noqa: E731
    else:
        state = lambda: {w.path: w.numpy().copy() for w in model.trainable_weights}  # noqa: E731
        block_of = lambda path: tk.lite0.block_of_layer(path.split("/")[0])  # noqa: E731
    before = state()
    opt = fw.layerwise_optimizer(model, LR, FACTORS, weight_decay=0.1)
    fw.fit(model, tiny_images(), epochs=1, optimizer=opt, batch_size=8, seed=0, progress=False)
    after = state()
    moves: dict[str, float] = {}
    for name in before:
        change = float(np.abs(np.asarray(after[name]) - np.asarray(before[name])).max())
        moves[block_of(name)] = max(moves.get(block_of(name), 0.0), change)
    return moves


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_layerwise_rates_factor_zero_keeps_a_block_still_and_a_lower_factor_moves_less(framework):
    moves = block_moves(framework)
    assert set(moves) == {"block6", "block7", "top", "head"}
    assert moves["block6"] == 0.0
    # Adam's first step moves a weight by at most its rate, plus the decay rate * wd * |w| (|w| < 3 here)
    assert 0 < moves["block7"] <= 0.1 * LR * (1 + 0.1 * 3)
    assert moves["top"] > 0.5 * LR and moves["head"] > 0.5 * LR


# -- training the upper blocks on cached maps ---------------------------------------------------------------
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_upper_blocks_on_cached_maps_give_the_whole_models_logits(framework):
    fw = tt if framework == "torch" else tk
    model = fw.swap_head(fw.build_lite0(weights=None), num_classes=4)
    images = tiny_images(n=3, size=64)
    maps = fw.block_inputs(model, images, "block7", size=64)
    assert maps.images.dtype == np.uint8 and np.array_equal(maps.labels, images.labels)
    upper = fw.upper_blocks(model, "block7")
    if framework == "torch":
        with torch.no_grad():
            whole = model(tt.preprocess(images.images, 64)).numpy()
            part = upper(tt.maps_transform(maps.images)).numpy()
        assert set(dict(upper.named_parameters())) < set(dict(model.named_parameters()))
    else:
        whole = keras.ops.convert_to_numpy(model(tk.preprocess(images.images, 64), training=False))
        part = keras.ops.convert_to_numpy(upper(tk.maps_transform(maps.images), training=False))
        assert {w.path for w in upper.weights} < {w.path for w in model.weights}
    np.testing.assert_allclose(part, whole, rtol=1e-5, atol=1e-5)
    assert [name for name, count, _ in fw.summary(upper).as_tuples() if count] == ["block7", "top", "head"]
