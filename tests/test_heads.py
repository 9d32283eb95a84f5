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
    tfreeze.unfreeze(model, "head")
    assert model.top.hidden1.weight.requires_grad and model.top.classifier.weight.requires_grad
    assert not model.top.bn.weight.requires_grad and not model.top.conv.weight.requires_grad


@pytest.mark.slow
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
    kfreeze.unfreeze(model, "head")
    trained = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trained == {"top_hidden1", "top_classifier"}  # top_conv, the last pretrained layer, stays


@pytest.mark.slow
def test_a_new_head_starts_near_chance_on_real_photos_in_both_frameworks():
    """EfficientNet's classifier start (+-1/sqrt(classes)) suits 1,000 classes; on five it gave a first
    loss near 10, and Adam needed many epochs to undo it. A fresh head should start near log(5)."""
    from tlcourse import data

    photos = data.load("flowers").train
    images, labels = photos.images[::6], photos.labels[::6]
    torch_model = torch_swap_head(tt.build_lite0(weights="imagenet"), 5).eval()
    with torch.no_grad():
        logits = torch_model(tt.preprocess(images, 96))
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long()).item()
    keras_model = keras_swap_head(tk.build_lite0(weights="imagenet"), 5)
    keras_logits = keras_model(tk.preprocess(images, 96), training=False)
    keras_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, keras_logits))
    for loss in (torch_loss, keras_loss):
        assert np.log(5) - 0.5 < loss < np.log(5) + 1.0, loss


def test_a_keras_head_of_ones_own_with_any_layer_names_is_the_head_block(keras_base):
    features = keras_base.get_layer("top_pool").output
    x = keras.layers.Dense(8, activation="relu", name="my_hidden")(features)
    own = keras.Model(keras_base.input, keras.layers.Dense(3, name="my_classifier")(x), name=keras_base.name)
    assert [layer.name for layer in tk.blocks(own)["head"]] == ["my_hidden", "my_classifier"]
    tk.freeze(own)
    tk.unfreeze(own, "head")
    assert tk.summary(own).trainable_blocks() == ["head"]
    assert len(own.trainable_weights) == 4


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


# -- every backbone of the zoo: one model per name and framework, built once (weights=None) ---------
from tlcourse import zoo  # noqa: E402

# The width of the features each new head reads: the input of the layer it replaces.
FEATURE_WIDTHS = {
    "efficientnet_lite0": 1280,
    "mobilenet_v3_small": 1024,  # after the 576 -> 1024 layer, which stays (Keras: conv_2)
    "efficientnet_b0": 1280,
    "resnet50": 2048,
    "vgg16": 4096,  # after fc2, which stays
}
# keras.applications fixes the input at 224 px when the classifier is on, except for MobileNetV3.
KERAS_INPUT_SIZES = {"efficientnet_lite0": 32, "mobilenet_v3_small": 32}


@pytest.fixture(scope="module")
def torch_zoo():
    return {name: tt.backbone(name, weights=None) for name in zoo.NAMES}


@pytest.fixture(scope="module")
def keras_zoo():
    return {name: tk.backbone(name, weights=None) for name in zoo.NAMES}


def new_torch_parameters(swapped, base):
    old = {id(p) for p in base.parameters()}
    return [p for p in swapped.parameters() if id(p) not in old]


def new_keras_weights(swapped, base):
    old = {id(w) for w in base.weights}
    return [w for w in swapped.weights if id(w) not in old]


def head_size(in_features, hidden, num_classes):
    widths = (in_features, *hidden, num_classes)
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def test_feature_widths_cover_the_zoo():
    assert set(FEATURE_WIDTHS) == set(zoo.NAMES)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_new_head_has_the_same_parameters_in_both_frameworks(torch_zoo, keras_zoo, name):
    torch_model = torch_swap_head(torch_zoo[name], 5, hidden=(64,))
    keras_model = keras_swap_head(keras_zoo[name], 5, hidden=(64,))
    torch_count = sum(p.numel() for p in new_torch_parameters(torch_model, torch_zoo[name]))
    keras_count = sum(int(np.prod(w.shape)) for w in new_keras_weights(keras_model, keras_zoo[name]))
    assert torch_count == keras_count == head_size(FEATURE_WIDTHS[name], (64,), 5)
    # the "head" block holds exactly the new layers in both (ResNet50's other blocks differ by Keras's conv biases)
    torch_head = tfreeze.summary(torch_model).as_tuples()[-1]
    assert torch_head == kfreeze.summary(keras_model).as_tuples()[-1] == ("head", torch_count, 0)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_new_head_outputs_num_classes_logits(torch_zoo, keras_zoo, name):
    torch_model = torch_swap_head(torch_zoo[name], 4, hidden=(8,)).eval()
    with torch.no_grad():
        assert tuple(torch_model(torch.zeros(2, 3, 32, 32)).shape) == (2, 4)
    size = KERAS_INPUT_SIZES.get(name, 224)
    keras_model = keras_swap_head(keras_zoo[name], 4, hidden=(8,))
    assert tuple(keras_model(np.zeros((2, size, size, 3), "float32"), training=False).shape) == (2, 4)
    assert keras_model.name == name  # tlcourse.keras still recognises the backbone by its name


@pytest.mark.parametrize("name", zoo.NAMES)
def test_torch_blocks_cover_the_swapped_model_exactly_once(torch_zoo, name):
    model = torch_swap_head(torch_zoo[name], 3, hidden=(16,))
    block_map = tfreeze.blocks(model)
    assert tuple(block_map) == zoo.card(name).blocks
    in_blocks = [id(p) for block in block_map.values() for p in block.parameters()]
    assert len(in_blocks) == len(set(in_blocks)) and set(in_blocks) == {id(p) for p in model.parameters()}
    head = {id(p) for p in new_torch_parameters(model, torch_zoo[name])}
    assert head == {id(p) for p in block_map["head"].parameters()}


@pytest.mark.parametrize("name", zoo.NAMES)
def test_keras_blocks_cover_the_swapped_model_exactly_once(keras_zoo, name):
    model = keras_swap_head(keras_zoo[name], 3, hidden=(16,))
    block_map = kfreeze.blocks(model)
    assert tuple(block_map) == zoo.card(name).blocks
    in_blocks = [id(layer) for layers in block_map.values() for layer in layers]
    assert len(in_blocks) == len(set(in_blocks))
    assert set(in_blocks) == {id(l) for l in model.layers if not isinstance(l, keras.layers.InputLayer)}
    weights = [id(w) for layers in block_map.values() for layer in layers for w in layer.weights]
    assert len(weights) == len(set(weights)) and set(weights) == {id(w) for w in model.weights}
    head = {id(w) for w in new_keras_weights(model, keras_zoo[name])}
    assert head == {id(w) for layer in block_map["head"] for w in layer.weights}


@pytest.mark.parametrize("name", zoo.NAMES)
def test_unfreeze_head_trains_the_new_head_and_nothing_pretrained_in_both(torch_zoo, keras_zoo, name):
    torch_model = torch_swap_head(torch_zoo[name], 3)
    keras_model = keras_swap_head(keras_zoo[name], 3)
    try:
        tables = []
        for lib, model in ((tfreeze, torch_model), (kfreeze, keras_model)):
            lib.freeze(model)
            lib.unfreeze(model, "head")
            tables.append({row.block: row.trainable > 0 for row in lib.summary(model).rows})
        assert tables[0] == tables[1] == {block: block == "head" for block in zoo.card(name).blocks}
        new = {id(p) for p in new_torch_parameters(torch_model, torch_zoo[name])}
        assert {id(p) for p in torch_model.parameters() if p.requires_grad} == new
        trainable = {id(w) for w in keras_model.trainable_weights}
        assert trainable == {id(w) for w in new_keras_weights(keras_model, keras_zoo[name])}
    finally:  # the backbones are shared with the other tests of this module
        tfreeze.unfreeze(torch_model, "all", train_batchnorm=True)
        kfreeze.unfreeze(keras_model, "all", train_batchnorm=True)


@pytest.mark.parametrize("name", [n for n in zoo.NAMES if n != "efficientnet_lite0"])
def test_swapping_leaves_the_base_alone_and_a_second_swap_replaces_the_first(torch_zoo, keras_zoo, name):
    torch_base, keras_base = torch_zoo[name], keras_zoo[name]
    torch_before = [id(p) for p in torch_base.parameters()]
    keras_before = [id(w) for w in keras_base.weights]
    torch_twice = torch_swap_head(torch_swap_head(torch_base, 5, hidden=(32,)), 2)
    keras_twice = keras_swap_head(keras_swap_head(keras_base, 5, hidden=(32,)), 2)
    assert [id(p) for p in torch_base.parameters()] == torch_before
    assert [id(w) for w in keras_base.weights] == keras_before
    expected = head_size(FEATURE_WIDTHS[name], (), 2)
    assert sum(p.numel() for p in new_torch_parameters(torch_twice, torch_base)) == expected
    assert sum(int(np.prod(w.shape)) for w in new_keras_weights(keras_twice, keras_base)) == expected
    shared = next(iter(tfreeze.blocks(torch_base)["block1"].parameters()))
    assert shared is next(iter(tfreeze.blocks(torch_twice)["block1"].parameters()))


@pytest.mark.parametrize("name", zoo.NAMES)
def test_an_imagenet_models_head_block_is_its_classifier_alone(torch_zoo, keras_zoo, name):
    imagenet_classifier = head_size(FEATURE_WIDTHS[name], (), 1000)
    torch_head = tfreeze.summary(torch_zoo[name]).as_tuples()[-1]
    keras_head = kfreeze.summary(keras_zoo[name]).as_tuples()[-1]
    assert torch_head[0] == keras_head[0] == "head"
    assert torch_head[1] + torch_head[2] == keras_head[1] + keras_head[2] == imagenet_classifier


@pytest.mark.parametrize("name", ["efficientnet_b0", "resnet50"])
def test_a_keras_head_of_ones_own_on_a_catalogue_backbone_is_the_head_block(keras_zoo, name):
    base = keras_zoo[name]
    own = keras.Model(base.input, keras.layers.Dense(3, name="classifier")(base.get_layer("avg_pool").output),
                      name=base.name)
    assert [layer.name for layer in kfreeze.blocks(own)["head"]] == ["classifier"]
    tk.freeze(own)
    tk.unfreeze(own, "head")
    assert tk.summary(own).trainable_blocks() == ["head"] and len(own.trainable_weights) == 2
