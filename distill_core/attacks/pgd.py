"""Projected gradient descent, Linf and L2 (Madry et al. 2018), on any loss the lab needs."""

from __future__ import annotations

import torch
from torch import nn

from ._common import LossFn, Trace, attack_loss, emit, input_gradient, per_sample_norm, runs_in_eval_mode

NORMS = ("linf", "l2")
STARTS = {True: "uniform", "uniform": "uniform", "normal": "normal", False: "none", "none": "none"}


@runs_in_eval_mode
def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int,
        norm: str = "linf", random_start: bool | str = True, start_std: float = 0.001, loss: str | LossFn = "ce",
        kappa: float = 50.0, temperature: float = 1.0, target: torch.Tensor | None = None,
        trace: Trace = None) -> torch.Tensor:
    r"""PGD in the paper 'Towards Deep Learning Models Resistant to Adversarial Attacks'
    [https://arxiv.org/abs/1706.06083]

    Distance Measure : Linf (``norm="linf"``) or L2 (``norm="l2"``)

    Each step moves by ``alpha`` along the sign of the gradient (Linf) or the per-sample unit
    gradient (L2) and projects onto the eps-ball around ``x`` intersected with [0, 1]. For L2 the
    ball projection is followed by clipping, which keeps the point in both sets (clipping only
    moves pixels towards ``x``).

    Arguments:
        model (nn.Module): maps pixels in [0, 1] to logits. It runs in eval mode (each module's
            mode is restored afterwards); parameter gradients are left as they are. A model that
            detaches its input gets a zero gradient, so ``x_adv`` is the (projected) start.
        eps (float): radius of the ball, in pixel units. ``eps = 0`` returns ``x`` bitwise.
        alpha (float): step size.
        steps (int): number of steps.
        norm (str): ``"linf"`` or ``"l2"``. (Default: "linf")
        random_start (bool | str): ``True`` / ``"uniform"``: uniform in the ball, clipped to [0, 1];
            ``"normal"``: ``x + start_std * N(0, 1)`` projected (the TRADES / RSLAD / MTARD start);
            ``False`` / ``"none"``: start at ``x``. (Default: True)
        start_std (float): standard deviation of the ``"normal"`` start. (Default: 0.001)
        loss (str | callable): ``"ce"`` (cross-entropy on ``logits / temperature``), ``"cw"`` (the
            margin loss ``-clamp(Z_y - max_{i != y} Z_i + kappa, min=0)``), ``"softmax"`` (``-p_y``,
            for the gradient-masking demo), or ``loss(logits, labels) -> (N,)`` to maximise
            (TRADES passes a KL). (Default: "ce")
        kappa (float): confidence of the ``"cw"`` loss. (Default: 50.0)
        temperature (float): divides the logits for ``"ce"`` and ``"softmax"`` ("PGD on Z/T"). (Default: 1.0)
        target (LongTensor | None): target classes (N,) for a targeted attack. (Default: None)
        trace (callable | list | None): receives ``(step, info)`` for steps 0..steps (``step`` = the
            iterate the info is about); ``info`` has per-sample CPU tensors ``loss`` (the loss being
            maximised), ``margin``, ``pred`` and ``dist`` (the perturbation's norm). (Default: None)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - y: :math:`(N)` true class indices.
        - output: same shape as ``x``, in [0, 1] and within ``eps`` of ``x``.

    Examples::
        >>> x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=10)
        >>> x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40, loss="cw", random_start=False)
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")
    if random_start not in STARTS:
        raise ValueError(f"unknown random_start {random_start!r}; use True/'uniform', 'normal' or False/'none'")
    x = x.detach()
    y = y.to(x.device)
    target = None if target is None else target.to(x.device)
    x_adv = _start(x, eps, norm, STARTS[random_start], start_std)
    for step in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        loss_per_sample = attack_loss(loss, logits, y, target, kappa=kappa, temperature=temperature)
        grad = input_gradient(loss_per_sample.sum(), x_adv)
        x_adv = x_adv.detach()
        if trace is not None:
            emit(trace, step, logits, y, target, loss_per_sample, dist=per_sample_norm(x_adv - x, norm))
        x_adv = _project(x_adv + alpha * _ascent_direction(grad, norm), x, eps, norm)
    if trace is not None:
        with torch.no_grad():
            logits = model(x_adv)
            loss_per_sample = attack_loss(loss, logits, y, target, kappa=kappa, temperature=temperature)
        emit(trace, steps, logits, y, target, loss_per_sample, dist=per_sample_norm(x_adv - x, norm))
    return x_adv


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample (N,) tensor to broadcast against ``like`` (N, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _per_sample(per_sample_norm(grad, "l2").clamp_min(1e-12), grad)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Onto the eps-ball around x, then [0, 1] (exact for Linf; stays in both sets for L2)."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.clamp(delta, min=-eps, max=eps)
    else:
        scale = (eps / per_sample_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _per_sample(scale, delta)
    return torch.clamp(x + delta, min=0, max=1)


def _start(x: torch.Tensor, eps: float, norm: str, how: str, start_std: float) -> torch.Tensor:
    if how == "none":
        return x.clone()
    if how == "normal":
        return _project(x + start_std * torch.randn_like(x), x, eps, norm)
    if norm == "linf":
        return _project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps, norm)
    # Uniform in the L2 ball: a uniform direction, radius eps * U^(1/d).
    direction = torch.randn_like(x)
    direction = direction / _per_sample(per_sample_norm(direction, "l2").clamp_min(1e-12), x)
    d = x[0].numel()
    radius = eps * torch.rand(x.shape[0], device=x.device, dtype=x.dtype) ** (1.0 / d)
    return _project(x + direction * _per_sample(radius, x), x, eps, norm)
