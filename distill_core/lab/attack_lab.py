"""One image, one attack, several models: what the Attack lab shows, computed in one call.

    res = attack_one_image({"standard": m1, "trades": m2}, "standard", x, y, "pgd", info=info, eps=0.3)
    res.x_adv, res.probs["trades"], res.series["margin"], res.saliency

The attack runs white-box on one model (``attacked``); the same adversarial image is then shown to
every model (transfer). Saliency is captum's, before and after, on the attacked model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._torch import logits_of, model_device
from ..attacks import run_attack
from ..data import DatasetInfo
from ..explain import saliency


@dataclass
class ImageAttackResult:
    """What attacking one image produced; arrays are numpy on the CPU."""

    x: np.ndarray                                    # (1, C, H, W) original
    x_adv: np.ndarray                                # (1, C, H, W) adversarial
    y: int                                           # the class the attack moved away from
    target: int | None                               # the target class of a targeted attack
    attacked: str                                    # name of the attacked model
    probs: dict[str, tuple[np.ndarray, np.ndarray]]  # model name -> (softmax on x, softmax on x_adv), (C,) each
    saliency: tuple[np.ndarray, np.ndarray]          # |d Z_pred / dx| on x and on x_adv, (1, C, H, W) each
    series: dict[str, np.ndarray]                    # per-step loss, margin, pred, ... from the attack's trace
    seconds: float                                   # the attack alone
    settings: dict = field(default_factory=dict)

    @property
    def pred_before(self) -> int:
        return int(self.probs[self.attacked][0].argmax())

    @property
    def pred_after(self) -> int:
        return int(self.probs[self.attacked][1].argmax())

    @property
    def success(self) -> bool:
        """Untargeted: the attacked model no longer predicts ``y``; targeted: it predicts ``target``."""
        return self.pred_after == self.target if self.target is not None else self.pred_after != self.y

    def norms(self) -> dict[str, float]:
        """The perturbation's size: ``linf`` (max |delta|), ``l2`` (Euclidean) and ``l0`` (pixels changed), in
        pixel units of [0, 1]."""
        delta = (self.x_adv - self.x).ravel()
        return {"linf": float(np.abs(delta).max(initial=0.0)), "l2": float(np.linalg.norm(delta)),
                "l0": int((delta != 0).sum())}

    def transfer_rows(self, class_names: list[str] | tuple[str, ...]) -> list[dict]:
        """One row per model: its prediction and top probability before and after, the probability of the
        true class ``y`` before and after (``p_true_before``, ``p_true_after``) and whether it was fooled."""
        rows = []
        for label, (pb, pa) in self.probs.items():
            rows.append({"model": label + (" (attacked)" if label == self.attacked else ""),
                         "pred before": class_names[int(pb.argmax())], "p before": float(pb.max()),
                         "pred after": class_names[int(pa.argmax())], "p after": float(pa.max()),
                         "p_true_before": float(pb[self.y]), "p_true_after": float(pa[self.y]),
                         "fooled": int(pa.argmax()) != self.y})
        return rows


def trace_series(trace: list[dict], sample: int = 0) -> dict[str, np.ndarray]:
    """An attack's ``trace`` list (one dict of (N,) tensors per step) as per-step arrays for one sample.

    Keys: ``step`` and every per-sample entry that every step reported (``loss``, ``margin``,
    ``pred``, and e.g. ``dist``); ``pred`` is int. An empty trace gives empty ``step``, ``loss``,
    ``margin`` and ``pred`` arrays.
    """
    if not trace:
        return {"step": np.zeros(0, int), "loss": np.zeros(0), "margin": np.zeros(0), "pred": np.zeros(0, int)}
    out = {"step": np.array([int(t["step"]) for t in trace])}
    for k in trace[0]:
        if k == "step" or not all(k in t for t in trace):
            continue
        out[k] = np.array([float(t[k][sample]) if isinstance(t[k], torch.Tensor) and t[k].dim() else float(t[k])
                           for t in trace])
    if "pred" in out:
        out["pred"] = out["pred"].astype(int)
    return out


def attack_one_image(models: dict[str, nn.Module], attacked: str, x: torch.Tensor, y: int | None, attack: str, *,
                     info: DatasetInfo | None = None, target: int | None = None, seed: int = 0,
                     with_saliency: bool = True, **params) -> ImageAttackResult:
    """Attack one image ``x`` (1, C, H, W) in [0, 1] on ``models[attacked]`` and show the result to every model.

    ``y``: the class to move away from (``None``: the attacked model's prediction, for an image
    without a label). ``attack`` is a registry name run by :func:`distill_core.attacks.run_attack`
    with the dataset's defaults updated by ``params`` (``eps=``, ``steps=``, ``loss=``, ...), and
    ``target`` (a class) for a targeted attack. The RNG is seeded with ``seed`` (random starts)
    inside a forked RNG state, so the same settings give the same image and the caller's RNG is
    untouched. Every model runs in eval mode (each module's own mode is restored, BatchNorm
    statistics never move); a model that detaches its input gets ``x_adv`` = its start and zero
    saliency. Raises ``KeyError`` for an unknown ``attacked`` and ``ValueError`` for bad options.
    """
    model = models[attacked]
    x = x.detach().float().cpu()
    if y is None:
        y = int(logits_of(model, x).argmax(1))
    kwargs = dict(params)
    if target is not None:
        kwargs["target"] = torch.tensor([int(target)])
    trace: list[dict] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        dev = model_device(model)
        kwargs = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        x_adv = run_attack(attack, model, x.to(dev), torch.tensor([int(y)], device=dev), info=info, trace=trace,
                           **kwargs).detach().cpu()
        seconds = time.perf_counter() - t0
    batch = torch.cat([x, x_adv])
    probs = {}
    for name, m in models.items():
        p = torch.softmax(logits_of(m, batch).double(), 1).numpy()
        probs[name] = (p[0], p[1])
    sal = ((saliency(model, x).numpy(), saliency(model, x_adv).numpy()) if with_saliency
           else (np.zeros_like(x.numpy()), np.zeros_like(x.numpy())))
    return ImageAttackResult(x=x.numpy(), x_adv=x_adv.numpy(), y=int(y), target=target, attacked=attacked,
                             probs=probs, saliency=sal, series=trace_series(trace), seconds=seconds,
                             settings={k: v for k, v in params.items()})
