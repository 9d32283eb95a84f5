"""EfficientNet-Lite0 in both frameworks: real ImageNet weights, parity, block map, weight caching.

The golden labels come from scikit-image's and scikit-learn's offline sample photos. The reference
(lukemelas-style) code gives chelsea "Egyptian cat" p=0.80 and coffee "espresso" p=0.86 when the
whole photo is resized to 224x224 and normalised with ImageNet's mean/std; ours must too.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from tlcourse import lite0 as spec  # noqa: E402

GOLDEN_TOP1 = {
    "chelsea": "Egyptian cat",
    "coffee": "espresso",
    "camera": "tripod",  # the cameraman, a grayscale photo copied to RGB
    "rocket": "missile",
    "china": "bell cote",
}
REFERENCE_PROBABILITY = {"chelsea": 0.80, "coffee": 0.86}
PARITY_ONLY = ("astronaut", "flower")  # no sensible ImageNet label, still compared across frameworks


def _photos() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_image

    return {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "camera": data.camera(),
        "rocket": data.rocket(),
        "china": load_sample_image("china.jpg"),
        "astronaut": data.astronaut(),
        "flower": load_sample_image("flower.jpg"),
    }


@pytest.fixture(scope="module", autouse=True)
def weights_home(tmp_path_factory):
    """A fresh cache root, so the Keras conversion really runs here and nothing leaks out."""
    previous = os.environ.get("TLCOURSE_HOME")
    home = tmp_path_factory.mktemp("tlcourse_home")
    os.environ["TLCOURSE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("TLCOURSE_HOME", None)
    else:
        os.environ["TLCOURSE_HOME"] = previous


@pytest.fixture(scope="module")
def photos():
    return _photos()


@pytest.fixture(scope="module")
def torch_model(weights_home):
    from tlcourse.torch import build_lite0

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return build_lite0(weights="imagenet")


@pytest.fixture(scope="module")
def keras_model(weights_home):
    from tlcourse.keras import build_lite0

    return build_lite0(weights="imagenet")


@pytest.fixture(scope="module")
def torch_batch(photos):
    """Every photo through tlcourse.torch.preprocess at 224 px: (N, 3, 224, 224)."""
    from tlcourse.torch import preprocess

    return torch.cat([preprocess(image[None], 224, gray_to_rgb=True) for image in photos.values()])


@pytest.fixture(scope="module")
def torch_logits(torch_model, torch_batch):
    with torch.no_grad():
        return torch_model(torch_batch).numpy()


def _keras_logits(model, nhwc: np.ndarray) -> np.ndarray:
    return np.asarray(model(nhwc, training=False))


# --- framework-neutral facts -------------------------------------------------------------------------


@pytest.mark.slow
def test_imagenet_class_names_match_torchvision_order():
    # In a subprocess: importing torchvision.models loads triton, which crashes a process where
    # TensorFlow is already loaded (as it may be by other test modules).
    code = (
        "import json, torchvision; from tlcourse.lite0 import imagenet_categories; "
        "theirs = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta['categories']; "
        "print(json.dumps(list(imagenet_categories()) == list(theirs)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "true"
    names = spec.imagenet_categories()
    assert (len(names), names[285], names[967]) == (1000, "Egyptian cat", "espresso")


def test_numpy_reader_matches_torch_load():
    path = spec.reference_weights_path()
    ours = spec.read_reference_state(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def test_architecture_table():
    units = spec.units()
    assert len(units) == 16
    assert [u.block for u in units].count("block6") == 4
    assert (units[0].in_channels, units[0].expand_ratio, units[-1].out_channels) == (32, 1, 320)
    # TensorFlow "same": the odd pixel of padding goes after.
    assert spec.same_padding(224, 3, 2) == (0, 1)
    assert spec.same_padding(112, 5, 2) == (1, 2)
    assert spec.same_padding(97, 3, 2) == (1, 1)
    assert spec.same_padding(56, 5, 1) == (2, 2)


@pytest.mark.parametrize("kernel", [3, 5])
def test_torch_stride2_conv_equals_explicit_tf_padding(kernel):
    """SameConv2d avoids copying the input into a padded one; it must equal doing exactly that."""
    import torch.nn.functional as F

    from tlcourse.torch.lite0 import SameConv2d

    torch.manual_seed(0)
    for height, width in [(8, 8), (9, 9), (8, 9), (9, 8), (2, 2), (1, 1), (3, 4), (6, 5)]:
        for in_channels, out_channels, groups in ((4, 4, 4), (3, 6, 1)):
            conv = SameConv2d(in_channels, out_channels, kernel, stride=2, groups=groups)
            x = torch.randn(2, in_channels, height, width, requires_grad=True)
            top, bottom = spec.same_padding(height, kernel, 2)
            left, right = spec.same_padding(width, kernel, 2)
            expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, stride=2, groups=groups)
            out = conv(x)
            assert out.shape == expected.shape
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(expected.sum(), x)[0])


# --- block map ---------------------------------------------------------------------------------------


def test_block_map_is_the_same_in_both_frameworks(torch_model, keras_model):
    from tlcourse.keras import lite0_blocks as keras_blocks
    from tlcourse.keras.lite0 import keras_layer_name
    from tlcourse.torch import LITE0_BLOCKS
    from tlcourse.torch.lite0 import LITE0_MODULES
    from tlcourse.torch import lite0_blocks as torch_blocks

    assert [name for name, _ in torch_model.named_children()] == list(LITE0_BLOCKS[:-1])  # head lies in top
    assert list(torch_blocks(torch_model)) == list(keras_blocks(keras_model)) == list(spec.BLOCK_NAMES)
    assert spec.BLOCK_NAMES == ("stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "top",
                                "head")

    # Every torch parameter lives in exactly one block ("head" names part of the top module).
    owners = {}
    for block, module in torch_blocks(torch_model).items():
        for name, _ in module.named_parameters():
            owners.setdefault(f"{LITE0_MODULES[-1] if block == 'head' else block}.{name}", []).append(block)
    assert sorted(owners) == sorted(name for name, _ in torch_model.named_parameters())
    assert all(len(blocks) == 1 for blocks in owners.values())

    # Every Keras layer (but the input) lives in exactly one block, and all weights are covered.
    grouped = keras_blocks(keras_model)
    listed = [layer.name for layers in grouped.values() for layer in layers]
    assert len(listed) == len(set(listed)) == len(keras_model.layers) - 1
    assert sum(len(layer.weights) for layers in grouped.values() for layer in layers) == len(keras_model.weights)

    for block in spec.BLOCK_NAMES:
        module, layers = torch_blocks(torch_model)[block], grouped[block]
        torch_trainable = sum(p.numel() for p in module.parameters())
        torch_statistics = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
        keras_trainable = sum(int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights)
        keras_statistics = sum(int(np.prod(w.shape)) for layer in layers for w in layer.non_trainable_weights)
        assert (torch_trainable, torch_statistics) == (keras_trainable, keras_statistics), block
        # Layer for layer: torch "block2.a.dwconv" is Keras "block2a_dwconv".
        torch_layers = {
            keras_layer_name(f"{LITE0_MODULES[-1] if block == 'head' else block}.{name}")
            for name, child in module.named_modules()
            if name and not list(child.children()) and list(child.parameters())
        }
        assert torch_layers == {layer.name for layer in layers if layer.weights}, block

    assert sum(p.numel() for p in torch_model.parameters()) == spec.PARAMETER_COUNT == 4_652_008
    assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == spec.PARAMETER_COUNT

    bn_torch = torch_model.block7.a.bn
    bn_keras = keras_model.get_layer("block7a_bn")
    assert (bn_torch.eps, bn_torch.momentum) == pytest.approx((1e-3, 0.01))
    assert (bn_keras.epsilon, bn_keras.momentum) == pytest.approx((1e-3, 0.99))


# --- correctness and parity ----------------------------------------------------------------------------


def test_torch_golden_labels(photos, torch_logits):
    decoded = dict(zip(photos, spec.decode_predictions(torch_logits, top=5)))
    for photo, label in GOLDEN_TOP1.items():
        assert decoded[photo][0][1] == label, (photo, decoded[photo][:3])
    for photo, probability in REFERENCE_PROBABILITY.items():
        assert decoded[photo][0][2] == pytest.approx(probability, abs=0.02), photo


def test_keras_logits_match_torch(photos, keras_model, torch_batch, torch_logits):
    keras_logits = _keras_logits(keras_model, torch_batch.permute(0, 2, 3, 1).numpy())
    assert np.abs(keras_logits - torch_logits).max() <= 1e-3
    pairs = zip(spec.decode_predictions(torch_logits), spec.decode_predictions(keras_logits))
    for photo, (ours, theirs) in zip(photos, pairs):
        assert [i for i, _, _ in ours] == [i for i, _, _ in theirs], photo


def test_keras_pipeline_gives_the_golden_labels(photos, keras_model, torch_batch):
    from tlcourse.keras import preprocess

    batch = np.concatenate([np.asarray(preprocess(image[None], 224, gray_to_rgb=True)) for image in photos.values()])
    # The two preprocess() functions agree to float rounding (same crop, same antialiased bilinear).
    assert np.abs(batch - torch_batch.permute(0, 2, 3, 1).numpy()).max() < 1e-3
    decoded = dict(zip(photos, spec.decode_predictions(_keras_logits(keras_model, batch))))
    for photo, label in GOLDEN_TOP1.items():
        assert decoded[photo][0][1] == label, photo


def test_parity_at_odd_input_size(photos, torch_model, keras_model):
    """At 97 px every stride-2 layer meets odd sizes, where TF "same" padding is symmetric again."""
    from tlcourse.torch import preprocess

    x = preprocess(np.stack([photos["astronaut"], photos["astronaut"][:, ::-1]]), 97)
    with torch.no_grad():
        expected = torch_model(x).numpy()
    assert np.abs(_keras_logits(keras_model, x.permute(0, 2, 3, 1).numpy()) - expected).max() <= 1e-3


# --- preprocessing -------------------------------------------------------------------------------------


def _preprocessors():
    from tlcourse.keras import preprocess as keras_preprocess
    from tlcourse.torch import preprocess as torch_preprocess

    return {
        "torch": lambda *a, **k: torch_preprocess(*a, **k).permute(0, 2, 3, 1).numpy(),
        "keras": lambda *a, **k: np.asarray(keras_preprocess(*a, **k)),
    }


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_preprocess_output_and_crop(framework, photos):
    preprocess = _preprocessors()[framework]
    wide = photos["rocket"]  # 427 x 640
    x = preprocess(wide[None], 64)
    assert x.shape == (1, 64, 64, 3) and x.dtype == np.float32
    cropped = preprocess(wide[None], 64, crop=True)
    top, left, side = spec.center_square(*wide.shape[:2])
    assert (top, left, side) == (0, 106, 427)
    np.testing.assert_allclose(cropped, preprocess(wide[None, :, left : left + side], 64), atol=1e-5)
    flat = preprocess(np.full((2, 8, 8, 3), 255, np.uint8), 8)
    white = (1 - np.array(spec.IMAGENET_MEAN)) / np.array(spec.IMAGENET_STD)
    np.testing.assert_allclose(flat[0, 0, 0], white, rtol=1e-5)
    if framework == "torch":
        from tlcourse.torch import preprocess as raw

        assert tuple(raw(wide[None], 32).shape) == (1, 3, 32, 32)  # NCHW for torch


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_preprocess_errors_name_the_fix(framework, photos):
    preprocess = _preprocessors()[framework]
    cat = photos["chelsea"]
    with pytest.raises(TypeError, match=r"astype\('uint8'\)"):
        preprocess(cat[None] / 255.0, 32)
    with pytest.raises(ValueError, match=r"images\[None\]"):
        preprocess(cat, 32)
    with pytest.raises(ValueError, match=r"transpose\(0, 2, 3, 1\)"):
        preprocess(cat[None].transpose(0, 3, 1, 2), 32)
    with pytest.raises(ValueError, match="gray_to_rgb=True"):
        preprocess(photos["camera"][None, ..., None], 32)
    with pytest.raises(ValueError, match="gray_to_rgb=True"):
        preprocess(photos["camera"][None], 32)
    with pytest.raises(ValueError, match=r"\[\.\.\., :3\]"):
        preprocess(np.concatenate([cat, cat[..., :1]], axis=-1)[None], 32)
    grey = photos["camera"][None]
    np.testing.assert_allclose(
        preprocess(grey, 32, gray_to_rgb=True), preprocess(np.repeat(grey[..., None], 3, axis=-1), 32), atol=1e-6
    )


# --- weights: random, from a file, cached conversion -----------------------------------------------------


def test_torch_weights_none_path_and_new_head(tmp_path, torch_model):
    from tlcourse.torch import build_lite0

    x = torch.linspace(-2, 2, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)
    with torch.no_grad():
        imagenet = torch_model(x)
        random_model = build_lite0(weights=None)
        assert not torch.allclose(random_model(x), imagenet, atol=1e-2)
        path = tmp_path / "random.pt"
        torch.save(random_model.state_dict(), path)
        np.testing.assert_array_equal(build_lite0(weights=path)(x).numpy(), random_model(x).numpy())
        reference_format = build_lite0(weights=spec.reference_weights_path())
        np.testing.assert_array_equal(reference_format(x).numpy(), imagenet.numpy())

    ten = build_lite0(num_classes=10, weights="imagenet")
    assert ten.top.classifier.out_features == 10
    torch.testing.assert_close(ten.block7.a.dwconv.weight, torch_model.block7.a.dwconv.weight)
    with pytest.raises(ValueError, match="pass num_classes=1000"):
        build_lite0(num_classes=10, weights=path)
    with pytest.raises(FileNotFoundError):
        build_lite0(weights=tmp_path / "missing.pt")


@pytest.mark.slow
def test_keras_weights_none_path_and_new_head(tmp_path, keras_model):
    from tlcourse.keras import build_lite0

    x = np.linspace(-2, 2, 2 * 64 * 64 * 3, dtype=np.float32).reshape(2, 64, 64, 3)
    imagenet = _keras_logits(keras_model, x)
    random_model = build_lite0(weights=None)
    assert not np.allclose(_keras_logits(random_model, x), imagenet, atol=1e-2)
    path = tmp_path / "random.weights.h5"
    random_model.save_weights(path)
    np.testing.assert_array_equal(_keras_logits(build_lite0(weights=path), x), _keras_logits(random_model, x))
    from_pth = build_lite0(weights=spec.reference_weights_path())
    np.testing.assert_allclose(_keras_logits(from_pth, x), imagenet, atol=1e-6)

    ten = build_lite0(num_classes=10, weights="imagenet")
    assert ten.output_shape == (None, 10)
    np.testing.assert_array_equal(
        ten.get_layer("block7a_dwconv").get_weights()[0], keras_model.get_layer("block7a_dwconv").get_weights()[0]
    )
    with pytest.raises(ValueError, match="pass num_classes=1000"):
        build_lite0(num_classes=10, weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(OSError, match="force-reinstall"):
        build_lite0(weights=garbage)


@pytest.mark.slow
def test_corrupt_keras_cache_is_detected_and_rebuilt(keras_model):
    from tlcourse.keras import build_lite0
    from tlcourse.keras.lite0 import imagenet_weights_file

    x = np.linspace(-1, 1, 48 * 48 * 3, dtype=np.float32).reshape(1, 48, 48, 3)
    expected = _keras_logits(keras_model, x)
    path = imagenet_weights_file()
    record = path.with_name(path.name + ".sha256")
    good = spec.sha256_of(path)
    assert record.read_text().split()[0] == good

    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # zero a stretch of weights: still a valid HDF5 file
    path.write_bytes(bytes(data))
    assert spec.sha256_of(path) != good
    np.testing.assert_allclose(_keras_logits(build_lite0(), x), expected, atol=1e-6)
    assert record.read_text().split()[0] == spec.sha256_of(path)

    path.write_bytes(b"truncated")
    record.unlink()
    np.testing.assert_allclose(_keras_logits(build_lite0(), x), expected, atol=1e-6)
    assert record.read_text().split()[0] == spec.sha256_of(path)
