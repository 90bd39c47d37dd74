"""The guided lesson "The accuracy-robustness trade-off in 45 minutes": its steps, with numbers read from the shipped
zoo and reproductions when the page is drawn (never typed in).

Each :class:`Step` says what to do, the question to ask the class, what they should see (a sentence
built from :func:`lesson_facts`), and the page and settings that open its exact setup (the query
parameters of that page's link, ``ui.url_state``). A number that the shipped files do not hold is
written "(not in the zoo)" rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .temperature import image_curves

STANDARD, TRADES, DEFENSIVE = "mnist-5k/standard", "mnist-5k/trades", "mnist-5k/defensive-T100"
COMPARED = ("mnist-5k/pgd_at", TRADES, "mnist-5k/ard", "mnist-5k/rslad", "mnist-5k/mtard")
LESSON_IMAGE = 0            # the test image of steps 1 and 4
LESSON_T = 20.0             # the temperature of step 1


@dataclass(frozen=True)
class Step:
    """One step: title, minutes, what to do, the question, what they should see, and where (page + settings)."""

    title: str
    minutes: int
    page: str                                   # a URL path of ui.navigation.PAGES
    params: dict[str, Any] = field(default_factory=dict)   # that page's link parameters (lists for repeated ones)
    do: str = ""
    ask: str = ""
    see: str = ""


def _pct(value: float | None) -> str:
    return "(not in the zoo)" if value is None else f"{100 * value:.1f} %"


def lesson_facts(zoo_rows: Sequence[Mapping], papernot: Mapping | None, mtard: Mapping | None,
                 temperature: Mapping | None = None,
                 claims: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
    """The numbers the lesson quotes, from the zoo's trade-off rows (``lab.tradeoff.tradeoff_rows``), the papernot
    and mtard reproductions' ``results.json`` (None when missing), :func:`temperature_fact`, and the mtard
    reproduction's verdicts as ``(status, claim, detail)`` (``reproduce.expectation_status`` gives the status)."""
    by_name = {r["name"]: r for r in zoo_rows}
    facts: dict[str, Any] = {name: {k: by_name.get(name, {}).get(k) for k in ("clean", "robust", "apparent", "masked")}
                             for name in (STANDARD, DEFENSIVE, *COMPARED)}
    facts["temperature"] = dict(temperature or {})
    papernot = papernot or {}
    sweep = {float(r["T"]): r for r in papernot.get("sweep", [])}
    facts["jsma_undistilled"] = (papernot.get("undistilled") or {}).get("jsma_softmax_success")
    facts["jsma_T100"] = (sweep.get(100.0) or {}).get("jsma_softmax_success")
    broken = papernot.get("break_it") or {}
    facts["break"] = {r["key"]: r["success"] for r in broken.get("rows", [])}
    facts["zero_grad"] = broken.get("zero_grad", {})
    mtard = mtard or {}
    facts["mtard_rows"] = {r["method"]: r for r in mtard.get("rows", [])}
    facts["mtard_claims"] = list(claims)
    return facts


def temperature_fact(model: torch.nn.Module, x: torch.Tensor, T: float = LESSON_T) -> dict[str, float]:
    """For one image: its top-class probability and entropy (nats) at T = 1 and at ``T``, and the largest wrong-class
    probability at ``T`` (the dark knowledge), from :func:`~distill_core.lab.temperature.image_curves`."""
    curves = image_curves(model, x, [1.0, T])
    probs = curves["probs"]
    top = int(np.argmax(probs[0]))
    wrong = np.delete(probs[1], top)
    return {"T": T, "p_top_1": float(probs[0][top]), "p_top_T": float(probs[1][top]),
            "entropy_1": float(curves["entropy"][0]), "entropy_T": float(curves["entropy"][1]),
            "p_wrong_T": float(wrong.max())}


def lesson_steps(facts: Mapping[str, Any]) -> list[Step]:
    """The five steps, their "what they should see" written from ``facts`` (:func:`lesson_facts`)."""
    st_, dd, tr = facts[STANDARD], facts[DEFENSIVE], facts[TRADES]
    t = facts["temperature"]
    brk, zg = facts["break"], facts["zero_grad"]
    temp_see = (f"On test image {LESSON_IMAGE} the standard model gives its top class {_pct(t.get('p_top_1'))} at "
                f"T = 1 (entropy {t.get('entropy_1', float('nan')):.2f} nats); at T = {LESSON_T:g} that falls to "
                f"{_pct(t.get('p_top_T'))} (entropy {t.get('entropy_T', float('nan')):.2f}) and the likeliest wrong "
                f"class gets {_pct(t.get('p_wrong_T'))}: the dark knowledge a student learns from. The gradient panel "
                "shows the softmax's sensitivity shrinking like 1/T." if t else
                "The bars flatten as T grows; the likeliest wrong classes become visible.")
    rows = facts["mtard_rows"]

    def repro(method: str) -> str:
        r = rows.get(method)
        return "(not reproduced)" if r is None else f"{_pct(r['clean'])} clean / {_pct(r['autoattack'])} AutoAttack"

    claims = " ".join(f"[{status}] {claim}: {detail}." for status, claim, detail in facts["mtard_claims"][:3])
    return [
        Step("Temperature and dark knowledge", 8, "temperature",
             {"dataset": "mnist-5k", "model": "zoo: standard", "index": str(LESSON_IMAGE), "T": f"{LESSON_T:g}"},
             do="Move T from 1 to 100 and back; then try another image.",
             ask="Which wrong digits get probability at high T, and why would a student network want to see them?",
             see=temp_see),
        Step("Defensive distillation looks robust", 10, "defensive",
             {"dataset": "mnist-5k", "T": "100", "model": "zoo: defensive-T100"},
             do="Read step 2 (the temperature sweep): JSMA's success against T. Optionally train teacher + student "
                "at T = 100 in step 1 (about a minute).",
             ask="If JSMA almost never succeeds any more, is the model robust? What else could make an attack fail?",
             see=(f"JSMA succeeds on {_pct(facts['jsma_undistilled'])} of images against the undistilled model and "
                  f"{_pct(facts['jsma_T100'])} against the T = 100 student (the papernot reproduction). A naive PGD "
                  f"on the cross-entropy leaves the zoo's T = 100 student {_pct(dd['apparent'])} accurate: that is "
                  "its *apparent* robustness.")),
        Step("Breaking it: gradient masking", 8, "defensive",
             {"dataset": "mnist-5k", "T": "100", "model": "zoo: defensive-T100", "n": "30"},
             do="Step 3: press Break it (about a minute) and compare the grey bars with the red ones.",
             ask="Why do attacks through the softmax fail while the same budget on the logits succeeds?",
             see=(f"In the reproduction, the softmax gradient is exactly zero on {zg.get('softmax', '?')} of "
                  f"{zg.get('n', '?')} images; JSMA and PGD through the softmax succeed on "
                  f"{_pct(brk.get('jsma_softmax'))} and {_pct(brk.get('pgd_softmax'))}, while PGD on Z/T succeeds on "
                  f"{_pct(brk.get('pgd_z_over_t'))}, the C&W margin on {_pct(brk.get('cw_margin'))} and a transfer "
                  f"attack on {_pct(brk.get('transfer'))}. AutoAttack leaves the zoo's student "
                  f"{_pct(dd['robust'])} accurate: it was never robust.")),
        Step("One image, attacked and transferred", 9, "attack-lab",
             {"dataset": "mnist-5k", "source": "Test set", "index": str(LESSON_IMAGE),
              "models": ["zoo: standard", "zoo: trades", "zoo: defensive-T100"], "attacked": "zoo: standard",
              "attack": "pgd", "eps": "0.3", "loss": "cw", "run": "1"},
             do="Look at the perturbation and the probability bars; then switch *Attack this model* to zoo: trades.",
             ask="The standard model is fooled; does the same image fool TRADES? What does the perturbation look "
                 "like when it has to fool a robust model?",
             see=(f"Over the zoo's test images, AutoAttack leaves the standard model {_pct(st_['robust'])} accurate "
                  f"and TRADES {_pct(tr['robust'])}: expect TRADES to keep its answer here, and its own adversarial "
                  "image to look like a stroke of another digit.")),
        Step("The trade-off, and what MTARD buys", 10, "trade-off",
             {"datasets": ["mnist-5k"], "sources": ["zoo", "shipped"]},
             do="Find the Pareto front; toggle *Apparent robustness* to see the masked models jump; compare ARD, "
                "RSLAD and MTARD (two teachers, balanced by EBB and NLB).",
             ask="Which models would you deploy, and what does each point cost in clean accuracy?",
             see=("Zoo (clean / AutoAttack): " + "; ".join(
                 f"{name.split('/')[1]} {_pct(facts[name]['clean'])} / {_pct(facts[name]['robust'])}"
                 for name in COMPARED) + ". The MTARD reproduction (3 seeds): MTARD " + repro("mtard")
                 + ", ARD " + repro("ard") + ", RSLAD " + repro("rslad") + ". " + claims)),
    ]
