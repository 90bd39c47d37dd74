"""Boundary-supporting samples (Heo, Lee, Yun, Choi; AAAI 2019), METHODS.md section 2, for the pages.

- :func:`bss_paths`: BSS crafted on a teacher from each point of a 2-D set, every iterate kept;
- :func:`bss_toward_each_class`: the BSS of one image towards every other class;
- :func:`bss_vs_kd`: KD and BSS-KD students of one teacher over seeds, with all and with a
  fraction of the training data (the paper places BSS's gain with scarce data), and
  :func:`bss_vs_kd_caption`, the sentence the Boundary page writes from its numbers.

The distillation method itself is :mod:`distill_core.methods.bss`; the attack step is
:func:`distill_core.attacks.craft_bss`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .._torch import eval_mode, logits_of, predict
from ..attacks import craft_bss, sample_bss_targets
from ..data import load_dataset, stratified_indices
from ..evaluate import accuracy, boundary_similarity
from ..methods import build_method
from ..models import build_model
from ..stats import SPREAD_RULE, beyond_spread, mean_std
from ..train import Trainer, run_to_end, seed_everything


def bss_paths(teacher: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *, seed: int = 0,
              eta: float = 0.3, eps: float = 1e-4, max_steps: int = 10) -> dict[str, np.ndarray]:
    """BSS crafted on the teacher from each point of ``x`` (N, D), every iterate kept.

    ``target`` (N,) gives the class k each point walks towards; ``None`` draws it with BSS's
    rule (``attacks.sample_bss_targets``, seeded). Returns numpy arrays ``path``
    (max_steps + 1, N, D) with ``path[0] = x``, ``base`` (N,) the teacher's class at ``x``,
    ``target`` (N,), ``final_pred`` (N,) the teacher's class at the last iterate and
    ``steps`` (N,) how many steps moved each point before it stopped.
    """
    with eval_mode(teacher):
        logits = logits_of(teacher, x)
        base = logits.argmax(1)
        if target is None:
            target = sample_bss_targets(torch.softmax(logits, 1).cpu(), torch.Generator().manual_seed(seed))
        target = target.to(x.device)
        if bool((target == base).any()):
            raise ValueError("a BSS target must differ from the teacher's class at the base point")
        x_bss, path = craft_bss(teacher, x, target=target, eta=eta, eps=eps, max_steps=max_steps, return_path=True)
        final = predict(teacher, x_bss)
    moved = path[1:].ne(path[:-1]).flatten(2).any(2)           # (max_steps, N)
    return {"path": path.detach().cpu().numpy(), "base": base.cpu().numpy(), "target": target.cpu().numpy(),
            "final_pred": final.cpu().numpy(), "steps": moved.sum(0).cpu().numpy()}


def bss_toward_each_class(teacher: nn.Module, x: torch.Tensor, *, eta: float = 0.3, eps: float = 1e-4,
                          max_steps: int = 10) -> dict[str, np.ndarray]:
    """The BSS of one image towards every class other than the teacher's (Heo et al. 2019).

    ``x``: one sample, (*input) or (1, *input). Returns numpy arrays ``x_bss`` (C-1, *input),
    ``targets`` (C-1,), ``landed`` (C-1,) the teacher's class at each BSS, ``p_base`` and
    ``p_target`` (C-1,) the teacher's probabilities of its original class and of the target
    there, ``l2`` (C-1,) the perturbation's L2 norm, and the int ``base``.
    """
    if x.dim() in (1, 3):
        x = x.unsqueeze(0)
    with eval_mode(teacher):
        base = int(predict(teacher, x)[0])
        n_classes = logits_of(teacher, x).shape[1]
        targets = torch.tensor([k for k in range(n_classes) if k != base], device=x.device)
        xs = x.expand(len(targets), *x.shape[1:]).clone()
        x_bss = craft_bss(teacher, xs, target=targets, eta=eta, eps=eps, max_steps=max_steps)
        probs = torch.softmax(logits_of(teacher, x_bss), 1)
    return {"x_bss": x_bss.cpu().numpy(), "targets": targets.cpu().numpy(), "landed": probs.argmax(1).cpu().numpy(),
            "p_base": probs[:, base].cpu().numpy(), "p_target": probs.gather(1, targets[:, None])[:, 0].cpu().numpy(),
            "l2": (x_bss - xs).flatten(1).norm(dim=1).cpu().numpy(), "base": base}


# ---------------------------------------------------------------------- KD vs BSS-KD over seeds and data fractions

BSS_MOONS_RESULTS = Path(__file__).resolve().parents[2] / "assets" / "reproductions" / "bss-moons" / "results.json"
BSS_MOONS_COMMAND = "OMP_NUM_THREADS=1 python scripts/bss_moons.py"    # writes BSS_MOONS_RESULTS (about 40 s)
STUDY_METHODS = ("kd", "bss")
STUDY_METRICS = ("accuracy", "mag_sim", "ang_sim")
METHOD_NAMES = {"kd": "KD", "bss": "BSS"}
METRIC_NAMES = {"accuracy": "test accuracy", "mag_sim": "MagSim", "ang_sim": "AngSim"}


def equal_step_epochs(epochs: int, n_full: int, n_train: int, batch_size: int) -> int:
    """Epochs on ``n_train`` samples that take as many optimiser steps as ``epochs`` on ``n_full``.

    A scarce-data student then sees fewer distinct samples, not fewer updates.
    """
    steps = epochs * math.ceil(n_full / batch_size)
    return max(1, round(steps / math.ceil(n_train / batch_size)))


def _zoo_recipes(dataset: str) -> dict[str, Any]:
    """The zoo's recipes ``<dataset>/kd`` and ``<dataset>/bss``: the students this study retrains."""
    from ..zoo_build import RECIPES

    found = {r.name: r for r in RECIPES}
    missing = [f"{dataset}/{m}" for m in STUDY_METHODS if f"{dataset}/{m}" not in found]
    if missing:
        raise ValueError(f"the zoo has no recipe {', '.join(missing)}: bss_vs_kd retrains the zoo's KD and BSS "
                         "students and needs both")
    return {m: found[f"{dataset}/{m}"] for m in STUDY_METHODS}


def bss_vs_kd(teacher: nn.Module, dataset: str = "moons", *, fractions: Sequence[float] = (1.0, 0.1),
              seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """KD and BSS-KD students of ``teacher``, per training-data fraction and seed (Heo et al. 2019).

    The students are the zoo's ``<dataset>/kd`` and ``<dataset>/bss`` recipes (architecture,
    method settings, optimiser, batch size, learning rate), retrained through the Trainer with
    only three things changed: the seed (initial weights, batch order, BSS's target draws), the
    share of the train split (a stratified subset drawn with the seed; KD and BSS get the same
    one and the same initial weights, a paired comparison) and the epochs: ``epochs`` (default:
    the recipe's) at fraction 1, and as many optimiser steps at a smaller fraction
    (:func:`equal_step_epochs`). The data is the zoo's (the recipe's seed), so the test split is
    the one the teacher never saw and the one the Boundary page measures on.

    Each student is measured on the whole test split: accuracy, and MagSim / AngSim to the teacher
    (:func:`distill_core.evaluate.boundary_similarity`, every other class as target, base samples
    both classify correctly: the page's measurement). Deterministic given the seeds.

    Returns ``rows``: one dict per (fraction, method) with ``fraction``, ``method``, ``n_train``,
    ``epochs`` and, per metric of :data:`STUDY_METRICS`, ``{"mean", "std", "values"}`` (sample
    std over the seeds, ddof 1, nan for one seed; ``values`` in the order of ``seeds``); and the
    settings: ``dataset``, ``fractions``, ``seeds``, ``recipes``, ``model``, ``model_options``,
    ``train``, ``method_configs``, ``teacher_accuracy``, ``spread_rule``.
    """
    if not seeds:
        raise ValueError("bss_vs_kd needs at least one seed")
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {tuple(fractions)}")
    recipes = _zoo_recipes(dataset)
    base = recipes["kd"].train
    if epochs is None:
        epochs = base.epochs
    data_seed = base.seed
    train_ds, info = load_dataset(dataset, "train", seed=data_seed)
    test_ds, _ = load_dataset(dataset, "test", seed=data_seed)
    x_train, y_train = train_ds.tensors
    x_test, y_test = test_ds.tensors
    teacher.eval()
    log = log or (lambda message: None)

    rows = []
    for fraction in fractions:
        per_method: dict[str, dict[str, list[float]]] = {m: {k: [] for k in STUDY_METRICS} for m in STUDY_METHODS}
        n_train = n_epochs = 0
        for seed in seeds:
            keep = (stratified_indices(y_train.numpy(), fraction, seed) if fraction < 1
                    else np.arange(len(y_train)))
            subset = TensorDataset(x_train[keep], y_train[keep])
            n_train = len(keep)
            for method in STUDY_METHODS:
                recipe = recipes[method]
                n_epochs = equal_step_epochs(epochs, len(y_train), n_train, recipe.train.batch_size)
                config = dataclasses.replace(recipe.train, seed=seed, epochs=n_epochs, device="cpu")
                seed_everything(seed)
                student = build_model(recipe.model, info, **recipe.model_options)
                trainer = Trainer(build_method(method, student, dict(recipe.method_config), {"teacher": teacher}, info),
                                  (subset, None), config)
                start = time.perf_counter()
                run_to_end(trainer, require_done=f"{METHOD_NAMES[method]} student, fraction {fraction}, seed {seed}")
                student.eval()
                sim = boundary_similarity(teacher, student, x_test, "all", y=y_test)
                values = per_method[method]
                values["accuracy"].append(accuracy(student, (x_test, y_test)))
                values["mag_sim"].append(sim["mag_sim"])
                values["ang_sim"].append(sim["ang_sim"])
                log(f"{fraction:.0%} of the data ({n_train} samples, {n_epochs} epochs), {METHOD_NAMES[method]}, "
                    f"seed {seed}: accuracy {values['accuracy'][-1]:.3f}, MagSim {sim['mag_sim']:.3f}, "
                    f"AngSim {sim['ang_sim']:.3f} ({time.perf_counter() - start:.1f} s)")
        for method in STUDY_METHODS:
            row: dict[str, Any] = {"fraction": float(fraction), "method": method, "n_train": n_train,
                                   "epochs": n_epochs}
            for metric, values in per_method[method].items():
                mean, std = mean_std(values)
                row[metric] = {"mean": mean, "std": std, "values": [float(v) for v in values]}
            rows.append(row)
    kd = recipes["kd"]
    return {"dataset": dataset, "fractions": [float(f) for f in fractions], "seeds": [int(s) for s in seeds],
            "recipes": {m: r.name for m, r in recipes.items()}, "model": kd.model,
            "model_options": dict(kd.model_options),
            "train": {**dataclasses.asdict(dataclasses.replace(base, epochs=epochs, device="cpu")), "seed": None},
            "method_configs": {m: dict(r.method_config) for m, r in recipes.items()},
            "n_train_full": len(y_train), "n_test": len(y_test), "teacher_accuracy": accuracy(teacher, test_ds),
            "spread_rule": SPREAD_RULE, "rows": rows}


def study_row(study: dict[str, Any], fraction: float, method: str) -> dict[str, Any]:
    """The row of a :func:`bss_vs_kd` result for one fraction and method; ``KeyError`` when absent."""
    for row in study["rows"]:
        if math.isclose(row["fraction"], fraction) and row["method"] == method:
            return row
    raise KeyError(f"no row for fraction {fraction} and method {method!r}")


def _pm(cell: dict[str, Any]) -> str:
    std = cell["std"]
    return f"{cell['mean']:.3f}" if std is None or math.isnan(std) else f"{cell['mean']:.3f} ± {std:.3f}"


def compare_cell(kd: dict[str, Any], bss: dict[str, Any]) -> str:
    """``"raises"``, ``"lowers"`` (BSS vs KD, beyond the seeds' spread: :func:`distill_core.stats.beyond_spread`)
    or ``"within"``; each argument is a ``{"mean", "std", "values"}`` cell of a :func:`bss_vs_kd` row."""
    if beyond_spread(bss["values"], kd["values"]):
        return "raises"
    if beyond_spread(kd["values"], bss["values"]):
        return "lowers"
    return "within"


def _data_label(fraction: float, n_train: int) -> str:
    return (f"With all the data ({n_train} samples)" if math.isclose(fraction, 1.0)
            else f"With {100 * fraction:g} % of the data ({n_train} samples)")


def bss_vs_kd_caption(study: dict[str, Any]) -> str:
    """What a :func:`bss_vs_kd` result shows about MagSim and AngSim, written from its numbers.

    One sentence per fraction (largest first): for each measure, "BSS raises MagSim from a ± s
    (KD) to b ± t", "BSS lowers ..." or "within the seeds' spread", by
    :func:`distill_core.stats.beyond_spread`; then how the numbers were made and the rule, and the
    paper's claim set against what showed here at the smallest fraction.
    """
    seeds = study["seeds"]
    fractions = sorted(study["fractions"], reverse=True)
    sentences = []
    for fraction in fractions:
        kd, bss = study_row(study, fraction, "kd"), study_row(study, fraction, "bss")
        verdicts = {m: compare_cell(kd[m], bss[m]) for m in ("mag_sim", "ang_sim")}
        parts, within = [], []
        for metric, verdict in verdicts.items():
            name = METRIC_NAMES[metric]
            if verdict == "within":
                within.append(f"{name} (KD {_pm(kd[metric])}, BSS {_pm(bss[metric])})")
            else:
                parts.append(f"BSS {verdict} {name} from {_pm(kd[metric])} (KD) to {_pm(bss[metric])}")
        if within:
            both = " and ".join(within)
            parts.append(f"KD and BSS are within the seeds' spread on {both}")
        sentences.append(f"{_data_label(fraction, kd['n_train'])}, " + "; ".join(parts) + ".")
    scarce = fractions[-1]
    kd, bss = study_row(study, scarce, "kd"), study_row(study, scarce, "bss")
    raised = [METRIC_NAMES[m] for m in ("mag_sim", "ang_sim") if compare_cell(kd[m], bss[m]) == "raises"]
    where = "with scarce data" if scarce < 1 else "here"
    if len(raised) == 2:
        verdict = f"this run shows it {where}"
    elif raised:
        verdict = f"this run shows it for {raised[0]} only {where}"
    else:
        verdict = f"this run does not show it {where}: BSS does not beat KD beyond the seeds' spread"
    n = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    return (" ".join(sentences)
            + f" Mean ± std over {n}; a difference counts only when the means differ by more than the sum of the "
            "two stds. Heo et al. (2019) report BSS raising both measures over KD, most when training data is "
            f"scarce; {verdict}.")
