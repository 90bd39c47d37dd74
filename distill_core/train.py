"""The Trainer: one loop for every method, as a stream of events.

    trainer = Trainer(method, (train_ds, test_ds), TrainConfig(epochs=3), stop=threading.Event())
    for event in trainer.run():          # step / epoch / eval / done / stopped / diverged / error
        print(event.kind, event.data)

The same stream drives the app's live charts, the CLI's progress bar and the tests. The
Trainer owns the optimiser, the schedule, seeding, evaluation, the stop token and the NaN
guard; the method (``distill_core.methods``) only says what one batch's loss is. Given a
:class:`~distill_core.runs.RunWriter`, it records each epoch's metrics with a checkpoint of the
model (a killed run keeps its last finished epoch), and saves the model again at the end, on
stop, on divergence and on error. Each step copies its numbers to the host once (the loss, the
gradient norm for the NaN guard and the method's logs together), for the step event.

On a GPU the same loop takes the fast path, each part a :class:`TrainConfig` setting: bf16
autocast around the method's loss, its inner-maximisation attacks included (``amp``; "auto" turns
it on for CUDA and for the methods that are safe under it), the channels-last memory format for
CNNs (``channels_last``), ``torch.compile`` of the student (``compile``), cuDNN autotuning, and
pinned, non-blocking host-to-device copies. On the CPU nothing changes unless asked. Standard
CIFAR augmentation (``augment="crop-flip"``) is a batched tensor operation drawn from the
Trainer's seeded generator. Under torchrun the same loop trains with DistributedDataParallel
(see ``distributed.py``).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torch.utils.data.dataloader import default_collate

from . import distributed
from ._torch import eval_mode
from .data import DatasetInfo
from .device import bf16_supported, choose_device
from .methods import Controls, Method, TrainState

EVENT_KINDS = ("start", "step", "epoch", "eval", "done", "stopped", "diverged", "error")
FINAL_KINDS = ("done", "stopped", "diverged", "error")
AMP_MODES = ("auto", "off", "bf16")
AUGMENTATIONS = ("none", "crop-flip")
CROP_PADDING = 4
# Methods that "auto" keeps in fp32 on a GPU (an explicit amp="bf16" still applies), and why.
AMP_UNSAFE = {
    "defensive": "defensive distillation studies a softmax at T up to 100 saturating in fp32",
    "bss": "BSS steps by the margin + 1e-4, finer than bf16 resolves a logit margin",
}


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
    amp: str = "auto"                   # "auto" (bf16 autocast on CUDA for methods safe under it) | "off" | "bf16"
    channels_last: bool | str = "auto"  # channels-last memory format; "auto": for CNNs on CUDA
    compile: bool = False               # torch.compile the student
    augment: str = "none"               # "none" | "crop-flip" (random crop of the 4-pixel zero-padded image + h-flip)

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
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last must be True, False or 'auto', got {self.channels_last!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
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

    def checkpoint(self, model: nn.Module, record: dict) -> None: ...   # after each epoch: model + metrics
    def heartbeat(self) -> None: ...                                     # between steps: "still alive"
    def save_model(self, model: nn.Module) -> None: ...
    def finish(self, summary: dict) -> None: ...


@dataclass
class _Ending:
    """Why training ends: the final event's kind (:data:`FINAL_KINDS`), the reason in words, extra event data."""

    kind: str
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tally:
    """What the loop carries from step to step besides :class:`TrainState`."""

    t0: float                       # perf_counter at the start
    steps_per_epoch: int
    total_steps: int
    epochs_done: int = 0
    last_loss: float = math.nan     # the last step's (global) mean loss
    epoch_loss: float = 0.0         # sum of loss x samples over the epoch so far
    epoch_n: int = 0
    t_epoch: float = 0.0


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """Standard CIFAR augmentation for a whole batch: crop each image from its zero-padded copy, then mirror it.

    ``x`` (N, C, H, W); ``offsets`` (N, 2) integer (row, column) of each crop's corner in the image
    padded by ``padding`` pixels, in ``[0, 2 * padding]``; ``flips`` (N,) bool, mirror left-right.
    The same as torchvision's ``RandomCrop(H, padding)`` + ``RandomHorizontalFlip()`` per image, as
    two gathers on the device instead of a Python loop. Offsets of ``padding`` and no flip give ``x``.
    """
    n, c, h, w = x.shape
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)                     # (N, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)                     # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def _augment_draws(augment: str, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    if augment == "none":
        return None
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=generator)
    return offsets, torch.rand(n, generator=generator) < 0.5


def _take(data: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, TensorDataset):
        return data.tensors[0][idx], data.tensors[1][idx]
    x, y = default_collate([data[int(i)] for i in idx])
    return x, y


def iterate_batches(data: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                    device: torch.device | None = None, *, augment: str = "none", rank: int = 0,
                    world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``(x, y)``; in-memory ``TensorDataset``s are sliced directly (no per-sample collate).

    On CUDA, batches are copied from pinned memory without blocking. ``augment="crop-flip"``
    applies :func:`crop_flip` on the device with draws from ``generator``. With ``world_size`` > 1
    (DDP) every rank draws the same permutation and augmentation from the same seeded generator,
    cuts each global batch of ``batch_size`` into ``world_size`` equal slices and yields slice
    ``rank``; a short last batch is padded with its own first samples so that every rank gets as
    many samples (as ``DistributedSampler`` pads). The ranks' slices together are exactly the
    single-process batch.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    pin = device is not None and device.type == "cuda"

    def to_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if device is None or x.device == device:
            return x, y
        x, y = (x.pin_memory(), y.pin_memory()) if pin else (x, y)
        return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    if isinstance(data, TensorDataset) or world_size > 1:
        n = len(data)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i: i + batch_size]
            per_rank = -(-len(idx) // world_size)
            idx = idx.repeat(world_size)[: per_rank * world_size]
            draws = _augment_draws(augment, len(idx), generator)
            mine = slice(rank * per_rank, (rank + 1) * per_rank)
            x, y = to_device(*_take(data, idx[mine]))
            if draws is not None:
                x = crop_flip(x, draws[0][mine], draws[1][mine])
            yield x, y
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, pin_memory=pin)
    for x, y in loader:
        x, y = to_device(x, y)
        draws = _augment_draws(augment, len(x), generator)
        if draws is not None:
            x = crop_flip(x, *draws)
        yield x, y


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Dataset, batch_size: int = 512, limit: int | None = None,
                      device: torch.device | None = None) -> float:
    """Clean accuracy of ``model`` on ``data`` (first ``limit`` samples), in eval mode; mode restored."""
    device = device or next(model.parameters()).device
    correct = total = 0
    with eval_mode(model), torch.no_grad():
        for x, y in iterate_batches(data, batch_size, shuffle=False, device=device):
            if limit is not None and total >= limit:
                break
            if limit is not None:
                x, y = x[: limit - total], y[: limit - total]
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


def resolve_amp(amp: str, device: torch.device, method_name: str = "") -> tuple[torch.dtype | None, str]:
    """The autocast dtype a run uses (``None``: fp32) and a few words on it for the start line.

    ``"auto"`` means bf16 on a CUDA GPU that supports it, unless the method is in :data:`AMP_UNSAFE`;
    fp32 everywhere else. ``"bf16"`` is honoured on any device (the CPU too, through CPU autocast).
    """
    if amp == "bf16":
        return torch.bfloat16, "bf16 autocast"
    if amp == "off" or device.type != "cuda":
        return None, "fp32"
    if not bf16_supported(device):
        return None, "fp32 (this GPU has no bf16)"
    if method_name in AMP_UNSAFE:
        return None, f"fp32 ({AMP_UNSAFE[method_name]})"
    return torch.bfloat16, "bf16 autocast"


def uses_channels_last(setting: bool | str, device: torch.device, model: nn.Module) -> bool:
    """Whether to train in channels-last memory format: ``"auto"`` means for CNNs on CUDA."""
    if setting == "auto":
        return device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return bool(setting)


class Trainer:
    """Train ``method.model`` on ``data = (train, test)`` with ``config``; :meth:`run` yields events.

    ``stop`` is any object with ``is_set()`` (a ``threading.Event``), checked between steps.
    ``controls`` are live values handed to the method through its :class:`TrainState`.
    Inside a torchrun process group (``distributed.init_from_env``) the student trains under
    DistributedDataParallel: ``config.batch_size`` is the global batch, split over the ranks.
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
        self.dist = distributed.current()
        self.device_choice = distributed.rank_device(choose_device(self.config.device), self.dist)
        self.device = self.device_choice.device
        self.history: list[dict] = []
        self._good_state: dict[str, torch.Tensor] | None = None
        self._amp_dtype: torch.dtype | None = None
        self._channels_last = False
        if self.config.batch_size % self.dist.world_size:
            raise ValueError(f"batch_size {self.config.batch_size} (the global batch) must be divisible by the "
                             f"{self.dist.world_size} processes")
        if self.config.augment != "none" and isinstance(self.train_data, TensorDataset) \
                and self.train_data.tensors[0].dim() != 4:
            raise ValueError(f"augment={self.config.augment!r} needs images (N, C, H, W), got inputs of shape "
                             f"{tuple(self.train_data.tensors[0].shape)}")

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

    def _wrap_student(self) -> str:
        """Put the GPU path in place: memory format, DDP, compile; the method's ``model`` becomes the wrapper.

        Returns the precision in words. The Trainer keeps the plain module as ``self.model`` (for
        evaluation, checkpoints and the NaN guard); :meth:`_unwrap_student` undoes all of it.
        """
        c = self.config
        self._amp_dtype, precision = resolve_amp(c.amp, self.device, self.method.name)
        self._channels_last = uses_channels_last(c.channels_last, self.device, self.model)
        if self._channels_last:
            for module in (self.model, *self.method.teachers.values()):
                module.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        wrapped = self.model
        if self.dist.enabled:
            wrapped = distributed.wrap(wrapped, self.device)
        if c.compile:
            wrapped = torch.compile(wrapped)
        self.method.model = wrapped
        return precision

    def _unwrap_student(self) -> None:
        self.method.model = self.model
        if self._channels_last:
            for module in (self.model, *self.method.teachers.values()):
                module.to(memory_format=torch.contiguous_format)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # ------------------------------------------------------------------ loop

    def run(self) -> Iterator[Event]:
        """Train, yielding events; ends with exactly one of done / stopped / diverged / error."""
        c = self.config
        generator = seed_everything(c.seed)
        if self.dist.rank > 0:  # dropout masks and attack starts differ per rank; the data order (generator) does not
            seed_everything(c.seed + self.dist.rank)
        self.method.to(self.device)
        self.model.train()
        precision = self._wrap_student()
        try:
            yield from self._loop(generator, precision)
        finally:
            self._unwrap_student()

    def _loop(self, generator: torch.Generator, precision: str) -> Iterator[Event]:
        """The start event, the epochs, then exactly one final event: the loop's only way out."""
        c = self.config
        optimizer = self._optimizer()
        steps_per_epoch = math.ceil(len(self.train_data) / c.batch_size)
        total_steps = steps_per_epoch * c.epochs
        if c.max_steps is not None:
            total_steps = min(total_steps, c.max_steps)
        state = TrainState(epochs=c.epochs, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                           device=self.device, controls=self.controls)
        tally = _Tally(time.perf_counter(), steps_per_epoch, total_steps)
        yield self._event("start", state, total_steps=total_steps, device=self.device_choice.describe(),
                          n_train=len(self.train_data), precision=precision, channels_last=self._channels_last,
                          compiled=c.compile, world_size=self.dist.world_size)
        try:
            ending = yield from self._epochs(generator, optimizer, state, tally)
            final = self._finish(ending, state, tally)
        except Exception as e:  # noqa: BLE001 - any failure inside a method ends the run cleanly
            final = self._finish(_Ending("error", f"{type(e).__name__}: {e}", {"traceback": traceback.format_exc()}),
                                 state, tally)
        yield final

    def _epochs(self, generator: torch.Generator, optimizer: torch.optim.Optimizer, state: TrainState,
                tally: _Tally) -> Generator[Event, None, _Ending]:
        """Epoch after epoch: the steps, then the epoch's end; returns how training ended."""
        for epoch in range(self.config.epochs):
            state.epoch = epoch
            ending = yield from self._epoch(generator, optimizer, state, tally)
            if ending is not None:
                return ending
            yield from self._end_of_epoch(state, tally)
        return _Ending("done")

    def _epoch(self, generator: torch.Generator, optimizer: torch.optim.Optimizer, state: TrainState,
               tally: _Tally) -> Generator[Event, None, _Ending | None]:
        """One pass over the training data, a step event per batch; an ending if training stops inside it."""
        c = self.config
        self.method.on_epoch_start(state)
        # A CPU copy of the weights at each epoch start: restored on divergence if the
        # diverging update left non-finite weights behind (e.g. an lr of 1e6).
        self._good_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        tally.epoch_loss, tally.epoch_n, tally.t_epoch = 0.0, 0, time.perf_counter()
        batches = iterate_batches(self.train_data, c.batch_size, True, generator, self.device, augment=c.augment,
                                  rank=self.dist.rank, world_size=self.dist.world_size)
        for i, (x, y) in enumerate(batches):
            step = self._train_step(x, y, i, optimizer, state, tally)
            if isinstance(step, _Ending):
                return step
            yield self._event("step", state, **step)
            if self.run_writer is not None:
                self.run_writer.heartbeat()
        return None

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, i: int, optimizer: torch.optim.Optimizer,
                    state: TrainState, tally: _Tally) -> dict[str, Any] | _Ending:
        """One optimiser step on batch ``i`` of the epoch: the step event's data (loss, lr, progress,
        eta_s, the method's logs as Python numbers), or why training ends instead (weights untouched)."""
        ending = self._ending_before_step(state)
        if ending is not None:
            return ending
        lr, state.lr_decays = self.lr_at(state.epoch, i, tally.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        state.lr = lr
        if self._channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss, logs = self.method.loss(x, y, state)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or float("inf"))
        loss_value, grad_value, logs = _to_host(loss, grad_norm, {**self.method.schedule_logs(), **logs})
        batch_n = len(y)
        if self.dist.enabled:  # one collective per step: the global mean loss and any rank's stop
            loss_sum, batch_n, stops = distributed.all_reduce_sum(
                [loss_value * len(y), len(y), self._stop_requested()], self.device)
            loss_value = loss_sum / batch_n
            if stops:
                return _Ending("stopped", "stopped by the user")
        ending = _divergence(loss_value, grad_value, state.step, lr)
        if ending is not None:
            return ending
        optimizer.step()
        tally.last_loss = loss_value
        tally.epoch_loss += loss_value * batch_n
        tally.epoch_n += batch_n
        state.step += 1
        elapsed = time.perf_counter() - tally.t0
        return {"loss": loss_value, "lr": lr, "progress": state.step / tally.total_steps,
                "eta_s": elapsed / state.step * (tally.total_steps - state.step), **logs}

    def _ending_before_step(self, state: TrainState) -> _Ending | None:
        """The user's stop (a single process; under DDP the ranks agree on it after the loss) or max_steps."""
        if not self.dist.enabled and self._stop_requested():
            return _Ending("stopped", "stopped by the user")
        if self.config.max_steps is not None and state.step >= self.config.max_steps:
            return _Ending("done", "reached max_steps")
        return None

    def _end_of_epoch(self, state: TrainState, tally: _Tally) -> Iterator[Event]:
        """The epoch event, the test evaluation when due (eval event), the history record and the checkpoint."""
        c = self.config
        tally.epochs_done = state.epoch + 1
        distributed.average_buffers(self.model)
        record = {"epoch": tally.epochs_done, "step": state.step,
                  "train_loss": tally.epoch_loss / max(tally.epoch_n, 1), "lr": state.lr,
                  "epoch_seconds": time.perf_counter() - tally.t_epoch}
        yield self._event("epoch", state, **record)
        if self.test_data is not None and (tally.epochs_done % c.eval_every == 0 or tally.epochs_done == c.epochs):
            record["test_accuracy"] = self._evaluate()
            self.model.train()
            yield self._event("eval", state, test_accuracy=record["test_accuracy"])
        self.history.append(record)
        if self.run_writer is not None:
            self.run_writer.checkpoint(self.model, record)

    # ------------------------------------------------------------------ helpers

    def _evaluate(self) -> float:
        """Test accuracy of the plain (unwrapped) student; under DDP each rank counts a slice, summed."""
        c = self.config
        if not self.dist.enabled:
            return evaluate_accuracy(self.model, self.test_data, limit=c.eval_samples, device=self.device)
        n = len(self.test_data) if c.eval_samples is None else min(c.eval_samples, len(self.test_data))
        lo = n * self.dist.rank // self.dist.world_size
        hi = n * (self.dist.rank + 1) // self.dist.world_size
        part = (TensorDataset(*(t[lo:hi] for t in self.test_data.tensors))
                if isinstance(self.test_data, TensorDataset) else Subset(self.test_data, range(lo, hi)))
        correct = round(evaluate_accuracy(self.model, part, device=self.device) * (hi - lo)) if hi > lo else 0
        correct, total = distributed.all_reduce_sum([correct, hi - lo], self.device)
        return correct / max(total, 1)

    def _event(self, kind: str, state: TrainState, **data) -> Event:
        return Event(kind, state.epoch, state.step, data)

    def _finish(self, ending: _Ending, state: TrainState, tally: _Tally) -> Event:
        """End the run: restore finite weights after a divergence, evaluate, save the model and the
        summary; returns the final event (kind ``ending.kind``, data the summary + ``ending.extra``)."""
        status, reason = ending.kind, ending.reason
        self.model.eval()
        if status == "diverged" and self._good_state is not None and not all(
                torch.isfinite(v).all() for v in self.model.state_dict().values() if v.is_floating_point()):
            self.model.load_state_dict(self._good_state)
            reason += f"; restored the weights from the start of epoch {tally.epochs_done + 1}"
        seconds = time.perf_counter() - tally.t0
        acc = None
        if status != "error":  # an error may have hit one rank only: no collectives after it
            distributed.average_buffers(self.model)
            if self.test_data is not None:
                acc = self._evaluate()
        summary = {"status": status, "reason": reason, "epochs": tally.epochs_done, "steps": state.step,
                   "seconds": round(seconds, 3), "test_accuracy": acc,
                   "final_loss": tally.last_loss if math.isfinite(tally.last_loss) else None,
                   "device": str(self.device)}
        if acc is not None and status in ("done", "stopped") and self.method.info is not None:
            chance = chance_accuracy(self.method.info)
            summary["chance_accuracy"] = chance
            summary["learned"] = not did_not_learn(acc, chance)
            if not summary["learned"]:
                summary["warning"] = collapse_message(self.method, acc, chance)
        if self.run_writer is not None:
            self.run_writer.save_model(self.model)
            self.run_writer.finish(summary)
        return self._event(status, state, **summary, **ending.extra)

    def config_dict(self) -> dict:
        return asdict(self.config)


CHANCE_MARGIN = 0.05   # within 5 points of chance: the run did not learn


def chance_accuracy(info: DatasetInfo) -> float:
    """The accuracy of a constant guess: 1 / classes (the lab's data sets have balanced classes)."""
    return 1.0 / info.num_classes


def did_not_learn(accuracy: float | None, chance: float) -> bool:
    """True when a test accuracy (fraction) is within :data:`CHANCE_MARGIN` of chance: "did not train",
    never a result (a collapsed adversarial run is not "robust", it answers one class everywhere)."""
    return accuracy is not None and accuracy - chance < CHANCE_MARGIN - 1e-9


def collapse_message(method: Method, accuracy: float, chance: float) -> str:
    """What a run at chance level says, with its most likely cause."""
    head = (f"did not learn: test accuracy {accuracy:.1%} is within {100 * CHANCE_MARGIN:.0f} points of chance "
            f"({chance:.1%}); the model is not a result")
    c = method.config
    if hasattr(c, "eps") and getattr(c, "eps_warmup", 0) == 0:
        return (f"{head}. Likely cause: adversarial training at the full eps from the first step destroys every "
                "input before the network has learned any; warm eps up (eps_warmup=0.4) or lower eps")
    if hasattr(c, "eps"):
        return (f"{head}. Likely cause: the inner attack is too strong for this model and budget; train longer, "
                "lengthen the eps warm-up (eps_warmup) or lower eps or the learning rate")
    return f"{head}. Likely cause: a learning rate too high or too low, or too few epochs"


def _to_float(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v.detach()) if v.numel() == 1 else v.detach().cpu().tolist()
    return v


def _to_host(loss: torch.Tensor, grad_norm: torch.Tensor, logs: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """A step's numbers as Python values through one device-to-host copy (one sync on a GPU).

    ``loss`` and ``grad_norm`` are one-element tensors; ``logs`` maps names to one-element tensors
    (packed into the same copy), Python numbers (kept) or larger tensors (lists, rare). Returns
    ``(loss, grad_norm, logs)`` with the logs in their order. Values are exact: float64 holds any
    float32/bf16/fp16 value (float32 on MPS, which has no float64).
    """
    scalars = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
    dtype = torch.float32 if loss.device.type == "mps" else torch.float64
    packed = torch.cat([t.detach().reshape(1).to(loss.device, dtype)
                        for t in (loss, grad_norm, *scalars.values())]).tolist()
    values = dict(zip(scalars, packed[2:]))
    return packed[0], packed[1], {k: values[k] if k in values else _to_float(v) for k, v in logs.items()}


def _divergence(loss: float, grad_norm: float, step: int, lr: float) -> _Ending | None:
    """The NaN guard: an ending when the step's loss or gradient norm is not finite, else None."""
    keep = "the model keeps its last finite weights - try a smaller lr"
    if not math.isfinite(loss):
        return _Ending("diverged", f"loss became {loss} at step {step} (lr {lr:g}); {keep}")
    if not math.isfinite(grad_norm):
        return _Ending("diverged", f"gradient became {grad_norm} at step {step} (lr {lr:g}); {keep}")
    return None


def run_to_end(trainer: Trainer, on_event: Callable[[Event], None] | None = None,
               require_done: str | None = None) -> Event:
    """Drive ``trainer.run()`` to its end, passing each event to ``on_event``; return the final event.

    The one loop every caller uses (CLI, app worker, zoo build, reproductions, the papers'
    pipelines). The final event's ``kind`` is one of :data:`FINAL_KINDS`. With ``require_done``
    (a label for the message), any ending other than ``done`` raises ``RuntimeError`` naming it
    and its reason.
    """
    final: Event | None = None
    for event in trainer.run():
        if on_event is not None:
            on_event(event)
        if event.kind in FINAL_KINDS:
            final = event
    if final is None:  # run() always ends with a final event; this guards a broken generator
        raise RuntimeError("the Trainer ended without a final event")
    if require_done is not None and final.kind != "done":
        raise RuntimeError(f"{require_done}: training ended as {final.kind}: {final.data.get('reason', '')}")
    return final
