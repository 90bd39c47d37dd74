"""Knowledge distillation with boundary-supporting samples when data is scarce (Heo et al., AAAI 2019).

METHODS.md section 2. One teacher (papernot-cnn, ``standard`` on the whole train split: the
zoo's ``mnist-5k/standard`` or trained here) teaches a small student (small-cnn) on a
stratified share of the train split, with three objectives from the same teacher: none
(``standard``, the student alone), Hinton's ``kd`` and ``bss`` (KD + boundary-supporting
samples). Every fraction trains for the same number of optimiser steps (``epochs / fraction``
epochs), so a scarce-data student sees fewer distinct samples, not fewer updates. Each seed
draws its own subset and initial weights; the three methods share them (a paired comparison).

Reported per (fraction, method): test accuracy mean and std over the seeds (population std),
and MagSim / AngSim of the student's decision boundary to the teacher's
(``evaluate.boundary_similarity``: BSS perturbations towards every other class from the first
``n_similarity`` test samples both classify correctly), averaged over the seeds; and the lab's
robust accuracy (AutoAttack, ``robustness.evaluate_robustness``, standard version, at the
dataset's Linf eps on the first ``n_robust`` test samples), mean and std over the seeds: KD and
BSS do not aim at robustness, the column says so with numbers. A student within 5 points of
chance accuracy "did not train"; a claim resting on it is neither shown nor not shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import TensorDataset

from ..data import DatasetInfo, load_dataset, stratified_indices
from ..evaluate import accuracy, boundary_similarity
from ._common import (
    SPLIT_SEED,
    Log,
    chance_accuracy,
    expectation,
    expectations_markdown,
    fresh_model,
    markdown_table,
    pct,
    points,
    protocol_record,
    robust_accuracy,
    train_config,
    train_model,
    trained,
    untrained_note,
    zoo_teacher,
)

METHODS = ("standard", "kd", "bss")
LABELS = {"standard": "standard (no teacher)", "kd": "KD (Hinton)", "bss": "BSS-KD"}


@dataclass(frozen=True)
class Settings:
    """Everything the bss reproduction depends on (stored in results.json)."""

    dataset: str = "mnist-5k"
    teacher_model: str = "papernot-cnn"
    student_model: str = "small-cnn"
    teacher: str | None = "mnist-5k/standard"   # zoo name; None: train the teacher here
    teacher_epochs: int = 3                     # when trained here (the zoo's recipe)
    fractions: tuple[float, ...] = (0.1, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 10                            # at fraction 1; fraction f trains round(epochs / f) epochs
    batch_size: int = 64
    lr: float = 1e-3                            # Adam (the paper: SGD 0.1, 80 epochs, ResNets on CIFAR-10)
    n_similarity: int = 100                     # test samples for MagSim / AngSim (x 9 target classes)
    protocol: str = "autoattack"                # robust accuracy: robustness.evaluate_robustness's protocol ...
    n_robust: int = 200                         # ... at info.default_eps on the first n_robust test samples


QUICK = dict(dataset="digits", teacher=None, teacher_epochs=5, seeds=(0,), epochs=5, n_similarity=30, n_robust=50)


def settings(quick: bool = False, seed: int = 0, train_teachers: bool = False) -> Settings:
    """The full settings, or the quick ones (scikit-learn's 8x8 digits, 1 seed, teacher trained here).

    ``seed`` is the first of the seeds; ``train_teachers`` trains the teacher instead of loading it from the zoo.
    """
    s = Settings(**(QUICK if quick else {}))
    return dataclasses.replace(s, seeds=tuple(seed + i for i in range(len(s.seeds))),
                               teacher=None if train_teachers else s.teacher)


def epochs_at(fraction: float, s: Settings) -> int:
    """Epochs on a ``fraction`` of the data: as many optimiser steps as ``s.epochs`` on all of it."""
    return max(1, round(s.epochs / fraction))


def run(s: Settings, log: Log) -> dict[str, Any]:
    """Get the teacher, train every (fraction, method, seed) student and measure it; no files."""
    train_ds, info = load_dataset(s.dataset, "train", seed=SPLIT_SEED)
    test_ds, _ = load_dataset(s.dataset, "test", seed=SPLIT_SEED)
    x_train, y_train = train_ds.tensors
    x_test, y_test = test_ds.tensors
    x_sim, y_sim = x_test[: s.n_similarity], y_test[: s.n_similarity]
    chance = chance_accuracy(info)
    teacher = _teacher(s, train_ds, info, log)
    teacher_accuracy = accuracy(teacher, test_ds)
    log(f"teacher: test accuracy {pct(teacher_accuracy)}")

    rows = []
    for fraction in s.fractions:
        epochs = epochs_at(fraction, s)
        for method in METHODS:
            accs, mags, angs, robust, reports = [], [], [], [], []
            for seed in s.seeds:
                keep = stratified_indices(y_train.numpy(), fraction, seed) if fraction < 1 else np.arange(len(y_train))
                data = TensorDataset(x_train[keep], y_train[keep])
                label = f"{pct(fraction, 0)} of the data, {method}, seed {seed}"
                student = train_model(label, method, fresh_model(s.student_model, info, seed), data,
                                      train_config(epochs, seed, s.batch_size, s.lr), log,
                                      teachers=None if method == "standard" else {"teacher": teacher}, info=info)
                sim = boundary_similarity(teacher, student, x_sim, y=y_sim, seed=seed)
                accs.append(accuracy(student, test_ds))
                mags.append(sim["mag_sim"])
                angs.append(sim["ang_sim"])
                log(f"{label}: accuracy {pct(accs[-1])}, MagSim {mags[-1]:.3f}, AngSim {angs[-1]:.3f}")
                reports.append(robust_accuracy(student, x_test, y_test, eps=info.default_eps, protocol=s.protocol,
                                               n=s.n_robust, seed=s.seeds[0], label=label, log=log))
                robust.append(reports[-1]["robust_accuracy"])
            untrained = [seed for seed, a in zip(s.seeds, accs) if not trained(a, chance)]
            rows.append({"fraction": fraction, "method": method, "seeds": list(s.seeds),
                         "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                         "mag_sim": float(np.mean(mags)), "ang_sim": float(np.mean(angs)), "accuracies": accs,
                         "robust_accuracy_mean": float(np.mean(robust)), "robust_accuracy_std": float(np.std(robust)),
                         "robust_accuracies": robust, "robustness": [r["robustness"] for r in reports],
                         "trained": not untrained, "untrained_seeds": untrained,
                         "n_train": len(keep), "epochs": epochs})
    source = f"zoo {s.teacher}" if s.teacher else "trained here"
    teacher_row = {"source": source, "test_accuracy": teacher_accuracy, "trained": trained(teacher_accuracy, chance)}
    return {"teacher": teacher_row, "rows": rows, "chance_accuracy": chance,
            "robustness_protocol": protocol_record(rows[0]["robustness"][0]),
            "expectations": expectations(rows, s, teacher_row, chance)}


def _teacher(s: Settings, train_ds: TensorDataset, info: DatasetInfo, log: Log) -> nn.Module:
    if s.teacher is not None:
        log(f"teacher: {s.teacher} from the zoo")
        return zoo_teacher(s.teacher)
    return train_model("teacher (standard)", "standard", fresh_model(s.teacher_model, info, s.seeds[0]), train_ds,
                       train_config(s.teacher_epochs, s.seeds[0], s.batch_size, s.lr), log, info=info)


def expectations(rows: list[dict], s: Settings, teacher: dict | None = None, chance: float = 0.1) -> list[dict]:
    """Heo et al.'s claims, checked against the measured rows.

    A claim is "did not train" when the teacher or any seed of a student row it compares is within
    5 points of ``chance`` (a collapsed seed would drag its row's mean).
    """
    at = {(r["fraction"], r["method"]): r for r in rows}
    scarce, full = min(s.fractions), max(s.fractions)

    def untrained(*keys: tuple[float, str]) -> list[str]:
        out = ([untrained_note("the teacher", teacher["test_accuracy"], chance)]
               if teacher is not None and not teacher.get("trained", True) else [])
        for f, m in keys:
            r = at[f, m]
            out += [untrained_note(f"{LABELS[m]} at {pct(f, 0)} of the data, seed {seed}", a, chance)
                    for seed, a in zip(r["seeds"], r["accuracies"]) if not trained(a, chance)]
        return out

    def gain(fraction: float) -> float:
        return at[fraction, "bss"]["accuracy_mean"] - at[fraction, "kd"]["accuracy_mean"]

    def acc(fraction: float, method: str) -> str:
        r = at[fraction, method]
        return f"{pct(r['accuracy_mean'], 2)} ± {pct(r['accuracy_std'], 2)}"

    n = f"{len(s.seeds)} seed{'s' if len(s.seeds) > 1 else ''}"
    out = [
        expectation(f"BSS-KD >= KD when data is scarce ({pct(scarce, 0)} of the training set)", gain(scarce) >= 0,
                    f"BSS-KD {acc(scarce, 'bss')} vs KD {acc(scarce, 'kd')} ({points(gain(scarce))}, {n})",
                    untrained((scarce, "bss"), (scarce, "kd"))),
        expectation("BSS-KD >= KD with all the data", gain(full) >= 0,
                    f"BSS-KD {acc(full, 'bss')} vs KD {acc(full, 'kd')} ({points(gain(full))}, {n})",
                    untrained((full, "bss"), (full, "kd"))),
        expectation("BSS's gain over KD is largest when data is scarce", gain(scarce) > gain(full),
                    f"{points(gain(scarce))} at {pct(scarce, 0)} vs {points(gain(full))} at {pct(full, 0)}",
                    untrained(*((f, m) for f in (scarce, full) for m in ("bss", "kd")))),
    ]
    similar = all(at[f, "bss"][k] >= at[f, "kd"][k] for f in s.fractions for k in ("mag_sim", "ang_sim"))
    detail = "; ".join(f"{pct(f, 0)}: MagSim {at[f, 'bss']['mag_sim']:.3f} vs {at[f, 'kd']['mag_sim']:.3f}, "
                       f"AngSim {at[f, 'bss']['ang_sim']:.3f} vs {at[f, 'kd']['ang_sim']:.3f}" for f in s.fractions)
    out.append(expectation("BSS-KD's decision boundary is closer to the teacher's than KD's (MagSim and AngSim)",
                           similar, detail + " (BSS-KD vs KD)",
                           untrained(*((f, m) for f in s.fractions for m in ("bss", "kd")))))
    return out


def markdown(results: dict) -> str:
    """The accuracy / similarity table and the verdict, as markdown."""
    t = results["teacher"]
    def trained_cell(r: dict) -> str:
        bad = r.get("untrained_seeds", [])
        return "yes" if not bad else f"**no**: seed{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} at chance"

    rows = [[pct(r["fraction"], 0), r["n_train"], r["epochs"], LABELS[r["method"]],
             f"{pct(r['accuracy_mean'], 2)} ± {pct(r['accuracy_std'], 2)}", f"{r['mag_sim']:.3f}",
             f"{r['ang_sim']:.3f}", f"{pct(r.get('robust_accuracy_mean'))} ± {pct(r.get('robust_accuracy_std'))}",
             trained_cell(r)] for r in results["rows"]]
    protocol = results.get("robustness_protocol") or {}
    return "\n\n".join([
        f"Teacher: {t['source']}, test accuracy {pct(t['test_accuracy'], 2)}"
        + ("." if t.get("trained", True) else " (**did not train**: at chance)."),
        "## Students (small-cnn) from the same teacher",
        markdown_table(["training data", "samples", "epochs", "method", "test accuracy (mean ± std over seeds)",
                        "MagSim", "AngSim", "robust (AutoAttack)", "trained"], rows),
        "MagSim / AngSim: BSS perturbations towards every other class on teacher and student from the same test "
        "samples (Heo et al. 2019); 1 = identical boundaries. Robust accuracy: "
        f"{protocol.get('label', 'AutoAttack')} ({protocol.get('library', '')}), mean ± std over the seeds; "
        "neither KD nor BSS aims at robustness. Trained: every seed's test accuracy "
        f"more than 5 points above chance ({pct(results.get('chance_accuracy'), 0)}).",
        "## Did the paper's effects show?", expectations_markdown(results["expectations"]),
    ])
