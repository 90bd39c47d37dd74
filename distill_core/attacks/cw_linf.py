"""The "CW-inf" attack of the robust-distillation papers: PGD-Linf on the C&W margin loss."""

from __future__ import annotations

import torch
from torch import nn

from ._common import Trace, runs_in_eval_mode
from .pgd import pgd


@runs_in_eval_mode
def cw_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int = 20,
            kappa: float = 50.0, random_start: bool | str = True, target: torch.Tensor | None = None,
            trace: Trace = None) -> torch.Tensor:
    r"""CW-inf as evaluated in ARD / RSLAD / MTARD: PGD-Linf maximising the margin loss
    ``-clamp(Z_y - max_{i != y} Z_i + kappa, min=0)`` (the loss of 'Towards Evaluating the
    Robustness of Neural Networks', Carlini & Wagner 2017 [https://arxiv.org/abs/1608.04644]).

    This is **not** C&W's own L-inf attack (their iterative tau-shrinking optimisation); it is
    the PGD variant the distillation papers report in their "CW-inf" column.

    Distance Measure : Linf

    Arguments:
        model (nn.Module): maps pixels in [0, 1] to logits; run in eval mode (each module's mode restored
            after), parameter gradients left alone.
        eps (float): Linf budget (the papers: 8/255 on CIFAR-10).
        alpha (float): step size (the papers: 2/255).
        steps (int): number of PGD steps. (Default: 20)
        kappa (float): margin the attack pushes past the boundary. (Default: 50.0)
        random_start (bool | str): as in :func:`~distill_core.attacks.pgd`. (Default: True)
        target (LongTensor | None): target classes (N,); then the loss is
            ``-clamp(max_{i != t} Z_i - Z_t + kappa, min=0)``. (Default: None)
        trace (callable | list | None): as in :func:`~distill_core.attacks.pgd` (``loss`` per sample). (Default: None)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - y: :math:`(N)` true class indices.
        - output: same shape as ``x``.

    Examples::
        >>> x_adv = cw_linf(model, x, y, eps=8/255, alpha=2/255)
        >>> robust_acc = (model(x_adv).argmax(1) == y).float().mean()
    """
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", random_start=random_start,
               loss="cw", kappa=kappa, target=target, trace=trace)
