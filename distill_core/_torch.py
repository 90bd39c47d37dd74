"""Running a model the lab's way: in eval mode (each module's mode restored), batched, on its device.

The leaf every layer may import (attacks, methods, evaluate, explain, robustness, papers, lab)::

    with eval_mode(model):
        logits = logits_of(model, x)        # (N, classes), no gradients, on x's device
    pred = predict(model, x)                # (N,) int64
    g = input_gradient(loss, x_req)         # d loss / d x, zeros when the model never used x

A model may cut its input out of the autograd graph (``forward(x): return net(x.detach())``, a
non-differentiable preprocessing step): its input gradient is zero, not an error. Our own code
takes gradients with :func:`input_gradient`; third-party code that calls ``torch.autograd.grad``
or ``backward`` itself (captum, AutoAttack) gets the model wrapped in :class:`InputPath`.
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


def input_gradient(output: torch.Tensor, x: torch.Tensor, grad_outputs: torch.Tensor | None = None, *,
                   retain_graph: bool | None = None) -> torch.Tensor:
    """``d (output * grad_outputs).sum() / d x``, shaped like ``x``; zeros where the graph does not reach ``x``.

    ``output``: a scalar (``grad_outputs`` None) or any tensor with ``grad_outputs`` of its shape;
    ``x``: the leaf that requires grad. A model that detaches its input, or whose output does
    not depend on it, gives an exactly-zero gradient (what the attacks and the masking checks
    should see), where ``torch.autograd.grad`` alone raises a ``RuntimeError``.
    """
    if output.requires_grad:
        (grad,) = torch.autograd.grad(output, x, grad_outputs=grad_outputs, retain_graph=retain_graph,
                                      allow_unused=True)
        if grad is not None:
            return grad
    return torch.zeros_like(x)


class InputPath(nn.Module):
    """``model`` plus a zero-valued path from the input to the output, so autograd always reaches the input.

    ``forward(x) = model(x) + 0 * sum(x)`` per sample, ``x`` (N, *input): the same logits (N, classes) and the same
    input gradient as ``model`` (plus exact zeros), but a model that detaches its input gives a
    zero gradient instead of an error in code that differentiates it without
    :func:`input_gradient` (captum's attributions, AutoAttack). Inputs must be finite.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out + 0 * x.flatten(1).sum(1).view(-1, *([1] * (out.dim() - 1))).to(out.dtype)


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
