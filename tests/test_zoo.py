"""The backbone catalogue (tlcourse.zoo) and backbone() in PyTorch and Keras: block maps, parity,
weights loading and the offline message. Every model is built with random weights, once per
framework (VGG16 is big: it is only built, and in PyTorch run on 32-pixel images)."""
import math
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from tlcourse import zoo

ALL = zoo.NAMES
LIBRARY = tuple(b.name for b in zoo.FULL_BACKBONES)


# -- the catalogue, without any framework ---------------------------------------------------------
def test_catalogue_lists_the_five_backbones():
    assert ALL == ("efficientnet_lite0", "mobilenet_v3_small", "efficientnet_b0", "resnet50", "vgg16")
    assert zoo.card("efficientnet_lite0").profile == "quick"
    assert all(zoo.card(name).profile == "full" for name in LIBRARY)
    assert zoo.QUICK_INPUT_SIZE == 96
    for card in zoo.BACKBONES:
        assert card.input_size == 224
        assert card.blocks[-2:] == ("top", "head") and len(set(card.blocks)) == len(card.blocks)
        for framework in ("torch", "keras"):
            assert card.preprocessing(framework) in zoo.PREPROCESSING_CONVENTIONS
    assert zoo.card("resnet50").blocks == ("stem", "block1", "block2", "block3", "block4", "top", "head")
    assert zoo.card("vgg16").blocks == ("block1", "block2", "block3", "block4", "block5", "top", "head")


def test_cli_reads_its_weight_table_from_the_zoo():
    from tlcourse import cli

    assert cli.FULL_BACKBONES is zoo.FULL_BACKBONES
    assert [b.name for b in cli.FULL_BACKBONES] == list(LIBRARY)


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest():
    with pytest.raises(KeyError, match=r"Did you mean 'resnet50'\?.*efficientnet_lite0, mobilenet_v3_small"):
        zoo.card("resnet_50")
    with pytest.raises(KeyError, match="Known backbones"):
        zoo.card("inception")


def test_importing_the_zoo_loads_no_framework():
    code = (
        "import sys, tlcourse.zoo as z; z.card('vgg16'); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_imagenet_metadata_comes_from_torchvision_offline():
    import tlcourse.torch as tt

    meta = tt.imagenet_metadata("resnet50")
    assert meta["weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert meta["acc@1"] == pytest.approx(80.858) and meta["acc@5"] == pytest.approx(95.434)
    assert meta["num_params"] == 25_557_032 and meta["gflops"] == pytest.approx(4.089, abs=0.01)
    assert len(meta["categories"]) == 1000
    for name in LIBRARY:
        meta = tt.imagenet_metadata(name)
        assert 50 < meta["acc@1"] < meta["acc@5"] < 100 and meta["gflops"] > 0
    lite0 = tt.imagenet_metadata("efficientnet_lite0")
    assert lite0["categories"] == tt.imagenet_metadata("vgg16")["categories"]
    assert lite0["num_params"] == 4_652_008


# -- both frameworks: one model per name and framework, built once ---------------------------------
@pytest.fixture(scope="module")
def torch_models():
    from tlcourse.torch import backbone

    return {name: backbone(name, weights=None) for name in ALL}


@pytest.fixture(scope="module")
def keras_models():
    from tlcourse.keras import backbone

    return {name: backbone(name, weights=None) for name in ALL}


def torch_block_counts(model) -> dict[str, int]:
    from tlcourse.torch import blocks

    return {name: sum(p.numel() for p in block.parameters()) for name, block in blocks(model).items()}


def keras_block_counts(model, skip_conv_bias: bool = False) -> dict[str, int]:
    import keras

    from tlcourse.keras import blocks
    from tlcourse.keras.freezing import _parameters

    def count(layer) -> int:
        weights = _parameters(layer)
        if skip_conv_bias and isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            weights = [layer.kernel]
        return sum(math.prod(w.shape) for w in weights)

    return {name: sum(count(layer) for layer in layers) for name, layers in blocks(model).items()}


@pytest.mark.parametrize("name", ALL)
def test_torch_blocks_hold_every_parameter_exactly_once(torch_models, name):
    from tlcourse.torch import blocks

    model = torch_models[name]
    block_map = blocks(model)
    assert tuple(block_map) == zoo.card(name).blocks
    in_blocks = [id(p) for block in block_map.values() for p in block.parameters()]
    assert len(in_blocks) == len(set(in_blocks))
    assert set(in_blocks) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", ALL)
def test_keras_blocks_hold_every_layer_and_weight_exactly_once(keras_models, name):
    import keras

    from tlcourse.keras import blocks

    model = keras_models[name]
    block_map = blocks(model)
    assert tuple(block_map) == zoo.card(name).blocks
    assert all(block_map.values()), "an empty block"
    in_blocks = [id(layer) for layers in block_map.values() for layer in layers]
    assert len(in_blocks) == len(set(in_blocks))
    assert set(in_blocks) == {id(l) for l in model.layers if not isinstance(l, keras.layers.InputLayer)}
    weights = [id(w) for layers in block_map.values() for layer in layers for w in layer.weights]
    assert len(weights) == len(set(weights)) and set(weights) == {id(w) for w in model.weights}


# Torchvision and keras.applications build MobileNetV3-Small, EfficientNet-B0 and VGG16 with the
# same parameters, block by block. Keras's ResNet50 gives every convolution a bias (torchvision's
# have none, BatchNorm follows each): without those biases the blocks match too.
@pytest.mark.parametrize("name", ALL)
def test_parameter_counts_per_block_match_across_frameworks(torch_models, keras_models, name):
    torch_counts = torch_block_counts(torch_models[name])
    keras_counts = keras_block_counts(keras_models[name], skip_conv_bias=name == "resnet50")
    assert keras_counts == torch_counts
    if name in LIBRARY:
        import tlcourse.torch as tt

        assert sum(torch_counts.values()) == tt.imagenet_metadata(name)["num_params"]


def test_keras_resnet50_differs_only_by_convolution_biases(keras_models, torch_models):
    with_bias = sum(keras_block_counts(keras_models["resnet50"]).values())
    assert with_bias - sum(torch_block_counts(torch_models["resnet50"]).values()) == 26_560


@pytest.mark.parametrize("name", ("resnet50", "mobilenet_v3_small"))
def test_unfreeze_block4_frees_the_same_parameters_in_both(torch_models, keras_models, name):
    import tlcourse.keras as tk
    import tlcourse.torch as tt

    torch_model, keras_model = torch_models[name], keras_models[name]
    try:
        tables = []
        for lib, model in ((tt, torch_model), (tk, keras_model)):
            lib.freeze(model)
            lib.unfreeze(model, "block4")
            tables.append({row.block: row.trainable > 0 for row in lib.summary(model).rows})
        assert tables[0] == tables[1]
        names = zoo.card(name).blocks
        empty = {row.block for row in tt.summary(torch_model).rows if row.trainable + row.frozen == 0}  # ResNet's top: pooling
        assert [b for b in names if tables[0][b]] == [b for b in names[names.index("block4"):] if b not in empty]
    finally:
        for lib, model in ((tt, torch_model), (tk, keras_model)):
            lib.unfreeze(model, "all", train_batchnorm=True)


def test_torch_resnet50_returns_logits_of_shape_2x1000(torch_models):
    import torch

    with torch.inference_mode():
        out = torch_models["resnet50"](torch.zeros(2, 3, 32, 32))
        assert tuple(out.shape) == (2, 1000)
        assert tuple(torch_models["vgg16"](torch.zeros(1, 3, 32, 32)).shape) == (1, 1000)


def test_keras_resnet50_returns_logits_of_shape_2x1000(keras_models):
    out = np.asarray(keras_models["resnet50"](np.zeros((2, 224, 224, 3), "float32"), training=False))
    assert out.shape == (2, 1000)
    assert not np.allclose(out.sum(axis=1), 1.0)  # logits, not softmax probabilities


def test_extract_features_reaches_grouped_blocks(torch_models, keras_models):
    """A block made of several modules (ResNet's stem and head) gives its last module's output."""
    import tlcourse.keras as tk
    import tlcourse.torch as tt

    images = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    got = tt.extract_features(torch_models["resnet50"], images, ["stem", "block2", "top"], size=32,
                              cache=False, progress=False)
    assert {k: v.shape for k, v in got.items()} == {"stem": (2, 64), "block2": (2, 512), "top": (2, 2048)}
    got = tk.extract_features(keras_models["resnet50"], images, ["stem", "top"], size=224,
                              cache=False, progress=False)
    assert {k: v.shape for k, v in got.items()} == {"stem": (2, 64), "top": (2, 2048)}


def feature_widths(torch_models, keras_models, name, keras_size):
    import tlcourse.keras as tk
    import tlcourse.torch as tt

    images = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    names = list(zoo.card(name).blocks)[:-1]  # the head's output is logits, not features
    ours = tt.extract_features(torch_models[name], images, names, size=48, cache=False, progress=False)
    theirs = tk.extract_features(keras_models[name], images, names, size=keras_size, cache=False, progress=False)
    return {b: ours[b].shape[1] for b in names}, {b: theirs[b].shape[1] for b in names}


@pytest.mark.slow
@pytest.mark.parametrize("name, keras_size", [("efficientnet_b0", 224), ("mobilenet_v3_small", 48)])
def test_block_features_have_the_same_width_in_both(torch_models, keras_models, name, keras_size):
    torch_widths, keras_widths = feature_widths(torch_models, keras_models, name, keras_size)
    assert torch_widths == keras_widths


def test_mobilenet_top_features_are_the_classifier_input_in_both(torch_models, keras_models):
    # Keras' MobileNetV3 classifies with a 1x1 convolution, not a Dense layer.
    torch_widths, keras_widths = feature_widths(torch_models, keras_models, "mobilenet_v3_small", 48)
    assert torch_widths["top"] == keras_widths["top"] == 1024


@pytest.mark.parametrize("framework", ("torch", "keras"))
def test_unknown_name_fails_in_both_frameworks(framework):
    module = pytest.importorskip(f"tlcourse.{framework}")
    with pytest.raises(KeyError, match="Did you mean 'vgg16'"):
        module.backbone("vgg_16", weights=None)


# -- weights ---------------------------------------------------------------------------------------
@pytest.fixture
def empty_torch_hub(tmp_path):
    import torch

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_torch_imagenet_offline_names_the_fetch_command(empty_torch_hub, monkeypatch):
    import torch

    from tlcourse.torch import backbone

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.delenv("TLCOURSE_OFFLINE", raising=False)
    with pytest.raises(OSError, match="tlcourse fetch resnet50") as caught:
        backbone("resnet50")
    assert "name resolution" in str(caught.value)
    monkeypatch.setenv("TLCOURSE_OFFLINE", "1")
    with pytest.raises(OSError, match="TLCOURSE_OFFLINE is set.*tlcourse fetch mobilenet_v3_small"):
        backbone("mobilenet_v3_small")


def test_keras_imagenet_offline_names_the_fetch_command(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    import tlcourse.keras.backbones as kb

    def no_network(fname, origin, *args, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure")

    monkeypatch.setattr(kb, "_cached_file", lambda card: tmp_path / card.keras_files[0])
    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.delenv("TLCOURSE_OFFLINE", raising=False)
    with pytest.raises(OSError, match="tlcourse fetch resnet50"):
        kb.backbone("resnet50")
    monkeypatch.setenv("TLCOURSE_OFFLINE", "1")
    with pytest.raises(OSError, match="TLCOURSE_OFFLINE is set.*tlcourse fetch vgg16"):
        kb.backbone("vgg16")


def test_torch_imagenet_loads_from_the_cache_and_swaps_the_classifier(empty_torch_hub, monkeypatch):
    """A file placed where torch.hub caches the download is what weights='imagenet' loads."""
    import torch

    from tlcourse.torch import backbone

    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    source = backbone("mobilenet_v3_small", weights=None)
    checkpoints = empty_torch_hub / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(source.state_dict(), checkpoints / zoo.card("mobilenet_v3_small").torch_file)

    same = backbone("mobilenet_v3_small")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), same.state_dict().values()))
    ten = backbone("mobilenet_v3_small", num_classes=10)
    assert ten.classifier[-1].out_features == 10
    assert torch.equal(ten.features[5].block[0][0].weight, source.features[5].block[0][0].weight)


@pytest.mark.slow
def test_keras_imagenet_loads_the_downloaded_file_and_swaps_the_classifier(tmp_path, monkeypatch):
    """keras.applications' own loading, fed a legacy .h5 as if get_file had found it in its cache."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    import tlcourse.keras.backbones as kb

    source = kb.backbone("mobilenet_v3_small", weights=None)
    cached = tmp_path / zoo.card("mobilenet_v3_small").keras_files[0]
    with h5py.File(cached, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    monkeypatch.setattr(kb, "_cached_file", lambda card: cached)
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(cached))

    same = kb.backbone("mobilenet_v3_small")
    for a, b in zip(source.weights, same.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ten = kb.backbone("mobilenet_v3_small", num_classes=10)
    assert ten.output_shape == (None, 10)
    np.testing.assert_array_equal(ten.get_layer("conv_2").kernel.numpy(), source.get_layer("conv_2").kernel.numpy())


def test_weights_files_round_trip(tmp_path):
    import torch

    import tlcourse.keras as tk
    import tlcourse.torch as tt

    model = tt.backbone("efficientnet_b0", weights=None, num_classes=7)
    torch.save(model.state_dict(), tmp_path / "b0.pth")
    again = tt.backbone("efficientnet_b0", weights=tmp_path / "b0.pth", num_classes=7)
    assert torch.equal(again.classifier[1].weight, model.classifier[1].weight)
    with pytest.raises(ValueError, match="7-class classifier"):
        tt.backbone("efficientnet_b0", weights=tmp_path / "b0.pth")

    model = tk.backbone("mobilenet_v3_small", weights=None, num_classes=7)
    model.save_weights(tmp_path / "small.weights.h5")
    again = tk.backbone("mobilenet_v3_small", weights=tmp_path / "small.weights.h5", num_classes=7)
    np.testing.assert_array_equal(again.get_layer("logits").kernel.numpy(), model.get_layer("logits").kernel.numpy())
