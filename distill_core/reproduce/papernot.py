"""Defensive distillation's temperature sweep (Papernot et al., IEEE S&P 2016), and how it breaks (Carlini & Wagner).

METHODS.md section 1 and 1a. The pipeline and the *Break it* protocol are the ones of
:mod:`distill_core.papers.defensive` (the Defensive distillation page runs the same):
``defensive_specs(..., shared_init=True)`` trained by ``train_defensive``, and ``break_defensive``.
One initial model is trained for 1 epoch at T = 1 and shared by every teacher and student, as
the reference code shares one between a teacher and its student (sharing it across T as well
makes every temperature start from the same weights). Then:

- the **undistilled** model: the T = 1 teacher (``standard`` at T = 1 from the initial model),
  Papernot's baseline and the source of the transfer attack;
- for each T, a **teacher** trained with ``standard`` at T and a **student** of the same
  architecture trained with ``defensive`` at T on the teacher's soft labels, deployed at T = 1.

Each deployed model is measured as in the paper: test accuracy, targeted JSMA success on the
softmax (the first ``n_jsma`` correctly classified test samples, each towards the 9 other
classes, gamma = 14.5 %, theta = +1), ``rho_adv`` (uncapped JSMA on the softmax), mean
confidence, and the histogram of the softmax's adversarial gradient amplitude with its exact
zeros. The highest-T student is then broken with ``break_defensive`` on ``n_break`` samples:
JSMA and PGD through the softmax next to JSMA on the logits, PGD on ``softmax(Z / T)``, the C&W
margin loss, CW-L2 and PGD examples transferred from the undistilled model, and the exact-zero
gradient count.

Every deployed model also gets the lab's robust accuracy (METHODS.md section 6): AutoAttack
(``robustness.evaluate_robustness``, standard version) at the dataset's Linf eps (MNIST 0.3) on
the first ``n_robust`` test samples, with the apparent PGD-CE number of the same report. Carlini &
Wagner's point in one row: at T = 100 the apparent robustness is high (the CE gradient is exactly
zero) while AutoAttack's stays at the undistilled model's (the zoo's defensive-T100, METHODS.md
section 6: PGD-20 85.8 %, AutoAttack 0 %). A model within 5 points of chance accuracy is marked
"did not train" and no claim rests on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import DatasetInfo, load_dataset
from ..evaluate import (
    accuracy,
    gradient_amplitude_stats,
    log10_histogram,
    mean_confidence,
    rho_adv,
    targeted_success_rate,
)
from ..papers.defensive import (
    BREAK_ATTACKS,
    GRAD_LOG10_RANGE,
    MASKED_ATTACKS,
    break_defensive,
    break_rates,
    defensive_specs,
    stage_roles,
    train_defensive,
)
from ..robustness import MASKING_GAP
from ..train import Event
from ._common import (
    SPLIT_SEED,
    Log,
    chance_accuracy,
    expectation,
    expectations_markdown,
    markdown_table,
    pct,
    points,
    protocol_record,
    robust_accuracy,
    train_config,
    trained,
    untrained_note,
)

# What "the effect showed" means, as fractions of attacked samples.
HIGH_SUCCESS = 0.5       # an attack that works
LOW_SUCCESS = 0.1        # an attack that distillation stopped
BROKEN = 0.9             # "back near 100 %"
ACCURACY_COST = 0.02     # "accuracy changes by about 1 % or less", with 1 point of slack for short training
NOT_ROBUST = 0.05        # "not more robust": AutoAttack accuracy within 5 points of the undistilled model's


@dataclass(frozen=True)
class Settings:
    """Everything the papernot reproduction depends on (stored in results.json).

    The Break-it attacks' own settings are ``break_defensive``'s protocol (the dataset's attack
    defaults), stored with its result.
    """

    dataset: str = "mnist-5k"
    model: str = "papernot-cnn"
    temperatures: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100)
    epochs: int = 4                   # teacher and student each; the shared initial model gets 1
    train_fraction: float = 1.0       # share of the train split used for training
    batch_size: int = 64
    lr: float = 1e-3                  # Adam (the reference code: SGD 0.01, 50 epochs)
    n_test: int | None = None         # accuracy and confidence on the first n test samples (None: all)
    n_jsma: int = 100                 # correctly classified samples attacked towards each of the 9 other classes
    gamma: float = 0.145              # JSMA's cap: 112 of 784 pixels
    theta: float = 1.0
    n_rho: int = 20                   # samples for rho_adv (uncapped JSMA on the softmax)
    n_grad: int = 1000                # samples for the gradient amplitude histogram
    grad_bins: int = 45               # log10 bins over GRAD_LOG10_RANGE
    n_break: int = 100                # correctly classified samples attacked in "break it" (CW-L2 included)
    protocol: str = "autoattack"      # robust accuracy: robustness.evaluate_robustness's protocol, at info.default_eps
    n_robust: int = 500               # ... on the first n_robust test samples
    seed: int = 0


QUICK = dict(temperatures=(1, 20, 100), epochs=1, train_fraction=0.25, batch_size=32, lr=2e-3, n_test=500, n_jsma=3,
             n_rho=1, n_grad=50, n_break=4, n_robust=40)


def settings(quick: bool = False, seed: int = 0) -> Settings:
    """The full settings, or the quick ones (3 temperatures, 1 epoch on a quarter of the data, few samples)."""
    return dataclasses.replace(Settings(**(QUICK if quick else {})), seed=seed)


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings, info: DatasetInfo, label: str,
            log: Log) -> dict[str, Any]:
    """One deployed model (softmax at T = 1) as one point of the sweep, without its ``T``.

    Besides Papernot's measurements: ``trained`` (clean accuracy more than 5 points above chance),
    ``robust_accuracy`` (AutoAttack), ``apparent_robust_accuracy`` (PGD-CE), ``masked`` and the whole
    ``robustness`` report (``_common.robust_accuracy``).
    """
    n_test = len(x) if s.n_test is None else s.n_test
    grads = gradient_amplitude_stats(model, x[: s.n_grad], "softmax")
    hist = log10_histogram(grads["amplitude"], bins=s.grad_bins, range=GRAD_LOG10_RANGE)
    jsma = targeted_success_rate(model, x, y, "jsma", s.n_jsma, on="softmax", theta=s.theta, gamma=s.gamma)
    rho = rho_adv(model, x, y, s.n_rho, on="softmax", theta=s.theta)
    test_accuracy = accuracy(model, (x[:n_test], y[:n_test]))
    robust = robust_accuracy(model, x, y, eps=info.default_eps, protocol=s.protocol, n=s.n_robust, seed=s.seed,
                             label=label, log=log)
    return {"test_accuracy": test_accuracy, "trained": trained(test_accuracy, chance_accuracy(info)), **robust,
            "jsma_softmax_success": jsma.rate,
            "rho_adv": rho["rho_adv"], "confidence": mean_confidence(model, x[:n_test], y[:n_test]),
            "zero_grad_fraction": grads["fraction_zero"],
            "grad_hist": {"edges": hist["edges"].tolist(), "counts": hist["counts"].tolist(), "zeros": hist["n_zero"]},
            "n_jsma": int(len(jsma.indices)), "n_rho": rho["n"], "rho_unbroken": rho["n_unbroken"],
            "n_grad": grads["n"]}


def _epoch_log(names: dict[str, str], epochs: dict[str, int], log: Log):
    """An ``on_event(role, event)`` for ``train_defensive`` that logs about four epoch lines per stage."""
    def on_event(role: str, event: Event) -> None:
        every, epoch = max(1, epochs[role] // 4), event.data.get("epoch")
        if event.kind == "epoch" and (epoch % every == 0 or epoch == epochs[role]):
            log(f"{names[role]}: epoch {epoch}/{epochs[role]}, loss {event.data['train_loss']:.4f} "
                f"({event.data['epoch_seconds']:.1f} s)")
    return on_event


def run(s: Settings, log: Log) -> dict[str, Any]:
    """Train the undistilled model and a teacher + student per T, measure them, break the last; no files."""
    train_ds, info = load_dataset(s.dataset, "train", seed=SPLIT_SEED, fraction=s.train_fraction)
    test_ds, _ = load_dataset(s.dataset, "test", seed=SPLIT_SEED)
    x, y = test_ds.tensors
    data = (train_ds, None)                  # no per-epoch test evaluation: every measurement is below
    config = train_config(s.epochs, s.seed, s.batch_size, s.lr)

    def train(T: float, stages: int = 3, trained: dict[int, nn.Module] | None = None) -> list[nn.Module]:
        specs = defensive_specs(s.dataset, T, shared_init=True, model=s.model, train=config,
                                fraction=s.train_fraction)[:stages]
        names = {"init": "initial model (T = 1)", "teacher": f"T = {T:g} teacher", "student": f"T = {T:g} student"}
        if T == 1:
            names["teacher"] = "undistilled (standard, T = 1)"
        epochs = {role: spec.train.epochs for role, spec in zip(stage_roles(specs), specs)}
        return train_defensive(specs, data, info, trained=trained, on_event=_epoch_log(names, epochs, log),
                               require_done=True)[0]

    # The undistilled model is the T = 1 teacher: standard at T = 1 from the shared initial model.
    init, undistilled = train(1.0, stages=2)
    baseline = {"T": 1.0, **measure(undistilled, x, y, s, info, "undistilled", log)}
    log(f"undistilled: accuracy {pct(baseline['test_accuracy'])}, JSMA on the softmax "
        f"{pct(baseline['jsma_softmax_success'])}")

    sweep, student = [], None
    for T in s.temperatures:
        student = train(float(T), trained={0: init, **({1: undistilled} if T == 1 else {})})[2]
        point = {"T": float(T), **measure(student, x, y, s, info, f"T = {T:g} student", log)}
        sweep.append(point)
        log(f"T = {T:g} student: accuracy {pct(point['test_accuracy'])}, JSMA on the softmax "
            f"{pct(point['jsma_softmax_success'])}, zero gradients {pct(point['zero_grad_fraction'])}")

    T_break = float(s.temperatures[-1])
    log(f"breaking the T = {T_break:g} student")
    broken = break_defensive(student, x, y, T_break, source=undistilled, n=s.n_break, cw_l2=True, info=info,
                             seed=s.seed, progress=lambda done, total, name: log(f"break it: {name}"))
    return {"undistilled": baseline, "sweep": sweep, "break_it": broken,
            "chance_accuracy": chance_accuracy(info), "robustness_protocol": protocol_record(baseline["robustness"]),
            "expectations": expectations(baseline, sweep, broken, chance_accuracy(info))}


def jsma_logits_reference(broken: Mapping, baseline: Mapping) -> float | None:
    """JSMA on the logits against the undistilled model: the ``jsma_logits`` row's ``source_success`` of the
    break-it result (results built before that row carried it kept it as ``undistilled["jsma_logits_success"]``)."""
    row = next((r for r in broken.get("rows", []) if r.get("key") == "jsma_logits"), {})
    return row.get("source_success", baseline.get("jsma_logits_success"))


def expectations(baseline: dict, sweep: list[dict], broken: dict, chance: float = 0.1) -> list[dict]:
    """Papernot's claims and Carlini & Wagner's, each checked against the measured numbers.

    ``broken`` is the ``break_defensive`` result on the highest-T student: one claim per attack
    of it that is not masked (:data:`~distill_core.papers.defensive.BREAK_ATTACKS`), "brings the
    attack back near 100 %". A claim is "did not train" when a model it rests on (the
    undistilled model, the highest-T student, or every student for the accuracy claim) is
    within 5 points of ``chance``.
    """
    hot = sweep[-1]
    T = hot["T"]
    before, after = baseline["jsma_softmax_success"], hot["jsma_softmax_success"]
    worst = max(sweep, key=lambda p: abs(p["test_accuracy"] - baseline["test_accuracy"]))

    def untrained(*points: dict) -> list[str]:
        return [untrained_note("the undistilled model" if p is baseline else f"the T = {p['T']:g} student",
                               p["test_accuracy"], chance) for p in points if not p.get("trained", True)]

    base_only, pair = untrained(baseline), untrained(baseline, hot)
    aa_before, aa_after = baseline["robust_accuracy"], hot["robust_accuracy"]
    gap = hot["apparent_robust_accuracy"] - aa_after
    out = [
        expectation("JSMA on the softmax succeeds against the undistilled model (paper, MNIST: 95.89 %)",
                    before >= HIGH_SUCCESS, f"{pct(before)} of {baseline['n_jsma']} samples x 9 targets "
                    f"(threshold {pct(HIGH_SUCCESS, 0)})", base_only),
        expectation(f"Defensive distillation at T = {T:g} stops it (paper: 95.89 % -> 0.45 % at T = 100)",
                    after <= LOW_SUCCESS and after < before,
                    f"{pct(before)} -> {pct(after)} (threshold {pct(LOW_SUCCESS, 0)})", pair),
        expectation("Accuracy changes by about 1 % or less",
                    abs(worst["test_accuracy"] - baseline["test_accuracy"]) <= ACCURACY_COST,
                    f"undistilled {pct(baseline['test_accuracy'])}; largest change at T = {worst['T']:g}: "
                    f"{pct(worst['test_accuracy'])} (tolerance {pct(ACCURACY_COST, 0)})", untrained(baseline, *sweep)),
        expectation("The softmax's gradient vanishes: exactly zero in float32 for most samples at high T",
                    hot["zero_grad_fraction"] >= 0.5 > baseline["zero_grad_fraction"],
                    f"exactly-zero gradients: undistilled {pct(baseline['zero_grad_fraction'])}, "
                    f"T = {T:g} {pct(hot['zero_grad_fraction'])}", pair),
        expectation("rho_adv grows with T (paper, MNIST: 1.55 % -> 14.08 %)", hot["rho_adv"] > baseline["rho_adv"],
                    f"{pct(baseline['rho_adv'], 2)} -> {pct(hot['rho_adv'], 2)} ({hot['rho_unbroken']} of "
                    f"{hot['n_rho']} samples never broken, counted as 100 %: a lower bound)", pair),
        expectation("Confidence on correct samples grows with T", hot["confidence"] > baseline["confidence"],
                    f"{pct(baseline['confidence'], 2)} -> {pct(hot['confidence'], 2)}", pair),
        expectation(f"Defensive distillation does not make the model robust: its AutoAttack robust accuracy at "
                    f"T = {T:g} stays within {100 * NOT_ROBUST:g} points of the undistilled model's "
                    "(Carlini & Wagner 2016)", aa_after <= aa_before + NOT_ROBUST,
                    f"AutoAttack: undistilled {pct(aa_before)}, T = {T:g} student {pct(aa_after)} "
                    f"({points(aa_after - aa_before)}; {baseline['robustness']['label']})", pair),
        expectation(f"... but looks robust to a naive attack: the T = {T:g} student's apparent (PGD-CE) robust "
                    f"accuracy exceeds its AutoAttack one by more than {100 * MASKING_GAP:g} points "
                    "(gradient masking)", gap > MASKING_GAP,
                    f"PGD-CE {pct(hot['apparent_robust_accuracy'])} vs AutoAttack {pct(aa_after)} ({points(gap)}); "
                    f"AutoAttack's masking checks {'fired' if hot['masked'] else 'did not fire'}, exactly-zero CE "
                    f"gradients on {pct(hot['robustness']['flags']['zero_gradients'])} of the samples",
                    untrained(hot)),
    ]
    rates = break_rates(broken)
    ref = jsma_logits_reference(broken, baseline)
    for key in (k for k in BREAK_ATTACKS if k in rates and k not in MASKED_ATTACKS):
        reference = (f"; against the undistilled model it succeeds {pct(ref)}"
                     if key == "jsma_logits" and ref is not None else "")
        out.append(expectation(f"{BREAK_ATTACKS[key]} brings the attack back near 100 % against the T = {T:g} "
                               "student", rates[key] >= BROKEN - 1e-6,
                               f"{pct(rates[key])} vs JSMA on the softmax {pct(rates['jsma_softmax'])} on "
                               f"{broken['n']} samples (threshold {pct(BROKEN, 0)})" + reference,
                               pair if key == "transfer" else untrained(hot)))
    return out


def break_markdown(broken: dict) -> str:
    """A ``break_defensive`` result as markdown: its table (attack, success, detail) and the zero-gradient count."""
    zg = broken["zero_grad"]
    table = markdown_table(["attack", "success", "detail"],
                           [[r["attack"] + (" (masked)" if r["masked"] else ""), pct(r["success"]), r["detail"]]
                            for r in broken["rows"]])
    return (f"{table}\n\nExactly-zero input gradients: through the softmax {zg['softmax']} of {zg['n']} images, "
            f"through the logits {zg['logits']} of {zg['n']}. JSMA succeeds when it reaches the target; the other "
            "attacks when the image is misclassified.")


def markdown(results: dict) -> str:
    """The sweep and break-it tables and the verdict, as markdown."""
    b = results["break_it"]

    def row(label: str, p: dict) -> list[str]:
        return [label, pct(p["test_accuracy"]), pct(p["jsma_softmax_success"]), pct(p["rho_adv"], 2),
                pct(p["confidence"], 2), pct(p["zero_grad_fraction"]), pct(p.get("robust_accuracy")),
                pct(p.get("apparent_robust_accuracy")), "yes" if p.get("masked") else "no",
                "yes" if p.get("trained", True) else "**no** (at chance)"]

    rows = [row("undistilled (T = 1, no distillation)", results["undistilled"])]
    rows += [row(f"student, T = {p['T']:g}", p) for p in results["sweep"]]
    reference = jsma_logits_reference(results["break_it"], results["undistilled"])
    return "\n\n".join([
        "## Temperature sweep (deployed at T = 1)",
        markdown_table(["model", "test accuracy", "JSMA success (softmax)", "rho_adv", "confidence",
                        "exactly-zero gradients", "robust (AutoAttack)", "apparent (PGD-CE)", "masked", "trained"],
                       rows),
        "JSMA: targeted, 9 targets per sample, gamma = 14.5 %, theta = +1. rho_adv: uncapped JSMA on the softmax; "
        "samples never broken count as 100 %. The gradient-amplitude histograms are in results.json. "
        f"Robust accuracy: {results['robustness_protocol']['label']} ({results['robustness_protocol']['library']}); "
        "apparent: PGD-CE on the same samples, what a naive evaluation reports; masked: AutoAttack's checks fired "
        "(exactly-zero gradients, or Square beating the white-box attacks). Trained: clean accuracy more than "
        f"5 points above chance ({pct(results['chance_accuracy'], 0)}).",
        f"## Break it: attacks on the T = {b['T']:g} student ({b['n']} images)",
        break_markdown(b) + ("" if reference is None else
                             f" For reference, JSMA on the logits succeeds {pct(reference)} against the "
                             "undistilled model: JSMA's cap limits it there too."),
        "## Did the papers' effects show?", expectations_markdown(results["expectations"]),
    ])
