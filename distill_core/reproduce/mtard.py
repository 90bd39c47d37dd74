"""MTARD's comparison table (Zhao, Wang, Wei; ECCV 2022): one student, many ways to make it robust.

METHODS.md sections 3 and 4. Two papernot-cnn teachers on mnist-5k, a clean one (``standard``)
and a robust one (``trades``), from the zoo or trained here. Small students (small-cnn), each
from the same seeded initial weights: trained alone (``standard``, ``pgd_at``, ``trades``),
distilled from the clean teacher (``kd``), from the robust teacher (``ard``, ``rslad``) or from
both (``mtard``, and its ablations without Entropy-Based Balance or Normalization Loss Balance).

Every student (and both teachers) is evaluated on the same seeded subset of the test split:
clean accuracy, FGSM, PGD-20 and CW-inf (PGD-Linf on the C&W margin loss, kappa = 50, 20 steps;
the distillation papers' "CW-inf", not C&W's own L-inf attack) at the dataset's eps (0.3 for
MNIST), step 2.5 eps / 20; W-Robust = (clean + PGD-20) / 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..data import load_dataset
from ..evaluate import robustness_table, w_robust
from ._common import (
    SPLIT_SEED,
    Log,
    expectation,
    expectations_markdown,
    fresh_model,
    markdown_table,
    pct,
    points,
    train_config,
    train_model,
    zoo_teacher,
)

COMPARABLE = 0.05    # "comparable robustness": PGD-20 accuracy within 5 points

# Row name -> (method, its settings beyond the PGD steps, teacher roles -> "clean" | "robust", description).
STUDENTS: dict[str, tuple[str, dict, dict[str, str], str]] = {
    "standard": ("standard", {}, {}, "cross-entropy on clean data, no teacher"),
    "pgd_at": ("pgd_at", {}, {}, "Madry's PGD adversarial training (SAT), no teacher"),
    "trades": ("trades", {}, {}, "TRADES, beta = 6, no teacher"),
    "kd": ("kd", {}, {"teacher": "clean"}, "Hinton KD (T = 4, a = 0.9) from the clean teacher"),
    "ard": ("ard", {}, {"teacher": "robust"}, "ARD (T = 30, a = 1) from the robust teacher"),
    "rslad": ("rslad", {}, {"teacher": "robust"}, "RSLAD from the robust teacher"),
    "mtard": ("mtard", {}, {"clean_teacher": "clean", "robust_teacher": "robust"}, "MTARD with EBB and NLB"),
    "mtard_no_ebb": ("mtard", {"ebb": False}, {"clean_teacher": "clean", "robust_teacher": "robust"},
                     "MTARD without Entropy-Based Balance (temperatures stay 1)"),
    "mtard_no_nlb": ("mtard", {"nlb": False}, {"clean_teacher": "clean", "robust_teacher": "robust"},
                     "MTARD without Normalization Loss Balance (weights stay 0.5 / 0.5)"),
}
ADVERSARIAL = ("pgd_at", "trades", "ard", "rslad", "mtard")   # methods with a PGD inner loop (its steps are set)


@dataclass(frozen=True)
class Settings:
    """Everything the mtard reproduction depends on (stored in results.json)."""

    dataset: str = "mnist-5k"
    teacher_model: str = "papernot-cnn"
    student_model: str = "small-cnn"
    clean_teacher: str | None = "mnist-5k/standard"   # zoo names; None: train the teachers here
    robust_teacher: str | None = "mnist-5k/trades"
    teacher_epochs: int = 3                           # when trained here (the zoo's recipes)
    students: dict[str, str] = field(default_factory=lambda: {k: v[3] for k, v in STUDENTS.items()})  # for the record
    epochs: int = 5
    train_fraction: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3                                  # Adam (the paper: SGD 0.1, 300 epochs, ResNet-18)
    train_steps: int = 10                             # PGD steps inside adversarial training (the papers' 10)
    n_eval: int = 1000                                # test samples, seeded subset
    eval_steps: int = 20                              # PGD-20 and CW-inf
    kappa: float = 50.0
    seed: int = 0


QUICK = dict(epochs=1, train_fraction=0.25, batch_size=32, lr=2e-3, train_steps=3, n_eval=100)


def settings(quick: bool = False, seed: int = 0, train_teachers: bool = False) -> Settings:
    """The full settings, or the quick ones (1 epoch on a quarter of the data, 3 PGD steps, 100 test samples).

    ``train_teachers`` trains both teachers instead of loading them from the zoo.
    """
    s = Settings(**(QUICK if quick else {}))
    if train_teachers:
        s = dataclasses.replace(s, clean_teacher=None, robust_teacher=None)
    return dataclasses.replace(s, seed=seed)


def run(s: Settings, log: Log) -> dict[str, Any]:
    """Get both teachers, train every student, evaluate all of them; no files."""
    train_ds, info = load_dataset(s.dataset, "train", seed=SPLIT_SEED, fraction=s.train_fraction)
    test_ds, _ = load_dataset(s.dataset, "test", seed=SPLIT_SEED)
    config = train_config(s.epochs, s.seed, s.batch_size, s.lr)
    teacher_config = dataclasses.replace(config, epochs=s.teacher_epochs)

    if s.clean_teacher is not None and s.robust_teacher is not None:
        log(f"teachers: {s.clean_teacher} and {s.robust_teacher} from the zoo")
        teachers = {"clean": zoo_teacher(s.clean_teacher), "robust": zoo_teacher(s.robust_teacher)}
        sources = {"clean": f"zoo {s.clean_teacher}", "robust": f"zoo {s.robust_teacher}"}
    else:
        sources = {"clean": "trained here (standard)", "robust": f"trained here (trades, {s.train_steps} PGD steps)"}
        teachers = {
            "clean": train_model("clean teacher (standard)", "standard", fresh_model(s.teacher_model, info, s.seed),
                                 train_ds, teacher_config, log, info=info),
            "robust": train_model("robust teacher (trades)", "trades", fresh_model(s.teacher_model, info, s.seed),
                                  train_ds, teacher_config, log, method_config={"steps": s.train_steps}, info=info)}

    eps = info.default_eps
    step = 2.5 * eps / s.eval_steps
    attacks = {"fgsm": {"eps": eps}, "pgd": {"eps": eps, "alpha": step, "steps": s.eval_steps},
               "cw_linf": {"eps": eps, "alpha": step, "steps": s.eval_steps, "kappa": s.kappa}}

    def evaluate(name: str, model: nn.Module) -> dict[str, Any]:
        table = {r["attack"]: r["accuracy"] for r in robustness_table(
            model, test_ds, list(attacks), n=s.n_eval, info=info, settings=attacks, seed=s.seed)}
        row = {"method": name, "clean": table["clean"], "fgsm": table["fgsm"], "pgd20": table["pgd"],
               "cw_inf": table["cw_linf"], "w_robust": w_robust(table["clean"], table["pgd"])}
        log(f"{name}: clean {pct(row['clean'])}, FGSM {pct(row['fgsm'])}, PGD-20 {pct(row['pgd20'])}, "
            f"CW-inf {pct(row['cw_inf'])}")
        return row

    teacher_rows = [{**evaluate(f"{role} teacher", model), "source": sources[role]} for role, model in teachers.items()]
    rows = []
    for name, (method, extra, roles, _) in STUDENTS.items():
        method_config = {**extra, **({"steps": s.train_steps} if method in ADVERSARIAL else {})}
        student = train_model(name, method, fresh_model(s.student_model, info, s.seed), train_ds, config, log,
                              method_config=method_config, teachers={r: teachers[t] for r, t in roles.items()},
                              info=info)
        rows.append(evaluate(name, student))
    return {"teachers": teacher_rows, "rows": rows, "attacks": attacks, "expectations": expectations(rows)}


def expectations(rows: list[dict]) -> list[dict]:
    """MTARD's claims (and the sanity check that adversarial training buys robustness), against the rows."""
    r = {row["method"]: row for row in rows}
    m, ard, rslad = r["mtard"], r["ard"], r["rslad"]
    best_pgd = max(ard["pgd20"], rslad["pgd20"])
    gap = f"{100 * COMPARABLE:g} points"
    robust = best_pgd >= r["standard"]["pgd20"] + COMPARABLE    # robust distillation made the student robust at all
    caveat = "" if robust else (f"; ARD / RSLAD are not robust here (PGD-20 not {gap} above standard's "
                                f"{pct(r['standard']['pgd20'])}), so there is no robustness to compare")
    others = [row for name, row in r.items() if not name.startswith("mtard")]
    best_other = max(others, key=lambda o: o["w_robust"])
    return [
        expectation("MTARD's student is more accurate on clean data than ARD's and RSLAD's (paper, CIFAR-10: "
                    "87.36 vs 84.11 / 83.99 %)", m["clean"] > max(ard["clean"], rslad["clean"]),
                    f"MTARD {pct(m['clean'])} vs ARD {pct(ard['clean'])}, RSLAD {pct(rslad['clean'])}"),
        expectation(f"... at comparable robustness: PGD-20 within {gap} of the better of ARD / RSLAD "
                    "(paper: 50.73 vs 50.93 / 53.94 %)", robust and m["pgd20"] >= best_pgd - COMPARABLE,
                    f"MTARD {pct(m['pgd20'])} vs ARD {pct(ard['pgd20'])}, RSLAD {pct(rslad['pgd20'])} "
                    f"({points(m['pgd20'] - best_pgd)}){caveat}"),
        expectation("MTARD has the best W-Robust of the methods compared (paper, CIFAR-10: 69.05 vs RSLAD 68.97, "
                    "TRADES 67.68, ARD 67.52, SAT 65.08 %)", m["w_robust"] >= max(o["w_robust"] for o in others),
                    f"MTARD {pct(m['w_robust'])}; best other: {best_other['method']} {pct(best_other['w_robust'])}"),
        expectation("EBB and NLB each help: MTARD's W-Robust >= without either",
                    m["w_robust"] >= max(r["mtard_no_ebb"]["w_robust"], r["mtard_no_nlb"]["w_robust"]),
                    f"MTARD {pct(m['w_robust'])}, without EBB {pct(r['mtard_no_ebb']['w_robust'])}, "
                    f"without NLB {pct(r['mtard_no_nlb']['w_robust'])}"),
        expectation("Adversarial training buys robustness: PGD-AT's and TRADES' PGD-20 accuracy > standard's",
                    min(r["pgd_at"]["pgd20"], r["trades"]["pgd20"]) > r["standard"]["pgd20"],
                    f"PGD-AT {pct(r['pgd_at']['pgd20'])}, TRADES {pct(r['trades']['pgd20'])}, "
                    f"standard {pct(r['standard']['pgd20'])}"),
    ]


def markdown(results: dict) -> str:
    """The paper-style table (rows: methods; columns: clean, FGSM, PGD-20, CW-inf, W-Robust) and the verdict."""
    def line(row: dict) -> list[str]:
        return [row["method"], pct(row["clean"]), pct(row["fgsm"]), pct(row["pgd20"]), pct(row["cw_inf"]),
                pct(row["w_robust"])]

    headers = ["method", "clean", "FGSM", "PGD-20", "CW-inf", "W-Robust"]
    a = results["attacks"]["pgd"]
    return "\n\n".join([
        "## Students (small-cnn)", markdown_table(headers, [line(r) for r in results["rows"]]),
        "## Teachers (papernot-cnn)",
        markdown_table(headers + ["source"], [line(r) + [r["source"]] for r in results["teachers"]]),
        f"Linf eps {a['eps']:g}; PGD-20 and CW-inf (PGD on the C&W margin loss, kappa "
        f"{results['attacks']['cw_linf']['kappa']:g}) take {a['steps']} steps of {a['alpha']:g}; "
        "W-Robust = (clean + PGD-20) / 2. Accuracies on the same seeded test subset for every model.",
        "## Did the paper's effects show?", expectations_markdown(results["expectations"]),
    ])
