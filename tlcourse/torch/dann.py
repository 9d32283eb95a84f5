"""Domain-adversarial training (DANN) in PyTorch; ``tlcourse.keras.dann`` mirrors it.

A :class:`DANN` model has three parts: ``features`` (images → a feature vector), ``label_head``
(features → class logits) and ``domain_head`` (features → one logit, "is this a target image?"),
with a :class:`GradientReversal` between the features and the domain head. Calling the model
returns class logits, so ``evaluate`` and ``predict`` work on it as on any classifier;
``model(x, domains=True)`` returns ``(class_logits, domain_logits)``.

>>> model = build_dann_digits()                       # the paper's small MNIST network
>>> history = fit_dann(model, src.train, tgt.train, epochs=12, target_eval=tgt.val)
>>> evaluate(model, tgt.test)["accuracy"]

The schedules, the batch pairing and the recipes are framework-free, in :mod:`tlcourse.dann`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse import dann as shared
from tlcourse.data.card import Split
from tlcourse.history import History
from tlcourse.torch.freezing import keep_frozen_layers_in_eval
from tlcourse.torch.train import _adam, _device_of, default_transform, evaluate
from tlcourse.training import as_split

__all__ = ["GradientReversal", "reverse_gradient", "DANN", "build_dann", "build_dann_digits", "fit_dann",
           "dann_features"]


# -- the gradient-reversal layer ------------------------------------------------------------------
class _ReverseGradient(torch.autograd.Function):
    """Identity on the way forward; multiplies the incoming gradient by ``-lambda`` on the way back."""

    @staticmethod
    def forward(ctx, x, lambda_: float):
        ctx.lambda_ = lambda_
        return x.view_as(x)  # a new tensor node, so autograd calls our backward

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.lambda_ * grad_output, None  # no gradient for lambda itself


def reverse_gradient(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``-lambda_``."""
    return _ReverseGradient.apply(x, float(lambda_))


class GradientReversal(nn.Module):
    """The gradient-reversal layer as a module; ``fit_dann`` sets ``lambda_`` at every step."""

    def __init__(self, lambda_: float = 1.0):
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:.4g}"


# -- the model ----------------------------------------------------------------------------------------
class DANN(nn.Module):
    """Feature extractor, label head and domain head, with gradient reversal before the domain head.

    ``forward(x)`` returns class logits (so the model is an ordinary classifier for ``fit``,
    ``evaluate`` and ``predict``); ``forward(x, domains=True)`` returns ``(class_logits,
    domain_logits)`` with domain logits of shape (batch,), positive for "target".
    """

    def __init__(self, features: nn.Module, label_head: nn.Module, domain_head: nn.Module):
        super().__init__()
        self.features, self.label_head, self.domain_head = features, label_head, domain_head
        self.reversal = GradientReversal()

    def forward(self, x: torch.Tensor, domains: bool = False):
        features = self.features(x)
        logits = self.label_head(features)
        if not domains:
            return logits
        return logits, self.domain_logits(features)

    def domain_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The domain head's logit per feature vector, behind the gradient reversal."""
        return self.domain_head(self.reversal(features)).squeeze(-1)


def _mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    layers, width = [], in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def build_dann(features: nn.Module, num_classes: int, input_shape: tuple[int, int, int] = (28, 28, 3),
               label_hidden: Sequence[int] = (100, 100), domain_hidden: Sequence[int] = (100,)) -> DANN:
    """A DANN around any feature extractor that maps images to flat feature vectors.

    ``input_shape`` (height, width, channels) is used once, to measure the width of the features;
    the heads are fully connected with ReLU, ``label_hidden`` and ``domain_hidden`` units wide.
    """
    height, width, channels = input_shape
    with torch.no_grad():
        was_training = features.training
        features.eval()
        probe = features(torch.zeros(1, channels, height, width, device=_device_of(features)))
        features.train(was_training)
    if probe.ndim != 2:
        raise ValueError(f"the feature extractor should output flat vectors (batch, features), got shape "
                         f"{tuple(probe.shape)}; end it with nn.Flatten() or a global pooling layer")
    width = probe.shape[1]
    return DANN(features, _mlp(width, label_hidden, num_classes), _mlp(width, domain_hidden, 1))


def _keras_like_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases, Keras' defaults, so both frameworks start alike."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def digits_features(channels: int = 3, batchnorm: bool = False, filters: Sequence[int] = (32, 48)) -> nn.Sequential:
    """The paper's MNIST feature extractor: conv 5x5 32 → max-pool → conv 5x5 48 → max-pool → flatten.

    ``filters`` sets the two convolutions' widths (the paper's are 32 and 48).
    ``batchnorm=True`` puts a BatchNorm layer after each convolution (before its ReLU). ``fit_dann``
    passes source and target batches through the features separately, so during training each
    domain is normalised with its own batch statistics; the running statistics used at test time
    average the two.
    """
    def conv(in_channels: int, out_channels: int) -> list[nn.Module]:
        norm = [nn.BatchNorm2d(out_channels, eps=shared.BATCHNORM_EPS, momentum=shared.BATCHNORM_MOMENTUM)] if batchnorm else []
        return [nn.Conv2d(in_channels, out_channels, 5), *norm, nn.ReLU(), nn.MaxPool2d(2)]

    first, second = filters
    return nn.Sequential(*conv(channels, first), *conv(first, second), nn.Flatten())


def build_dann_digits(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 3),
                      domain_hidden: Sequence[int] = (100,), batchnorm: bool = False,
                      filters: Sequence[int] = (32, 48)) -> DANN:
    """The paper's network for MNIST → MNIST-M: label head 100-100-classes, domain head 100-1.

    ``batchnorm`` and ``filters``: see :func:`digits_features`; ``tlcourse.dann.recipe().model_kwargs()``
    gives each profile's choice.
    """
    features = digits_features(input_shape[-1], batchnorm, filters)
    model = build_dann(features, num_classes, input_shape, (100, 100), domain_hidden)
    return _keras_like_init(model)


# -- training -------------------------------------------------------------------------------------
def fit_dann(
    model: DANN,
    source,
    target_unlabelled=None,
    epochs: int = 10,
    *,
    adapt: bool = True,
    val=None,
    target_eval=None,
    lr: float = shared.MU_0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    batch_size: int = 64,
    lr_schedule: str | Callable[[float], float] | None = "anneal",
    domain_lambda: float | Callable[[float], float] | None = None,
    gamma: float = shared.GAMMA,
    stage: str = "",
    transform: Callable | None = None,
    target_transform: Callable | None = None,
    seed: int | None = None,
    progress: bool = True,
    history: History | None = None,
) -> History:
    """Train ``model`` on labelled ``source`` images while aligning them with ``target_unlabelled``.

    Every step pairs a source batch with a target batch of the same size (see
    :func:`tlcourse.dann.paired_batches`); one epoch is one pass over the source. The loss is the
    label cross-entropy on the source batch plus the domain classifier's binary cross-entropy on
    both batches (source 0, target 1); the reversal layer multiplies the domain gradient reaching
    the features by ``-lambda``.

    source: a ``Split`` or ``(images, labels)`` of uint8 NHWC images. target_unlabelled: a Split,
        a pair or bare images; its labels, if any, are never used.
    adapt: ``False`` trains on the source alone through the same loop (no domain loss, the domain
        head untouched, no target needed): the source-only baseline, or, given the labelled target
        as ``source``, the train-on-target one.
    val, target_eval: labelled splits scored after every epoch (``val_*`` and ``target_*`` columns).
    optimizer: ``"sgd"`` (with ``momentum``, as in the paper) or ``"adam"``.
    lr_schedule: ``"anneal"`` (the paper's ``lr / (1 + 10 p) ** 0.75``), ``None`` or a function
        progress → factor; ``p`` is the progress through all steps of this call, 0 to 1.
    domain_lambda: ``None`` for the paper's ``2 / (1 + exp(-gamma p)) - 1``, or a constant, or
        a function progress → lambda.
    transform: uint8 images → the network's input, for the source batches and ``val`` (default:
        scaled to [0, 1]). target_transform: the same for the target batches and ``target_eval``
        (default: ``transform``).
    seed: seeds Python, numpy and torch and fixes the batch order, so a CPU run repeats exactly.

    Returns the shared :class:`History`, one row per epoch: ``loss`` and ``accuracy`` (label loss
    and accuracy on the source batches), ``domain_loss`` and ``domain_accuracy`` (domain
    classifier on source and target batches, ``None`` without adaptation), ``lambda`` and ``lr``
    (their values at the epoch's last step), ``val_*`` and ``target_loss`` / ``target_accuracy``
    when those splits are given. The model is left in eval mode.
    """
    source, target, val, target_eval, order_seed = shared.checked_inputs(
        source, target_unlabelled, adapt=adapt, val=val, target_eval=target_eval, domain_lambda=domain_lambda, seed=seed)
    if not isinstance(model, DANN):
        raise TypeError(f"fit_dann trains a DANN (features, label_head, domain_head), got {type(model).__name__}; "
                        "wrap your network with build_dann(features, num_classes, ...)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    transform = transform or default_transform
    target_transform = target_transform or transform
    parts = [model.features, model.label_head] + ([model.domain_head] if adapt else [])
    trainable = [p for part in parts for p in part.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, trainable, lr, momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

    def set_schedule(rate: float, weight: float) -> None:
        for group in opt.param_groups:
            group["lr"] = rate
        if adapt:
            model.reversal.lambda_ = weight

    def train_step(source_idx: np.ndarray, target_idx: np.ndarray) -> dict:
        images = _batch(source.images[source_idx], transform, device)
        labels = torch.from_numpy(source.labels[source_idx].astype(np.int64)).to(device)
        targets = _batch(target[target_idx], target_transform, device) if adapt else None
        return _train_step(model, opt, scaler, images, labels, targets)

    def begin_epoch() -> None:
        model.train()
        keep_frozen_layers_in_eval(model)

    history = shared.train_epochs(
        source, target, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
        domain_lambda=domain_lambda, gamma=gamma, order_seed=order_seed, stage=stage, progress=progress,
        history=history, framework="torch", val=val, target_eval=target_eval, set_schedule=set_schedule,
        train_step=train_step, begin_epoch=begin_epoch,
        evaluate=lambda split, on_target: evaluate(model, split, transform=target_transform if on_target else transform))
    model.eval()
    return history


def _make_optimizer(name: str, parameters: list, lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum)
    if name == "adam":
        return _adam(parameters, lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


def _batch(images: np.ndarray, transform: Callable, device: torch.device) -> torch.Tensor:
    return transform(images).to(device, non_blocking=True)


def _train_step(model: DANN, optimizer, scaler, images, labels, targets) -> dict:
    """One SGD step on a source batch (and its target batch); returns the batch's numbers."""
    on_cuda = images.device.type == "cuda"
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=on_cuda):
        source_features = model.features(images)
        logits = model.label_head(source_features)
        loss = label_loss = F.cross_entropy(logits, labels)
        if targets is not None:
            # Source and target go through the features separately, so BatchNorm layers (if any)
            # see one domain per batch and the source pass equals a source-only run's.
            features = torch.cat([source_features, model.features(targets)])
            domains = torch.cat([torch.zeros(len(images)), torch.ones(len(targets))]).to(images.device)
            domain_logits = model.domain_logits(features)
            domain_loss = F.binary_cross_entropy_with_logits(domain_logits.float(), domains)
            loss = label_loss + domain_loss
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    numbers = {"loss": label_loss.item(), "correct": int((logits.argmax(1) == labels).sum())}
    if targets is not None:
        numbers.update(domain_loss=domain_loss.item(),
                       domain_correct=int(((domain_logits > 0).float() == domains).sum()))
    return numbers


# -- features for plots ---------------------------------------------------------------------------
def dann_features(model: DANN, images, batch_size: int = 256, transform: Callable | None = None) -> np.ndarray:
    """The feature extractor's output for uint8 NHWC ``images`` (or a Split): float32 (N, features).

    What the domain head sees; project it to 2-D (t-SNE, PCA) to compare domains before and after
    adaptation.
    """
    if isinstance(images, Split):
        images = images.images
    images = np.asarray(images)
    as_split((images, np.zeros(len(images), dtype=np.int64)), "images")
    transform = transform or default_transform
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            chunks = [model.features(_batch(images[start:start + batch_size], transform, device)).float().cpu()
                      for start in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()
