"""The trade-off table: clean and robust accuracy of every zoo model and run, one row each.

:func:`tradeoff_rows` is the one place zoo entries and runs become rows (the Home, Trade-off and
Multi-teacher pages read it); :func:`evaluate_run_robustness` measures a run that lacks a
robustness record (the CLI's ``eval --robust`` and the pages' buttons). Fractions in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..evaluate import w_robust
from ..robustness import RECORD_KEY, RobustnessReport, evaluate_robustness, read_record
from ..runs import Run, load_model, read_run, update_summary
from ..train import did_not_learn


def train_temperature(config: Mapping) -> float | None:
    """The training temperature ``method_config["T"]`` of a zoo entry or run config (None when it has none)."""
    t = (config.get("method_config") or {}).get("T")
    return None if t is None else float(t)


TAG_COLUMNS = ("sweep", "knob", "value", "seed")   # a sweep's run tags (spec.TrainSpec.tags), as row columns


def _tag_columns(tags: Mapping | None) -> dict[str, Any]:
    """The sweep columns of a run's (or zoo entry's) ``tags`` (all None outside a sweep)."""
    tags = tags if isinstance(tags, Mapping) and tags.get("sweep") else {}
    return {k: tags.get(k) for k in TAG_COLUMNS}


def _robust_columns(holder: Mapping) -> dict[str, Any]:
    """The trade-off columns of a robustness record (all None when not evaluated)."""
    rec = read_record(holder)
    if rec is None:
        return {"robust": None, "apparent": None, "masked": None, "gap_shown": False,
                "robust_attack": "not evaluated", "protocol": None}
    return {"robust": rec.robust_accuracy, "apparent": rec.apparent_robust_accuracy, "masked": rec.masked,
            "gap_shown": rec.gap_shown, "robust_attack": rec.label, "protocol": rec.protocol}


def tradeoff_rows(zoo: Iterable[Mapping], runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per zoo model and per finished run: clean and robust accuracy (fractions) and where they come from.

    Robust accuracy is the AutoAttack record of :mod:`robustness` (the zoo manifest's entry, a
    run's ``summary.json`` once evaluated); without one, ``robust`` is None ("not evaluated").
    Broken and unfinished runs are left out. Keys: ``name``, ``source`` ("zoo" | "runs"),
    ``dataset``, ``method``, ``model``, ``T`` (the training temperature, None for methods without
    one), ``clean``, ``robust``, ``apparent`` (PGD-CE), ``masked`` (AutoAttack's checks fired),
    ``gap_shown`` (apparent above true by more than 10 points), ``robust_attack`` (the record's
    label), ``protocol``, ``learned`` (False for a model within 5 points of chance, whatever its
    summary says), ``status``, ``path``, and ``label``: a short name for a chart (the zoo name
    without its dataset; for a run its method, temperature and start time, e.g. ``kd 13:35``), and
    the sweep tags :data:`TAG_COLUMNS` (``sweep`` id, ``knob``, ``value``, ``seed``; None outside a
    sweep: :mod:`.sweeps` groups the rows into curves by them).
    """
    rows = []
    for m in zoo:
        metrics = m.get("metrics") or {}
        rows.append({"name": m["name"], "source": "zoo", "dataset": m.get("dataset"), "method": m.get("method"),
                     "model": m.get("model"), "T": train_temperature(m), "clean": metrics.get("test_accuracy"),
                     **_robust_columns(m), "learned": _learned(metrics.get("test_accuracy"), m.get("info")),
                     "status": "done", "path": "", "label": m["name"].split("/", 1)[-1],
                     **_tag_columns(m.get("tags"))})
    for r in runs:
        if r.broken or r.status not in ("done", "stopped"):
            continue
        clean = r.summary.get("test_accuracy")
        rows.append({"name": r.name, "source": "runs", "dataset": r.config.get("dataset"),
                     "method": r.config.get("method"), "model": r.config.get("model"), "T": train_temperature(r.config),
                     "clean": clean, **_robust_columns(r.summary),
                     "learned": r.summary.get("learned", True) is not False and _learned(clean, r.config.get("info")),
                     "status": r.status, "path": str(r.path), "label": run_label(r.name, r.config),
                     **_tag_columns(r.summary.get("tags") or r.config.get("tags"))})
    return rows


def _learned(clean: float | None, info: Mapping | None) -> bool:
    """False for a model within :data:`train.CHANCE_MARGIN` of chance (``info``: a DatasetInfo dict)."""
    if clean is None or not info or not info.get("num_classes"):
        return True
    return not did_not_learn(clean, 1.0 / info["num_classes"])


def run_label(name: str, config: Mapping) -> str:
    """A run's short name for a chart: its method, training temperature when not 1, and start time ("kd 13:35").

    Run folder names start ``YYYY-MM-DD_HHMMSS-``; another name is kept, cut to its last 16 characters.
    """
    stamp = re.match(r"\d{4}-\d{2}-\d{2}_(\d{2})(\d{2})\d{2}-", name)
    T = train_temperature(config)
    method = f"{config.get('method', 'run')}" + (f" T{T:g}" if T not in (None, 1.0) else "")
    if stamp:
        return f"{method} {stamp.group(1)}:{stamp.group(2)}"
    return name if len(name) <= 20 else "…" + name[-16:]


def filter_rows(rows: Iterable[Mapping], datasets: Sequence[str] | None = None, sources: Sequence[str] | None = None,
                methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows whose dataset, source and method are among those given (``None``: any)."""
    return [dict(r) for r in rows
            if (datasets is None or r["dataset"] in datasets) and (sources is None or r["source"] in sources)
            and (methods is None or r["method"] in methods)]


def evaluate_run_robustness(path: str | Path, protocol: str = "autoattack-fast", n: int = 500, seed: int = 0,
                            progress: Callable[[float, str], None] | None = None,
                            device: str | torch.device = "cpu",
                            data_root: str | Path | None = None) -> RobustnessReport:
    """The robustness of a run's model (:func:`robustness.evaluate_robustness` at its dataset's eps),
    written into its ``summary.json`` under ``"robustness"``; returns the report.

    Uses the first ``min(n, test size)`` test samples (of ``data_root``'s files for an on-disk set). A run
    without a clean accuracy yet (imported where its data was not) gets the report's. Raises ``RunError`` for a
    run that cannot be loaded and ``ValueError`` for bad settings. The CLI's ``eval --robust`` and the Trade-off
    page's button both call this.
    """
    model, info, config = load_model(path, device)
    test, _ = load_dataset(config["dataset"], "test", data_root, seed=config.get("train", {}).get("seed", 0),
                           **config.get("dataset_options", {}))
    x, y = test.tensors[:2]
    report = evaluate_robustness(model, x, y, eps=info.default_eps, protocol=protocol, n=min(n, len(x)), seed=seed,
                                 progress=progress)
    fields = {RECORD_KEY: report.to_dict()}
    if read_run(path).summary.get("test_accuracy") is None:   # e.g. imported where its data was not: now it is
        fields.update(test_accuracy=report.clean_accuracy, eval_samples=report.n)
    update_summary(path, **fields)
    return report


def percent_table(rows: Iterable[Mapping], front: set[str] | None = None) -> list[dict[str, Any]]:
    """Trade-off rows as the pages' table, in percent (two decimals).

    Columns: name, source, dataset, method, model, trained at T, clean (%), robust, AutoAttack (%),
    apparent, PGD-CE (%), gradient masking, W-Robust (%) = (clean + robust) / 2 (Zhao et al., MTARD;
    :func:`distill_core.evaluate.w_robust`), Pareto (the name is in ``front``; omitted when
    ``front`` is None), learned, measured with. Missing numbers are None.
    """
    def pct(v: float | None) -> float | None:
        return None if v is None else round(100 * v, 2)

    table = []
    for r in rows:
        row = {"name": r["name"], "source": r["source"], "dataset": r["dataset"], "method": r["method"],
               "model": r["model"], "trained at T": r["T"], "clean (%)": pct(r["clean"]),
               "robust, AutoAttack (%)": pct(r["robust"]), "apparent, PGD-CE (%)": pct(r["apparent"]),
               "gradient masking": bool(r["masked"]),
               "W-Robust (%)": None if r["clean"] is None or r["robust"] is None else pct(w_robust(r["clean"],
                                                                                                 r["robust"])),
               "Pareto": front is not None and r["name"] in front, "learned": r["learned"],
               "measured with": r["robust_attack"]}
        if front is None:
            del row["Pareto"]
        table.append(row)
    return table
