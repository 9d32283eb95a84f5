"""Multi-task learning in PyTorch: one shared trunk, one head per task (Caruana, 1997).

The smallest form of the idea, on feature vectors (e.g. from ``extract_features``): a trunk maps
each vector to a shared representation, every task reads it through its own linear head, and the
training loss is the sum of the tasks' cross-entropies, so the trunk learns from all of them.
Chapter 06 uses the same shape with a domain classifier as the second head.

>>> model = MultiTask(in_features=x.shape[1], tasks={"shape": 3, "colour": 3})
>>> losses = fit_multitask(model, x, {"shape": y_shape, "colour": y_colour}, epochs=30)
>>> multitask_accuracy(model, x_test, {"shape": t_shape, "colour": t_colour})
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.torch.train import _adam

__all__ = ["MultiTask", "fit_multitask", "multitask_accuracy"]


class MultiTask(nn.Module):
    """A shared trunk (Linear, ReLU) of ``width`` units and one linear head per task: ``{name: classes}``.

    ``forward(x)`` returns ``{task name: logits}``; ``model.heads[name]`` is a task's head.
    """

    def __init__(self, in_features: int, tasks: Mapping[str, int], width: int = 64):
        super().__init__()
        if not tasks:
            raise ValueError("give at least one task, e.g. tasks={'shape': 3, 'colour': 3}")
        self.trunk = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(width, int(classes)) for name, classes in tasks.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)
        return {name: head(shared) for name, head in self.heads.items()}


def _check(model: MultiTask, x, targets: Mapping[str, np.ndarray]):
    if set(targets) != set(model.heads):
        raise ValueError(f"targets name the tasks {sorted(targets)}, the model has heads {sorted(model.heads)}")
    x = torch.as_tensor(np.asarray(x, np.float32))
    labels = {name: torch.as_tensor(np.asarray(y, np.int64)) for name, y in targets.items()}
    if any(len(y) != len(x) for y in labels.values()):
        raise ValueError("every task needs one label per row of x")
    return x, labels


def fit_multitask(model: MultiTask, x, targets: Mapping[str, np.ndarray], epochs: int = 30, *, lr: float = 1e-2,
                  batch_size: int = 64, task_weights: Mapping[str, float] | None = None,
                  seed: int = 0) -> dict[str, list[float]]:
    """Adam on the weighted sum of the tasks' cross-entropies; returns each task's mean loss per epoch.

    ``task_weights`` (default 1 each) scales a task's loss; a weight of 0 lets the trunk ignore it.
    """
    x, labels = _check(model, x, targets)
    weights = {name: 1.0 for name in labels} | dict(task_weights or {})
    generator = torch.Generator().manual_seed(seed)
    optimizer = _adam(model.parameters(), lr)
    losses = {name: [] for name in labels}
    model.train()
    for _ in range(epochs):
        sums = dict.fromkeys(labels, 0.0)
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            logits = model(x[batch])
            each = {name: F.cross_entropy(logits[name], labels[name][batch]) for name in labels}
            optimizer.zero_grad()
            sum(weights[name] * loss for name, loss in each.items()).backward()
            optimizer.step()
            for name, loss in each.items():
                sums[name] += loss.item() * len(batch)
        for name in labels:
            losses[name].append(sums[name] / len(x))
    model.eval()
    return losses


@torch.no_grad()
def multitask_accuracy(model: MultiTask, x, targets: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each task's accuracy on ``x``: ``{task name: fraction right}``."""
    x, labels = _check(model, x, targets)
    model.eval()
    logits = model(x)
    return {name: float((logits[name].argmax(1) == labels[name]).float().mean()) for name in labels}
