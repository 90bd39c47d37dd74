"""What the three reproductions share: training through the Trainer, teachers, tables, expectations.

An expectation (one line of a reproduction's verdict) has three states (:data:`STATES`):
``shown`` (the paper's effect showed on this data), ``not shown``, and ``did not train``: a
model the claim rests on ended within 5 points of chance (:func:`distill_core.train.did_not_learn`
with chance = 1 / classes), so the run says nothing about the claim. A collapsed adversarial
student answers one class everywhere; its "robustness" is no evidence of anything.

Claims over several seeds are judged with :func:`beyond_spread` (from :mod:`distill_core.stats`,
re-exported here): a difference counts only when the difference of the means exceeds the sum of
the two standard deviations over seeds (sample std, ddof 1), i.e. when the two mean ± std
intervals do not overlap (:data:`SPREAD_RULE`).
"""

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
from ..stats import SPREAD_RULE, beyond_spread, mean_std  # noqa: F401 (re-exported)
from ..train import Event, TrainConfig, Trainer, chance_accuracy, did_not_learn, run_to_end  # noqa: F401 (re-exported)

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

    def on_event(event: Event) -> None:
        if event.kind == "epoch" and (event.data["epoch"] % every == 0 or event.data["epoch"] == config.epochs):
            log(f"{label}: epoch {event.data['epoch']}/{config.epochs}, loss {event.data['train_loss']:.4f} "
                f"({event.data['epoch_seconds']:.1f} s)")

    run_to_end(trainer, on_event, require_done=label)
    return model.eval()


def fresh_model(name: str, info: DatasetInfo, seed: int) -> nn.Module:
    """``build_model(name, info)`` with seeded initial weights."""
    torch.manual_seed(seed)
    return build_model(name, info)


def zoo_teacher(name: str) -> nn.Module:
    """A teacher from the shipped zoo, frozen in eval mode; :class:`ReproductionError` when it is missing."""
    from ..zoo import load_zoo_model

    try:
        return load_zoo_model(name)[0]
    except (KeyError, FileNotFoundError) as e:
        raise ReproductionError(f"the zoo has no usable {name!r} ({e}): build it with `python -m distill_core zoo "
                                f"build --only {name}` or pass --train-teachers") from None


SHOWN, NOT_SHOWN, DID_NOT_TRAIN = "shown", "not shown", "did not train"
STATES = (SHOWN, NOT_SHOWN, DID_NOT_TRAIN)


def trained(accuracy: float, chance: float) -> bool:
    """False when a clean accuracy is within 5 points of chance (``train.did_not_learn``): "did not train"."""
    return not did_not_learn(accuracy, chance)


def untrained_note(name: str, accuracy: float, chance: float) -> str:
    """How a verdict names a model that did not train: 'PGD-AT at 10.0 % clean (chance 10 %)'."""
    return f"{name} at {pct(accuracy)} clean (chance {pct(chance, 0)})"


def expectation(claim: str, shown: bool, detail: str, untrained: Sequence[str] = ()) -> dict[str, Any]:
    """One line of the verdict: the paper's claim, whether this run showed it, and the numbers behind it.

    ``untrained`` names the models the claim rests on that did not train (:func:`untrained_note`);
    when there is any, the state is ``did not train`` whatever ``shown`` says, and they lead the
    detail. ``shown`` (bool) is True only in state ``shown``; ``status`` is one of :data:`STATES`.
    """
    status = DID_NOT_TRAIN if untrained else (SHOWN if shown else NOT_SHOWN)
    if untrained:
        detail = f"{'; '.join(untrained)}: no evidence either way. Measured: {detail}"
    return {"claim": claim, "shown": status == SHOWN, "status": status, "detail": detail}


def pm(mean: float, std: float, digits: int = 1) -> str:
    """'93.2 ± 0.4 %' (percentages of fractions); the mean alone when the std is nan (one seed)."""
    if std is None or math.isnan(std):
        return pct(mean, digits)
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f} %"


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, protocol: str, n: int,
                    seed: int, label: str, log: Log) -> dict[str, Any]:
    """THE robust accuracy (``robustness.evaluate_robustness``, AutoAttack) of ``model`` on the first ``n`` of
    ``(x, y)``, logged, as the fields a results row carries.

    Returns ``robust_accuracy`` (AutoAttack: worst case over its attacks), ``apparent_robust_accuracy``
    (PGD-CE: what a naive attack sees), ``masked`` (AutoAttack's masking checks fired) and ``robustness``
    (the whole report: ``RobustnessReport.to_dict()``, with its label, library version and seconds).
    """
    from ..robustness import evaluate_robustness, report_summary

    report = evaluate_robustness(model, x, y, eps=eps, protocol=protocol, n=min(n, len(x)), seed=seed)
    log(f"{label}: {report_summary(report)} ({report.seconds:.1f} s)")
    return {"robust_accuracy": report.robust_accuracy, "apparent_robust_accuracy": report.apparent_robust_accuracy,
            "masked": report.masked, "robustness": report.to_dict()}


def protocol_record(robustness: Mapping[str, Any]) -> dict[str, Any]:
    """What every robust accuracy of a run shares, from one stored report: protocol, its label, library, eps, n,
    seed."""
    return {k: robustness[k] for k in ("protocol", "label", "library", "eps", "norm", "n", "seed")}


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


def expectation_status(e: Mapping[str, Any]) -> str:
    """An expectation's state; results written before ``status`` existed have only ``shown``."""
    return e.get("status") or (SHOWN if e["shown"] else NOT_SHOWN)


def expectations_markdown(expectations: Sequence[Mapping[str, Any]]) -> str:
    """The verdict section: one bullet per expectation, '- **shown** / **not shown** / **did not train**: ...'."""
    return "\n".join(f"- **{expectation_status(e)}**: {e['claim']} — {e['detail']}" for e in expectations)


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
