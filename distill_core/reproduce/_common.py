"""What the three reproductions share: training through the Trainer, teachers, tables, expectations."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import DatasetInfo
from ..methods import build_method
from ..models import build_model
from ..train import FINAL_KINDS, TrainConfig, Trainer

Log = Callable[[str], None]
SPLIT_SEED = 0     # the mnist-5k / digits train-test split of the zoo: its teachers never saw the test split


class ReproductionError(ValueError):
    """A reproduction cannot start (e.g. a zoo teacher is missing); the message says what to do."""


def train_config(epochs: int, seed: int, batch_size: int, lr: float) -> TrainConfig:
    """The loop every reproduction trains with: Adam, no schedule, on the CPU, no per-epoch test evaluation."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, seed=seed, device="cpu")


def train_model(label: str, method: str, model: nn.Module, data: Dataset, config: TrainConfig, log: Log, *,
                method_config: Mapping[str, Any] | None = None, teachers: Mapping[str, nn.Module] | None = None,
                info: DatasetInfo | None = None) -> nn.Module:
    """Train ``model`` with ``method`` through the Trainer; log a few epoch lines; return it in eval mode.

    Raises ``RuntimeError`` when training ends any other way than ``done`` (diverged, error).
    """
    trainer = Trainer(build_method(method, model, dict(method_config or {}), teachers, info), (data, None), config)
    every = max(1, config.epochs // 4)
    final = None
    for event in trainer.run():
        if event.kind == "epoch" and (event.data["epoch"] % every == 0 or event.data["epoch"] == config.epochs):
            log(f"{label}: epoch {event.data['epoch']}/{config.epochs}, loss {event.data['train_loss']:.4f} "
                f"({event.data['epoch_seconds']:.1f} s)")
        elif event.kind in FINAL_KINDS:
            final = event
    if final is None or final.kind != "done":
        reason = final.data.get("reason") if final is not None else "no final event"
        raise RuntimeError(f"{label}: training ended as {final.kind if final else '?'}: {reason}")
    return model.eval()


def fresh_model(name: str, info: DatasetInfo, seed: int, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """``build_model(name, info)`` with seeded initial weights, or the weights ``state`` when given."""
    torch.manual_seed(seed)
    model = build_model(name, info)
    if state is not None:
        model.load_state_dict(state)
    return model


def zoo_teacher(name: str) -> nn.Module:
    """A teacher from the shipped zoo, frozen in eval mode; :class:`ReproductionError` when it is missing."""
    from ..zoo import load_zoo_model

    try:
        return load_zoo_model(name)[0]
    except (KeyError, FileNotFoundError) as e:
        raise ReproductionError(f"the zoo has no usable {name!r} ({e}): build it with `python -m distill_core zoo "
                                f"build --only {name}` or pass --train-teachers") from None


def expectation(claim: str, shown: bool, detail: str) -> dict[str, Any]:
    """One line of the verdict: the paper's claim, whether this run showed it, and the numbers behind it."""
    return {"claim": claim, "shown": bool(shown), "detail": detail}


def pct(v: float | None, digits: int = 1) -> str:
    """A fraction as a percentage string; "n/a" for None / nan."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f} %"


def points(v: float) -> str:
    """A difference of fractions in percentage points, signed."""
    return f"{100 * v:+.1f} points"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def expectations_markdown(expectations: Sequence[Mapping[str, Any]]) -> str:
    """The verdict section: one bullet per expectation."""
    return "\n".join(f"- **{'shown' if e['shown'] else 'not shown'}**: {e['claim']} — {e['detail']}"
                     for e in expectations)


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON: numpy / torch scalars and arrays to Python, tuples to lists, nan to None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return jsonable(value.tolist())
    if isinstance(value, (np.generic,)):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
