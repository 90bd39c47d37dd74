"""DeepFool (Moosavi-Dezfooli et al. 2016): step to the nearest linearised decision boundary."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Trace, emit, jacobian_rows, per_sample_norm, runs_in_eval_mode


@runs_in_eval_mode
def deepfool(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, overshoot: float = 0.02, steps: int = 50,
             num_classes: int | None = None, trace: Trace = None) -> torch.Tensor:
    r"""DeepFool in the paper 'DeepFool: a simple and accurate method to fool deep neural networks'
    [https://arxiv.org/abs/1511.04599]

    Distance Measure : L2

    At each step, with ``f'_k = Z_k - Z_y`` and ``w_k = grad f'_k`` for the candidate classes
    ``k != y``, the nearest linearised boundary is ``l = argmin_k |f'_k| / ||w_k||``; the step is
    ``r = (|f'_l| + 1e-4) / ||w_l||^2 * w_l``, the steps add up to ``r_tot`` and
    ``x' = clip(x + (1 + overshoot) * r_tot, 0, 1)`` (the authors' update). Every iteration takes
    one Jacobian for the whole batch (one forward, one backward per candidate class); a
    sample stops as soon as its prediction is no longer ``y``. Samples already misclassified
    come back unchanged.

    Arguments:
        model (nn.Module): maps pixels in [0, 1] to logits; run in eval mode (each module's mode restored
            after), parameter gradients left alone.
        overshoot (float): how far past the boundary to go. (Default: 0.02)
        steps (int): maximum number of steps. (Default: 50)
        num_classes (int | None): consider ``y`` and the ``num_classes - 1`` classes with the
            highest original logits (the authors use 10); None = all classes. (Default: None)
        trace (callable | list | None): gets steps 0..(last); ``info`` has per-sample CPU tensors
            ``loss`` (the linearised distance ``|f'_l| / ||w_l||`` to the nearest boundary; kept at
            its last value once a sample stops), ``margin``, ``pred`` and ``dist`` (L2). (Default: None)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - y: :math:`(N)` class indices to move away from (true labels or predictions).
        - output: same shape as ``x``.

    Examples::
        >>> x_adv = deepfool(model, x, y)
        >>> l2 = (x_adv - x).flatten(1).norm(dim=1)
    """
    x = x.detach()
    y = y.to(x.device)
    with torch.no_grad():
        logits = model(x)
    n, k_all = logits.shape
    n_cand = k_all if num_classes is None else max(2, min(num_classes, k_all))
    y_mask = F.one_hot(y, k_all).bool()
    candidates = logits.masked_fill(y_mask, float("-inf")).topk(n_cand - 1, dim=1).indices   # (N, R)
    view = (-1,) + (1,) * (x.dim() - 1)
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    boundary_dist = torch.zeros(n, device=x.device, dtype=x.dtype)
    active = logits.argmax(1) == y
    for step in range(steps + 1):
        idx = active.nonzero().squeeze(1)
        if idx.numel():
            cand, y_idx = candidates[idx], y[idx]

            # Row r of sample n: one-hot(candidate r) - one-hot(y), so its gradient is w_k itself.
            rows = F.one_hot(cand, k_all).to(x.dtype) - F.one_hot(y_idx, k_all).to(x.dtype)[:, None, :]
            out, w = jacobian_rows(model, x_adv[idx], rows.transpose(0, 1))   # out (B, K), w (R, B, ...)
            f = out.gather(1, cand) - out.gather(1, y_idx[:, None])         # (B, R): f'_k
            w_norm = w.flatten(2).norm(dim=2).T.clamp_min(1e-12)            # (B, R): ||w_k||
            dist, nearest = (f.abs() / w_norm).min(1)
            logits[idx] = out
            boundary_dist[idx] = dist
            still = out.argmax(1) == y_idx
            active[idx] = still
        if trace is not None:
            emit(trace, step, logits, y, None, boundary_dist, dist=per_sample_norm(x_adv - x, "l2"))
        if step == steps or not active.any():
            break
        idx, dist, nearest, w_norm, w = idx[still], dist[still], nearest[still], w_norm[still], w[:, still]
        w_l = w.transpose(0, 1)[torch.arange(len(idx), device=x.device), nearest]       # (B, ...)
        r = ((dist + 1e-4) / w_norm.gather(1, nearest[:, None]).squeeze(1)).view(view) * w_l
        r_tot[idx] += r
        x_adv[idx] = torch.clamp(x[idx] + (1 + overshoot) * r_tot[idx], min=0, max=1)
    return x_adv
