"""Why a model decides what it does: captum attributions, 2-D decision grids, image-plane slices.

- :func:`saliency` and :func:`integrated_gradients` call captum's ``Saliency`` (Simonyan et al.
  2014) and ``IntegratedGradients`` (Sundararajan et al. 2017) as they are.
- :func:`decision_grid` evaluates a 2-D model on a regular grid (the boundary heatmaps of the
  BSS page, Heo et al. 2019).
- :func:`boundary_slice` evaluates an image model on the plane through one image spanned by
  the adversarial direction and a random orthogonal one (the "decision-boundary slice" of
  Tramer et al. 2018), which shows how far the nearest boundary is and whether it is flat.

Everything is batched, runs on the model's device with the model in eval mode (each module's
previous mode is restored) and returns tensors on the input's device or numpy arrays; no
plotting here. A model that detaches its input has zero input gradients: its attributions are
zeros, not an error.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from ._torch import InputPath, eval_mode, input_gradient, logits_of, model_device, predict

Target = int | torch.Tensor | None


def _targets(model: nn.Module, x: torch.Tensor, target: Target) -> int | torch.Tensor:
    """``target`` as captum wants it, on the model's device; ``None`` means the predicted class."""
    if target is None:
        return predict(model, x).to(x.device)
    return target.to(x.device) if isinstance(target, torch.Tensor) else int(target)


def saliency(model: nn.Module, x: torch.Tensor, target: Target = None, abs: bool = True) -> torch.Tensor:
    """Saliency map ``|d logit_target / dx|`` (Simonyan, Vedaldi, Zisserman 2014) via captum's ``Saliency``.

    ``x``: (B, *input) in [0, 1]; ``target``: an int, a (B,) tensor of classes, or ``None`` for the
    model's prediction. Returns (B, *input) on ``x``'s device (``abs=False`` keeps the sign).
    Gradients are taken of the logits, as captum does for a model that returns logits; zeros
    for a model that detaches its input (captum sees it through ``_torch.InputPath``).
    """
    xd = x.detach().to(model_device(model)).requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        attr = Saliency(InputPath(model)).attribute(xd, target=_targets(model, xd, target), abs=abs)
    return attr.detach().to(x.device)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target = None,
                         baseline: torch.Tensor | float | None = None, n_steps: int = 50,
                         internal_batch_size: int | None = 256,
                         return_delta: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients (Sundararajan, Taly, Yan 2017) of the target logit via captum.

    ``attr_i = (x_i - x'_i) * mean_{alpha} d logit_target(x' + alpha (x - x')) / dx_i`` with the
    baseline ``x'`` (default: all zeros, a black image), Gauss-Legendre quadrature over ``n_steps``
    points, evaluated ``internal_batch_size`` points at a time. Completeness: the attributions of a
    sample sum to ``logit(x) - logit(x')`` up to the quadrature error, which captum returns as the
    convergence delta (B,) when ``return_delta`` is set. Returns (B, *input) on ``x``'s device
    (zeros for a model that detaches its input).
    """
    dev = model_device(model)
    xd = x.detach().to(dev).requires_grad_(True)
    base = baseline.to(dev) if isinstance(baseline, torch.Tensor) else baseline
    with eval_mode(model), torch.enable_grad():
        out = IntegratedGradients(InputPath(model)).attribute(
            xd, baselines=base, target=_targets(model, xd, target), n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=return_delta)
    if return_delta:
        attr, delta = out
        return attr.detach().to(x.device), delta.detach().to(x.device)
    return out.detach().to(x.device)


def decision_grid(model: nn.Module, lo: float = 0.0, hi: float = 1.0, resolution: int = 100,
                  batch_size: int = 4096) -> dict[str, np.ndarray]:
    """A 2-D model's decisions on a ``resolution`` x ``resolution`` grid over ``[lo, hi]^2``.

    Heatmap convention: row ``i`` is ``ys[i]``, column ``j`` is ``xs[j]``, i.e. the point
    ``(xs[j], ys[i])``. Returns numpy arrays: ``xs``, ``ys`` (R,); ``pred`` (R, R) int64 predicted
    class; ``max_prob`` (R, R) top-class softmax probability; ``probs`` (R, R, C) per class.
    """
    xs = torch.linspace(lo, hi, resolution)
    ys = torch.linspace(lo, hi, resolution)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    probs = torch.softmax(logits_of(model, points, batch_size), dim=1).reshape(resolution, resolution, -1)
    max_prob, pred = probs.max(dim=2)
    return {"xs": xs.numpy(), "ys": ys.numpy(), "pred": pred.numpy(), "max_prob": max_prob.numpy(),
            "probs": probs.numpy()}


def _margin_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Gradient of ``Z_runner-up - Z_predicted`` at one image (1, *input): the direction to the nearest boundary.

    The logit margin is used rather than the cross-entropy so that a saturated softmax (a
    defensively distilled model) still gives a direction (METHODS.md section 1a).
    """
    with eval_mode(model), torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        top2 = model(xg).topk(2, dim=1).values
        grad = input_gradient((top2[:, 1] - top2[:, 0]).sum(), xg)
    return grad[0]


def boundary_slice(model: nn.Module, x: torch.Tensor, direction: torch.Tensor | str | None = None,
                   radius: float = 0.5, resolution: int = 41, seed: int = 0,
                   batch_size: int = 1024) -> dict[str, np.ndarray | int]:
    """The model's decisions on the plane through one image spanned by an adversarial and a random direction.

    Points are ``clip(x + u d_adv + v d_rand, 0, 1)`` for ``u, v`` in ``[-radius, radius]``. ``d_adv``
    is ``direction`` when a tensor is given, else the gradient of the logit margin
    ``Z_runner-up - Z_pred`` (``None``) or its sign (``"sign"``, the FGSM direction). ``d_rand`` is a
    seeded Gaussian vector made orthogonal to ``d_adv`` (Gram-Schmidt). Both are scaled to unit
    **L-inf** norm, so ``u`` and ``v`` are in pixel units, like an attack's epsilon.

    Edges: the pixel range is enforced by clipping each point to [0, 1], so far from ``x`` the
    plane folds onto the faces of the pixel cube and distinct ``(u, v)`` may map to one image;
    ``clipped`` reports the fraction of pixels clipped at each point so a figure can shade them.
A zero margin gradient (a model that detaches its input, or a flat region) gives no direction:
``ValueError``, pass ``direction`` explicitly.

    ``x``: one image, (*input) or (1, *input); ``resolution`` must be odd so that the centre point
    is ``x`` itself. Returns numpy arrays ``u`` (R,) (columns), ``v`` (R,) (rows), ``pred`` (R, R)
    int64, ``confidence`` (R, R) top-class probability, ``clipped`` (R, R) in [0, 1],
    ``directions`` (2, *input) and the int ``center_pred``.
    """
    if resolution % 2 == 0:
        raise ValueError(f"resolution must be odd so that x is the centre point, got {resolution}")
    dev = model_device(model)
    x = x.to(dev, torch.float32)
    if x.dim() in (1, 3):  # (2,) point or (C, H, W) image: add the batch dimension
        x = x.unsqueeze(0)
    if x.shape[0] != 1:
        raise ValueError(f"boundary_slice takes one sample, got a batch of shape {tuple(x.shape)}")
    if isinstance(direction, torch.Tensor):
        d_adv = direction.to(dev, torch.float32).reshape(x.shape[1:])
    elif direction is None or direction == "sign":
        d_adv = _margin_gradient(model, x)
        d_adv = d_adv.sign() if direction == "sign" else d_adv
    else:
        raise ValueError(f"direction must be a tensor, None (margin gradient) or 'sign', got {direction!r}")
    if not bool(d_adv.ne(0).any()):
        raise ValueError("the adversarial direction is zero everywhere; pass a direction explicitly")
    gen = torch.Generator().manual_seed(seed)
    d_rand = torch.randn(d_adv.shape, generator=gen).to(dev)
    d_rand = d_rand - (d_rand * d_adv).sum() / (d_adv * d_adv).sum() * d_adv
    d_adv = d_adv / d_adv.abs().max()
    d_rand = d_rand / d_rand.abs().max()

    k = resolution // 2
    coords = radius * torch.arange(-k, k + 1, dtype=torch.float32, device=dev) / max(k, 1)
    vv, uu = torch.meshgrid(coords, coords, indexing="ij")
    uv = torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=1)
    shape = (-1,) + (1,) * d_adv.dim()
    preds, confs, clipped = [], [], []
    with eval_mode(model), torch.no_grad():
        for ab in uv.split(batch_size):
            raw = x + ab[:, 0].view(shape) * d_adv + ab[:, 1].view(shape) * d_rand
            pts = raw.clamp(0.0, 1.0)
            probs = torch.softmax(model(pts), dim=1)
            conf, pred = probs.max(dim=1)
            preds.append(pred)
            confs.append(conf)
            clipped.append(pts.ne(raw).flatten(1).float().mean(1))
        center_pred = int(model(x).argmax(1).item())
    grid = (resolution, resolution)
    return {"u": coords.cpu().numpy(), "v": coords.cpu().numpy(),
            "pred": torch.cat(preds).reshape(grid).cpu().numpy(),
            "confidence": torch.cat(confs).reshape(grid).cpu().numpy(),
            "clipped": torch.cat(clipped).reshape(grid).cpu().numpy(),
            "directions": torch.stack([d_adv, d_rand]).cpu().numpy(), "center_pred": center_pred}
