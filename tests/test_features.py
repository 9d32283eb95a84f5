"""Bottleneck features: what extract_features computes in both frameworks, its disk cache, the heads.

Small on purpose: photo patches at 64 px, a few dozen images per test, so the file runs in well
under a minute on 2 CPU cores.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

import tlcourse.keras as tk  # noqa: E402  (tlcourse.* before keras: see tlcourse/_coexist.py)
import tlcourse.torch as tt  # noqa: E402
import keras  # noqa: E402

from tlcourse import data  # noqa: E402
from tlcourse import features  # noqa: E402
from tlcourse import lite0 as spec  # noqa: E402

SIZE = 64
extractors = {"torch": tt.extract_features, "keras": tk.extract_features}


@pytest.fixture(scope="module", autouse=True)
def private_home(tmp_path_factory):
    """Models, converted weights and features all go to a throw-away cache root."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TLCOURSE_HOME", str(tmp_path_factory.mktemp("tlcourse_home")))
        yield


@pytest.fixture
def feature_folder(tmp_path, monkeypatch):
    """A fresh, empty feature cache for one test."""
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path))
    return features.cache_folder()


@pytest.fixture(scope="module")
def patches():
    return data.load("photo_patches", limit=120)


@pytest.fixture(scope="module")
def few_images(patches):
    return patches.train.images[:12]


@pytest.fixture(scope="module")
def torch_model():
    return tt.build_lite0()


@pytest.fixture(scope="module")
def keras_model():
    return tk.build_lite0()


@pytest.fixture(scope="module")
def models(torch_model, keras_model):
    return {"torch": torch_model, "keras": keras_model}


@pytest.fixture
def count_torch_forwards():
    """``count(model)`` -> a list that grows by one per forward pass through ``model.stem``."""
    handles = []

    def count(model) -> list:
        calls = []
        handles.append(model.stem.register_forward_pre_hook(lambda module, inputs: calls.append(len(inputs[0]))))
        return calls

    yield count
    for handle in handles:
        handle.remove()


@pytest.fixture
def keras_layer_calls(monkeypatch) -> list:
    """Every Keras layer call made while the test runs (Functional models call each layer)."""
    calls = []
    original = keras.layers.Layer.__call__

    def counting(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__call__", counting)
    return calls


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- what the features are -----------------------------------------------------------------------


def test_top_features_are_the_classifier_input_and_agree_across_frameworks(models, few_images):
    top = {name: extractors[name](models[name], few_images, size=SIZE, cache=False, progress=False) for name in models}
    for name, values in top.items():
        assert values.shape == (len(few_images), spec.TOP_CHANNELS) and values.dtype == np.float32, name
    assert relative_difference(top["keras"], top["torch"]) < 1e-3

    # Feeding the features to each model's own classifier gives that model's logits.
    torch_model, keras_model = models["torch"], models["keras"]
    with torch.inference_mode():
        logits = torch_model(tt.preprocess(few_images, SIZE)).numpy()
        from_features = torch_model.top.classifier(torch.from_numpy(top["torch"])).numpy()
    np.testing.assert_allclose(from_features, logits, rtol=1e-4, atol=1e-4)
    keras_logits = keras.ops.convert_to_numpy(keras_model(tk.preprocess(few_images, SIZE), training=False))
    keras_from_features = keras.ops.convert_to_numpy(keras_model.get_layer("top_classifier")(top["keras"]))
    np.testing.assert_allclose(keras_from_features, keras_logits, rtol=1e-4, atol=1e-4)


def test_block_features_are_the_pooled_block_output(models, few_images):
    block4 = {name: extractors[name](models[name], few_images, "block4", size=SIZE, cache=False, progress=False) for name in models}
    channels = next(stage.channels for stage in spec.STAGES if stage.name == "block4")
    assert channels == 80
    for name, values in block4.items():
        assert values.shape == (len(few_images), channels), name
    assert relative_difference(block4["keras"], block4["torch"]) < 1e-3

    model = models["torch"]
    with torch.inference_mode():
        x = tt.preprocess(few_images, SIZE)
        for block in ("stem", "block1", "block2", "block3", "block4"):
            x = getattr(model, block)(x)
    np.testing.assert_allclose(block4["torch"], x.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_several_layers_in_one_pass_match_single_layers(framework, models, few_images, feature_folder):
    extract = extractors[framework]
    together = extract(models[framework], few_images, ["top", "stem", "block6"], size=SIZE, progress=False)
    assert list(together) == ["top", "stem", "block6"]
    assert [v.shape[1] for v in together.values()] == [1280, 32, 192]
    for layer, values in together.items():
        alone = extract(models[framework], few_images, layer, size=SIZE, cache=False, progress=False)
        np.testing.assert_allclose(values, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_bad_layer_name_lists_the_valid_ones(framework, models, few_images):
    with pytest.raises(ValueError) as error:
        extractors[framework](models[framework], few_images, "block9", size=SIZE, progress=False)
    assert "block9" in str(error.value)
    for name in spec.MODULE_NAMES:  # every block but the head, whose output is logits
        assert name in str(error.value)
    assert "head" not in str(error.value)
    with pytest.raises(TypeError, match="block name"):
        extractors[framework](models[framework], few_images, 4, size=SIZE, progress=False)


def test_importing_the_shared_half_loads_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, tlcourse.features; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_grey_images_need_gray_to_rgb_and_then_match_copied_rgb(torch_model, feature_folder):
    grey = data.load("textures", limit=6).train.images
    assert grey.shape[-1] == 1
    with pytest.raises(ValueError, match="gray_to_rgb=True"):
        tt.extract_features(torch_model, grey, size=SIZE, progress=False)
    from_grey = tt.extract_features(torch_model, grey, size=SIZE, gray_to_rgb=True, cache=False, progress=False)
    from_rgb = tt.extract_features(torch_model, np.repeat(grey, 3, axis=-1), size=SIZE, cache=False, progress=False)
    np.testing.assert_array_equal(from_grey, from_rgb)


def test_torch_modes_are_restored_and_features_use_eval_mode(few_images):
    model = tt.build_lite0()
    expected = tt.extract_features(model, few_images, "block3", size=SIZE, cache=False, progress=False)
    model.train()
    model.block2.eval()  # a mixed state, as fit() leaves frozen BatchNorm
    got = tt.extract_features(model, few_images, "block3", size=SIZE, cache=False, progress=False)
    np.testing.assert_array_equal(got, expected)
    assert model.training and model.block3.training and not model.block2.training


# -- the cache ------------------------------------------------------------------------------------


def test_torch_cache_hit_returns_the_same_array_without_running_the_model(torch_model, few_images, feature_folder, count_torch_forwards):
    calls = count_torch_forwards(torch_model)
    first = tt.extract_features(torch_model, few_images, "block5", size=SIZE, progress=False)
    assert calls and len(list(feature_folder.glob("*.npz"))) == 1
    calls.clear()
    again = tt.extract_features(torch_model, few_images, "block5", size=SIZE, progress=False)
    assert calls == []
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32


def test_keras_cache_hit_returns_the_same_array_without_running_the_model(keras_model, few_images, feature_folder, keras_layer_calls):
    first = tk.extract_features(keras_model, few_images, "block5", size=SIZE, progress=False)
    assert "stem_conv" in keras_layer_calls
    keras_layer_calls.clear()
    again = tk.extract_features(keras_model, few_images, "block5", size=SIZE, progress=False)
    assert keras_layer_calls == []
    np.testing.assert_array_equal(again, first)


@pytest.mark.slow
def test_one_changed_pixel_is_a_new_entry(torch_model, few_images, feature_folder, count_torch_forwards):
    before = tt.extract_features(torch_model, few_images, size=SIZE, progress=False)
    changed = few_images.copy()
    changed[3, 10, 10, 0] ^= 0xFF
    calls = count_torch_forwards(torch_model)
    after = tt.extract_features(torch_model, changed, size=SIZE, progress=False)
    assert calls, "a changed image must be run through the model"
    assert len(list(feature_folder.glob("*.npz"))) == 2
    assert not np.allclose(after[3], before[3])
    np.testing.assert_allclose(np.delete(after, 3, axis=0), np.delete(before, 3, axis=0), rtol=1e-5, atol=1e-6)


def test_weights_decide_the_entry(torch_model, few_images, feature_folder, count_torch_forwards):
    imagenet = tt.extract_features(torch_model, few_images, size=SIZE, progress=False)
    torch.manual_seed(0)
    random_init = tt.build_lite0(weights=None)
    calls = count_torch_forwards(random_init)
    scratch = tt.extract_features(random_init, few_images, size=SIZE, progress=False)
    assert calls and len(list(feature_folder.glob("*.npz"))) == 2
    assert relative_difference(scratch, imagenet) > 0.1

    # A new classifier does not change the features before it: the entry is shared ...
    new_head = tt.build_lite0(num_classes=6)
    calls = count_torch_forwards(new_head)
    np.testing.assert_array_equal(tt.extract_features(new_head, few_images, size=SIZE, progress=False), imagenet)
    assert calls == []
    # ... but a changed BatchNorm statistic in block2 does, for block2 onwards only.
    stem = tt.extract_features(new_head, few_images, "stem", size=SIZE, progress=False)
    calls.clear()
    with torch.no_grad():
        new_head.block2.a.bn.running_mean += 0.5
    tt.extract_features(new_head, few_images, "stem", size=SIZE, progress=False)
    assert calls == []
    moved = tt.extract_features(new_head, few_images, size=SIZE, progress=False)
    assert calls and not np.allclose(moved, imagenet)
    np.testing.assert_array_equal(tt.extract_features(new_head, few_images, "stem", size=SIZE, progress=False), stem)


def test_cache_false_neither_reads_nor_writes(torch_model, few_images, feature_folder, count_torch_forwards):
    tt.extract_features(torch_model, few_images, size=SIZE, progress=False)
    calls = count_torch_forwards(torch_model)
    tt.extract_features(torch_model, few_images, size=SIZE, cache=False, progress=False)
    assert calls
    tt.extract_features(torch_model, few_images, size=SIZE + 32, cache=False, progress=False)
    assert len(list(feature_folder.iterdir())) == 1


def test_a_damaged_entry_is_computed_again(torch_model, few_images, feature_folder, count_torch_forwards):
    first = tt.extract_features(torch_model, few_images, "block2", size=SIZE, progress=False)
    (entry,) = feature_folder.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    calls = count_torch_forwards(torch_model)
    again = tt.extract_features(torch_model, few_images, "block2", size=SIZE, progress=False)
    assert calls
    np.testing.assert_array_equal(again, first)
    calls.clear()
    tt.extract_features(torch_model, few_images, "block2", size=SIZE, progress=False)
    assert calls == [], "the rewritten entry is whole again"
    assert [p.name for p in feature_folder.iterdir()] == [entry.name], "no temporary files left behind"


# -- other backbones ------------------------------------------------------------------------------


def test_unknown_torch_backbone_with_its_own_block_map():
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    images = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match="blocks="):
        tt.extract_features(net, images, cache=False, progress=False)
    blocks = {"conv": [net[0], net[1]], "last": [net[2], net[3], net[4]]}
    got = tt.extract_features(net, images, ["conv", "last"], blocks=blocks, cache=False, progress=False)
    with torch.inference_mode():
        x = tt.preprocess(images, 20)
        conv = net[1](net[0](x))
    np.testing.assert_allclose(got["conv"], conv.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["last"], got["conv"], rtol=1e-5, atol=1e-6)  # pooled conv = classifier input


def test_unknown_keras_backbone_with_its_own_block_map():
    layers = keras.layers
    net = keras.Sequential(
        [keras.Input((None, None, 3)), layers.Conv2D(8, 3, strides=2, activation="relu"), layers.GlobalAveragePooling2D(), layers.Dense(4)],
        name="tiny",
    )
    images = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match="blocks="):
        tk.extract_features(net, images, cache=False, progress=False)
    blocks = {"conv": [net.layers[0]], "last": net.layers[1:]}
    got = tk.extract_features(net, images, ["conv", "last"], blocks=blocks, cache=False, progress=False)
    conv = keras.ops.convert_to_numpy(net.layers[0](tk.preprocess(images, 20)))
    np.testing.assert_allclose(got["conv"], conv.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["last"], got["conv"], rtol=1e-5, atol=1e-6)


# -- heads and files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patch_features(torch_model, patches):
    """ImageNet and random-init top features of the photo patches (6 classes, chance 1/6)."""
    torch.manual_seed(0)
    random_init = tt.build_lite0(weights=None)
    result = {}
    for name, model in (("imagenet", torch_model), ("random", random_init)):
        train = tt.extract_features(model, patches.train, size=SIZE, progress=False)
        test = tt.extract_features(model, patches.test, size=SIZE, progress=False)
        result[name] = ((train, patches.train.labels), (test, patches.test.labels))
    return result


def test_heads_on_imagenet_features_beat_chance_and_random_features(patch_features):
    imagenet = features.compare_heads(*patch_features["imagenet"])
    random = features.compare_heads(*patch_features["random"])
    assert [row["kind"] for row in imagenet] == list(features.HEAD_KINDS)
    for row in imagenet:
        assert row["accuracy"] >= 0.5, row  # chance is 0.17
        assert row["fit_seconds"] > 0
    mean = lambda rows: np.mean([row["accuracy"] for row in rows])  # noqa: E731
    assert mean(imagenet) > mean(random) + 0.1


def test_features_saved_to_disk_train_the_same_head(patch_features, tmp_path):
    (train_x, train_y), (test_x, _) = patch_features["imagenet"]
    path = features.save_features(tmp_path / "train_top", train_x, train_y)
    assert path.name == "train_top.npz" and [p.name for p in tmp_path.iterdir()] == ["train_top.npz"]
    loaded_x, loaded_y = features.load_features(path)
    np.testing.assert_array_equal(loaded_x, train_x)
    np.testing.assert_array_equal(loaded_y, train_y)
    from_memory = features.train_head("svm", train_x, train_y).predict(test_x)
    from_disk = features.train_head("svm", loaded_x, loaded_y).predict(test_x)
    np.testing.assert_array_equal(from_disk, from_memory)


def test_head_kinds_and_options(patch_features):
    (train_x, train_y), _ = patch_features["imagenet"]
    with pytest.raises(ValueError) as error:
        features.train_head("knn", train_x, train_y)
    for kind in features.HEAD_KINDS:
        assert kind in str(error.value)
    head = features.train_head("logistic", train_x, train_y, C=0.25)
    assert head[-1].C == 0.25 and head.score(train_x, train_y) > 0.9
    with pytest.raises(ValueError, match="labels"):
        features.train_head("logistic", train_x, train_y[:-1])
