"""Defensive distillation (Papernot, McDaniel, Wu, Jha, Swami; IEEE S&P 2016), METHODS.md section 1.

The method ``defensive`` is the student step:

    L = CE(softmax_T(S(x)), softmax_T(F(x)))      (soft labels from the frozen teacher F, same T)

Papernot relabels the training set once with ``softmax_T(F(x))``; computing the soft labels per
batch is the same thing, because the frozen teacher in eval mode (dropout off) is deterministic.

:func:`defensive_distillation` runs the whole procedure through the Trainer: a shared 1-epoch
initial model (as the reference code does), the teacher trained with ``standard`` at T, the
student (same architecture, same initial weights) trained with ``defensive`` at T, and the
student deployed at T = 1. The models return logits Z and temperature lives outside them, so
"deploying at T = 1" needs no change to the student: its deployed softmax is ``softmax(Z)``,
whose logits are about T times larger than an undistilled model's — the gradient masking that
Carlini & Wagner break (METHODS.md section 1a).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import DatasetInfo
from ..models import build_model
from ..temperature import soft_cross_entropy
from ..train import FINAL_KINDS, Event, StopToken, TrainConfig, Trainer
from . import Method, bounded, build_method, register_method


@dataclass
class DefensiveConfig:
    T: float = bounded(20.0, lo=0, lo_open=True)           # distillation temperature; the paper sweeps 1 ... 100


@register_method
class Defensive(Method):
    name = "defensive"
    summary = "defensive distillation, student step: CE(softmax_T(S(x)), softmax_T(teacher(x))) at the same T"
    Config = DefensiveConfig
    teacher_roles = ("teacher",)

    def loss(self, x, y, state):
        logits = self.model(x)
        with torch.no_grad():
            logits_t = self.teachers["teacher"](x)
        loss = soft_cross_entropy(logits, logits_t, self.config.T)
        return loss, {"ce_soft": loss.detach()}


def _train(stage: str, method: Method, data: tuple[Dataset, Dataset | None], config: TrainConfig,
           stop: StopToken | None, on_event: Callable[[str, Event], None] | None) -> dict:
    """Run one stage through the Trainer; return its final event's data (``status`` among it)."""
    final: dict = {}
    for event in Trainer(method, data, config, stop=stop).run():
        if on_event is not None:
            on_event(stage, event)
        if event.kind in FINAL_KINDS:
            final = dict(event.data)
    return final


def defensive_distillation(train_ds: Dataset, test_ds: Dataset | None, info: DatasetInfo,
                           model_name: str = "papernot-cnn", T: float = DefensiveConfig.T,
                           epochs: int | None = None, train_config: TrainConfig | None = None,
                           shared_init: bool = True, seed: int = 0, stop: StopToken | None = None,
                           on_event: Callable[[str, Event], None] | None = None,
                           ) -> tuple[nn.Module | None, nn.Module | None, dict]:
    """Papernot et al.'s whole procedure: initial model -> teacher at T -> student at T -> deploy at 1.

    ``train_config`` sets the optimiser and loop for teacher and student (by default the
    reference code's SGD lr 0.01, momentum 0.9, batch 128, 50 epochs); ``epochs`` overrides its
    epochs and ``seed`` its seed. With ``shared_init`` a model trained for 1 epoch
    at T = 1 initialises both teacher and student, as in the reference code. ``stop`` (an object
    with ``is_set()``) is handed to each Trainer; ``on_event(stage, event)`` sees every event,
    stage in ``"init" | "teacher" | "student"``.

    Returns ``(teacher, student, results)``: the teacher (frozen by the student's method) and the
    student, whose logits are used as they are at deployment (softmax at T = 1); a model whose
    stage was not reached is ``None``. ``results`` holds ``T``, ``status`` (``"done"`` or the
    final event kind that ended the pipeline early) and each stage's final event data (its
    ``test_accuracy`` among them).
    """
    if train_config is None:
        train_config = TrainConfig(epochs=50, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9)
    config = dataclasses.replace(train_config, seed=seed, epochs=train_config.epochs if epochs is None else epochs)
    data = (train_ds, test_ds)
    results: dict = {"T": T}

    torch.manual_seed(seed)
    init_state = None
    if shared_init:
        init = build_model(model_name, info)
        results["init"] = _train("init", build_method("standard", init, {"T": 1.0}, info=info), data,
                                 dataclasses.replace(config, epochs=1), stop, on_event)
        if results["init"].get("status") != "done":
            results["status"] = results["init"].get("status")
            return None, None, results
        init_state = init.state_dict()

    def fresh() -> nn.Module:
        model = build_model(model_name, info)
        if init_state is not None:
            model.load_state_dict(init_state)
        return model

    teacher = fresh()
    results["teacher"] = _train("teacher", build_method("standard", teacher, {"T": T}, info=info), data, config,
                                stop, on_event)
    if results["teacher"].get("status") != "done":
        results["status"] = results["teacher"].get("status")
        return teacher, None, results

    student = fresh()
    method = build_method("defensive", student, {"T": T}, teachers={"teacher": teacher}, info=info)
    results["student"] = _train("student", method, data, config, stop, on_event)
    results["status"] = results["student"].get("status")
    return teacher, student, results
