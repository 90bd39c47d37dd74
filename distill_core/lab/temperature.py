"""Curves over the temperature T for the Temperature page: entropy, the softmax Jacobian's 1/T scale, EBB.

All of them start from logits computed once (and, for the Jacobian, the logits' input Jacobian
computed once), so a slider over T only redoes cheap arithmetic::

    Ts = temperature_grid()                                   # 0.1 .. 100, log-spaced
    H = entropy_curve(logits, Ts)                             # mean entropy of softmax(Z / T) per T
    norms = softmax_jacobian_norms(z, dz_dx, Ts)              # || d softmax_T / dx || per T
    sim = ebb_simulation(logits_nat, logits_adv, lr_tau=0.05, steps=300)

Conventions as in :mod:`distill_core.losses` (``softmax_T(z) = softmax(z / T)``, entropies in nats).
"""

from __future__ import annotations

import numpy as np
import torch

from .._torch import logits_of
from ..evaluate import input_jacobian
from ..losses import entropy, softmax_t
from ..methods.mtard import entropy_balance


def temperature_grid(lo: float = 0.1, hi: float = 100.0, n: int = 61) -> np.ndarray:
    """``n`` temperatures log-spaced from ``lo`` to ``hi`` (the default has 20 per decade and hits 1, 10, 100)."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    return np.logspace(np.log10(lo), np.log10(hi), n)


def _mean_entropy_np(z: np.ndarray, T: float) -> float:
    """Mean entropy of ``softmax(z / T)`` over rows, in numpy float64 (the EBB loop's inner step)."""
    a = z / T
    a = a - a.max(axis=-1, keepdims=True)
    p = np.exp(a)
    p /= p.sum(axis=-1, keepdims=True)
    return float(-(p * np.log(np.maximum(p, np.finfo(np.float64).tiny))).sum(-1).mean())


def _as_temperatures(temperatures: np.ndarray | list[float]) -> torch.Tensor:
    Ts = torch.as_tensor(np.asarray(temperatures, dtype=np.float64)).reshape(-1)
    if (Ts <= 0).any():
        raise ValueError("temperatures must be positive")
    return Ts


def entropy_curve(logits: torch.Tensor, temperatures: np.ndarray | list[float], chunk: int = 64) -> np.ndarray:
    """Mean entropy (nats) of ``softmax(logits / T)`` over the batch, for each T: (N, C) or (C,) -> (len(T),).

    Computed in float64 so that a saturated softmax gives a small entropy rather than an exact 0,
    for ``chunk`` temperatures at a time in one batched operation. The curve rises from about 0
    (T -> 0, one-hot) to ``log C`` (T -> inf, uniform).
    """
    z = logits.detach().double().reshape(-1, logits.shape[-1])
    Ts = _as_temperatures(temperatures)
    out = [entropy(softmax_t(z[None], Tc[:, None, None])).mean(-1) for Tc in Ts.split(chunk)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def temperatures_for_entropies(logits: torch.Tensor, targets: np.ndarray | list[float], lo: float = 1e-2,
                               hi: float = 1e3, iters: int = 30) -> np.ndarray:
    """For each target entropy, the T at which the mean entropy of ``softmax(logits / T)`` equals it.

    Bisection in
    ``log T`` over ``[lo, hi]`` for all targets at once (``iters`` halvings: ``log(hi / lo) / 2^iters``
    wide brackets); a target outside what the range reaches returns the nearer end. ``logits``:
    (N, C); returns (len(targets),).
    """
    z = logits.detach().double().reshape(-1, logits.shape[-1])
    h = torch.as_tensor(np.asarray(targets, dtype=np.float64)).reshape(-1)
    a = torch.full_like(h, float(np.log(lo)))
    b = torch.full_like(h, float(np.log(hi)))
    for _ in range(iters):
        mid = (a + b) / 2
        below = entropy(softmax_t(z[None], mid.exp()[:, None, None])).mean(-1) < h
        a, b = torch.where(below, mid, a), torch.where(below, b, mid)
    out = ((a + b) / 2).exp()
    h_lo, h_hi = entropy_curve(z, [lo, hi])
    out = torch.where(h <= float(h_lo), torch.full_like(out, lo), out)
    out = torch.where(h >= float(h_hi), torch.full_like(out, hi), out)
    return out.numpy()


def softmax_jacobian(logits: torch.Tensor, logit_jacobian: torch.Tensor, T: float | torch.Tensor) -> torch.Tensor:
    """``d softmax(Z / T) / dx = (1 / T) (diag(p) - p p^T) dZ/dx`` with ``p = softmax(Z / T)``, for one sample.

    ``logits``: (C,) the sample's logits Z; ``logit_jacobian``: (C, *input) its ``dZ/dx`` (e.g.
    ``evaluate.input_jacobian(model, x, wrt="logits")[0]``). ``T``: a float, giving (C, *input), or a
    (K,) tensor of temperatures, giving (K, C, *input), in the inputs' dtype. By the chain rule this
    equals the Jacobian of the softened softmax of the model, so the whole T-curve costs one
    Jacobian of the logits.
    """
    Ts = torch.as_tensor(T, dtype=logits.dtype).reshape(-1, 1)
    p = softmax_t(logits[None], Ts)                                          # (K, C)
    dsoft = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / Ts[:, :, None]
    out = (dsoft @ logit_jacobian.reshape(p.shape[1], -1)).reshape(len(Ts), *logit_jacobian.shape)
    return out[0] if not isinstance(T, torch.Tensor) or T.dim() == 0 else out


def softmax_jacobian_norms(logits: torch.Tensor, logit_jacobian: torch.Tensor,
                           temperatures: np.ndarray | list[float]) -> dict[str, np.ndarray]:
    """The Frobenius norm of ``d softmax(Z / T) / dx`` for one sample at each T (the 1/T scale of the Jacobian).

    ``logits`` (C,), ``logit_jacobian`` (C, *input). Returns ``T``; ``norm`` (float64, so a saturated
    softmax shows as a tiny number instead of vanishing) and ``zero_float32`` (bool: the Jacobian is
    exactly zero when computed in float32, as the model itself computes it - the gradient masking of
    defensive distillation deployed at T = 1, METHODS.md section 1a). At high T, ``p`` tends to
    uniform, ``diag(p) - p p^T`` to a constant, and the norm falls like the chain rule's ``1 / T``;
    at low T the softmax saturates and the norm collapses exponentially. A model whose logits
    are T0 times larger (a student distilled at T0) has the same curve shifted right by T0.
    """
    Ts = _as_temperatures(temperatures)
    j64 = softmax_jacobian(logits.detach().double(), logit_jacobian.detach().double(), Ts)
    j32 = softmax_jacobian(logits.detach().float(), logit_jacobian.detach().float(), Ts.float())
    return {"T": Ts.numpy(), "norm": j64.flatten(1).norm(dim=1).numpy(),
            "zero_float32": j32.flatten(1).eq(0).all(dim=1).numpy()}


def ebb_simulation(logits_nat: torch.Tensor, logits_adv: torch.Tensor, tau_nat: float = 1.0, tau_adv: float = 1.0,
                   lr_tau: float = 0.05, steps: int = 300, lo: float = 1.0, hi: float = 10.0) -> dict[str, np.ndarray]:
    """MTARD's Entropy-Based Balance run on fixed batches of two teachers' logits until it settles.

    Each step computes the mean entropies ``H_nat`` of ``softmax(logits_nat / tau_nat)`` and ``H_adv``
    of ``softmax(logits_adv / tau_adv)`` and applies :func:`distill_core.methods.mtard.entropy_balance`
    (sign steps of ``lr_tau``, clamped to ``[lo, hi]``). In MTARD the batch changes every step and
    the robust teacher sees adversarial inputs; here both are fixed, so the temperatures walk to
    the point where the entropies match and then oscillate by one ``lr_tau`` step around it.
    Returns arrays over ``steps + 1`` points: ``step``, ``tau_nat``, ``tau_adv``, ``H_nat``, ``H_adv``.
    """
    z_nat = logits_nat.detach().double().numpy()
    z_adv = logits_adv.detach().double().numpy()
    rows = []
    for step in range(steps + 1):
        h_nat, h_adv = _mean_entropy_np(z_nat, tau_nat), _mean_entropy_np(z_adv, tau_adv)
        rows.append((step, tau_nat, tau_adv, h_nat, h_adv))
        tau_nat, tau_adv = entropy_balance(tau_nat, tau_adv, h_nat, h_adv, lr_tau=lr_tau, lo=lo, hi=hi)
    cols = np.array(rows).T
    return {"step": cols[0].astype(int), "tau_nat": cols[1], "tau_adv": cols[2], "H_nat": cols[3], "H_adv": cols[4]}


# ---------------------------------------------------------------- what the Temperature page shows of a model


def image_curves(model: torch.nn.Module, x: torch.Tensor, temperatures: np.ndarray | list[float]) -> dict:
    """One sample's curves over T: its logits, softmax, entropy and softmax-Jacobian norms at each T.

    ``x``: one input (1, *input) in [0, 1]. Returns numpy arrays ``logits`` (C,), ``probs``
    (len(T), C), ``entropy`` (len(T),) in nats, and :func:`softmax_jacobian_norms`'s keys. The
    model runs once (logits and their input Jacobian), in eval mode; the T grid is arithmetic.
    """
    z = logits_of(model, x)[0]
    jz = input_jacobian(model, x, wrt="logits")[0]
    Ts = np.asarray(temperatures, dtype=np.float64)
    probs = softmax_t(z[None].double(), torch.from_numpy(Ts)[:, None])
    return {"logits": z.numpy(), "probs": probs.numpy(), "entropy": entropy_curve(z, Ts),
            **softmax_jacobian_norms(z, jz, Ts)}


def batch_entropies(model: torch.nn.Module, x: torch.Tensor, n: int, temperatures: np.ndarray | list[float],
                    seed: int = 0) -> dict:
    """A model's logits on ``n`` seeded samples of ``x`` and their mean entropy (nats) at each T.

    Returns numpy ``logits`` (n, C) and ``entropy`` (len(T),); the samples are a seeded random
    subset (``seed``), so two teachers see the same images.
    """
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    z = logits_of(model, x[keep])
    return {"logits": z.numpy(), "entropy": entropy_curve(z, temperatures)}
