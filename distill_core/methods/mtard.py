"""Multi-Teacher Adversarial Robustness Distillation, MTARD (Zhao, Wang, Wei; ECCV 2022 / arXiv 2306.16170).

METHODS.md section 3. A clean teacher ("clean_teacher") teaches the student on x, a robust
teacher ("robust_teacher") on the student's own adversarial example x_adv; no hard labels:

    L = w_adv KL(softmax(T_adv(x_adv) / tau_adv) || softmax(S(x_adv)))
      + w_nat KL(softmax(T_nat(x) / tau_nat)     || softmax(S(x)))

Two rules balance the teachers every iteration (``temperature.py``): Entropy-Based Balance
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
EBB / NLB resume from that value. :meth:`MTARD.state_dict` exposes the balance state for the app.

Order within a step: NLB updates the weights from this batch's losses before they weight the
loss, as the authors' code does; EBB measures the entropies at the current temperatures, which
the loss uses, and its update applies from the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..temperature import entropy, entropy_balance, kd_loss, normalization_loss_balance, softmax_t
from . import Controls, Method, bounded, register_method

TAU_MIN, TAU_MAX = 1.0, 10.0
CONTROL_KEYS = ("tau_nat", "tau_adv", "w_nat", "w_adv")


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


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(float(v), lo), hi)


@register_method
class MTARD(Method):
    name = "mtard"
    summary = "MTARD: clean + robust teacher, temperatures balanced by entropy (EBB), weights by loss (NLB)"
    Config = MTARDConfig
    teacher_roles = ("clean_teacher", "robust_teacher")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.tau_nat, self.tau_adv = float(c.tau_nat), float(c.tau_adv)
        self.w_nat, self.w_adv = float(c.w_nat), float(c.w_adv)
        self.loss0: tuple[float, float] | None = None     # (L_nat(0), L_adv(0)), from the first batch
        self.user: set[str] = set()                       # quantities the user controls at this step

    def state_dict(self) -> dict:
        """The balance state: current temperatures and weights, the first batch's losses, the user-set keys."""
        return {"tau_nat": self.tau_nat, "tau_adv": self.tau_adv, "w_nat": self.w_nat, "w_adv": self.w_adv,
                "loss0_nat": None if self.loss0 is None else self.loss0[0],
                "loss0_adv": None if self.loss0 is None else self.loss0[1], "user": sorted(self.user)}

    def _read_controls(self, controls: Controls) -> None:
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

    def loss(self, x, y, state):
        c = self.config
        self._read_controls(state.controls)
        decay = 0.1 ** state.lr_decays
        x_adv = self.student_pgd(x, y, state, random_start="normal")

        with torch.no_grad():   # no gradient through the teachers or their temperatures
            logits_nat_t = self.teachers["clean_teacher"](x)
            logits_adv_t = self.teachers["robust_teacher"](x_adv)
            H_nat = entropy(softmax_t(logits_nat_t, self.tau_nat)).mean()
            H_adv = entropy(softmax_t(logits_adv_t, self.tau_adv)).mean()
        # Temperatures soften the teachers only; the student's softmax stays at T = 1.
        loss_adv = kd_loss(self.model(x_adv), logits_adv_t / self.tau_adv, 1.0, t_squared=False)
        loss_nat = kd_loss(self.model(x), logits_nat_t / self.tau_nat, 1.0, t_squared=False)

        losses = (float(loss_nat.detach()), float(loss_adv.detach()))
        if self.loss0 is None:
            self.loss0 = losses
        if c.nlb and "w_nat" not in self.user:
            self.w_nat, self.w_adv = normalization_loss_balance((self.w_nat, self.w_adv), losses, self.loss0,
                                                                c.r_w * decay, c.beta)
        loss = self.w_adv * loss_adv + self.w_nat * loss_nat
        logs = {"loss_nat": loss_nat.detach(), "loss_adv": loss_adv.detach(), "tau_nat": self.tau_nat,
                "tau_adv": self.tau_adv, "w_nat": self.w_nat, "w_adv": self.w_adv, "H_nat": H_nat, "H_adv": H_adv,
                **{f"user_{k}": float(k in self.user) for k in CONTROL_KEYS}}

        if c.ebb:
            tau_nat, tau_adv = entropy_balance(self.tau_nat, self.tau_adv, H_nat, H_adv, c.lr_tau * decay,
                                               TAU_MIN, TAU_MAX)
            if "tau_nat" not in self.user:
                self.tau_nat = tau_nat
            if "tau_adv" not in self.user:
                self.tau_adv = tau_adv
        return loss, logs
