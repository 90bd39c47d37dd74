"""Running a model the lab's way: in eval mode (each module's mode restored), batched, on its device.

The leaf every layer may import (methods, attacks' callers, evaluate, explain, robustness,
papers, lab)::

    with eval_mode(model):
        logits = logits_of(model, x)        # (N, classes), no gradients, on x's device
    pred = predict(model, x)                # (N,) int64
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import TensorDataset

Data = TensorDataset | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode; restore each module's own mode on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the cpu for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def as_tensors(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a ``TensorDataset(x, y)`` or an ``(x, y)`` pair."""
    if isinstance(data, TensorDataset):
        x, y = data.tensors[:2]
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"expected a TensorDataset or an (x, y) pair, got {type(data).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    return x, y


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The model's logits (N, classes) for ``x`` (N, *input), in batches, without gradients, on ``x``'s device."""
    dev = model_device(model)
    with eval_mode(model), torch.no_grad():
        out = [model(xb.to(dev)).to(x.device) for xb in x.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0, device=x.device)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes (N,) int64 for ``x`` (N, *input), on ``x``'s device."""
    return logits_of(model, x, batch_size).argmax(dim=1)
