"""The interface every training objective implements, its config helpers and the method registry.

See :mod:`distill_core.methods` for how a method is used; a method module imports only this
module, the losses and the attacks."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import threading
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .._torch import eval_mode
from ..attacks import pgd
from ..data import DatasetInfo

_METHODS: dict[str, type[Method]] = {}


@dataclass
class Controls:
    """Values a user sets while a run goes (live tuning), read by the method at its next step.

    Thread-safe: the app's thread calls :meth:`set` / :meth:`clear`, the worker :meth:`get`.
    A method documents which keys it honours (MTARD: ``tau_nat``, ``tau_adv``, ``w_nat``, ``w_adv``).
    """

    _values: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, key: str, value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._values.clear()
            else:
                self._values.pop(key, None)

    def get(self, key: str) -> float | None:
        with self._lock:
            return self._values.get(key)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)


@dataclass
class TrainState:
    """Where training is, as a method sees it."""

    epoch: int = 0                  # 0-based epoch in progress
    epochs: int = 1                 # total epochs planned
    step: int = 0                   # global optimiser step (0-based, before this step)
    steps_per_epoch: int = 1
    total_steps: int = 1            # optimiser steps planned for the whole run
    lr: float = 0.0
    lr_decays: int = 0              # how many times a step schedule has cut the lr so far
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    controls: Controls = field(default_factory=Controls)


def bounded(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Any:
    """A Config field with its valid range, declared once where the field is defined::

        T: float = bounded(4.0, lo=0, lo_open=True)      # T > 0
        steps: int = bounded(10, lo=1)                   # steps >= 1

    :func:`check_config` enforces it (every method checks its config when built), the CLI's
    ``--set`` reports a violation as one ``error:`` line, and the Train page's inputs take the
    same bounds from :func:`field_bounds`. ``None`` stays allowed where the type allows it.
    """
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open})


def field_bounds(f: dataclasses.Field) -> tuple[float | None, float | None, bool]:
    """``(lo, hi, lo_open)`` of a Config field (Nones when it declares no range)."""
    m = f.metadata
    return m.get("lo"), m.get("hi"), bool(m.get("lo_open", False))


def check_config(name: str, config: Any) -> None:
    """Raise ``ValueError`` naming the first setting of ``config`` outside its declared range."""
    for f in dataclasses.fields(config):
        lo, hi, lo_open = field_bounds(f)
        value = getattr(config, f.name)
        if value is None or (lo is None and hi is None) or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or value != value:
            raise ValueError(f"method {name!r}: {f.name} must be a number, got {value!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise ValueError(f"method {name!r}: {f.name} must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if hi is not None and value > hi:
            raise ValueError(f"method {name!r}: {f.name} must be <= {hi:g}, got {value:g}")


class Method:
    """Base class: subclasses set ``name``, ``Config`` and ``teacher_roles`` and implement :meth:`loss`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)
    teacher_roles: ClassVar[tuple[str, ...]] = ()
    control_keys: ClassVar[tuple[str, ...]] = ()     # live values the method reads from state.controls

    def __init__(self, model: nn.Module, config: Any = None, teachers: Mapping[str, nn.Module] | None = None,
                 info: DatasetInfo | None = None):
        self.model = model
        self.info = info
        self.config = config if config is not None else self.Config()
        check_config(self.name, self.config)
        teachers = dict(teachers or {})
        missing = [r for r in self.teacher_roles if r not in teachers]
        if missing:
            raise ValueError(f"method {self.name!r} needs teacher(s): {', '.join(missing)}")
        for t in teachers.values():
            freeze(t)
        self.teachers: dict[str, nn.Module] = teachers

    def on_epoch_start(self, state: TrainState) -> None:
        """Hook for per-epoch schedules (BSS's alpha / beta); default: nothing."""

    def loss(self, x: torch.Tensor, y: torch.Tensor, state: TrainState) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss of one batch (a scalar to minimise) and named values to log (floats or 0-d tensors)."""
        raise NotImplementedError

    def default_eps(self, eps: float | None) -> float:
        """``eps`` if set, else the dataset's usual Linf budget (0.3 MNIST-like, 8/255 CIFAR)."""
        if eps is not None:
            return float(eps)
        return self.info.default_eps if self.info is not None else 0.3

    def scheduled_eps(self, state: TrainState | None) -> float:
        """The inner attack's eps at this step: the final budget after a linear warm-up.

        ``config.eps_warmup`` is the share of the run's optimiser steps over which eps grows
        linearly from 0 to its final value (0: the full budget from the first step, the papers'
        CIFAR recipes). Adversarial training at MNIST's eps 0.3 from random weights can stay at
        chance: the inner attack destroys every digit before the network has learned any
        (METHODS.md section 7; measured here: PGD-AT, small-cnn, mnist-5k, 3 epochs, 10.0 %
        without warm-up, 94 % with it). Growing the perturbation budget over the first part of
        training is the ramp-up of Gowal et al. 2018 ("On the effectiveness of interval bound
        propagation for training verifiably robust models", arXiv:1810.12715, section 4: eps
        "linearly increased" over a ramp-up phase) and of Wong & Kolter / Wong, Rice & Kolter's
        fast adversarial training ("Fast is better than free", ICLR 2020, MNIST: eps ramped up).
        """
        eps = self.default_eps(self.config.eps)
        warmup = float(getattr(self.config, "eps_warmup", 0.0) or 0.0)
        if state is None or warmup <= 0:
            return eps
        ramp_steps = warmup * max(state.total_steps, 1)
        return eps * min(1.0, state.step / ramp_steps)

    def student_pgd(self, x: torch.Tensor, y: torch.Tensor, state: TrainState | None = None,
                    **kwargs) -> torch.Tensor:
        """PGD-Linf on the student itself, as the adversarial methods' inner maximisation.

        Runs with the student in eval mode (the attack must not update BatchNorm statistics)
        and restores every module's mode afterwards. eps / alpha / steps come from the
        method's config: eps None is the dataset's budget, warmed up by :meth:`scheduled_eps`
        when ``state`` is given; alpha None is 2.5 * eps / steps (of the scheduled eps).
        ``kwargs`` go to :func:`~distill_core.attacks.pgd` (``loss``, ``random_start``, ...).
        The eps used is kept in ``self.last_eps`` and logged per step as ``eps``.
        """
        c = self.config
        eps = self.scheduled_eps(state)
        final = self.default_eps(c.eps)
        alpha = c.alpha * eps / final if c.alpha and final > 0 else 2.5 * eps / c.steps
        self.last_eps = eps
        with eval_mode(self.model):
            return pgd(self.model, x, y, eps=eps, alpha=alpha, steps=c.steps, **kwargs)

    def schedule_logs(self) -> dict[str, float]:
        """Per-step values of the method's schedules for the Trainer to log (the inner attack's ``eps``)."""
        eps = getattr(self, "last_eps", None)
        return {} if eps is None else {"eps": float(eps)}

    def to(self, device: torch.device) -> Method:
        self.model.to(device)
        for t in self.teachers.values():
            t.to(device)
        return self

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)


def freeze(model: nn.Module) -> nn.Module:
    """Teacher mode: eval, no gradients to its parameters."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """The registered method names, in registration order."""
    return list(_METHODS)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose from: {', '.join(_METHODS)}")
    return _METHODS[name]


@dataclass(frozen=True)
class ConfigField:
    """One setting of a method's Config, as the CLI and the Train page need it."""

    name: str
    kind: str                 # "bool" | "int" | "float" | "str"
    default: Any
    optional: bool            # None is allowed (it means "the dataset's" / "auto")
    lo: float | None
    hi: float | None
    lo_open: bool
    help: str                 # the comment written after the field in the Config class ("" if none)


_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


@functools.cache
def config_fields(name: str) -> tuple[ConfigField, ...]:
    """The settings of method ``name``: type, default, declared range and help, in declaration order.

    Types come from the Config's annotations (``float | None`` is an optional float); the help is
    the comment after each field in the class source. ``ValueError`` for an unknown method.
    """
    cls = get_method(name).Config
    hints = typing.get_type_hints(cls)
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    helps = {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, re.M)}
    out = []
    for f in dataclasses.fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        optional = type(None) in typing.get_args(hints[f.name])
        lo, hi, lo_open = field_bounds(f)
        out.append(ConfigField(f.name, _KINDS.get(args[0], "str"), f.default, optional, lo, hi, lo_open,
                               helps.get(f.name, "")))
    return tuple(out)


def make_config(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The method's config dataclass with ``values`` (strings are parsed by the field's type).

    ``ValueError`` (one line) for an unknown setting, text that does not parse, or a value
    outside the field's declared range.
    """
    fields = {f.name: f for f in config_fields(name)}
    kwargs = {}
    for key, value in (values or {}).items():
        if key not in fields:
            raise ValueError(f"method {name!r} has no setting {key!r}; settings: {', '.join(fields) or 'none'}")
        kwargs[key] = _parse(fields[key], value) if isinstance(value, str) else value
    config = get_method(name).Config(**kwargs)
    check_config(name, config)
    return config


def _parse(f: ConfigField, text: str) -> Any:
    kind = f"{f.kind} or None" if f.optional else f.kind
    if f.optional and text.lower() == "none":
        return None
    try:
        if f.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if f.kind == "float":
            return float(text)
        if f.kind == "int":
            return int(text)
    except ValueError:
        raise ValueError(f"setting {f.name!r} expects {kind}, got {text!r}") from None
    return text


def build_method(name: str, model: nn.Module, config: Mapping[str, Any] | Any = None,
                 teachers: Mapping[str, nn.Module] | None = None, info: DatasetInfo | None = None) -> Method:
    """Instantiate method ``name`` for ``model``; ``config`` is a dict of overrides or a config object."""
    cls = get_method(name)
    if config is None or isinstance(config, Mapping):
        config = make_config(name, config)
    return cls(model, config, teachers, info)
