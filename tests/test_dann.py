"""DANN in both frameworks: the reversal layer, the schedules, fit_dann, and the shared recipe choice."""
import math

import numpy as np
import pytest

from tlcourse import dann
from tlcourse.data.card import Split
from tlcourse.history import History

torch = pytest.importorskip("torch")
import tlcourse.torch as tt  # noqa: E402  (torch before TensorFlow: see tlcourse/_coexist.py)

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
import tlcourse.keras as tk  # noqa: E402

DANN_COLUMNS = {"loss", "accuracy", "domain_loss", "domain_accuracy", "lambda", "lr", "target_loss",
                "target_accuracy"}


# -- data and models ------------------------------------------------------------------------------
def bright_corner_images(n: int, seed: int, background: int) -> Split:
    """12x12 images; the label says which corner is brighter (4 classes); ``background`` sets the domain."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, 12, 12, 3)).astype(np.uint8) + np.uint8(background)
    labels = rng.integers(0, 4, n)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[row * 6:(row + 1) * 6, col * 6:(col + 1) * 6] += 100
    return Split(images, labels)


SOURCE = bright_corner_images(40, seed=0, background=0)
TARGET = bright_corner_images(24, seed=1, background=80)  # fewer than the source: the stream wraps
SHAPE = (12, 12, 3)


def tiny_torch_dann(seed: int = 0) -> "tt.DANN":
    torch.manual_seed(seed)
    features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                   torch.nn.Flatten())
    return tt.build_dann(features, 4, SHAPE, label_hidden=(8,), domain_hidden=(8,))


def tiny_keras_dann(seed: int = 0) -> "tk.DANN":
    keras.utils.set_random_seed(seed)
    features = keras.Sequential([keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.AveragePooling2D(5),
                                 keras.layers.Flatten()])
    return tk.build_dann(features, 4, SHAPE, label_hidden=(8,), domain_hidden=(8,))


FRAMEWORKS = {"torch": (tt, tiny_torch_dann), "keras": (tk, tiny_keras_dann)}


def torch_weights(module) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in module.parameters()]


def keras_weights(layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()]


def weights_of(name, part) -> list[np.ndarray]:
    return torch_weights(part) if name == "torch" else keras_weights(part)


def all_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def numbers(history: History) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# -- the schedules ----------------------------------------------------------------------------------
def test_paper_schedules_at_start_middle_and_end():
    assert dann.adaptation_weight(0.0) == 0.0
    assert dann.adaptation_weight(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.9866
    assert dann.adaptation_weight(1.0) == pytest.approx(0.99990920)
    assert dann.annealed_lr(0.0) == pytest.approx(0.01)
    assert dann.annealed_lr(0.5) == pytest.approx(0.01 / 6 ** 0.75)  # 0.00261
    assert dann.annealed_lr(1.0) == pytest.approx(0.01 / 11 ** 0.75)  # 0.00166
    p, weight, rate = dann.schedule_values(5, 10, lr=0.1, domain_lambda=0.3, lr_schedule=None)
    assert (p, weight, rate) == (0.5, 0.3, 0.1)


def test_paired_batches_cover_the_source_once_and_ignore_the_target_for_its_order():
    with_target = list(dann.paired_batches(10, 4, 3, seed=1, epoch=2))
    without = list(dann.paired_batches(10, 0, 3, seed=1, epoch=2))
    assert [len(s) for s, _ in with_target] == [3, 3, 3, 1]
    assert sorted(np.concatenate([s for s, _ in with_target])) == list(range(10))
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(with_target, without))
    assert all(len(t) == len(s) for s, t in with_target) and all(t is None for _, t in without)
    assert sorted(np.concatenate([t for _, t in with_target])[:8]) == [0, 0, 1, 1, 2, 2, 3, 3]  # wraps round


def test_recipe_follows_the_profile(monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "quick")
    assert (dann.recipe().source, dann.recipe().target) == ("digits_rgb", "digits_on_photos")
    monkeypatch.setenv("TLCOURSE_PROFILE", "full")
    assert (dann.recipe().source, dann.recipe().target) == ("mnist", "mnist_m")
    quick = dann.recipe("quick")
    kwargs = quick.fit_kwargs()
    assert {"epochs", "batch_size", "lr", "momentum", "gamma"} == set(kwargs)
    assert quick.model_kwargs() == {"domain_hidden": (512, 512), "batchnorm": True, "filters": (16, 32)}
    with pytest.raises(ValueError, match="no DANN recipe"):
        dann.recipe("huge")


def test_grey_sources_become_rgb_beside_an_rgb_target():
    grey = Split(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1), np.array([0, 1]))
    rgb = dann.to_rgb(grey)
    assert rgb.images.shape == (2, 4, 4, 3) and np.array_equal(rgb.images[..., 2], grey.images[..., 0])
    assert dann.to_rgb(rgb) is rgb


# -- the gradient-reversal layer ----------------------------------------------------------------------
@pytest.mark.parametrize("lambda_", [0.0, 0.37, 1.0, 2.5])
def test_torch_reversal_is_identity_forward_and_minus_lambda_backward(lambda_):
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 7, dtype=torch.float64)
    y = tt.reverse_gradient(x, lambda_)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -lambda_ * upstream)

    layer_input = x.detach().clone().requires_grad_(True)
    tt.GradientReversal(lambda_)(layer_input).backward(upstream)
    assert torch.equal(layer_input.grad, -lambda_ * upstream)


@pytest.mark.parametrize("lambda_", [0.0, 0.37, 1.0, 2.5])
def test_keras_reversal_is_identity_forward_and_minus_lambda_backward(lambda_):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(5, 7)), tf.float32)  # a Keras layer computes in float32
    upstream = tf.constant(rng.normal(size=(5, 7)), tf.float32)
    layer = tk.GradientReversal(lambda_)
    for reverse in (lambda v: tk.reverse_gradient(v, lambda_), layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = reverse(x)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
        grad = tape.gradient(y, x, output_gradients=upstream)
        np.testing.assert_array_equal(np.asarray(grad), -np.float32(lambda_) * np.asarray(upstream))


def test_torch_features_get_the_domain_gradient_reversed_and_the_domain_head_does_not():
    images = tt.train.default_transform(np.concatenate([SOURCE.images[:6], TARGET.images[:6]]))
    domains = torch.cat([torch.zeros(6), torch.ones(6)])
    model = tiny_torch_dann()
    model.reversal.lambda_ = 1.0

    def gradients(reversed_: bool):
        model.zero_grad()
        features = model.features(images)
        logits = model.domain_logits(features) if reversed_ else model.domain_head(features).squeeze(-1)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, domains).backward()
        grads = lambda part: [p.grad.clone() for p in part.parameters()]  # noqa: E731
        return grads(model.features), grads(model.domain_head)

    (features_rev, head_rev), (features_plain, head_plain) = gradients(True), gradients(False)
    assert all(torch.equal(a, -b) and b.abs().sum() > 0 for a, b in zip(features_rev, features_plain))
    assert all(torch.equal(a, b) for a, b in zip(head_rev, head_plain))


def test_keras_features_get_the_domain_gradient_reversed_and_the_domain_head_does_not():
    images = tk.train.default_transform(np.concatenate([SOURCE.images[:6], TARGET.images[:6]]))
    domains = tf.concat([tf.zeros(6), tf.ones(6)], 0)
    model = tiny_keras_dann()
    model.reversal.lambda_ = 1.0
    watched = model.features.trainable_variables + model.domain_head.trainable_variables

    def gradients(reversed_: bool):
        with tf.GradientTape() as tape:
            features = model.features(images)
            logits = model.domain_logits(features) if reversed_ else tf.squeeze(model.domain_head(features), -1)
            loss = tf.reduce_mean(keras.ops.binary_crossentropy(domains, logits, from_logits=True))
        return [np.asarray(g) for g in tape.gradient(loss, watched)]

    reversed_, plain = gradients(True), gradients(False)
    count = len(model.features.trainable_variables)
    for a, b in zip(reversed_[:count], plain[:count]):
        np.testing.assert_array_equal(a, -b)
        assert np.abs(b).sum() > 0
    assert all_equal(reversed_[count:], plain[count:])


# -- fit_dann --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FRAMEWORKS)
def test_fit_dann_records_the_documented_columns(name):
    fw, build = FRAMEWORKS[name]
    model = build()
    history = fw.fit_dann(model, SOURCE, TARGET.images, epochs=2, batch_size=8, lr=0.05, target_eval=TARGET,
                          seed=0, progress=False)
    assert isinstance(history, History) and len(history) == 2 and history.meta["method"] == "dann"
    assert DANN_COLUMNS <= set(history.columns)
    assert all(history[column][-1] is not None for column in DANN_COLUMNS)
    assert 0 < history["lambda"][0] < history["lambda"][1] < 1
    assert history["lr"][0] > history["lr"][1]
    assert history[-1]["target_accuracy"] == pytest.approx(fw.evaluate(model, TARGET)["accuracy"])
    assert fw.predict(model, TARGET.images[:3]).shape == (3, 4)
    features = fw.dann_features(model, TARGET)
    assert features.shape == (len(TARGET), 16) and features.dtype == np.float32


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_without_adaptation_the_domain_head_stays_put(name):
    fw, build = FRAMEWORKS[name]
    model = build()
    head_before = weights_of(name, model.domain_head)
    features_before = weights_of(name, model.features)
    history = fw.fit_dann(model, SOURCE, None, epochs=2, batch_size=8, lr=0.05, adapt=False, seed=0, progress=False)
    assert all_equal(weights_of(name, model.domain_head), head_before)
    assert not all_equal(weights_of(name, model.features), features_before)
    assert history["domain_loss"] == [None, None] and history["lambda"] == [0.0, 0.0]
    assert history.meta["method"] == "source only"


def test_torch_without_adaptation_is_plain_source_training():
    model, reference = tiny_torch_dann(), tiny_torch_dann()
    tt.fit_dann(model, SOURCE, TARGET, epochs=2, batch_size=8, lr=0.05, lr_schedule=None, adapt=False,
                seed=3, progress=False)
    classifier = torch.nn.Sequential(reference.features, reference.label_head)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=0.05, momentum=0.9)
    for epoch in (1, 2):
        for batch, _ in dann.paired_batches(len(SOURCE), 0, 8, seed=3, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(
                classifier(tt.train.default_transform(SOURCE.images[batch])), torch.from_numpy(SOURCE.labels[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert all_equal(torch_weights(model), torch_weights(reference))


def test_keras_without_adaptation_is_plain_source_training():
    model, reference = tiny_keras_dann(), tiny_keras_dann()
    tk.fit_dann(model, SOURCE, TARGET, epochs=2, batch_size=8, lr=0.05, lr_schedule=None, adapt=False,
                seed=3, progress=False)
    classifier = keras.Sequential([reference.features, reference.label_head])
    optimizer = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)
    for epoch in (1, 2):
        for batch, _ in dann.paired_batches(len(SOURCE), 0, 8, seed=3, epoch=epoch):
            with tf.GradientTape() as tape:
                logits = classifier(tk.train.default_transform(SOURCE.images[batch]), training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    SOURCE.labels[batch], logits, from_logits=True))
            variables = classifier.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    for ours, theirs in zip(keras_weights(model), keras_weights(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_seeded_runs_repeat_exactly_on_cpu(name):
    fw, build = FRAMEWORKS[name]
    runs = []
    for _ in range(2):
        model = build(seed=1)
        history = fw.fit_dann(model, SOURCE, TARGET, epochs=2, batch_size=8, lr=0.05, target_eval=TARGET,
                              seed=5, progress=False)
        runs.append((numbers(history), weights_of(name, model)))
    assert runs[0][0] == runs[1][0]
    assert all_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_clear_errors(name):
    fw, build = FRAMEWORKS[name]
    with pytest.raises(ValueError, match="adapt=False"):
        fw.fit_dann(build(), SOURCE, None, progress=False)
    with pytest.raises(TypeError, match="build_dann"):
        fw.fit_dann(object(), SOURCE, TARGET, progress=False)
    with pytest.raises(TypeError, match="domain_lambda"):
        fw.fit_dann(build(), SOURCE, TARGET, domain_lambda="paper", progress=False)


# -- a transform of its own for the target domain ------------------------------------------------
@pytest.mark.parametrize("name", FRAMEWORKS)
def test_fit_dann_passes_the_target_batches_and_target_eval_through_the_target_transform(name):
    fw, build = FRAMEWORKS[name]
    default = (tt.train if name == "torch" else tk.train).default_transform
    seen = []

    def target_transform(images):
        if isinstance(images, np.ndarray):  # the training batches (evaluate may trace it into a graph)
            seen.append(len(images))
        return default(images) - 0.5

    model = build()
    history = fw.fit_dann(model, SOURCE, TARGET.images, epochs=1, batch_size=8, lr=0.05, target_eval=TARGET,
                          target_transform=target_transform, seed=0, progress=False)
    assert sum(seen) >= len(SOURCE)  # a target batch beside every source batch
    shifted = fw.evaluate(model, TARGET, transform=lambda images: default(images) - 0.5)["accuracy"]
    assert history["target_accuracy"][-1] == pytest.approx(shifted)


# -- the digits network with BatchNorm (the quick recipe) ------------------------------------------
def channels_last(flat: np.ndarray, channels: int = 48) -> np.ndarray:
    """PyTorch's flattened (C, H, W) feature order as Keras' (H, W, C)."""
    side = int(round((flat.shape[1] / channels) ** 0.5))
    return flat.reshape(len(flat), channels, side, side).transpose(0, 2, 3, 1).reshape(len(flat), -1)


def test_batchnorm_digits_network_is_the_same_in_both_frameworks():
    assert dann.recipe("quick").model_kwargs()["batchnorm"] is True
    torch.manual_seed(0)
    torch_model = tt.build_dann_digits(batchnorm=True)
    keras_model = tk.build_dann_digits(batchnorm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in torch_model.features) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tt.build_dann_digits().features)
    narrow = tt.build_dann_digits(filters=(16, 32)), tk.build_dann_digits(filters=(16, 32))
    assert [m.out_channels for m in narrow[0].features if isinstance(m, torch.nn.Conv2d)] == [16, 32]
    assert [layer.filters for layer in narrow[1].features.layers if isinstance(layer, keras.layers.Conv2D)] == [16, 32]
    with torch.no_grad():  # give the statistics something other than their defaults
        for m in torch_model.features:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    tk.dann.assign_torch_state(keras_model, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    images = np.random.default_rng(0).random((6, 28, 28, 3)).astype(np.float32)

    torch_model.eval()
    with torch.no_grad():
        expected = channels_last(torch_model.features(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy())
    got = keras.ops.convert_to_numpy(keras_model.features(images, training=False))
    assert np.allclose(got, expected, atol=1e-4)

    # one training-mode pass: both normalise with the batch's statistics and move their running
    # statistics by the same share (PyTorch momentum 0.1 = Keras momentum 0.9)
    torch_model.train()
    with torch.no_grad():
        trained = channels_last(torch_model.features(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy())
    got = keras.ops.convert_to_numpy(keras_model.features(images, training=True))
    assert np.allclose(got, trained, atol=1e-4) and not np.allclose(trained, expected, atol=1e-3)
    torch_norm = [m for m in torch_model.features if isinstance(m, torch.nn.BatchNorm2d)][0]
    keras_norm = [layer for layer in keras_model.features.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    assert np.allclose(keras_norm.get_weights()[2], torch_norm.running_mean.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_a_batchnorm_dann_trains_and_its_statistics_see_both_domains(name):
    fw = FRAMEWORKS[name][0]

    def digit_sized(images):  # 12x12 -> 36x36 -> the middle 28x28
        return np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)[:, 4:32, 4:32]

    source, target = Split(digit_sized(SOURCE.images), SOURCE.labels), digit_sized(TARGET.images)
    means = {}
    for adapt in (False, True):
        if name == "torch":
            torch.manual_seed(0)
        else:
            keras.utils.set_random_seed(0)
        model = fw.build_dann_digits(4, (28, 28, 3), batchnorm=True)
        history = fw.fit_dann(model, source, target if adapt else None, epochs=2, batch_size=8, lr=0.01,
                              adapt=adapt, seed=0, progress=False)
        assert np.isfinite(history["loss"]).all()
        if name == "torch":
            norm = [m for m in model.features if isinstance(m, torch.nn.BatchNorm2d)][0]
            means[adapt] = norm.running_mean.numpy().copy()
        else:
            norm = [layer for layer in model.features.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
            means[adapt] = np.array(norm.get_weights()[2])
    # the target's brighter background raises the first layer's running mean only when target batches pass
    assert not np.allclose(means[True], means[False], atol=1e-3)


def test_proxy_a_distance_is_zero_for_one_domain_and_two_for_separate_ones():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 8)), rng.normal(size=(300, 8))
    assert dann.proxy_a_distance(*same) < 0.3
    apart = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + np.r_[8.0, np.zeros(7)]
    assert dann.proxy_a_distance(*apart) > 1.9
    halfway = rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + np.r_[1.0, np.zeros(7)]
    assert 0.3 < dann.proxy_a_distance(*halfway) < 1.9
    assert dann.proxy_a_distance(*halfway, seed=3) == dann.proxy_a_distance(*halfway, seed=3)
    with pytest.raises(ValueError, match="same width"):
        dann.proxy_a_distance(rng.normal(size=(10, 3)), rng.normal(size=(10, 4)))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_trained_torch_dann_copied_into_keras_gives_the_same_outputs(batchnorm):
    digits = Split(np.random.default_rng(1).integers(0, 256, (24, 28, 28, 3)).astype(np.uint8),
                   np.arange(24) % 10)
    torch.manual_seed(0)
    torch_model = tt.build_dann_digits(10, batchnorm=batchnorm, filters=(8, 16), domain_hidden=(32, 32))
    tt.fit_dann(torch_model, digits, digits.images[::-1], epochs=1, batch_size=8, lr=0.01, seed=0, progress=False)
    keras_model = tk.build_dann_digits(10, batchnorm=batchnorm, filters=(8, 16), domain_hidden=(32, 32))
    tk.dann.assign_torch_state(keras_model, {k: v.numpy() for k, v in torch_model.state_dict().items()})

    x = digits.images.astype(np.float32) / 255
    with torch.no_grad():
        torch_logits, torch_domains = (t.numpy() for t in torch_model(torch.from_numpy(x).permute(0, 3, 1, 2), domains=True))
    keras_logits, keras_domains = (keras.ops.convert_to_numpy(t) for t in keras_model(x, domains=True, training=False))
    assert np.allclose(keras_logits, torch_logits, atol=1e-4) and np.allclose(keras_domains, torch_domains, atol=1e-4)
    assert tk.evaluate(keras_model, digits)["accuracy"] == tt.evaluate(torch_model, digits)["accuracy"]

    with pytest.raises(ValueError, match="same arguments"):
        tk.dann.assign_torch_state(tk.build_dann_digits(10, batchnorm=not batchnorm, filters=(8, 16), domain_hidden=(32, 32)),
                                   {k: v.numpy() for k, v in torch_model.state_dict().items()})
