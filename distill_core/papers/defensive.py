"""Defensive distillation (Papernot et al., IEEE S&P 2016) and how it is broken (Carlini & Wagner 2016/2017).

METHODS.md sections 1 and 1a. The one implementation of the paper's procedure and of its
breaking, used by the Defensive distillation page, ``python -m distill_core reproduce papernot``
and the tests:

- :func:`defensive_specs`: the pipeline as :class:`~distill_core.spec.TrainSpec` stages
  ([a shared 1-epoch initial model ->] teacher at T -> student at T on its soft labels, the
  student deployed at T = 1). The page's background job (``ui.jobs.TrainingJob``) runs them
  writing run folders; :func:`train_defensive` runs them in this process (the reproduction:
  many T, one initial model);
- :func:`break_defensive`: the *Break it* protocol, with its result keys and labels
  :data:`BREAK_ATTACKS`: the attacks a saturated softmax blinds next to the ones that get
  through, and the exact-zero gradient count; :func:`break_verdict` reads its result (masked,
  partly masked, not masked) into the sentences the page prints;
- :data:`DEFAULT_T`, :func:`default_train`, :data:`DEFAULT_BREAK_N`: the page's defaults, measured
  by ``bench/defensive_defaults.py``;
- :func:`sweep_rows` / :func:`sweep_baseline`: the T sweep of ``reproduce papernot``'s results.json.

Models take pixels in [0, 1] and return logits; inputs ``x`` (N, *input), labels ``y`` (N,) int64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .._torch import eval_mode, predict
from ..attacks import attack_defaults, run_attack
from ..data import DatasetInfo
from ..evaluate import gradient_amplitude_stats, targeted_success_rate
from ..methods import build_method
from ..models import build_model
from ..spec import TrainSpec
from ..train import Event, StopToken, TrainConfig, Trainer, run_to_end, seed_everything

PAPERNOT_TEMPERATURES = (1, 2, 5, 10, 20, 30, 40, 50, 100)
GRAD_LOG10_RANGE = (-45.0, 0.0)    # float32 denormals reach 1e-45; a softmax gradient is below 1
POINT_DATASETS = ("moons", "circles", "spirals", "blobs")
INIT_EPOCHS = 1                    # the reference code's shared initial model: 1 epoch at T = 1

# The Defensive page's defaults, read by the page's widgets and by defensive_specs (one source of truth). T = 100
# needs the teacher's logits to grow about 100-fold, which Adam at lr 2e-3 reaches in 4 epochs of the 4,000 images;
# T = 20 with 1 epoch at lr 1e-3 (the old defaults) left the student 6-9 points below its teacher and the masking
# partial. What the defaults give is MEASURED_DEFAULTS, from bench/defensive_defaults.py.
DEFAULT_T = 100.0
DEFAULT_BREAK_N = 30               # Break it: test images (JSMA: each towards the 9 other classes)
IMAGE_TRAIN = TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=2e-3)
POINT_TRAIN = TrainConfig(epochs=20, batch_size=64, optimizer="adam", lr=1e-2)

# Measured on 2026-11-30 with `OMP_NUM_THREADS=1 python bench/defensive_defaults.py --seed S`, S = 0, 1, 2: the
# page's path (a TrainingJob worker process, per-epoch test evaluation, then break_defensive on DEFAULT_BREAK_N
# images with the undistilled zoo model as transfer source), on a shared 2-core CPU. Per seed (0, 1, 2): teacher
# 95.0 / 95.3 / 93.9 %, student 94.3 / 94.1 / 92.8 %; JSMA on the softmax 0.0 / 0.4 / 0.7 %, PGD on the softmax
# 0.0 / 6.7 / 6.7 %; zero softmax gradients 30 / 29 / 28 of 30; JSMA on the logits 46.7 / 45.6 / 45.2 % (on the
# undistilled model 58.5 / 57.9 / 57.8 %); PGD on Z/T 90.0 / 93.3 / 90.0 %; C&W margin 86.7 / 93.3 / 90.0 %;
# transfer 83.3 / 86.7 / 60.0 %; seconds training 33.4 / 28.3 / 28.6, Break it 16.6 / 16.3 / 22.4.
# The old defaults (--T 20 --epochs 1 --lr 1e-3, seed 0): teacher 84.0 %, student 77.8 %, JSMA / PGD on the softmax
# 25.6 / 53.3 %, 6 of 30 zero gradients (partly masked), 26 s.
MEASURED_DEFAULTS = {
    "command": "OMP_NUM_THREADS=1 python bench/defensive_defaults.py --seed S",
    "seeds": "0, 1, 2",
    "teacher": "93.9-95.3 %",
    "student": "92.8-94.3 %",
    "gap": "1.2",
    "train_s": "28-33 s",
    "break_s": "16-22 s",
    "total_s": "45-51 s",
    "softmax_side": "at most 6.7 % (JSMA at most 0.7 %)",
    "zero_grad": "28-30 of 30",
    "logit_side": "87-93 %",
    "jsma_logits": "45-47 %",
    "jsma_logits_undistilled": "58 %",
    "old_defaults": ("a student 6.2 points below its teacher (77.8 vs 84.0 %), JSMA / PGD on the softmax at 26 / 53 % "
                     "and 6 of 30 zero gradients: partly masked"),
}


def default_train(dataset: str) -> TrainConfig:
    """The loop both stages use by default: :data:`IMAGE_TRAIN` for image sets, :data:`POINT_TRAIN` for 2-D ones."""
    return POINT_TRAIN if dataset in POINT_DATASETS else IMAGE_TRAIN


# ---------------------------------------------------------------- the pipeline


def defensive_specs(dataset: str, T: float, epochs: int | None = None, seed: int | None = None,
                    eval_samples: int | None = None, *, shared_init: bool = False, model: str | None = None,
                    train: TrainConfig | None = None, fraction: float = 1.0) -> list[TrainSpec]:
    """The stages of defensive distillation (Papernot et al. 2016, METHODS.md 1) as :class:`TrainSpec`, in order.

    - ``init`` (only with ``shared_init``): the reference code's initial model, ``standard`` at
      T = 1 for :data:`INIT_EPOCHS` epoch; teacher and student start from its weights
      (``init="@0"``);
    - ``teacher``: ``standard`` at temperature ``T``, i.e. CE(softmax(Z / T), y);
    - ``student``: ``defensive`` at the same ``T`` on the teacher's soft labels
      (``teachers={"teacher": "@k"}``, k the teacher's stage), same architecture. Deployed at
      T = 1: its logits are used as they are.

    ``"@i"`` names the model of stage i: ``ui.jobs.TrainingJob`` resolves it to that stage's run
    folder, :func:`train_defensive` to the model in memory. Without ``shared_init`` both stages
    start from the same seed, hence the same initial weights (the shared init without its epoch).

    ``model`` defaults to Papernot's CNN for image sets and an MLP for 2-D sets; ``train`` (the
    loop of teacher and student) to :func:`default_train`, a CPU-sized Adam loop, batch 64: 4 epochs
    at lr 2e-3 (images) or 20 at lr 1e-2 (points). ``epochs``, ``seed`` and ``eval_samples`` replace its fields when
    given. ``fraction`` is the share of the train split. Returns 2 specs (teacher, student), or 3
    with ``shared_init`` (init, teacher, student). Raises ``ValueError`` when ``T`` is not > 0.
    """
    if not T > 0:
        raise ValueError(f"the temperature must be > 0, got {T}")
    image = dataset not in POINT_DATASETS
    if train is None:
        train = default_train(dataset)
    changes = {k: v for k, v in (("epochs", epochs), ("seed", seed), ("eval_samples", eval_samples)) if v is not None}
    train = dataclasses.replace(train, **changes)
    base = TrainSpec(dataset=dataset, model=model or ("papernot-cnn" if image else "mlp"), method="standard",
                     method_config={"T": float(T)}, train=train, fraction=fraction)
    init = "@0" if shared_init else None
    teacher = dataclasses.replace(base, init=init)
    student = dataclasses.replace(base, method="defensive", teachers={"teacher": f"@{int(shared_init)}"}, init=init)
    if not shared_init:
        return [teacher, student]
    first = dataclasses.replace(base, method_config={"T": 1.0},
                                train=dataclasses.replace(train, epochs=INIT_EPOCHS))
    return [first, teacher, student]


def model_role(method: str, T: float) -> str:
    """What a model is in defensive distillation, from its training method and temperature (for labels).

    ``defensive`` -> "defensive student, T = 100"; ``standard`` trained at T != 1 -> "defensive
    teacher, T = 100" (a run's config says ``standard`` with ``method_config`` T: the teacher is
    plain training at T); ``standard`` at T = 1 -> "undistilled (standard, T = 1)"; any other
    method -> its name.
    """
    if method == "defensive":
        return f"defensive student, T = {T:g}"
    if method == "standard":
        return f"defensive teacher, T = {T:g}" if T != 1 else "undistilled (standard, T = 1)"
    return method


ACCURACY_GAP_MAX = 0.02     # the student within this of its teacher: the paper's "about 1 %" cost


def accuracy_sentence(teacher: float, student: float) -> str:
    """The training result in words, from the two test accuracies (fractions): is the student close to its teacher?"""
    gap = teacher - student
    if gap <= 0:
        return ("The student is as accurate as its teacher or better: distillation cost no accuracy, as the paper "
                "reports (about 1 %).")
    if gap <= ACCURACY_GAP_MAX:
        return (f"The student is {100 * gap:.1f} points below its teacher: distillation cost almost no accuracy, as "
                "the paper reports (about 1 %).")
    return (f"The student is {100 * gap:.1f} points below its teacher (the paper reports about 1 %): it is "
            "undertrained; more epochs per stage close the gap and saturate its softmax further.")


def stage_roles(specs: Sequence[TrainSpec]) -> list[str]:
    """The role of each stage of :func:`defensive_specs` (or of its first stages): init, teacher or student.

    A stage whose weights start a later one is the ``init``; one with a teacher the ``student``;
    any other the ``teacher``.
    """
    inits = {spec.init for spec in specs}
    return ["init" if f"@{i}" in inits else "student" if spec.teachers else "teacher" for i, spec in enumerate(specs)]


def _stage_model(models: Sequence[nn.Module | None], ref: str, what: str) -> nn.Module:
    """The model of an earlier stage named ``"@i"``."""
    i = int(ref[1:]) if ref.startswith("@") and ref[1:].isdigit() else -1
    if not 0 <= i < len(models) or models[i] is None:
        raise ValueError(f"{what} refers to {ref!r}: train_defensive takes only '@i' references to earlier, "
                         "trained stages")
    return models[i]


def train_defensive(specs: Sequence[TrainSpec], data: tuple[Dataset, Dataset | None], info: DatasetInfo, *,
                    trained: Mapping[int, nn.Module] | None = None, stop: StopToken | None = None,
                    on_event: Callable[[str, Event], None] | None = None, require_done: bool = False,
                    ) -> tuple[list[nn.Module | None], str]:
    """Train the stages of :func:`defensive_specs` in this process (no run folders); return the models and the status.

    ``data`` is ``(train, test)`` of the specs' dataset as the caller loaded it (test None: no
    per-epoch evaluation) and ``info`` its :class:`DatasetInfo`; ``ValueError`` when a spec
    names another dataset. ``trained`` maps stage indices to models already trained, which are
    used as they are: the reproduction shares one initial model across every T, and its
    undistilled model is the T = 1 teacher. Every other stage builds its model seeded with
    ``spec.train.seed``, loads the weights of its ``init`` stage, takes its ``teachers`` stages
    and runs a :class:`~distill_core.train.Trainer` to its end (``train.run_to_end``) with
    ``stop`` (an object with ``is_set()``). ``on_event(role, event)`` sees every event, role from
    :func:`stage_roles`. ``specs`` may be the first stages only (the reproduction's initial and
    undistilled models are ``defensive_specs(..., 1.0, shared_init=True)[:2]``).

    Returns ``(models, status)``: one model per stage in eval mode, ``None`` for a stage not
    reached (the student's logits are what it deploys at T = 1), and ``"done"`` or the final
    event kind that ended the pipeline early; with ``require_done`` an early end raises
    ``RuntimeError`` instead.
    """
    models: list[nn.Module | None] = []
    for i, (role, spec) in enumerate(zip(stage_roles(specs), specs)):
        if trained is not None and i in trained:
            models.append(trained[i].eval())
            continue
        if spec.dataset != info.name:
            raise ValueError(f"the {role} is specified on {spec.dataset!r} but the data is {info.name!r}")
        seed_everything(spec.train.seed)
        model = build_model(spec.model, info, **spec.model_options)
        if spec.init is not None:
            model.load_state_dict(_stage_model(models, spec.init, f"the {role}'s init").state_dict())
        teachers = {r: _stage_model(models, ref, f"the {role}'s teacher {r!r}") for r, ref in spec.teachers.items()}
        method = build_method(spec.method, model, spec.method_config, teachers, info)
        label = f"the {role} (T = {spec.method_config.get('T', 1.0):g})" if require_done else None
        final = run_to_end(Trainer(method, data, spec.train, stop=stop),
                           None if on_event is None else (lambda event, role=role: on_event(role, event)), label)
        models.append(model.eval())
        if final.kind != "done":
            return models + [None] * (len(specs) - len(models)), final.kind
    return models, "done"


# ---------------------------------------------------------------- breaking it (Carlini & Wagner)


# The Break-it result's keys and their labels, in the protocol's order: the page's table, its figure and the
# reproduction's results.md all name the attacks with these.
BREAK_ATTACKS: dict[str, str] = {
    "jsma_softmax": "JSMA on the softmax (Papernot's attack)",
    "pgd_softmax": "PGD on the softmax (cross-entropy at T = 1)",
    "jsma_logits": "JSMA on the logits Z",
    "pgd_z_over_t": "PGD on softmax(Z / T)",
    "cw_margin": "C&W margin loss on the logits (PGD)",
    "cw_l2": "CW-L2 (Carlini & Wagner's L2 attack)",
    "transfer": "Transfer from the undistilled model",
}
MASKED_ATTACKS = ("jsma_softmax", "pgd_softmax")    # through the saturated softmax: what the defence blinds


def break_defensive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, T: float, *,
                    source: nn.Module | None = None, n: int = 100, cw_l2: bool = False,
                    info: DatasetInfo | None = None, seed: int = 0, jsma_gamma: float | None = None,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Attack a defensively distilled model the way that fails and the ways that work (METHODS.md 1a).

    The one *Break it* protocol. On the first ``n`` test samples the model classifies correctly,
    every attack with the dataset's default settings (``attacks.attack_defaults``; MNIST: Linf
    eps 0.3 in 40 steps of 0.01):

    - ``jsma_softmax``: JSMA on ``softmax(Z)`` (deployed at T = 1), the attack the paper reports,
      with Papernot's protocol (``evaluate.targeted_success_rate``): each sample towards each of
      the C - 1 other classes, at most ``jsma_gamma`` of the features (default 14.5 %), theta +1;
    - ``pgd_softmax``: PGD-Linf on the cross-entropy of ``softmax(Z)``;
    - ``jsma_logits``: JSMA on the logits, same protocol: the saturated softmax no longer matters.
      JSMA's pixel cap limits it on any model (about 55-60 % on the undistilled mnist-5k CNN), so
      with ``source`` the row's ``source_success`` is the same attack's rate on the undistilled
      model (on the images it classifies correctly among the N): the reference to compare with;
    - ``pgd_z_over_t``: PGD-Linf on the cross-entropy of ``softmax(Z / T)`` (divide by the training T);
    - ``cw_margin``: PGD-Linf on C&W's margin loss (``cw_linf``, kappa 50), which ignores the
      softmax's scale;
    - ``cw_l2`` (with ``cw_l2``): Carlini & Wagner's L2 attack, 100 Adam steps of 0.1 for each of
      9 binary-search steps over c from 1e-3 (slow on a CPU); the row's ``median_l2`` is the
      median L2 distance of its successes (``nan`` when none);
    - ``transfer`` (when ``source``, the undistilled model, is given): PGD on ``source``, the
      adversarial images then classified by ``model``; the row's ``source_success`` is how often
      they fool ``source`` itself.

    :func:`break_verdict` reads the result: masked, partly masked or not masked.

    ``success`` is the fraction of attacks that reach the target (JSMA: N x (C - 1) of them) or
    misclassify the sample (the others). Also the gradient-masking diagnostic: how many of the
    N samples have an input Jacobian exactly zero in float32, through the softmax and through
    the logits. Seeded; the caller's RNG state is restored. ``progress(done, total,
    next_attack)`` is called before each attack (and once at the end, for the zero count).
    Raises ``ValueError`` when the model classifies none of the samples correctly.

    Returns ``{"T", "n": N, "rows": [{"key", "attack", "success", "n", "masked", "detail"}, ...]
    (keys of :data:`BREAK_ATTACKS`, in its order), "zero_grad": {"softmax", "logits", "n"},
    "indices": [N ints into x], "settings": {attack: kwargs}}``, plain Python (JSON-ready).
    """
    settings = {name: attack_defaults(name, info) for name in ("jsma", "pgd", "cw_linf")}
    if jsma_gamma is not None:
        settings["jsma"]["gamma"] = jsma_gamma
    settings["cw_l2"] = attack_defaults("cw_l2", info) if cw_l2 else None
    pgd, jsma = settings["pgd"], settings["jsma"]
    keys = [k for k in BREAK_ATTACKS if (k != "cw_l2" or cw_l2) and (k != "transfer" or source is not None)]
    rows: list[dict[str, Any]] = []

    def step(key: str) -> None:
        if progress is not None:
            progress(len(rows), len(keys), BREAK_ATTACKS.get(key, key))

    def add(key: str, success: float, n_attacks: int, detail: str, **extra: Any) -> None:
        rows.append({"key": key, "attack": BREAK_ATTACKS[key], "success": float(success), "n": n_attacks,
                     "masked": key in MASKED_ATTACKS, "detail": detail, **extra})

    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        step("jsma_softmax")
        soft = targeted_success_rate(model, x, y, "jsma", n, info=info, on="softmax", **jsma)
        if len(soft.indices) == 0:
            raise ValueError("the model classifies none of these samples correctly: nothing to attack")
        idx = torch.as_tensor(soft.indices, device=x.device)
        xs, ys = x[idx], y.to(x.device)[idx]
        jsma_detail = (f"targeted, each image towards the {soft.success.shape[1]} other classes, "
                       f"at most {100 * jsma['gamma']:.1f} % of the pixels")
        add("jsma_softmax", soft.rate, soft.success.size, jsma_detail)

        def fooled(x_adv: torch.Tensor, by: nn.Module = model) -> float:
            return float((predict(by, x_adv) != ys).float().mean())

        budget = f"eps {pgd['eps']:.3g}, {pgd['steps']} steps of {pgd['alpha']:.3g}"
        step("pgd_softmax")
        add("pgd_softmax", fooled(run_attack("pgd", model, xs, ys, **pgd)), len(ys), budget)
        step("jsma_logits")
        logits = targeted_success_rate(model, xs, ys, "jsma", None, info=info, on="logits", **jsma)
        if source is None:
            add("jsma_logits", logits.rate, logits.success.size, jsma_detail)
        else:       # JSMA's pixel cap limits it on any model: the undistilled model's rate is the reference
            with eval_mode(source):
                ref = targeted_success_rate(source, xs, ys, "jsma", None, info=info, on="logits", **jsma)
            add("jsma_logits", logits.rate, logits.success.size, f"{jsma_detail}; on the undistilled model the same "
                f"attack succeeds {100 * ref.rate:.0f} %", source_success=ref.rate)
        step("pgd_z_over_t")
        add("pgd_z_over_t", fooled(run_attack("pgd", model, xs, ys, temperature=float(T), **pgd)), len(ys),
            f"{budget}, logits divided by T = {T:g}")
        step("cw_margin")
        cw = settings["cw_linf"]
        add("cw_margin", fooled(run_attack("cw_linf", model, xs, ys, **cw)), len(ys),
            f"eps {cw['eps']:.3g}, {cw['steps']} steps of {cw['alpha']:.3g}, kappa {cw['kappa']:g}")
        if cw_l2:
            step("cw_l2")
            c = settings["cw_l2"]
            x_cw = run_attack("cw_l2", model, xs, ys, **c)
            hit = predict(model, x_cw) != ys
            med = float((x_cw - xs).flatten(1).norm(dim=1)[hit].median()) if bool(hit.any()) else math.nan
            add("cw_l2", float(hit.float().mean()), len(ys),
                f"{c['steps']} Adam steps of {c['lr']:g} x {c['binary_search_steps']} binary-search steps from "
                f"c = {c['c']:g}; median L2 of the successes {med:.2f}", median_l2=med)
        if source is not None:
            step("transfer")
            with eval_mode(source):
                x_tr = run_attack("pgd", source, xs, ys, **pgd)
                own = fooled(x_tr, source)
            add("transfer", fooled(x_tr), len(ys), f"PGD ({budget}) on the undistilled model, which it fools "
                f"{100 * own:.0f} %", source_success=own)
        step("the zero-gradient count")
        zero_soft = gradient_amplitude_stats(model, xs, "softmax")["n_zero"]
        zero_logit = gradient_amplitude_stats(model, xs, "logits")["n_zero"]
    return {"T": float(T), "n": len(ys), "rows": rows,
            "zero_grad": {"softmax": zero_soft, "logits": zero_logit, "n": len(ys)},
            "indices": [int(i) for i in soft.indices], "settings": settings}


def break_rates(result: Mapping) -> dict[str, float]:
    """``{key: success}`` of a :func:`break_defensive` result (the attacks it ran)."""
    return {r["key"]: r["success"] for r in result["rows"]}


BLINDED_MAX = 0.10           # softmax-side success at or below this: the attacks are blinded
ZERO_GRAD_HIGH = 0.80        # ... and at least this share of exactly-zero softmax gradients: masked
THROUGH_MIN = 0.80           # logit-side success at or above this: the attack gets through
NOT_MASKED_GAP = 0.20        # softmax side within this of the logit side, and (almost) no zero gradient: not masked
NOT_MASKED_ZERO = 0.05
LOGIT_SIDE = ("jsma_logits", "pgd_z_over_t", "cw_margin", "cw_l2")


@dataclasses.dataclass(frozen=True)
class BreakVerdict:
    """What a :func:`break_defensive` result shows: ``kind`` is "masked", "partly masked" or "not masked".

    ``headline`` is one short line, ``text`` the sentences to print beside the chart, every number
    in them from the result: ``softmax_side`` (the best softmax-side attack's success),
    ``logit_side`` (the best logit-side one's), ``zero_share`` (exactly-zero softmax gradients / N).
    """

    kind: str
    headline: str
    text: str
    softmax_side: float
    logit_side: float
    zero_share: float


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def break_verdict(result: Mapping) -> BreakVerdict:
    """Read a :func:`break_defensive` result: is the softmax masked, partly, or not? (pure; the page prints it)

    - **masked** ("blinded"): every softmax-side attack (:data:`MASKED_ATTACKS`) succeeds on at
      most :data:`BLINDED_MAX` and at least :data:`ZERO_GRAD_HIGH` of the softmax gradients are
      exactly zero;
    - **not masked**: (almost) no softmax gradient is zero (below :data:`NOT_MASKED_ZERO`) and the
      softmax-side attacks do about as well as the logit-side ones (within :data:`NOT_MASKED_GAP`):
      nothing hides the gradient; the text then says whether the attacks work or all fail alike;
    - **partly masked** otherwise, with the measured share of zero gradients.

    The text also says whether the logit-side attacks get through (at least :data:`THROUGH_MIN`)
    and, for JSMA on the logits, the undistilled model's rate when the result has it.
    """
    rows = {r["key"]: r for r in result["rows"]}
    zg = result["zero_grad"]
    zero = zg["softmax"] / zg["n"] if zg["n"] else 0.0
    soft = {k: rows[k]["success"] for k in MASKED_ATTACKS if k in rows}
    logit = {k: rows[k]["success"] for k in LOGIT_SIDE if k in rows}
    soft_max = max(soft.values(), default=0.0)
    logit_max = max(logit.values(), default=0.0)
    n = result["n"]
    soft_txt = " and ".join(f"{BREAK_ATTACKS[k]} {_pct(v)}" for k, v in soft.items())
    zero_txt = f"{zg['softmax']} of {zg['n']} images ({_pct(zero)}) have an exactly-zero softmax gradient"
    through = [k for k, v in logit.items() if v >= THROUGH_MIN]
    logit_txt = ", ".join(f"{BREAK_ATTACKS[k]} {_pct(v)}" for k, v in logit.items())
    jl = rows.get("jsma_logits", {})
    if jl.get("source_success") is not None:
        logit_txt += (f" (JSMA on the logits reaches {_pct(jl['source_success'])} on the undistilled model too: "
                      "its pixel cap, not the defence, limits it)")
    if soft_max <= BLINDED_MAX and zero >= ZERO_GRAD_HIGH:
        kind = "masked"
        headline = f"Masked: the softmax-side attacks are blind, {zg['softmax']} / {zg['n']} softmax gradients are 0"
        text = f"**Masked.** Through the saturated softmax the attacks are blind: {soft_txt} on {n} images; {zero_txt}."
    elif zero < NOT_MASKED_ZERO and soft_max >= logit_max - NOT_MASKED_GAP:
        kind = "not masked"
        if soft_max >= THROUGH_MIN:
            headline = "Not masked: the softmax-side attacks work"
            text = (f"**Not masked.** {soft_txt} on {n} images, and {zero_txt}: the softmax hides nothing, the "
                    "plain attacks work.")
        else:
            headline = "Not masked: every attack does about as badly through the softmax as past it"
            text = (f"**Not masked.** {soft_txt} on {n} images, and {zero_txt}: the attacks do about as badly "
                    "through the softmax as past it, which is resistance, not masking (AutoAttack is the check).")
    else:
        kind = "partly masked"
        headline = f"Partly masked: {zg['softmax']} / {zg['n']} softmax gradients are 0"
        text = (f"**Partly masked.** {soft_txt} on {n} images: the softmax-side attacks are hampered, not blind; "
                f"{zero_txt}." + (" A higher T or more epochs per stage saturate the softmax further."
                                  if zero < ZERO_GRAD_HIGH else ""))
    text += f" Past the softmax: {logit_txt}."
    if through and kind != "not masked":
        text += (" The same budget spent past the softmax gets through: the defence hides the gradient, it does not "
                 "make the model robust.")
    elif not through:
        text += f" No logit-side attack reaches {_pct(THROUGH_MIN)} here."
    return BreakVerdict(kind, headline, text.strip(), soft_max, logit_max, zero)


# ---------------------------------------------------------------- the T sweep (Papernot et al. 2016)


SWEEP_NUMBERS = ("test_accuracy", "jsma_softmax_success", "rho_adv", "confidence", "zero_grad_fraction",
                 "robust_accuracy", "apparent_robust_accuracy")


def _sweep_point(p: Mapping, T: float | None = None) -> dict[str, Any]:
    """One point: its ``T``, :data:`SWEEP_NUMBERS` as floats (``nan`` where missing or null) and its ``grad_hist``."""
    row: dict[str, Any] = {**p, "T": float(p["T"] if T is None else T)}
    for k in SWEEP_NUMBERS:
        row[k] = math.nan if p.get(k) is None else float(p[k])
    return row


def sweep_rows(results: Mapping) -> list[dict[str, Any]]:
    """The points of a ``reproduce papernot`` results.json's ``"sweep"``, sorted by T.

    Each point keeps what the reproduction wrote (``T``, ``test_accuracy``,
    ``jsma_softmax_success``, ``rho_adv``, ``confidence``, ``zero_grad_fraction``, ``grad_hist``
    with ``edges`` in log10 units and ``counts``, the AutoAttack fields...), with
    :data:`SWEEP_NUMBERS` as floats (fractions; ``nan`` where missing or null, as JSON writes
    nan). Raises ``ValueError`` when ``results`` has no ``"sweep"`` list of points with ``T``.
    """
    points = results.get("sweep") if isinstance(results, Mapping) else None
    if not isinstance(points, list) or not all(isinstance(p, Mapping) and p.get("T") is not None for p in points):
        raise ValueError("not a papernot results.json: it needs a 'sweep' list of points, each with its T")
    return sorted((_sweep_point(p) for p in points), key=lambda r: r["T"])


def sweep_baseline(results: Mapping) -> dict[str, Any] | None:
    """The undistilled model of a papernot results.json (``"undistilled"``) as a point at T = 1, or None."""
    base = results.get("undistilled")
    return _sweep_point(base, 1.0) if isinstance(base, Mapping) else None
