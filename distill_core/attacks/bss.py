"""Boundary-supporting samples (Heo et al., AAAI 2019): walk a sample onto the teacher's b/k boundary."""

from __future__ import annotations

import torch
from torch import nn

from ._common import input_gradient, runs_in_eval_mode


@runs_in_eval_mode
def craft_bss(teacher: nn.Module, x: torch.Tensor, *, target: torch.Tensor, eta: float = 0.3, eps: float = 1e-4,
              max_steps: int = 10, return_path: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Boundary-supporting samples in the paper 'Knowledge Distillation with Adversarial Samples
    Supporting Decision Boundary' [https://arxiv.org/abs/1805.05532] (METHODS.md section 2).

    Distance Measure : none (no epsilon-ball; the step length is set by the margin)

    With the base class ``b`` = the teacher's argmax at ``x`` and the margin
    ``L_k(x) = f_b(x) - f_k(x)`` on the logits ``f``:

        ``x_{i+1} = clip(x_i - eta * (L_k(x_i) + eps) * grad L_k(x_i) / ||grad L_k(x_i)||_2, 0, 1)``

    with the L2 norm per sample over all pixels. A sample stops (its step is masked to zero)
    once the teacher's argmax is no longer ``b``: it crossed the b/k boundary, or a third class
    took over.

    Arguments:
        teacher (nn.Module): maps pixels in [0, 1] to logits; run in eval mode (each module's mode restored
            after), parameter gradients left alone.
        target (LongTensor): the class k (N,) to move towards; see :func:`sample_bss_targets`.
        eta (float): step scale. (Default: 0.3)
        eps (float): keeps the step non-zero on the boundary. (Default: 1e-4)
        max_steps (int): I_max, the most steps. (Default: 10)
        return_path (bool): also return every iterate. (Default: False)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - target: :math:`(N)` class indices.
        - output: ``x_bss`` shaped like ``x``; with ``return_path``, also the path
          :math:`(max\_steps + 1, N, ...)` (``path[0] = x``; a stopped sample repeats its last point).

    Examples::
        >>> k = sample_bss_targets(torch.softmax(teacher(x), 1))
        >>> x_bss, path = craft_bss(teacher, x, target=k, return_path=True)
    """
    x = x.detach()
    target = target.to(x.device)
    view = (-1,) + (1,) * (x.dim() - 1)
    with torch.no_grad():
        base = teacher(x).argmax(1)
    x_i = x.clone()
    path = [x_i]
    for _ in range(max_steps):
        x_req = x_i.clone().requires_grad_(True)
        logits = teacher(x_req)
        active = logits.argmax(1) == base
        if not active.any():
            break
        margin = logits.gather(1, base[:, None]).squeeze(1) - logits.gather(1, target[:, None]).squeeze(1)
        grad = input_gradient(margin.sum(), x_req)
        grad_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = torch.where(active, eta * (margin.detach() + eps) / grad_norm, torch.zeros_like(grad_norm))
        x_i = torch.clamp(x_i - scale.view(view) * grad, min=0, max=1)
        path.append(x_i)
    if not return_path:
        return x_i
    path += [x_i] * (max_steps + 1 - len(path))
    return x_i, torch.stack(path)


def sample_bss_targets(teacher_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One target class k per sample, drawn with probability ``q_t(k) / (1 - max q_t)`` over the
    teacher's non-top classes (BSS's choice). Rows whose non-top mass underflows to zero draw
    uniformly among the non-top classes.

    Shape: ``teacher_probs`` (N, K) -> (N,) LongTensor, never the teacher's argmax.

    Example::
        >>> k = sample_bss_targets(torch.softmax(teacher(x), 1), generator=torch.Generator().manual_seed(0))
    """
    top = teacher_probs.argmax(1, keepdim=True)
    weights = teacher_probs.detach().double().scatter(1, top, 0.0)
    empty = weights.sum(1, keepdim=True) <= 0
    uniform = torch.ones_like(weights).scatter(1, top, 0.0)
    weights = torch.where(empty, uniform, weights)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)
