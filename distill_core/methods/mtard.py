"""Multi-Teacher Adversarial Robustness Distillation, MTARD (Zhao, Wang, Wei; ECCV 2022 / arXiv 2306.16170).

METHODS.md section 3. A clean teacher ("clean_teacher") teaches the student on x, a robust
teacher ("robust_teacher") on the student's own adversarial example x_adv; no hard labels:

    L = w_adv KL(softmax(T_adv(x_adv) / tau_adv) || softmax(S(x_adv)))
      + w_nat KL(softmax(T_nat(x) / tau_nat)     || softmax(S(x)))

Two rules balance the teachers every iteration (:func:`entropy_balance` and
:func:`normalization_loss_balance`, below, held by :class:`Balance`): Entropy-Based Balance
moves the teachers' temperatures until their entropies match, Normalization Loss Balance moves
the weights towards the loss that has fallen less since the first batch. Their learning rates
(``lr_tau``, ``r_w``) shrink x0.1 at each learning-rate decay. Either can be switched off for
an ablation. The KLs are averaged over the batch (``batchmean``); the authors' code averages
over batch and classes (KL / C), which scales the loss by 1 / C and leaves NLB's relative
losses unchanged.

Live tuning: at each step the method reads ``state.controls`` keys ``tau_nat``, ``tau_adv``,
``w_nat`` and ``w_adv``. A value set there replaces the balance rule for that quantity and
becomes its current value (temperatures clamped to [1, 10], weights to [0, 1]; with one weight
set, the other is 1 minus it; with both set, both are used as given). Once the key is cleared,
EBB / NLB resume from that value. That is :meth:`Balance.take_controls`, kept out of the loss step;
:meth:`MTARD.state_dict` exposes the balance state for the app.

Order within a step: NLB updates the weights from this batch's losses before they weight the
loss, as the authors' code does; EBB measures the entropies at the current temperatures, which
the loss uses, and its update applies from the next step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..losses import entropy, kd_loss, softmax_t
from ._base import Controls, Method, bounded, register_method

TAU_MIN, TAU_MAX = 1.0, 10.0
CONTROL_KEYS = ("tau_nat", "tau_adv", "w_nat", "w_adv")


# ---------------------------------------------------------------- the two balance rules (Zhao et al. 2023)


def _sign(v: float) -> float:
    return float((v > 0) - (v < 0))


def entropy_balance(tau_nat: float, tau_adv: float, H_nat: float, H_adv: float, lr_tau: float,
                    lo: float = TAU_MIN, hi: float = TAU_MAX) -> tuple[float, float]:
    """MTARD's Entropy-Based Balance (EBB), one iteration::

        tau_adv <- clamp(tau_adv - lr_tau * sign(H_adv / H_nat - 1), lo, hi)
        tau_nat <- clamp(tau_nat - lr_tau * sign(H_nat / H_adv - 1), lo, hi)

    ``H_nat`` / ``H_adv`` are the mean entropies of the clean / robust teacher's softmax at their
    current temperatures. The higher-entropy teacher is sharpened (its tau falls), the other
    softened, until the entropies match; equal entropies leave both unchanged. For entropies
    >= 0, ``sign(H_a / H_n - 1) = sign(H_a - H_n)``, which is what is computed, so an entropy of
    exactly 0 needs no special case. Returns the new ``(tau_nat, tau_adv)`` as floats.
    """
    H_nat, H_adv = float(H_nat), float(H_adv)
    new_adv = tau_adv - lr_tau * _sign(H_adv - H_nat)
    new_nat = tau_nat - lr_tau * _sign(H_nat - H_adv)
    return min(max(new_nat, lo), hi), min(max(new_adv, lo), hi)


def normalization_loss_balance(w: Sequence[float], losses: Sequence[float], initial_losses: Sequence[float],
                               r_w: float, beta: float = 1.0) -> list[float]:
    """MTARD's Normalization Loss Balance (NLB), one iteration::

        L~_i = L_i / L_i(0)                       relative loss (L_i(0): the first batch's)
        r_i  = L~_i^beta / sum_j L~_j^beta
        w_i <- w_i - r_w * (w_i - r_i)            then clip at 0 and renormalise to sum 1

    The loss that has fallen less relative to its start gets more weight. ``w``, ``losses`` and
    ``initial_losses`` are equally long sequences of floats; returns the new weights. A zero
    initial loss counts as the smallest positive float; if every relative loss is 0 the target
    ``r`` is uniform. (The authors' code updates ``w_nat`` and sets ``w_adv = 1 - w_nat``: the
    same update when the weights sum to 1.)
    """
    if not len(w) == len(losses) == len(initial_losses):
        raise ValueError(f"w, losses and initial_losses differ in length: {len(w)}, {len(losses)}, "
                         f"{len(initial_losses)}")
    rel = [float(L) / max(float(L0), math.ulp(0.0)) for L, L0 in zip(losses, initial_losses, strict=True)]
    powered = [r**beta for r in rel]
    total = sum(powered)
    r = [p / total for p in powered] if total > 0 else [1.0 / len(w)] * len(w)
    new = [max(wi - r_w * (wi - ri), 0.0) for wi, ri in zip(w, r, strict=True)]
    total = sum(new)
    return [wi / total for wi in new] if total > 0 else [1.0 / len(w)] * len(w)


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(float(v), lo), hi)


@dataclass
class Balance:
    """The teachers' temperatures and weights, moved by EBB and NLB, or set live by a user.

    :meth:`ebb` and :meth:`nlb` apply the paper's rules; :meth:`take_controls` is the lab's live
    tuning (a quantity the user set is left alone by its rule until the user clears it).
    """

    tau_nat: float
    tau_adv: float
    w_nat: float
    w_adv: float
    loss0: tuple[float, float] | None = None      # (L_nat(0), L_adv(0)), from the first batch
    user: set[str] = field(default_factory=set)   # quantities the user controls at this step

    def take_controls(self, controls: Controls) -> None:
        """Read ``tau_nat``, ``tau_adv``, ``w_nat``, ``w_adv`` from the live controls (None: the rule's)."""
        values = {k: controls.get(k) for k in CONTROL_KEYS}
        self.user = {k for k, v in values.items() if v is not None}
        if values["tau_nat"] is not None:
            self.tau_nat = _clamp(values["tau_nat"], TAU_MIN, TAU_MAX)
        if values["tau_adv"] is not None:
            self.tau_adv = _clamp(values["tau_adv"], TAU_MIN, TAU_MAX)
        w_nat, w_adv = values["w_nat"], values["w_adv"]
        if w_nat is not None or w_adv is not None:
            self.w_nat = _clamp(w_nat if w_nat is not None else 1 - w_adv, 0.0, 1.0)
            self.w_adv = _clamp(w_adv if w_adv is not None else 1 - w_nat, 0.0, 1.0)
            self.user |= {"w_nat", "w_adv"}

    def nlb(self, loss_nat: float, loss_adv: float, r_w: float, beta: float) -> None:
        """One NLB step from this batch's losses (the first batch's are remembered as L(0))."""
        if self.loss0 is None:
            self.loss0 = (loss_nat, loss_adv)
        if "w_nat" not in self.user:
            self.w_nat, self.w_adv = normalization_loss_balance((self.w_nat, self.w_adv), (loss_nat, loss_adv),
                                                                self.loss0, r_w, beta)

    def ebb(self, H_nat: float, H_adv: float, lr_tau: float) -> None:
        """One EBB step from the teachers' mean entropies at the current temperatures."""
        tau_nat, tau_adv = entropy_balance(self.tau_nat, self.tau_adv, H_nat, H_adv, lr_tau)
        if "tau_nat" not in self.user:
            self.tau_nat = tau_nat
        if "tau_adv" not in self.user:
            self.tau_adv = tau_adv


# ---------------------------------------------------------------- the method


@dataclass
class MTARDConfig:
    tau_nat: float = bounded(1.0, lo=1, hi=10)          # initial temperature of the clean teacher
    tau_adv: float = bounded(1.0, lo=1, hi=10)          # initial temperature of the robust teacher
    lr_tau: float = bounded(0.001, lo=0)         # EBB step (x0.1 at each lr decay)
    w_nat: float = bounded(0.5, lo=0, hi=1)            # initial weight of the clean term
    w_adv: float = bounded(0.5, lo=0, hi=1)            # initial weight of the adversarial term
    r_w: float = bounded(0.025, lo=0)            # NLB rate (x0.1 at each lr decay)
    beta: float = bounded(1.0, lo=0)             # NLB exponent on the relative losses
    ebb: bool = True              # Entropy-Based Balance on (off: temperatures stay fixed)
    nlb: bool = True              # Normalization Loss Balance on (off: weights stay fixed)
    eps: float | None = bounded(None, lo=0)      # Linf budget; None = the dataset's (0.3 MNIST-like, 8/255 CIFAR)
    alpha: float | None = bounded(None, lo=0, lo_open=True)  # PGD step size; None = 2.5 * eps / steps (2/255 on CIFAR)
    steps: int = bounded(10, lo=1)
    eps_warmup: float = bounded(0.4, lo=0, hi=1)  # share of steps over which eps grows from 0 (0: off, as on CIFAR)


@register_method
class MTARD(Method):
    name = "mtard"
    summary = "MTARD: clean + robust teacher, temperatures balanced by entropy (EBB), weights by loss (NLB)"
    Config = MTARDConfig
    teacher_roles = ("clean_teacher", "robust_teacher")
    control_keys = CONTROL_KEYS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.balance = Balance(float(c.tau_nat), float(c.tau_adv), float(c.w_nat), float(c.w_adv))

    def state_dict(self) -> dict:
        """The balance state: current temperatures and weights, the first batch's losses, the user-set keys."""
        b = self.balance
        return {"tau_nat": b.tau_nat, "tau_adv": b.tau_adv, "w_nat": b.w_nat, "w_adv": b.w_adv,
                "loss0_nat": None if b.loss0 is None else b.loss0[0],
                "loss0_adv": None if b.loss0 is None else b.loss0[1], "user": sorted(b.user)}

    def loss(self, x, y, state):
        c, b = self.config, self.balance
        b.take_controls(state.controls)           # live tuning in the app; nothing is set in a plain run
        decay = 0.1 ** state.lr_decays            # EBB's and NLB's rates decay with the learning rate
        x_adv = self.student_pgd(x, y, state, random_start="normal")

        with torch.no_grad():   # no gradient through the teachers or their temperatures
            logits_nat_t = self.teachers["clean_teacher"](x)
            logits_adv_t = self.teachers["robust_teacher"](x_adv)
            H_nat = entropy(softmax_t(logits_nat_t, b.tau_nat)).mean()
            H_adv = entropy(softmax_t(logits_adv_t, b.tau_adv)).mean()
        # Temperatures soften the teachers only; the student's softmax stays at T = 1.
        loss_adv = kd_loss(self.model(x_adv), logits_adv_t / b.tau_adv, 1.0, t_squared=False)
        loss_nat = kd_loss(self.model(x), logits_nat_t / b.tau_nat, 1.0, t_squared=False)

        if c.nlb:
            b.nlb(float(loss_nat.detach()), float(loss_adv.detach()), c.r_w * decay, c.beta)
        loss = b.w_adv * loss_adv + b.w_nat * loss_nat
        logs = {"loss_nat": loss_nat.detach(), "loss_adv": loss_adv.detach(), "tau_nat": b.tau_nat,
                "tau_adv": b.tau_adv, "w_nat": b.w_nat, "w_adv": b.w_adv, "H_nat": H_nat, "H_adv": H_adv,
                **{f"user_{k}": float(k in b.user) for k in CONTROL_KEYS}}
        if c.ebb:
            b.ebb(float(H_nat), float(H_adv), c.lr_tau * decay)
        return loss, logs
