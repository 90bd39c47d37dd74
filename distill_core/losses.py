"""Losses and the softened softmax: softmax_T, entropy, Hinton's KD loss, soft-label cross-entropy.

Conventions (METHODS.md): ``softmax_T(z) = softmax(z / T)`` with T applied outside the model,
``KL(p || q) = sum_c p_c (log p_c - log q_c)`` averaged over the batch. Everything here is a
pure function of tensors, so the Temperature page and the methods share one definition::

    probs = softmax_t(logits, 4.0)                       # (N, C), rows sum to 1
    h = entropy(probs)                                   # (N,), natural log
    loss = kd_loss(student_logits, teacher_logits, T=4.0)
"""

from __future__ import annotations

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
