"""Small models trained in a second or two, shared by the attack tests (cached for the session)."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from distill_core.data import DatasetInfo, load_dataset
from distill_core.models import build_model


@cache
def digits_model(name: str = "mlp", steps: int = 300) -> tuple[nn.Module, torch.Tensor, torch.Tensor, DatasetInfo]:
    """``name`` trained on scikit-learn's 8x8 digits (seeded, eval mode) and the test images it gets right.

    Callers must not change the model (deep-copy it first); the tensors are returned as they are.
    """
    torch.manual_seed(0)
    train, info = load_dataset("digits", "train")
    test, _ = load_dataset("digits", "test")
    model = build_model(name, info)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if name == "mlp" else 3e-3)
    x, y = train.tensors
    for _ in range(steps):
        batch = torch.randint(0, len(x), (128,))
        loss = F.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    x_test, y_test = test.tensors
    with torch.no_grad():
        right = model(x_test).argmax(1) == y_test
    return model, x_test[right], y_test[right], info
