"""Temperature: softened softmax, entropy, Hinton's KD loss and MTARD's two balance rules.

Conventions (METHODS.md): ``softmax_T(z) = softmax(z / T)`` with T applied outside the model,
``KL(p || q) = sum_c p_c (log p_c - log q_c)`` averaged over the batch. Everything here is a
pure function of tensors or floats, so the Temperature page and the methods share one
definition::

    probs = softmax_t(logits, 4.0)                       # (N, C), rows sum to 1
    h = entropy(probs)                                   # (N,), natural log
    tau_nat, tau_adv = entropy_balance(1.0, 1.0, h_nat, h_adv, lr_tau=0.001)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

REDUCTIONS = ("batchmean", "mean", "sum", "none")


def softmax_t(logits: torch.Tensor, T: float) -> torch.Tensor:
    """``softmax(z / T)`` over the last dimension: (N, C) logits -> (N, C) probabilities."""
    return F.softmax(logits / T, dim=-1)


def log_softmax_t(logits: torch.Tensor, T: float) -> torch.Tensor:
    """``log softmax(z / T)`` over the last dimension, computed stably (not ``log(softmax_t)``)."""
    return F.log_softmax(logits / T, dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``H(p) = -sum_c p_c log p_c`` (nats) per sample: (N, C) -> (N,).

    ``0 log 0`` is taken as 0, and the gradient stays finite where a probability is exactly 0.
    """
    tiny = torch.finfo(probs.dtype).tiny
    return -(probs * torch.log(probs.clamp_min(tiny))).sum(-1)


def _reduce(per_sample: torch.Tensor, n_classes: int, reduction: str) -> torch.Tensor:
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "mean":
        return per_sample.mean() / n_classes
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float, reduction: str = "batchmean",
            t_squared: bool = True) -> torch.Tensor:
    """Hinton et al. 2015 distillation loss ``T^2 KL(softmax_T(t) || softmax_T(s))``.

    ``student_logits`` and ``teacher_logits`` are (N, C). The ``T^2`` factor (``t_squared``) keeps
    the gradient's size independent of T, since d/ds of the softened KL scales as 1 / T^2.
    ``reduction``: ``"batchmean"`` (sum over classes, mean over the batch: the lab's KL),
    ``"mean"`` (mean over batch and classes, KL / C as in the ARD / RSLAD / MTARD code), ``"sum"``,
    or ``"none"`` (the per-sample KL, shape (N,)). Gradients flow into whichever input requires
    them; callers detach or compute the teacher under ``no_grad``.
    """
    log_p_t = log_softmax_t(teacher_logits, T)
    per_sample = (log_p_t.exp() * (log_p_t - log_softmax_t(student_logits, T))).sum(-1)
    if t_squared:
        per_sample = per_sample * T**2
    return _reduce(per_sample, student_logits.shape[-1], reduction)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float,
                       reduction: str = "batchmean") -> torch.Tensor:
    """Cross-entropy with soft labels at temperature T: ``-sum_c softmax_T(t)_c log softmax_T(s)_c``.

    The defensive-distillation student's loss (Papernot et al. 2016) and BSS's ``KD_T`` (Heo et
    al. 2019). It differs from the KL of :func:`kd_loss` (without ``T^2``) by the teacher's
    entropy, a constant for a frozen teacher, so the gradients agree. Shapes and ``reduction``
    as in :func:`kd_loss`.
    """
    per_sample = -(softmax_t(teacher_logits, T) * log_softmax_t(student_logits, T)).sum(-1)
    return _reduce(per_sample, student_logits.shape[-1], reduction)


def _sign(v: float) -> float:
    return float((v > 0) - (v < 0))


def entropy_balance(tau_nat: float, tau_adv: float, H_nat: float, H_adv: float, lr_tau: float,
                    lo: float = 1.0, hi: float = 10.0) -> tuple[float, float]:
    """MTARD's Entropy-Based Balance (Zhao et al. 2023), one iteration::

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
    """MTARD's Normalization Loss Balance (Zhao et al. 2023), one iteration::

        L~_i = L_i / L_i(0)                       relative loss (L_i(0): the first batch's)
        r_i  = L~_i^beta / sum_j L~_j^beta
        w_i <- w_i - r_w * (w_i - r_i)            then clip at 0 and renormalise to sum 1

    The loss that has fallen less relative to its start gets more weight. ``w``, ``losses`` and
    ``initial_losses`` are equally long sequences of floats; returns the new weights. A zero
    initial loss counts as the smallest positive float; if every relative loss is 0 the target
    ``r`` is uniform.
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


@torch.no_grad()
def temperature_for_entropy(logits: torch.Tensor, target_entropy: float, lo: float = 1e-2, hi: float = 1e3,
                            tol: float = 1e-6, max_iter: int = 100) -> float:
    """The temperature T at which the mean entropy of ``softmax(logits / T)`` equals ``target_entropy``.

    ``logits`` is (N, C). The mean entropy rises monotonically with T (from near 0 towards
    ``log C``), so bisection in ``log T`` over ``[lo, hi]`` finds it, to a bracket ``tol`` wide in
    ``log T``; a target outside what that range reaches returns the nearer end. Used to show
    which temperatures make two teachers' entropies match (what MTARD's EBB converges to).
    """
    def mean_entropy(T: float) -> float:
        return float(entropy(softmax_t(logits.double(), T)).mean())

    if target_entropy <= mean_entropy(lo):
        return lo
    if target_entropy >= mean_entropy(hi):
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(max_iter):
        mid = 0.5 * (a + b)
        if mean_entropy(math.exp(mid)) < target_entropy:
            a = mid
        else:
            b = mid
        if b - a < tol:
            break
    return math.exp(0.5 * (a + b))
