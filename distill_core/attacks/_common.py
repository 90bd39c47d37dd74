"""Pieces every attack shares: how an attack runs the model (:func:`runs_in_eval_mode`: eval mode, gradients
on), the input gradient, the losses they maximise, the margin, the per-step trace and batched
input Jacobians (one forward pass for the whole batch)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from .._torch import eval_mode, input_gradient

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Trace = Callable[[int, dict], Any] | list | None
LOSSES = ("ce", "cw", "softmax")
AttackFn = TypeVar("AttackFn", bound=Callable[..., Any])


def runs_in_eval_mode(fn: AttackFn) -> AttackFn:
    """Decorate an attack ``fn(model, x, ...)``: it runs with every module of the model in eval mode
    (each module's own mode restored afterwards, also on an error) and with gradients switched on
    (it works inside ``torch.no_grad()``).

    A model left in train mode would otherwise move its BatchNorm running statistics at every
    forward pass of the attack and give another ``x_adv`` than in eval mode. The signature is
    kept (``inspect.signature`` sees ``fn``'s, which the registry checks options against).
    """
    first = next(iter(inspect.signature(fn).parameters))

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        model = args[0] if args else kwargs[first]
        with eval_mode(model), torch.enable_grad():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def best_other(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """``max_{i != cls} Z_i`` per sample, shape (N,).

    The excluded class is masked with ``-inf`` (not multiplied by zero), so the answer is right
    when every logit is negative, and the gradient flows to the best other class only.
    """
    excluded = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, cls[:, None], True)
    return logits.masked_fill(excluded, float("-inf")).amax(1)


def margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """``Z_y - max_{i != y} Z_i`` (untargeted) or ``Z_t - max_{i != t} Z_i`` (targeted), shape (N,).

    Positive: the true (target) class wins; the attack succeeds when it drops below zero
    (untargeted) or rises above zero (targeted).
    """
    cls = y if target is None else target
    return logits.gather(1, cls[:, None]).squeeze(1) - best_other(logits, cls)


def attack_loss(loss: str | LossFn, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, *,
                kappa: float = 50.0, temperature: float = 1.0) -> torch.Tensor:
    """The per-sample loss (N,) that an attack *maximises*.

    ``"ce"``: cross-entropy of ``logits / temperature`` (targeted: minus the CE to the target).
    ``"cw"``: the margin loss ``-clamp(Z_y - max_{i != y} Z_i + kappa, min=0)`` (targeted:
    ``-clamp(max_{i != t} Z_i - Z_t + kappa, min=0)``); it ignores the softmax scale, so no temperature.
    ``"softmax"``: ``-p_y`` with ``p = softmax(logits / temperature)`` (targeted: ``p_t``); its
    gradient vanishes on a saturated softmax, which is what the gradient-masking demo shows.
    A callable ``loss(logits, labels)`` is maximised as it is, with ``labels`` = ``target``
    when given, else ``y``.
    """
    labels = y if target is None else target
    if callable(loss):
        return loss(logits, labels)
    if loss == "ce":
        ce = F.cross_entropy(logits if temperature == 1 else logits / temperature, labels, reduction="none")
        return ce if target is None else -ce
    if loss == "cw":
        m = margin(logits, y, target)
        return -torch.clamp((m if target is None else -m) + kappa, min=0)
    if loss == "softmax":
        p = F.softmax(logits / temperature, 1).gather(1, labels[:, None]).squeeze(1)
        return -p if target is None else p
    raise ValueError(f"unknown attack loss {loss!r}; use one of {LOSSES} or a callable(logits, y)")


def per_sample_norm(delta: torch.Tensor, p: str) -> torch.Tensor:
    """``||delta_n||`` per sample over all features: ``p`` in ``"linf"``, ``"l2"``, ``"l0"``."""
    flat = delta.flatten(1)
    if p == "linf":
        return flat.abs().amax(1)
    if p == "l2":
        return flat.norm(dim=1)
    if p == "l0":
        return (flat != 0).sum(1)
    raise ValueError(f"unknown norm {p!r}")


def emit(trace: Trace, step: int, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
         loss: torch.Tensor, **extra: torch.Tensor) -> None:
    """Report one step to ``trace``: a callable gets ``trace(step, info)``, a list gets ``{"step": step, **info}``.

    ``info`` holds CPU tensors of shape (N,): ``loss`` (per sample), ``margin`` (see :func:`margin`),
    ``pred`` (argmax of the logits), plus the attack's ``extra`` entries (e.g. ``dist``).
    """
    if trace is None:
        return
    logits = logits.detach()
    info = {"loss": loss.detach().cpu(), "margin": margin(logits, y, target).cpu(), "pred": logits.argmax(1).cpu()}
    info.update({k: v.detach().cpu() for k, v in extra.items()})
    if isinstance(trace, list):
        trace.append({"step": step, **info})
    else:
        trace(step, info)


@torch.enable_grad()
def jacobian_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rows of the input Jacobian of ``fn`` for a whole batch: one forward, R backward passes.

    ``weights`` (R, N, K) -> ``(outputs (N, K), grads (R, N, *x.shape[1:]))`` with
    ``grads[r, n] = d(sum_k weights[r, n, k] * fn(x)[n, k]) / dx_n``. Identity weights give the
    full Jacobian; JSMA needs only two rows (the target and the sum of the others). The same
    numbers as ``torch.func.vmap(torch.func.jacrev(fn))``; on CPU, R backward passes through one
    forward graph measured faster than vmapped ones (``is_grads_batched``), whose convolution
    backward runs row by row and concatenates. Samples must not interact inside ``fn`` (a model
    in eval mode). Rows are zero where the graph does not reach ``x`` (a model that detaches its
    input), see :func:`~distill_core._torch.input_gradient`.
    """
    x = x.detach().requires_grad_(True)
    out = fn(x)
    w = weights.to(out.dtype)
    grads = [input_gradient(out, x, w[r], retain_graph=r + 1 < len(w)) for r in range(len(w))]
    return out.detach(), torch.stack(grads)


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full input Jacobian of ``fn`` (N, ...) -> (N, K): returns ``(outputs (N, K), J (N, K, *x.shape[1:]))``."""
    with torch.no_grad():
        k = fn(x[:1]).shape[1]
    eye = torch.eye(k, device=x.device, dtype=x.dtype)[:, None, :].expand(k, x.shape[0], k)
    out, grads = jacobian_rows(fn, x, eye)
    return out, grads.transpose(0, 1)
