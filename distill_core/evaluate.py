"""Measuring a model: accuracy, robustness, attack success, confidence, Jacobians, boundary similarity.

The quantities the three papers report (METHODS.md), each one function:

- clean accuracy, accuracy under one named attack and the table of several (for study: the lab's
  *robust accuracy* is AutoAttack's, ``robustness.evaluate_robustness``), W-Robust =
  (clean + robust) / 2 (Zhao et al., MTARD, ECCV 2022);
- JSMA targeted success rate, robustness ``rho_adv``, mean confidence, adversarial gradient
  amplitude (Papernot et al., defensive distillation, IEEE S&P 2016) and the exact-zero
  gradient count that exposes the masking (Carlini & Wagner 2016; AutoAttack's checks);
- MagSim / AngSim between teacher and student decision boundaries (Heo et al., BSS, AAAI 2019).

Every function is batched, runs on the model's device with the model in eval mode (each
module's previous mode is restored afterwards) and takes inputs ``x`` (N, *input) in [0, 1]
and labels ``y`` (N,) int64 on any device::

    clean = accuracy(model, test_set)
    rows = attack_table(model, test_set, ["fgsm", "pgd"], n=500, info=info)
    jac = input_jacobian(model, x[:8], wrt="softmax")        # (8, classes, *input)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._torch import Data, as_tensors, eval_mode, logits_of, model_device, predict
from .attacks import attack_defaults, craft_bss, get_attack, run_attack, sample_bss_targets
from .data import DatasetInfo
from .losses import softmax_t

Attack = str | Callable[..., torch.Tensor]


# ---------------------------------------------------------------- plumbing


# ---------------------------------------------------------------- predictions and accuracy


def accuracy(model: nn.Module, data: Data, batch_size: int = 512) -> float:
    """Fraction of samples classified correctly; ``data`` is a ``TensorDataset`` or an ``(x, y)`` pair."""
    x, y = as_tensors(data)
    if len(x) == 0:
        raise ValueError("accuracy of an empty data set")
    return float((predict(model, x, batch_size) == y.to(x.device)).float().mean())


def mean_confidence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: float = 1.0,
                    batch_size: int = 512) -> float:
    """Mean top-class probability ``max_c softmax(Z / T)_c`` over the correctly classified samples.

    Papernot et al. 2016's confidence measure (deployed models use ``T = 1``). ``nan`` when no
    sample is classified correctly.
    """
    probs = softmax_t(logits_of(model, x, batch_size), T)
    conf, pred = probs.max(dim=1)
    correct = pred == y.to(pred.device)
    return float(conf[correct].mean()) if bool(correct.any()) else math.nan


def w_robust(clean: float, robust: float) -> float:
    """W-Robust = (clean accuracy + robust accuracy) / 2, MTARD's trade-off metric (Zhao et al. 2022)."""
    return (clean + robust) / 2


# ---------------------------------------------------------------- robustness


def _attack_batches(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, info: DatasetInfo | None,
                    batch_size: int, target: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
    """``attack`` run over ``x`` (and ``target``, one class per sample) in batches on the model's device,
    model in eval mode; returns x_adv on ``x``'s device."""
    dev = model_device(model)
    out = [x.detach()[:0]]
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            xb, yb = x[sl].to(dev), y[sl].to(dev)
            if target is not None:
                kwargs["target"] = target[sl].to(dev)
            if isinstance(attack, str):
                x_adv = run_attack(attack, model, xb, yb, info=info, **kwargs)
            else:
                x_adv = attack(model, xb, yb, **kwargs)
            out.append(x_adv.detach().to(x.device))
    return torch.cat(out)


def accuracy_under_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                    info: DatasetInfo | None = None, batch_size: int = 256, **kwargs: Any) -> float:
    """Accuracy under one attack: the fraction of samples classified correctly both clean and attacked.

    One attack only, so an upper bound on robustness; the lab's robust accuracy is AutoAttack's
    (:func:`distill_core.robustness.evaluate_robustness`).

    ``attack`` is a registry name (``attacks.list_attacks()``, run by ``attacks.run_attack`` with
    the defaults of ``info``'s dataset updated by ``kwargs``) or a callable
    ``attack(model, x, y, **kwargs) -> x_adv``. A sample the model already misclassifies counts
    as a failure whatever the attack does, so robust accuracy <= clean accuracy. A targeted-only
    attack (JSMA) called without ``target`` is run towards each of the C-1 other classes, and a
    sample is robust only if none of the C-1 attacked versions is misclassified.
    ``x``: (N, *input), ``y``: (N,).
    """
    if len(x) == 0:
        raise ValueError("robust accuracy of an empty data set")
    y = y.to(x.device)
    robust = predict(model, x, batch_size) == y
    if isinstance(attack, str) and get_attack(attack).targeted_only and "target" not in kwargs:
        n_classes = logits_of(model, x[:1]).shape[1]
        for offset in range(1, n_classes):
            idx = robust.nonzero().flatten()  # only samples not yet broken need attacking
            if len(idx) == 0:
                break
            target = (y[idx] + offset) % n_classes
            x_adv = _attack_batches(model, x[idx], y[idx], attack, info, batch_size, target=target, **kwargs)
            robust[idx] = predict(model, x_adv, batch_size) == y[idx]
    else:
        x_adv = _attack_batches(model, x, y, attack, info, batch_size, **kwargs)
        robust &= predict(model, x_adv, batch_size) == y
    return float(robust.float().mean())


def _jsonable(value: Any) -> Any:
    """A settings value as plain JSON: numbers, strings, bools, None, lists and dicts of those."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return getattr(value, "__name__", repr(value))


def attack_table(model: nn.Module, data: Data, attacks: Sequence[str] = ("fgsm", "pgd"), *,
                     n: int | None = None, info: DatasetInfo | None = None,
                     settings: dict[str, dict[str, Any]] | None = None, batch_size: int = 256,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Clean accuracy and the accuracy under each registry attack, as JSON-able rows (single attacks, for
    study and the papers' tables; not the lab's robust accuracy, which is AutoAttack's).

    Evaluates on ``n`` samples drawn from ``data`` with a seeded permutation (all of them when
    ``n`` is None). Each attack runs with ``attacks.attack_defaults(name, info)`` updated by
    ``settings[name]``; the row records the settings it ran with. JSMA (targeted only) is run
    towards every other class (see :func:`accuracy_under_attack`). ``seed`` fixes the subset and the
    attacks' random starts (the caller's RNG state is left as it was). ``w_robust`` is MTARD's
    (clean + robust) / 2. Returns one dict per row, the clean row first::

        {"attack": "clean", "accuracy": 0.98, "n": 1000, "settings": {}, "w_robust": 0.98, "seconds": 0.1}
        {"attack": "pgd", "accuracy": 0.41, "n": 1000, "settings": {"eps": 0.3, ...}, "w_robust": 0.695, ...}
    """
    x, y = as_tensors(data)
    if n is not None and n < len(x):
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[keep], y[keep]
    start = time.perf_counter()
    clean = accuracy(model, (x, y), batch_size)
    rows = [{"attack": "clean", "accuracy": clean, "n": len(x), "settings": {}, "w_robust": clean,
             "seconds": time.perf_counter() - start}]
    dev = model_device(model)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # random starts reproducible, the caller's RNG untouched
        for name in attacks:
            start = time.perf_counter()
            overrides = (settings or {}).get(name, {})
            robust = accuracy_under_attack(model, x, y, name, info=info, batch_size=batch_size, **overrides)
            used = {**attack_defaults(name, info), **overrides}
            if get_attack(name).targeted_only and "target" not in overrides:
                used["target"] = "every other class"
            rows.append({"attack": name, "accuracy": robust, "n": len(x), "settings": _jsonable(used),
                         "w_robust": w_robust(clean, robust), "seconds": time.perf_counter() - start})
    return rows


# ---------------------------------------------------------------- Jacobians and gradient masking


def input_jacobian(model: nn.Module, x: torch.Tensor, wrt: Literal["softmax", "logits"] = "softmax",
                   temperature: float = 1.0, chunk_size: int | None = None) -> torch.Tensor:
    """Per-sample Jacobian of the outputs with respect to the input, (B, classes, *input).

    The output is ``softmax(Z / T)`` (``wrt="softmax"``, Papernot et al.'s ``F``) or ``Z / T``
    (``wrt="logits"``). Computed with ``torch.func.vmap`` over samples of ``jacrev`` (``jacfwd``
    when the input has no more features than there are classes, e.g. 2-D points) of the
    per-sample function ``xi -> out(model(xi[None])[0])``, model in eval mode; ``chunk_size``
    bounds how many samples are differentiated at once. In float32 a saturated softmax gives an
    exactly-zero Jacobian: that is the gradient masking of METHODS.md section 1a, not a bug.
    """
    if wrt not in ("softmax", "logits"):
        raise ValueError(f"wrt must be 'softmax' or 'logits', got {wrt!r}")
    xd = x.detach().to(model_device(model))

    def out(xi: torch.Tensor) -> torch.Tensor:
        z = model(xi.unsqueeze(0))[0]
        return softmax_t(z, temperature) if wrt == "softmax" else z / temperature

    # torch.func differentiates inside no_grad; the outer no_grad only keeps the parameters out of the graph.
    with eval_mode(model), torch.no_grad():
        n_classes = model(xd[:1]).shape[1]
        jac = torch.func.jacfwd if xd[0].numel() <= n_classes else torch.func.jacrev
        return torch.func.vmap(jac(out), chunk_size=chunk_size)(xd).to(x.device)


def gradient_amplitude_stats(model: nn.Module, x: torch.Tensor, wrt: Literal["softmax", "logits"] = "softmax",
                             temperature: float = 1.0, batch_size: int = 128,
                             chunk_size: int | None = None) -> dict[str, Any]:
    """Papernot et al.'s adversarial gradient amplitude and the exact-zero gradient count.

    ``amplitude``: (N,) float64 numpy, per sample the mean of ``|dF_c/dx_i|`` over classes and
    input features (float64 so that values near 1e-40 do not flush to zero when averaged).
    ``n_zero`` / ``fraction_zero``: samples whose whole Jacobian is exactly zero in the model's
    precision, the gradient-masking diagnostic (Carlini & Wagner 2016; AutoAttack). ``n``: N.
    """
    amps, zero = [], []
    for xb in x.split(batch_size):
        jac = input_jacobian(model, xb, wrt=wrt, temperature=temperature, chunk_size=chunk_size).flatten(1)
        zero.append(jac.eq(0).all(dim=1).cpu())
        amps.append(jac.abs().cpu().double().mean(dim=1))  # float64 on the cpu: mps has none
    amplitude = torch.cat(amps).numpy()
    n_zero = int(torch.cat(zero).sum())
    return {"amplitude": amplitude, "n_zero": n_zero, "fraction_zero": n_zero / max(len(x), 1), "n": len(x)}


def log10_histogram(values: np.ndarray | torch.Tensor | Sequence[float], bins: int = 40,
                    range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Histogram of ``log10(values)`` for non-negative values, exact zeros counted apart.

    ``log10(0) = -inf`` has no bin, and exact zeros are the interesting case here (masked
    gradients), so they are reported as ``n_zero``. ``range`` is in log10 units (default: the
    data's); positive values outside it are not counted. Returns ``edges`` (bins + 1,) in log10
    units, ``counts`` (bins,) int, ``n_zero`` and ``n`` (all values).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if (v < 0).any():
        raise ValueError("log10_histogram takes non-negative values")
    zero = v == 0
    counts, edges = np.histogram(np.log10(v[~zero]), bins=bins, range=range)
    return {"edges": edges, "counts": counts, "n_zero": int(zero.sum()), "n": int(v.size)}


def log10_histograms(amplitudes: dict[str, np.ndarray | torch.Tensor], bins: int = 40) -> dict[str, dict]:
    """:func:`log10_histogram` of each model's amplitudes on one shared range (the positive values' span).

    ``amplitudes``: name -> (N,) non-negative values (``gradient_amplitude_stats(...)["amplitude"]``).
    Returns name -> that function's dict, so several models can be drawn on the same bins.
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in amplitudes.items()}
    positive = [np.log10(a[a > 0]) for a in arrays.values() if (a > 0).any()]
    lo, hi = (float(min(p.min() for p in positive)), float(max(p.max() for p in positive))) if positive else (-1., 0.)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return {k: log10_histogram(a, bins=bins, range=(lo, hi)) for k, a in arrays.items()}


# ---------------------------------------------------------------- targeted attacks (Papernot et al. 2016)


@dataclass(frozen=True)
class TargetedResult:
    """Outcome of attacking N samples towards each of the C-1 other classes.

    Cell (i, j) is sample ``indices[i]`` of the input attacked towards class
    ``targets[i, j] = (y_i + j + 1) mod C``. ``success`` (N, C-1) bool: the model predicts the
    target on the attacked sample. ``fraction_changed`` (N, C-1): the L0 of the perturbation over
    the number of input features. ``rate``: the mean of ``success`` (``nan`` when N = 0).
    """

    rate: float
    success: np.ndarray
    targets: np.ndarray
    indices: np.ndarray
    fraction_changed: np.ndarray


def targeted_success_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack = "jsma",
                          n_samples: int | None = 100, *, info: DatasetInfo | None = None,
                          batch_size: int = 128, **kwargs: Any) -> TargetedResult:
    """Papernot et al. 2016's protocol: the first N correctly classified samples, each attacked towards all C-1 others.

    ``attack`` is a registry name (with ``info``'s defaults; for JSMA ``theta=1, gamma=0.145``)
    or a callable ``attack(model, x, y, target=t, **kwargs)``; ``kwargs`` override the settings.
    The paper attacks the softmax output (``on="softmax"``: success 95.89 % -> 0.45 % on MNIST
    as T grows); the registry's JSMA attacks the logits, which distillation does not mask.
    Batched over samples, one pass per target offset. ``x``: (M, *input), ``y``: (M,).
    """
    idx = (predict(model, x, batch_size) == y.to(x.device)).nonzero().flatten()
    idx = idx if n_samples is None else idx[:n_samples]
    xs, ys = x[idx], y.to(x.device)[idx]
    n_classes = logits_of(model, x[:1]).shape[1]
    success, targets, changed = [], [], []
    for offset in range(1, n_classes):
        t = (ys + offset) % n_classes
        x_adv = _attack_batches(model, xs, ys, attack, info, batch_size, target=t, **kwargs)
        success.append(predict(model, x_adv, batch_size) == t)
        targets.append(t)
        changed.append(x_adv.ne(xs).flatten(1).float().mean(1))
    succ = torch.stack(success, 1).cpu().numpy()
    return TargetedResult(rate=float(succ.mean()) if succ.size else math.nan, success=succ,
                          targets=torch.stack(targets, 1).cpu().numpy(), indices=idx.cpu().numpy(),
                          fraction_changed=torch.stack(changed, 1).cpu().numpy())


def rho_adv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_samples: int | None = 100, *,
            batch_size: int = 128, **jsma_kwargs: Any) -> dict[str, Any]:
    """Papernot et al. 2016's robustness ``rho_adv``: the mean, over correctly classified samples, of the
    smallest fraction of input features JSMA must change to reach a target, minimised over the C-1 targets.

    JSMA runs uncapped (``gamma=1``, ``theta=1`` unless overridden in ``jsma_kwargs``, e.g.
    ``on="softmax"`` for the paper's measurement: MNIST 1.55 % -> 14.08 % with distillation).
    A sample that no target reaches even so counts as 1.0 (all features), which makes
    ``rho_adv`` a lower bound; ``n_unbroken`` says how many. Returns ``rho_adv`` (float) and
    numpy arrays ``per_sample`` (N,), ``easiest_target`` (N,) (the class reached with the fewest
    changes, -1 for none), ``indices`` (N,) into ``x``; ints ``n`` and ``n_unbroken``.
    """
    res = targeted_success_rate(model, x, y, "jsma", n_samples, batch_size=batch_size,
                                **{"theta": 1.0, "gamma": 1.0, **jsma_kwargs})
    fractions = np.where(res.success, res.fraction_changed, np.inf)
    easiest = fractions.argmin(axis=1)[:, None]
    best = np.take_along_axis(fractions, easiest, axis=1)[:, 0]
    unbroken = np.isinf(best)
    per_sample = np.where(unbroken, 1.0, best)
    easiest_target = np.where(unbroken, -1, np.take_along_axis(res.targets, easiest, axis=1)[:, 0])
    return {"rho_adv": float(per_sample.mean()) if per_sample.size else math.nan, "per_sample": per_sample,
            "easiest_target": easiest_target, "indices": res.indices, "n": int(per_sample.size),
            "n_unbroken": int(unbroken.sum())}


# ---------------------------------------------------------------- decision-boundary similarity (Heo et al. 2019)


def _flat_pairs(v_t: torch.Tensor, v_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both perturbations as float64 (P, D): a batch (P, *features) is flattened, one vector (D,) becomes (1, D)."""
    if v_t.shape != v_s.shape:
        raise ValueError(f"perturbation shapes differ: {tuple(v_t.shape)} vs {tuple(v_s.shape)}")
    if v_t.dim() == 1:
        v_t, v_s = v_t[None], v_s[None]
    return v_t.detach().flatten(1).cpu().double(), v_s.detach().flatten(1).cpu().double()


def _mag_sims(v_t: torch.Tensor, v_s: torch.Tensor) -> torch.Tensor:
    """Per pair ``min(|v_t|, |v_s|) / max(|v_t|, |v_s|)`` (P,); two zero vectors count as equal (1)."""
    n_t, n_s = v_t.norm(dim=1), v_s.norm(dim=1)
    hi = torch.maximum(n_t, n_s)
    return torch.where(hi > 0, torch.minimum(n_t, n_s) / hi.clamp_min(1e-300), torch.ones_like(hi))


def _ang_sims(v_t: torch.Tensor, v_s: torch.Tensor) -> torch.Tensor:
    """Per pair cosine ``<v_t, v_s> / (|v_t| |v_s|)`` (P,); 0 when either vector is zero."""
    denom = v_t.norm(dim=1) * v_s.norm(dim=1)
    return torch.where(denom > 0, (v_t * v_s).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom))


def mag_sim(v_t: torch.Tensor, v_s: torch.Tensor) -> float:
    """MagSim (Heo et al. 2019): the mean over pairs of ``min(|v_t|, |v_s|) / max(|v_t|, |v_s|)``, in [0, 1].

    ``v_t``, ``v_s``: the teacher's and student's BSS perturbations, (P, *features) or one vector
    (D,); L2 norms over all features of a pair.
    """
    return float(_mag_sims(*_flat_pairs(v_t, v_s)).mean())


def ang_sim(v_t: torch.Tensor, v_s: torch.Tensor) -> float:
    """AngSim (Heo et al. 2019): the mean over pairs of the cosine ``<v_t, v_s> / (|v_t| |v_s|)``, in [-1, 1].

    Shapes as in :func:`mag_sim`.
    """
    return float(_ang_sims(*_flat_pairs(v_t, v_s)).mean())


def _bss_perturbations(model: nn.Module, x: torch.Tensor, k: torch.Tensor, batch_size: int,
                       **bss_kwargs: Any) -> torch.Tensor:
    """``craft_bss(model, x, target=k) - x`` in batches on the model's device, model in eval mode; on ``x``'s device."""
    dev = model_device(model)
    out = [x.detach()[:0]]
    with eval_mode(model):
        for xb, kb in zip(x.split(batch_size), k.split(batch_size)):
            xb = xb.to(dev)
            out.append((craft_bss(model, xb, target=kb.to(dev), **bss_kwargs) - xb).detach().to(x.device))
    return torch.cat(out)


def boundary_similarity(teacher: nn.Module, student: nn.Module, x: torch.Tensor, targets: str | torch.Tensor = "all",
                        *, y: torch.Tensor | None = None, eta: float = 0.3, eps: float = 1e-4, max_steps: int = 10,
                        seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """How alike two decision boundaries are around ``x``: MagSim and AngSim of BSS perturbations (Heo et al. 2019).

    Base samples are those where teacher and student predict the same class (and that class is
    ``y`` when labels are given). From each, ``attacks.craft_bss`` walks towards class k on the
    teacher (``v_t = x_bss_t - x``) and on the student (``v_s``), with the same ``eta``, ``eps`` and
    ``max_steps``. ``targets``: ``"all"`` (every class but the base class, C-1 pairs per sample),
    ``"sampled"`` (one per sample drawn by ``attacks.sample_bss_targets`` from the teacher, seeded)
    or a (N,) tensor of classes (pairs whose target is the base class are dropped).
    Returns ``mag_sim``, ``ang_sim`` (floats), per-pair ``mag`` and ``ang`` (P,) numpy, ``n_pairs``
    and ``n_samples``.
    """
    logits_t, logits_s = logits_of(teacher, x, batch_size), logits_of(student, x, batch_size)
    base = logits_t.argmax(1)
    keep = base == logits_s.argmax(1)
    if y is not None:
        keep &= base == y.to(base.device)
    n_classes = logits_t.shape[1]
    if isinstance(targets, torch.Tensor):
        targets = targets.to(base.device)
        idx = (keep & (targets != base)).nonzero().flatten()
        k = targets[idx]
    elif targets == "all":
        kept = keep.nonzero().flatten()
        idx = kept.repeat(n_classes - 1)
        k = (base[idx] + torch.arange(1, n_classes, device=base.device).repeat_interleave(len(kept))) % n_classes
    elif targets == "sampled":
        idx = keep.nonzero().flatten()
        gen = torch.Generator().manual_seed(seed)
        k = sample_bss_targets(torch.softmax(logits_t[idx], 1).cpu(), generator=gen).to(base.device)
    else:
        raise ValueError(f"targets must be 'all', 'sampled' or a tensor of classes, got {targets!r}")
    settings = {"eta": eta, "eps": eps, "max_steps": max_steps}
    v_t = _bss_perturbations(teacher, x[idx], k, batch_size, **settings)
    v_s = _bss_perturbations(student, x[idx], k, batch_size, **settings)
    flat_t, flat_s = _flat_pairs(v_t, v_s)
    mag, ang = _mag_sims(flat_t, flat_s), _ang_sims(flat_t, flat_s)
    return {"mag_sim": float(mag.mean()) if len(mag) else math.nan,
            "ang_sim": float(ang.mean()) if len(ang) else math.nan,
            "mag": mag.numpy(), "ang": ang.numpy(), "n_pairs": len(mag), "n_samples": int(keep.sum())}
