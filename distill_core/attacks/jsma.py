"""Jacobian-based saliency map attack (Papernot et al. 2016), pairwise, targeted, batched."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Trace, emit, jacobian_rows, runs_in_eval_mode

PAIR_BUDGET = 2**24          # pair scores held at once (~200 MB of temporaries)


@runs_in_eval_mode
def jsma(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor, theta: float = 1.0,
         gamma: float = 0.1, on: str = "logits", temperature: float = 1.0, chunk: int | None = None,
         stats: dict | None = None, trace: Trace = None) -> torch.Tensor:
    r"""JSMA in the paper 'The Limitations of Deep Learning in Adversarial Settings'
    [https://arxiv.org/abs/1511.07528]

    Distance Measure : L0

    Each iteration takes, for the whole batch, the target row ``J_t`` and the sum of the other
    rows of the Jacobian ``J = dZ/dx`` (or ``dF/dx`` with ``F = softmax(Z / temperature)``,
    ``on="softmax"``: the masking demo): one forward and two backward passes. For every pair of
    features (p, q) still in the search domain, ``a = J_t,p + J_t,q`` and
    ``b = sum_{j != t} (J_j,p + J_j,q)``; the pair maximising ``-a * b`` subject to ``a > 0, b < 0``
    (``a < 0, b > 0`` when ``theta < 0``) gets ``+theta`` on both features, clipped to [0, 1],
    and leaves the domain. The domain starts as the features that can still move (``x < 1`` for
    ``theta > 0``, ``x > 0`` otherwise). A sample stops on reaching the target, after
    ``floor(n * gamma / 2)`` iterations (n = features per sample), or when no valid pair remains.

    The pair search is exact but never builds the n x n score matrix: some best pair lies on the
    first two Pareto layers of (J_t, -sum_{j != t} J_j) (see :func:`best_pairs`), so each
    iteration scores only pairs of those few dozen features; 3x32x32 inputs (n^2 = 9.4 M pairs
    per sample) stay fast and in memory.

    Arguments:
        model (nn.Module): maps pixels in [0, 1] to logits; run in eval mode (each module's mode restored
            after), parameter gradients left alone.
        y (LongTensor): true classes (N,); the attack only needs ``target``, ``y`` keeps the common call.
        target (LongTensor): target classes (N,). Required: JSMA is targeted.
        theta (float): change of a chosen feature; the paper's +1 sets pixels to 1. (Default: 1.0)
        gamma (float): largest fraction of features to change; Papernot et al. use 0.145 on
            MNIST (112 of 784). (Default: 0.1)
        on (str): ``"logits"`` (JSMA-Z, the strong version) or ``"softmax"``. (Default: "logits")
        temperature (float): softmax temperature for ``on="softmax"``. (Default: 1.0)
        chunk (int | None): samples whose pair scores are built at once; None = as many as
            keep ``2**24`` scores in memory. (Default: None)
        stats (dict | None): if given, filled with per-sample tensors ``features_changed`` (L0 of
            the change, what ``rho_adv`` needs), ``iterations`` and ``success``. (Default: None)
        trace (callable | list | None): gets steps 0..(last); ``info`` has per-sample CPU tensors
            ``loss`` (the target's output ``Z_t``, or ``F_t`` on the softmax), ``margin``
            (``Z_t - max_{i != t} Z_i``), ``pred`` and ``features_changed``. (Default: None)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - y, target: :math:`(N)` class indices.
        - output: same shape as ``x``.

    Examples::
        >>> x_adv = jsma(model, x, y, target=(y + 1) % 10, theta=1.0, gamma=0.145)
        >>> stats = {}; x_adv = jsma(model, x, y, target=t, gamma=1.0, stats=stats); stats["features_changed"]
    """
    if on not in ("logits", "softmax"):
        raise ValueError(f"on must be 'logits' or 'softmax', got {on!r}")
    x = x.detach()
    y = y.to(x.device)
    target = target.to(x.device)
    n_samples, shape = x.shape[0], x.shape[1:]
    max_iters = math.floor(x[0].numel() * gamma / 2)
    flat = x.flatten(1).clone()
    domain = flat < 1 if theta > 0 else flat > 0
    active = torch.ones(n_samples, dtype=torch.bool, device=x.device)
    success = torch.zeros_like(active)
    iterations = torch.zeros(n_samples, dtype=torch.long, device=x.device)
    sign = 1.0 if theta > 0 else -1.0

    def outputs(z: torch.Tensor) -> torch.Tensor:
        logits = model(z)
        return logits if on == "logits" else F.softmax(logits / temperature, 1)

    with torch.no_grad():
        last_out = outputs(x)
    one_hot = F.one_hot(target, last_out.shape[1]).to(x.dtype)
    # Row 0 gives d out_t / dx, row 1 gives d sum_{j != t} out_j / dx.
    rows = torch.stack([one_hot, 1 - one_hot])
    for step in range(max_iters + 1):
        idx = active.nonzero().squeeze(1)
        out, grads = jacobian_rows(outputs, flat[idx].view(-1, *shape), rows[:, idx])
        last_out[idx] = out
        reached = out.argmax(1) == target[idx]
        success[idx] = reached
        if trace is not None:
            emit(trace, step, last_out, y, target, last_out.gather(1, target[:, None]).squeeze(1),
                 features_changed=(flat != x.flatten(1)).sum(1))
        active[idx[reached]] = False
        if step == max_iters or not active.any():
            break
        idx, grads = idx[~reached], sign * grads[:, ~reached].flatten(2)
        p, q, found = best_pairs(grads[0], grads[1], domain[idx], chunk)
        active[idx[~found]] = False
        idx, pair = idx[found], torch.stack([p, q], 1)[found]
        flat[idx] = flat[idx].scatter_add(1, pair, torch.full(pair.shape, theta, dtype=flat.dtype,
                                                              device=flat.device)).clamp(0, 1)
        domain[idx] = domain[idx].scatter(1, pair, False)
        iterations[idx] += 1
    x_adv = flat.view_as(x)
    if stats is not None:
        stats.update(features_changed=(x_adv != x).flatten(1).sum(1), iterations=iterations, success=success)
    return x_adv


def best_pairs(a_feat: torch.Tensor, b_feat: torch.Tensor, domain: torch.Tensor,
               chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, the pair p != q in ``domain`` maximising ``-(a_p + a_q) * (b_p + b_q)`` subject to
    ``a_p + a_q > 0`` and ``b_p + b_q < 0``.

    ``a_feat``, ``b_feat`` (B, n): the target derivative and the sum of the others' derivatives;
    ``domain`` (B, n) bool. Returns ``(p, q, found)``, each (B,).

    Exact without scoring all n^2 pairs: with ``u = a``, ``s = -b``, the score
    ``(u_p + u_q)(s_p + s_q)`` on the valid quadrant grows with both ``u_q`` and ``s_q``, so the best
    partner of any p is Pareto-optimal in (u, s) among the features other than p, i.e. on the
    first or second Pareto layer; applied to both ends of the best pair, some best pair has both
    features there. Only pairs of those candidates (typically a few dozen per sample) are scored,
    in chunks of at most ``PAIR_BUDGET`` scores. A pair scores ``relu(u_p + u_q) * relu(s_p + s_q)``
    (zero = invalid), on features rescaled per sample to a largest magnitude of 1, which changes
    no argmax and keeps tiny softmax gradients from underflowing.
    """
    n_samples = a_feat.shape[0]
    inf = float("inf")
    u = a_feat / a_feat.masked_fill(~domain, 0).abs().amax(1, keepdim=True).clamp_min(1e-30)
    s = -b_feat / b_feat.masked_fill(~domain, 0).abs().amax(1, keepdim=True).clamp_min(1e-30)
    u, s = u.masked_fill(~domain, -inf), s.masked_fill(~domain, -inf)
    order = u.argsort(1, descending=True)
    candidate = torch.zeros_like(domain)
    s_left = s.gather(1, order)
    for _ in range(2):                      # the first two Pareto layers, by a running max of s
        best_before = torch.cat([s_left.new_full((n_samples, 1), -inf), s_left.cummax(1).values[:, :-1]], 1)
        layer = (s_left > best_before) & s_left.isfinite()
        candidate |= layer
        s_left = s_left.masked_fill(layer, -inf)
    n_cand = max(int(candidate.sum(1).max()), 2)
    cand_ok, pick = candidate.to(u.dtype).topk(n_cand, dim=1)                  # (B, c) padding is 0
    cand = order.gather(1, pick)                                                # (B, c) feature indices
    cand_u = u.gather(1, cand).masked_fill(cand_ok == 0, -inf)
    cand_s = s.gather(1, cand).masked_fill(cand_ok == 0, -inf)
    p = torch.zeros(n_samples, dtype=torch.long, device=u.device)
    q, best = torch.zeros_like(p), torch.zeros(n_samples, dtype=u.dtype, device=u.device)
    per_chunk = chunk or max(1, PAIR_BUDGET // n_cand**2)
    for start in range(0, n_samples, per_chunk):
        part = slice(start, start + per_chunk)
        score = (cand_u[part, :, None] + cand_u[part, None, :]).relu_()        # (b, c, c)
        score.mul_((cand_s[part, :, None] + cand_s[part, None, :]).relu_())
        score.diagonal(dim1=1, dim2=2).zero_()                                  # p == q is no pair
        best[part], at = score.flatten(1).max(1)
        p[part] = cand[part].gather(1, (at // n_cand)[:, None]).squeeze(1)
        q[part] = cand[part].gather(1, (at % n_cand)[:, None]).squeeze(1)
    return p, q, best > 0
