"""The Trainer: one loop for every method, as a stream of events.

    trainer = Trainer(method, (train_ds, test_ds), TrainConfig(epochs=3), stop=threading.Event())
    for event in trainer.run():          # step / epoch / eval / done / stopped / diverged / error
        print(event.kind, event.data)

The same stream drives the app's live charts, the CLI's progress bar and the tests. The
Trainer owns the optimiser, the schedule, seeding, evaluation, the stop token and the NaN
guard; the method (``distill_core.methods``) only says what one batch's loss is. Given a
:class:`~distill_core.runs.RunWriter`, it records metrics and checkpoints the model at the
end, on stop, on divergence and on error.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .device import choose_device
from .methods import Controls, Method, TrainState

EVENT_KINDS = ("start", "step", "epoch", "eval", "done", "stopped", "diverged", "error")
FINAL_KINDS = ("done", "stopped", "diverged", "error")


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop settings (the method's own settings live in its config)."""

    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"             # "sgd" | "adam"
    lr: float = 1e-3
    momentum: float = 0.9               # SGD only
    weight_decay: float = 0.0
    schedule: str = "none"              # "none" | "step" | "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)   # step schedule: epochs, or fractions of training if < 1
    gamma: float = 0.1                  # step schedule: lr multiplier at each milestone
    seed: int = 0
    device: str = "auto"                # "auto" | "cpu" | "cuda[:i]" | "mps"
    eval_every: int = 1                 # epochs between test evaluations (the last epoch always)
    eval_samples: int | None = None     # evaluate on the first N test samples (None: all)
    max_steps: int | None = None        # stop after this many optimiser steps (smoke runs)
    grad_clip: float | None = None      # clip the gradient norm (None: off)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("none", "step", "cosine"):
            raise ValueError(f"schedule must be 'none', 'step' or 'cosine', got {self.schedule!r}")
        self.milestones = tuple(float(m) for m in self.milestones)

    def milestone_epochs(self) -> list[int]:
        """The step schedule's milestones as epoch numbers."""
        return sorted({int(round(m * self.epochs)) if m < 1 else int(m) for m in self.milestones})


@dataclass
class Event:
    """One thing that happened: ``kind`` in :data:`EVENT_KINDS`, where, and its numbers."""

    kind: str
    epoch: int
    step: int
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "epoch": self.epoch, "step": self.step, **self.data}


class StopToken(Protocol):
    def is_set(self) -> bool: ...


class RunRecorder(Protocol):
    """What the Trainer needs from a run folder (``runs.RunWriter`` implements it)."""

    def log(self, record: dict) -> None: ...
    def save_model(self, model: nn.Module) -> None: ...
    def finish(self, summary: dict) -> None: ...


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def iterate_batches(data: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                    device: torch.device | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``(x, y)``; in-memory ``TensorDataset``s are sliced directly (no per-sample collate)."""
    pin = device is not None and device.type == "cuda"
    if isinstance(data, TensorDataset):
        x_all, y_all = data.tensors[0], data.tensors[1]
        n = len(x_all)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i: i + batch_size]
            x, y = x_all[idx], y_all[idx]
            if device is not None:
                x, y = (x.pin_memory(), y.pin_memory()) if pin else (x, y)
                x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            yield x, y
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, pin_memory=pin)
    for x, y in loader:
        if device is not None:
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
        yield x, y


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Dataset, batch_size: int = 512, limit: int | None = None,
                      device: torch.device | None = None) -> float:
    """Clean accuracy of ``model`` on ``data`` (first ``limit`` samples), in eval mode; mode restored."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in iterate_batches(data, batch_size, shuffle=False, device=device):
        if limit is not None and total >= limit:
            break
        if limit is not None:
            x, y = x[: limit - total], y[: limit - total]
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / max(total, 1)


class Trainer:
    """Train ``method.model`` on ``data = (train, test)`` with ``config``; :meth:`run` yields events.

    ``stop`` is any object with ``is_set()`` (a ``threading.Event``), checked between steps.
    ``controls`` are live values handed to the method through its :class:`TrainState`.
    """

    def __init__(self, method: Method, data: tuple[Dataset, Dataset | None], config: TrainConfig | None = None,
                 *, stop: StopToken | None = None, run: RunRecorder | None = None, controls: Controls | None = None):
        self.method = method
        self.model = method.model
        self.train_data, self.test_data = data
        self.config = config or TrainConfig()
        self.stop = stop
        self.run_writer = run
        self.controls = controls or Controls()
        self.device_choice = choose_device(self.config.device)
        self.device = self.device_choice.device
        self.history: list[dict] = []
        self._good_state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ setup

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def lr_at(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> tuple[float, int]:
        """Learning rate and number of decays so far at a point of training (per-step cosine)."""
        c = self.config
        if c.schedule == "step":
            decays = sum(epoch >= m for m in c.milestone_epochs())
            return c.lr * c.gamma**decays, decays
        if c.schedule == "cosine":
            progress = (epoch + step_in_epoch / steps_per_epoch) / c.epochs
            return 0.5 * c.lr * (1 + math.cos(math.pi * progress)), 0
        return c.lr, 0

    # ------------------------------------------------------------------ loop

    def run(self) -> Iterator[Event]:
        """Train, yielding events; ends with exactly one of done / stopped / diverged / error."""
        c = self.config
        generator = seed_everything(c.seed)
        self.method.to(self.device)
        self.model.train()
        optimizer = self._optimizer()
        n_train = len(self.train_data)
        steps_per_epoch = math.ceil(n_train / c.batch_size)
        total_steps = steps_per_epoch * c.epochs
        if c.max_steps is not None:
            total_steps = min(total_steps, c.max_steps)
        state = TrainState(epochs=c.epochs, steps_per_epoch=steps_per_epoch, device=self.device,
                           controls=self.controls)
        t0 = time.perf_counter()
        yield self._event("start", state, total_steps=total_steps, device=self.device_choice.describe(),
                          n_train=n_train)
        last_loss = float("nan")
        last_acc: float | None = None
        epochs_done = 0
        try:
            for epoch in range(c.epochs):
                state.epoch = epoch
                self.method.on_epoch_start(state)
                # A CPU copy of the weights at each epoch start: restored on divergence if the
                # diverging update left non-finite weights behind (e.g. an lr of 1e6).
                self._good_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
                epoch_loss, epoch_n, t_epoch = 0.0, 0, time.perf_counter()
                for i, (x, y) in enumerate(iterate_batches(self.train_data, c.batch_size, True, generator,
                                                           self.device)):
                    if self.stop is not None and self.stop.is_set():
                        yield self._finish("stopped", state, t0, last_loss, epochs_done, "stopped by the user")
                        return
                    if c.max_steps is not None and state.step >= c.max_steps:
                        yield self._finish("done", state, t0, last_loss, epochs_done, "reached max_steps")
                        return
                    lr, state.lr_decays = self.lr_at(epoch, i, steps_per_epoch)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    state.lr = lr
                    loss, logs = self.method.loss(x, y, state)
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):
                        yield self._finish("diverged", state, t0, last_loss, epochs_done,
                                           f"loss became {loss_value} at step {state.step} (lr {lr:g}); "
                                           "the model keeps its last finite weights - try a smaller lr")
                        return
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip or float("inf"))
                    if not torch.isfinite(grad_norm):
                        yield self._finish("diverged", state, t0, last_loss, epochs_done,
                                           f"gradient became {float(grad_norm)} at step {state.step} (lr {lr:g}); "
                                           "the model keeps its last finite weights - try a smaller lr")
                        return
                    optimizer.step()
                    last_loss = loss_value
                    epoch_loss += loss_value * len(y)
                    epoch_n += len(y)
                    state.step += 1
                    elapsed = time.perf_counter() - t0
                    yield self._event("step", state, loss=loss_value, lr=lr, progress=state.step / total_steps,
                                      eta_s=elapsed / state.step * (total_steps - state.step),
                                      **{k: _to_float(v) for k, v in logs.items()})
                epochs_done = epoch + 1
                record = {"epoch": epochs_done, "step": state.step, "train_loss": epoch_loss / max(epoch_n, 1),
                          "lr": state.lr, "epoch_seconds": time.perf_counter() - t_epoch}
                yield self._event("epoch", state, **record)
                if self.test_data is not None and (epochs_done % c.eval_every == 0 or epochs_done == c.epochs):
                    last_acc = evaluate_accuracy(self.model, self.test_data, limit=c.eval_samples,
                                                 device=self.device)
                    self.model.train()
                    record["test_accuracy"] = last_acc
                    yield self._event("eval", state, test_accuracy=last_acc)
                self.history.append(record)
                if self.run_writer is not None:
                    self.run_writer.log(record)
            yield self._finish("done", state, t0, last_loss, epochs_done, "")
        except Exception as e:  # noqa: BLE001 - any failure inside a method ends the run cleanly
            yield self._finish("error", state, t0, last_loss, epochs_done, f"{type(e).__name__}: {e}",
                               traceback=traceback.format_exc())

    # ------------------------------------------------------------------ helpers

    def _event(self, kind: str, state: TrainState, **data) -> Event:
        return Event(kind, state.epoch, state.step, data)

    def _finish(self, status: str, state: TrainState, t0: float, last_loss: float, epochs_done: int, reason: str,
                **extra) -> Event:
        self.model.eval()
        if status == "diverged" and self._good_state is not None and not all(
                torch.isfinite(v).all() for v in self.model.state_dict().values() if v.is_floating_point()):
            self.model.load_state_dict(self._good_state)
            reason += f"; restored the weights from the start of epoch {epochs_done + 1}"
        seconds = time.perf_counter() - t0
        acc = None
        if self.test_data is not None and status != "error":
            acc = evaluate_accuracy(self.model, self.test_data, limit=self.config.eval_samples, device=self.device)
        summary = {"status": status, "reason": reason, "epochs": epochs_done, "steps": state.step,
                   "seconds": round(seconds, 3), "test_accuracy": acc,
                   "final_loss": last_loss if math.isfinite(last_loss) else None,
                   "device": str(self.device)}
        if self.run_writer is not None:
            self.run_writer.save_model(self.model)
            self.run_writer.finish(summary)
        return self._event(status, state, **summary, **extra)

    def config_dict(self) -> dict:
        return asdict(self.config)


def _to_float(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v.detach()) if v.numel() == 1 else v.detach().cpu().tolist()
    return v
