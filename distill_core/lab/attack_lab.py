"""One image, one attack, several models: what the Attack lab shows, computed in one call.

    res = attack_one_image({"standard": m1, "trades": m2}, "standard", x, y, "pgd", info=info, eps=0.3)
    res.x_adv, res.probs["trades"], res.series["margin"], res.saliency

The attack runs white-box on one model (``attacked``); the same adversarial image is then shown to
every model (transfer). Saliency is captum's, before and after, on the attacked model.

Which objective an attack follows, and whether a saturated softmax blinds it (METHODS.md 1a), is
one table, :data:`ATTACK_OPTIONS`: one :class:`AttackOption` per attack and loss (``loss=`` of
FGSM / PGD, ``on=`` of JSMA), named like the Defensive page's Break-it attacks
(:data:`~distill_core.papers.defensive.BREAK_ATTACKS`) where they are the same attack. The result
says whether the input gradient the attack follows was exactly zero at the image
(:func:`start_gradient_zero`), and :func:`unblinded_alternative` names the same attack on the logits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._torch import eval_mode, input_gradient, logits_of, model_device
from ..attacks import get_attack, run_attack
from ..attacks._common import attack_loss, jacobian_rows
from ..data import DatasetInfo
from ..explain import saliency
from ..papers.defensive import BREAK_ATTACKS

BLINDED = "can be blinded by a saturated softmax"
NOT_BLINDED = "not blinded by a saturated softmax"


@dataclass(frozen=True)
class AttackOption:
    """One attack with one of its objectives, and what a saturated softmax does to it.

    ``param`` / ``value``: the keyword that selects the objective (``"loss"`` of FGSM / PGD,
    ``"on"`` of JSMA) and its value; ``None`` for an attack with a single objective. ``short``:
    the option as a loss box shows it; ``name``: the whole attack (the Break-it label of
    :data:`~distill_core.papers.defensive.BREAK_ATTACKS` where ``break_key`` names the same
    attack); ``objective``: what the attack's trace calls its loss. ``blinded``: the untargeted
    attack's input gradient is exactly zero in float32 when the softmax is saturated;
    ``blinded_targeted``: the same for the targeted attack (the targeted cross-entropy
    ``-log p_t`` keeps its gradient where ``p_y`` saturates). Both measured on the zoo's
    defensive-T100 by tests/test_image_attack.py.
    """

    attack: str
    param: str | None
    value: str | None
    short: str
    name: str
    objective: str
    blinded: bool
    blinded_targeted: bool
    break_key: str | None = None

    def is_blinded(self, targeted: bool = False) -> bool:
        """Does a saturated softmax zero the input gradient of this attack (targeted or not)?"""
        return self.blinded_targeted if targeted else self.blinded

    def masking(self, targeted: bool = False) -> str:
        """``BLINDED`` or ``NOT_BLINDED``: the label every page writes beside the option."""
        return BLINDED if self.is_blinded(targeted) else NOT_BLINDED


def _loss_options(attack: str, label: str, *, ce: str | None = None, cw: str | None = None) -> list[AttackOption]:
    """The three ``loss=`` options of a gradient attack (``label``: how names call it, e.g. "PGD")."""
    return [
        AttackOption(attack, "loss", "ce", "cross-entropy (through the softmax, T = 1)",
                     BREAK_ATTACKS[ce] if ce else f"{label} on the softmax (cross-entropy at T = 1)",
                     "cross-entropy (maximised)", True, False, ce),
        AttackOption(attack, "loss", "cw", "C&W margin on the logits",
                     BREAK_ATTACKS[cw] if cw else f"C&W margin loss on the logits ({label})",
                     "C&W margin loss (maximised)", False, False, cw),
        AttackOption(attack, "loss", "softmax", "softmax probability p_y",
                     f"{label} on the softmax probability p_y", "minus p_y (maximised)", True, True),
    ]


ATTACK_OPTIONS: tuple[AttackOption, ...] = (
    *_loss_options("fgsm", "FGSM"),
    *_loss_options("pgd", "PGD", ce="pgd_softmax", cw="cw_margin"),
    *_loss_options("pgd_l2", "PGD-L2"),
    AttackOption("cw_linf", None, None, "C&W margin on the logits", BREAK_ATTACKS["cw_margin"],
                 "C&W margin loss (maximised)", False, False, "cw_margin"),
    AttackOption("cw_l2", None, None, "C&W objective on the logits", BREAK_ATTACKS["cw_l2"],
                 "C&W objective ||d||² + c·f (minimised)", False, False, "cw_l2"),
    AttackOption("jsma", "on", "logits", "JSMA on the logits Z", BREAK_ATTACKS["jsma_logits"],
                 "target-class logit Z_t (raised)", False, False, "jsma_logits"),
    AttackOption("jsma", "on", "softmax", "JSMA on the softmax", BREAK_ATTACKS["jsma_softmax"],
                 "target-class probability F_t (raised)", True, True, "jsma_softmax"),
    AttackOption("deepfool", None, None, "logit differences Z_k - Z_y", "DeepFool on the logits",
                 "distance to the nearest linearised boundary", False, False),
)


def attack_options(attack: str) -> list[AttackOption]:
    """The options of registry attack ``attack``, the default first; ``ValueError`` for an unknown attack."""
    get_attack(attack)
    return [o for o in ATTACK_OPTIONS if o.attack == attack]


def attack_option(attack: str, params: dict | None = None) -> AttackOption | None:
    """The option ``params`` select for ``attack`` (its ``loss=`` / ``on=``; absent: the default, the first).

    ``None`` for a custom loss (a callable ``loss=``), which no table can label; ``ValueError`` for
    an unknown attack or an unknown option name.
    """
    options = attack_options(attack)
    param = options[0].param
    if param is None or params is None or param not in params:
        return options[0]
    if not isinstance(params[param], str):
        return None
    found = [o for o in options if o.value == params[param]]
    if not found:
        raise ValueError(f"{attack}: unknown {param} {params[param]!r}; use one of "
                         f"{', '.join(str(o.value) for o in options)}")
    return found[0]


def unblinded_alternative(attack: str, params: dict | None = None, targeted: bool = False
                          ) -> tuple[AttackOption, dict] | None:
    """The same attack on the logits, for a blinded option: ``(option, params)`` with every other setting
    (eps, steps, ...) kept; PGD / FGSM get the C&W margin loss, JSMA goes on the logits. ``None``
    when the option is not blinded (``targeted``: as a targeted attack)."""
    current = attack_option(attack, params)
    if current is None or not current.is_blinded(targeted):
        return None
    alt = next(o for o in attack_options(attack) if o.param is not None and not o.is_blinded(targeted))
    return alt, {**(params or {}), alt.param: alt.value}


def start_gradient_zero(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, *,
                        target: torch.Tensor | None = None, **params) -> torch.Tensor:
    """Per sample (N,) bool: is the input gradient attack ``attack`` follows exactly zero at ``x``?

    The gradient each attack computes at its first step, taken at the clean image: the loss of
    FGSM / PGD / PGD-L2 (``loss=``, ``kappa=``, ``temperature=`` from ``params``), the C&W margin
    (``cw_linf``; ``cw_l2``'s ``c * f``), JSMA's two Jacobian rows (target, sum of the others) of
    the logits or the softmax (``on=``), DeepFool's rows ``d(Z_k - Z_y)/dx``. Exactly zero in
    float32 is what a saturated softmax gives (or a model that detaches its input); the attack
    then has no direction.
    """
    with eval_mode(model), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        y = y.to(x.device)
        target = None if target is None else target.to(x.device)
        if attack in ("fgsm", "pgd", "pgd_l2", "cw_linf", "cw_l2"):
            loss = "cw" if attack in ("cw_linf", "cw_l2") else params.get("loss", "ce")
            kappa = float(params.get("kappa", 0.0 if attack == "cw_l2" else 50.0))
            per_sample = attack_loss(loss, model(x), y, target, kappa=kappa,
                                     temperature=float(params.get("temperature", 1.0)))
            grads = input_gradient(per_sample.sum(), x)[None]
        else:
            logits = model(x.detach())
            k, n = logits.shape[1], len(x)
            rows = torch.arange(n, device=x.device)
            if attack == "jsma":
                t = y if target is None else target
                temperature = float(params.get("temperature", 1.0))
                on_logits = params.get("on", "logits") == "logits"
                fn = model if on_logits else (lambda v: torch.softmax(model(v) / temperature, 1))
                w = torch.zeros(2, n, k, device=x.device)
                w[0, rows, t] = 1
                w[1] = 1
                w[1, rows, t] = 0
            else:   # deepfool: one row per other class, one-hot(k) - one-hot(y)
                fn = model
                w = torch.eye(k, device=x.device)[None].expand(n, k, k).clone()
                w -= torch.nn.functional.one_hot(y, k).to(w.dtype)[:, None, :]
                w = w.transpose(0, 1)
            _, grads = jacobian_rows(fn, x.detach(), w)
    return (grads.flatten(2) == 0).all(2).all(0).cpu()


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
    attack: str = ""                                 # the registry name of the attack
    gradient_zero: bool = False                      # the input gradient it follows was exactly 0 at the image

    @property
    def option(self) -> AttackOption | None:
        """The attack's :class:`AttackOption` (its objective and whether a saturated softmax blinds it)."""
        return attack_option(self.attack, self.settings) if self.attack else None

    @property
    def gradient_masked(self) -> bool:
        """The attack failed and its input gradient was exactly zero from the start: it got no signal."""
        return self.gradient_zero and not self.success

    def alternative(self) -> tuple[AttackOption, dict] | None:
        """:func:`unblinded_alternative` of this attack's settings (``None`` for an option that is not blinded)."""
        return unblinded_alternative(self.attack, self.settings, self.target is not None) if self.attack else None

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
    saliency. ``gradient_zero`` of the result: :func:`start_gradient_zero` at ``x`` (computed
    outside the timed attack). Raises ``KeyError`` for an unknown ``attacked`` and ``ValueError``
    for bad options.
    """
    model = models[attacked]
    attack_option(attack, params)        # an unknown loss / on value is a ValueError before anything runs
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
        zero = bool(start_gradient_zero(model, x.to(dev), torch.tensor([int(y)], device=dev), attack,
                                        target=kwargs.get("target"), **params)[0])
    batch = torch.cat([x, x_adv])
    probs = {}
    for name, m in models.items():
        p = torch.softmax(logits_of(m, batch).double(), 1).numpy()
        probs[name] = (p[0], p[1])
    sal = ((saliency(model, x).numpy(), saliency(model, x_adv).numpy()) if with_saliency
           else (np.zeros_like(x.numpy()), np.zeros_like(x.numpy())))
    return ImageAttackResult(x=x.numpy(), x_adv=x_adv.numpy(), y=int(y), target=target, attacked=attacked,
                             probs=probs, saliency=sal, series=trace_series(trace), seconds=seconds,
                             settings={k: v for k, v in params.items()}, attack=attack, gradient_zero=zero)
