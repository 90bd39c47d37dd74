"""THE robust-accuracy measurement of the lab: AutoAttack, the apparent (PGD-CE) number, masking flags.

Robust accuracy means one thing in this lab (METHODS.md section 6): the fraction of the
evaluated test samples that AutoAttack (Croce & Hein, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020) does not flip at
the dataset's Linf budget. The attacks are the authors' own code, packaged on PyPI as
``pyautoattack``; this module only calls them, one attack after another on the samples still
standing, exactly as ``AutoAttack.run_standard_evaluation`` does, so that it can report the
robust accuracy after each attack and progress between them::

    report = evaluate_robustness(model, x, y, eps=0.3, protocol="autoattack-fast", n=500, seed=0)
    report.robust_accuracy, report.apparent_robust_accuracy, report.masked

Protocols (:data:`PROTOCOLS`):

- ``"autoattack"``: AutoAttack's standard version: APGD-CE, APGD-T (9 target classes), FAB-T
  (9 targets), Square (5000 queries); the number the zoo, the reproductions and
  ``eval --robust`` report.
- ``"autoattack-fast"``: APGD-CE + APGD-T with 3 target classes (1 restart each), for the
  app's buttons; labelled so wherever it is shown.
- ``"pgd-ce"``: PGD-Linf on the cross-entropy of the logits (40 steps of 2.5 eps / 40, uniform
  random start): the *apparent* robustness a naive evaluation reports. Never "the" robust
  accuracy; the masking gap is apparent minus AutoAttack.

Every report also carries the apparent PGD-CE number (it is cheap), so that each surface can
draw the masking gap. With fewer than 4 classes (the 2-D toys) the targeted DLR attacks are
undefined; their untargeted versions stand in (APGD-DLR does not exist below 3 classes, so
there FAB replaces it), Square (which perturbs square image patches) runs on images only, and
the report's ``attacks`` says which ran.

The on-disk record (DESIGN.md, "Robustness"): one JSON object, :meth:`RobustnessReport.to_dict`,
stored under the key :data:`RECORD_KEY` (``"robustness"``) of a run's ``summary.json`` and of
a zoo manifest entry::

    {"protocol": "autoattack", "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
     "clean_accuracy": 0.95, "robust_accuracy": 0.46, "apparent_robust_accuracy": 0.61,
     "per_attack": {"apgd-ce": 0.52, "apgd-t": 0.47, "fab-t": 0.46, "square": 0.46},
     "flags": {"zero_gradients": 0.0, "probability_outputs": false, "square_beats_white_box": 0.0,
               "messages": [...]},
     "masked": false, "n": 500, "eps": 0.3, "norm": "Linf", "seed": 0, "seconds": 312.4,
     "library": "pyautoattack 0.2.0", "label": "AutoAttack (standard: ...), Linf eps 0.3, n = 500, seed 0"}

``per_attack`` is AutoAttack's cumulative robust accuracy after each attack (so the last one
equals ``robust_accuracy``); all accuracies are fractions of the ``n`` evaluated samples. A
folder or manifest without the record reads as "not evaluated" (:func:`read_record` -> None).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._torch import InputPath, eval_mode, input_gradient, model_device, predict
from .attacks import pgd

RECORD_KEY = "robustness"
NORMS = ("Linf", "L2")
LOGGER = "auto-attack"           # the logger pyautoattack reports its checks to
MASKING_GAP = 0.10               # apparent - true above this: drawn as gradient masking
APPARENT_STEPS = 40


@dataclass(frozen=True)
class Protocol:
    """One robustness protocol: which attacks run, with which AutoAttack settings."""

    name: str
    attacks: tuple[str, ...]           # pyautoattack names, in order; () for pgd-ce alone
    description: str
    title: str = ""                    # the short name in labels
    apgd_targets: int = 9              # APGD-T target classes
    fab_targets: int = 9               # FAB-T target classes
    square_queries: int = 5000


PROTOCOLS: dict[str, Protocol] = {
    "autoattack": Protocol("autoattack", ("apgd-ce", "apgd-t", "fab-t", "square"),
                           "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square)", "AutoAttack"),
    "autoattack-fast": Protocol("autoattack-fast", ("apgd-ce", "apgd-t"),
                                "AutoAttack fast (APGD-CE + APGD-T, 3 targets)", "AutoAttack fast", apgd_targets=3),
    "pgd-ce": Protocol("pgd-ce", (), f"PGD-CE ({APPARENT_STEPS} steps; apparent robustness only)", "PGD-CE"),
}
_SQUARE_CHECK = "Square Attack has decreased the robust accuracy"   # pyautoattack.checks.check_square_sr
_ATTACK_LABELS = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "apgd-dlr": "APGD-DLR", "fab-t": "FAB-T", "fab": "FAB",
                  "square": "Square"}

Progress = Callable[[float, str], None]


def library_version() -> str:
    try:
        import pyautoattack
        return f"pyautoattack {pyautoattack.__version__}"
    except ImportError:  # pragma: no cover - a pinned dependency
        return "pyautoattack (not installed)"


@dataclass
class RobustnessReport:
    """What :func:`evaluate_robustness` measured; :meth:`to_dict` is the on-disk record (module docstring)."""

    protocol: str
    attacks: list[str]
    clean_accuracy: float
    robust_accuracy: float
    apparent_robust_accuracy: float
    per_attack: dict[str, float]
    flags: dict[str, Any]
    n: int
    eps: float
    norm: str
    seed: int
    seconds: float
    library: str = field(default_factory=library_version)

    @property
    def masked(self) -> bool:
        """AutoAttack's masking checks fired: exactly zero input gradients on some sample, or the
        black-box Square attack beating the white-box ones (AutoAttack's own check: by more than 0.2 points)."""
        f = self.flags
        return bool(f.get("zero_gradients", 0) > 0 or any(_SQUARE_CHECK in m for m in f.get("messages", [])))

    @property
    def masking_gap(self) -> float:
        """Apparent minus true robust accuracy (fraction)."""
        return self.apparent_robust_accuracy - self.robust_accuracy

    @property
    def gap_shown(self) -> bool:
        """The chart's rule: apparent above true by more than :data:`MASKING_GAP` is drawn as masking."""
        return self.protocol != "pgd-ce" and self.masking_gap > MASKING_GAP + 1e-9

    @property
    def label(self) -> str:
        """'AutoAttack (APGD-CE, APGD-T, FAB-T, Square), Linf eps 0.3, n = 500, seed 0': what ran, on what."""
        proto = PROTOCOLS[self.protocol]
        if self.protocol == "pgd-ce":
            head = proto.description
        else:
            names = ", ".join(_ATTACK_LABELS.get(a, a.upper()) for a in self.attacks)
            if "apgd-t" in self.attacks and proto.apgd_targets != 9:
                names += f" ({proto.apgd_targets} targets)"
            head = f"{proto.title} ({names})"
        return f"{head}, {self.norm} eps {self.eps:.3g}, n = {self.n}, seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "masked": self.masked, "masking_gap": round(self.masking_gap, 6),
                "label": self.label}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RobustnessReport:
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in keys})


def read_record(holder: Mapping[str, Any] | None) -> RobustnessReport | None:
    """The report stored under :data:`RECORD_KEY` in a summary or manifest entry (its ``metrics``
    too); None when it has none or an old-style one (shown as "not evaluated")."""
    if not holder:
        return None
    for d in (holder.get(RECORD_KEY), (holder.get("metrics") or {}).get(RECORD_KEY)):
        if isinstance(d, Mapping) and d.get("protocol") in PROTOCOLS and "robust_accuracy" in d:
            try:
                return RobustnessReport.from_dict(d)
            except TypeError:
                return None
    return None


class _Checks(logging.Handler):
    """Collects pyautoattack's check warnings emitted by this thread (two app sessions may evaluate at once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            msg = record.getMessage()
            if msg not in self.messages:
                self.messages.append(msg)


def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, protocol: str,
              n: int | None) -> tuple[int, int]:
    """``(n, classes)`` after checking every argument (the ValueErrors of :func:`evaluate_robustness`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from: {', '.join(NORMS)}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps)) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if x.dim() < 2 or y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"x must be (N, *input) and y (N,) with the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError("robustness of an empty data set")
    n = len(x) if n is None else int(n)
    if n < 1 or n > len(x):
        raise ValueError(f"n must be between 1 and the {len(x)} samples given, got {n}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("inputs must be pixels in [0, 1] (the model normalises inside)")
    with torch.no_grad(), eval_mode(model):
        out = model(x[:2].to(model_device(model)))
    if out.dim() != 2 or out.shape[0] != len(x[:2]):
        raise ValueError(f"the model must return logits (N, classes); it returned shape {tuple(out.shape)}")
    classes = out.shape[1]
    if classes < 2:
        raise ValueError(f"the model returns {classes} output; robustness needs at least 2 classes")
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"labels must be in 0..{classes - 1} (the model has {classes} classes), "
                         f"got {int(y.min())}..{int(y.max())}")
    return n, classes


def _frac(mask: torch.Tensor) -> float:
    """The share of True in a bool vector, as an exact ratio of counts."""
    return int(mask.sum()) / len(mask)


def _zero_gradient_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Share of samples whose cross-entropy input gradient is exactly zero in float32 (masking, METHODS 1a);
    a model that detaches its input has zero gradients everywhere."""
    zero = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = nn.functional.cross_entropy(model(xb), yb, reduction="sum")
            g = input_gradient(loss, xb)
        zero += int((g.flatten(1).abs().sum(1) == 0).sum())
    return zero / len(x)


def _attack_names(protocol: Protocol, classes: int, image: bool = True) -> list[str]:
    """The protocol's attacks, with untargeted stand-ins where there are too few classes to target
    (and without Square, which samples square image patches, on inputs that are not images)."""
    names = []
    for a in protocol.attacks:
        if a == "square" and not image:
            continue
        if a in ("apgd-t", "fab-t") and classes < 4:
            a = {"apgd-t": "apgd-dlr" if classes >= 3 else "fab", "fab-t": "fab"}[a]
        if a not in names:
            names.append(a)
    return names


def evaluate_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "Linf",
                        protocol: str = "autoattack", n: int | None = None, seed: int = 0, batch_size: int = 500,
                        progress: Progress | None = None) -> RobustnessReport:
    """Robust accuracy of ``model`` on the first ``n`` samples of ``(x, y)`` under ``protocol``.

    Args:
        model: maps pixels in [0, 1] to logits (N, classes); evaluated in eval mode (each module's
            mode is restored) on its own device.
        x: (N, *input) pixels in [0, 1]; y: (N,) int64 labels.
        eps: the ball's radius in pixel units (MNIST-like 0.3, CIFAR 8/255); ``eps = 0`` measures
            clean accuracy.
        norm: ``"Linf"`` or ``"L2"``.
        protocol: a key of :data:`PROTOCOLS`.
        n: how many samples (the first ``n``; all when None).
        seed: seeds every attack's random starts; the same seed gives the same report. The
            caller's RNG state is left as it was.
        batch_size: samples per attack call.
        progress: called as ``progress(fraction_done, message)`` after each attack.

    Returns a :class:`RobustnessReport`: clean, robust (per sample, worst case over the
    protocol's attacks), after each attack, apparent (PGD-CE), AutoAttack's checks as ``flags``.

    Raises:
        ValueError: unknown protocol or norm, eps < 0, n out of range, labels out of range,
            inputs outside [0, 1], or a model whose output is not (N, classes). A model with
            exactly zero gradients (one that detaches its input included) is not an error: its
            report carries the masking flags.
    """
    n, classes = _validate(model, x, y, eps, norm, protocol, n)
    proto = PROTOCOLS[protocol]
    dev = model_device(model)
    x, y = x[:n].detach().to(dev).float(), y[:n].detach().to(dev).long()
    start = time.perf_counter()
    checks = _Checks()
    aa_logger = logging.getLogger(LOGGER)
    aa_logger.addHandler(checks)
    report_progress = progress or (lambda *_: None)
    try:
        with eval_mode(model), torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            correct = predict(model, x, batch_size) == y
            clean = _frac(correct)
            zero_share = _zero_gradient_share(model, x, y, batch_size)
            names = _attack_names(proto, classes, image=x.dim() == 4)
            total_units = len(names) + 1
            report_progress(0.0, "PGD-CE (apparent robustness)")
            torch.manual_seed(seed)
            apparent = _pgd_ce(model, x, y, correct, eps, norm, batch_size)
            report_progress(1 / total_units, f"PGD-CE: apparent robust accuracy {apparent:.1%}")
            robust = correct.clone()
            per_attack: dict[str, float] = {}
            if names:
                aa = _autoattack(model, proto, eps, norm, seed, classes, dev)
                for i, name in enumerate(names):
                    idx = robust.nonzero().flatten()
                    if len(idx):
                        aa.attacks_to_run = [name]
                        _, y_adv = aa.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                        robust[idx] = y_adv.to(dev) == y[idx]
                    per_attack[name] = _frac(robust)
                    report_progress((i + 2) / total_units, f"{name.upper()}: robust accuracy {per_attack[name]:.1%}")
            robust_acc = _frac(robust) if names else apparent
            if "square" in per_attack:   # AutoAttack's own check, on the accuracies it would have seen
                from pyautoattack import checks as aa_checks

                aa_checks.check_square_sr({"clean": clean, **per_attack}, logger=aa_logger)
    finally:
        aa_logger.removeHandler(checks)
    white = [v for k, v in per_attack.items() if k != "square"]
    square_gain = (min(white) - per_attack["square"]) if "square" in per_attack and white else 0.0
    flags = {"zero_gradients": zero_share,
             "probability_outputs": any("probability distribution" in m for m in checks.messages),
             "square_beats_white_box": square_gain,
             "messages": checks.messages}
    return RobustnessReport(protocol=protocol, attacks=names, clean_accuracy=clean, robust_accuracy=robust_acc,
                            apparent_robust_accuracy=apparent, per_attack=per_attack, flags=flags, n=n,
                            eps=float(eps), norm=norm, seed=int(seed), seconds=round(time.perf_counter() - start, 2))


def _pgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, eps: float, norm: str,
            batch_size: int) -> float:
    """Apparent robust accuracy: PGD on the cross-entropy of the logits, uniform random start."""
    robust = correct.clone()
    if eps == 0:
        return _frac(robust)
    alpha = 2.5 * eps / APPARENT_STEPS
    for sl in torch.arange(len(x), device=x.device).split(batch_size):
        x_adv = pgd(model, x[sl], y[sl], eps=eps, alpha=alpha, steps=APPARENT_STEPS, norm=norm.lower())
        robust[sl] &= predict(model, x_adv, batch_size) == y[sl]
    return _frac(robust)


def _autoattack(model: nn.Module, proto: Protocol, eps: float, norm: str, seed: int, classes: int,
                dev: torch.device):
    """pyautoattack's AutoAttack with the standard version's settings, adjusted by ``proto``.

    AutoAttack differentiates the model itself, so it gets it through ``_torch.InputPath``: the same
    logits and gradients, and zeros instead of an error for a model that detaches its input.
    """
    from pyautoattack import AutoAttack

    aa = AutoAttack(InputPath(model), eps=float(eps), norm=norm, seed=int(seed), device=dev, version="standard")
    aa.verbose = False
    aa.apgd_targeted.n_target_classes = max(1, min(proto.apgd_targets, classes - 1))
    aa.fab.n_target_classes = max(1, min(proto.fab_targets, classes - 1))
    aa.square.n_queries = proto.square_queries
    return aa


def report_summary(report: RobustnessReport | None) -> str:
    """One line for a CLI or a caption: 'robust 46.0 % (apparent 61.2 %) - AutoAttack (...), ...'."""
    if report is None:
        return "not evaluated"
    line = f"robust {report.robust_accuracy:.1%} (apparent, PGD-CE: {report.apparent_robust_accuracy:.1%})"
    if report.masked:
        line += " - gradient masking"
    return f"{line} - {report.label}"
