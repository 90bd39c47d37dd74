"""Sweeps of one knob: the accuracy-robustness trade-off of a method as a curve, not a point.

A sweep is one dataset, model, method and base settings (the method's config, the
:class:`~distill_core.train.TrainConfig`, the teachers), ONE knob, a list of values and a list of
seeds. It is a set of ordinary runs, one per value x seed, each tagged (``TrainSpec.tags``, kept in
its config.json and summary.json) with ``{"sweep": id, "knob": k, "value": v, "seed": s}``, so
everything that lists runs keeps working and :func:`sweep_curves` can put them back together::

    specs = sweep_specs(TrainSpec(dataset="moons", model="mlp", method="trades",
                                  train=TrainConfig(epochs=3)), "beta", [0.5, 1, 6], seeds=[0, 1])
    results = run_sweep(specs, "runs", protocol="autoattack", n=500)   # trains, then measures, each in turn
    curves = sweep_curves(sweep_rows(list_runs("runs")))               # one curve per sweep id, in knob order

The knob is a setting of the method (checked with :func:`methods.config_fields`: its type and
declared range) or one of the trainer settings :data:`TRAIN_KNOBS` (``lr``, ``weight_decay``,
``epochs``). Every finished run is measured with :func:`lab.tradeoff.evaluate_run_robustness`
(AutoAttack, METHODS.md section 6), so each point carries clean and robust accuracy (fractions
in [0, 1]) and the apparent (PGD-CE) number. This module is the one implementation: the CLI's
``sweep`` command, the app's queue (``ui.worker``) and the tests use it.
"""

from __future__ import annotations

import math
import numbers
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..methods import ConfigField, config_fields, get_method, make_config
from ..robustness import RobustnessReport
from ..runs import Run
from ..spec import TrainSpec, prepare_training, resolve_model
from ..train import Event, StopToken, run_to_end
from .tradeoff import evaluate_run_robustness, tradeoff_rows

SHIPPED_SWEEPS = Path(__file__).resolve().parents[2] / "assets" / "sweeps"   # built by scripts/build_sweeps.py

# Trainer settings a sweep may vary, described like a method setting (kind, default, declared range).
TRAIN_KNOBS: dict[str, ConfigField] = {
    "lr": ConfigField("lr", "float", 1e-3, False, 0, None, True, "learning rate (trainer setting)"),
    "weight_decay": ConfigField("weight_decay", "float", 0.0, False, 0, None, False, "weight decay (trainer setting)"),
    "epochs": ConfigField("epochs", "int", 3, False, 1, None, False, "epochs (trainer setting)"),
}
# Settings that move together: sweeping one of MTARD's two balance weights sets the other to 1 minus it, as
# its NLB keeps them (and as the Multi-teacher page does), so the loss keeps its scale.
COUPLED: dict[tuple[str, str], str] = {("mtard", "w_adv"): "w_nat", ("mtard", "w_nat"): "w_adv"}
# The protocols a sweep measures with: robust accuracy is AutoAttack's (pgd-ce is apparent robustness only).
SWEEP_PROTOCOLS = ("autoattack", "autoattack-fast")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# ---------------------------------------------------------------------- the knob and its values


def knob_field(method: str, knob: str) -> tuple[ConfigField, str]:
    """The setting a sweep of ``method`` varies, and where it lives: ``"method"`` (its config) or ``"train"``.

    A method setting wins over a trainer setting of the same name. Raises ``ValueError`` (one
    line, naming the choices) for an unknown method or knob.
    """
    fields = {f.name: f for f in config_fields(method)}          # ValueError for an unknown method
    if knob in fields:
        return fields[knob], "method"
    if knob in TRAIN_KNOBS:
        return TRAIN_KNOBS[knob], "train"
    raise ValueError(f"method {method!r} has no knob {knob!r}; choose a setting of the method "
                     f"({', '.join(fields) or 'none'}) or of the trainer ({', '.join(TRAIN_KNOBS)})")


def parse_knob_value(f: ConfigField, value: Any) -> Any:
    """One value of knob ``f``: text is parsed by the knob's kind, a number checked against it.

    Returns a bool, int, float, str, or None (only for an optional setting; text ``"none"``).
    Raises ``ValueError`` (one line) for a value of the wrong type (``0.5`` for an int, ``"abc"``
    for a float, a bool for a number), a non-finite number, or one outside the declared range.
    """
    expects = f"{f.kind} or None" if f.optional else f.kind
    wrong = ValueError(f"knob {f.name!r} expects {expects}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if f.optional and text.lower() == "none":
            return None
        if f.kind == "str":
            return text
        if f.kind == "bool":
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise wrong
        try:
            value = int(text) if f.kind == "int" else float(text)
        except ValueError:
            raise wrong from None
    if value is None:
        if f.optional:
            return None
        raise wrong
    if f.kind == "bool":
        if isinstance(value, bool):
            return value
        raise wrong
    if f.kind == "str":
        if isinstance(value, str):
            return value
        raise wrong
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise wrong
    if not math.isfinite(value):
        raise ValueError(f"knob {f.name!r} must be a finite number, got {value!r}")
    if f.kind == "int":
        if value != int(value):
            raise wrong
        value = int(value)
    else:
        value = float(value)
    if f.lo is not None and (value <= f.lo if f.lo_open else value < f.lo):
        raise ValueError(f"knob {f.name!r} must be {'>' if f.lo_open else '>='} {f.lo:g}, got {value:g}")
    if f.hi is not None and value > f.hi:
        raise ValueError(f"knob {f.name!r} must be <= {f.hi:g}, got {value:g}")
    return value


def parse_knob_values(method: str, knob: str, values: str | Iterable[Any]) -> list[Any]:
    """The values of a sweep of ``knob``: a comma-separated string (``"0.5,1,6"``) or a list, parsed and checked.

    Keeps the given order. Raises ``ValueError`` (one line) for an unknown method or knob, an
    empty list, a duplicate, or a value :func:`parse_knob_value` rejects.
    """
    f, _ = knob_field(method, knob)
    items = [v for v in values.split(",") if v.strip()] if isinstance(values, str) else list(values)
    if not items:
        raise ValueError(f"a sweep of {knob!r} needs at least one value")
    parsed = [parse_knob_value(f, v) for v in items]
    for i, v in enumerate(parsed):
        if v in parsed[:i]:
            raise ValueError(f"knob {knob!r}: the value {v!r} is given twice")
    return parsed


def _seeds(seeds: Iterable[Any]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, str):
            try:
                s = int(s.strip())
            except ValueError:
                raise ValueError(f"seeds must be integers >= 0, got {s!r}") from None
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
        if s in out:
            raise ValueError(f"the seed {s} is given twice")
        out.append(s)
    if not out:
        raise ValueError("a sweep needs at least one seed")
    return out


def new_sweep_id(method: str, knob: str) -> str:
    """A fresh sweep id, e.g. ``trades-beta-3f2a1b`` (method, knob, 6 hex digits)."""
    return f"{method}-{knob}-{uuid.uuid4().hex[:6]}"


def value_label(knob: str, value: Any) -> str:
    """A point's label on a chart: ``beta=6``, ``eps=None``."""
    return f"{knob}={value:g}" if isinstance(value, numbers.Real) and not isinstance(value, bool) \
        else f"{knob}={value}"


def sweep_specs(base: TrainSpec, knob: str, values: str | Iterable[Any], seeds: str | Iterable[Any] | None = None,
                sweep_id: str | None = None) -> list[TrainSpec]:
    """The runs of a sweep: one TrainSpec per value x seed (values outer, seeds inner), each tagged.

    ``base`` gives the dataset, model, method, method config, TrainConfig and teachers shared by
    every run; the knob's value replaces its setting (in ``method_config``, or the TrainConfig field
    for a trainer knob) and each seed ``train.seed``; a knob in :data:`COUPLED` also sets its partner
    (MTARD's ``w_adv`` sets ``w_nat = 1 - w_adv``). ``values`` / ``seeds``: lists or
    comma-separated text; ``seeds`` defaults to ``[base.train.seed]``. ``sweep_id`` defaults to
    :func:`new_sweep_id`. Each spec's ``tags`` are ``base.tags`` plus ``{"sweep": id, "knob": knob,
    "value": v, "seed": s}``; its ``name`` is None (a fresh run folder each).

    Raises ``ValueError`` (one line) before anything runs: unknown method or knob, an empty or
    duplicated list, a value of the wrong type or outside the knob's range, a base setting the
    method rejects, a teacher role the method does not take or lacks, or a teacher given as a stage
    reference ``"@i"`` (a sweep's runs are independent of each other).
    """
    f, where = knob_field(base.method, knob)
    parsed = parse_knob_values(base.method, knob, values)
    seed_list = _seeds([base.train.seed] if seeds is None else
                       ([v for v in seeds.split(",") if v.strip()] if isinstance(seeds, str) else seeds))
    roles = get_method(base.method).teacher_roles
    unknown = [r for r in base.teachers if r not in roles]
    if unknown:
        raise ValueError(f"method {base.method!r} takes teachers {', '.join(roles) or 'none'}, "
                         f"not {', '.join(unknown)}")
    missing = [r for r in roles if r not in base.teachers]
    if missing:
        raise ValueError(f"method {base.method!r} needs teacher(s): {', '.join(missing)}")
    staged = [f"{r}={ref}" for r, ref in base.teachers.items() if str(ref).startswith("@")]
    if staged:
        raise ValueError(f"a sweep's runs are independent: a teacher cannot be a stage reference ({', '.join(staged)})")
    sweep_id = sweep_id or new_sweep_id(base.method, knob)
    specs = []
    for value in parsed:
        method_config = dict(base.method_config)
        train = base.train
        if where == "method":
            method_config[knob] = value
            partner = COUPLED.get((base.method, knob))
            if partner is not None and isinstance(value, numbers.Real):
                method_config[partner] = 1.0 - float(value)        # MTARD's two weights sum to 1
        else:
            train = replace(train, **{knob: value})                 # TrainConfig checks it (ValueError)
        make_config(base.method, method_config)                     # ValueError for a bad base setting
        for seed in seed_list:
            specs.append(replace(base, method_config=dict(method_config), train=replace(train, seed=seed),
                                 teachers=dict(base.teachers), name=None,
                                 tags={**base.tags, "sweep": sweep_id, "knob": knob, "value": value, "seed": seed}))
    return specs


# ---------------------------------------------------------------------- running a sweep


@dataclass
class SweepRun:
    """One run of a sweep as :func:`run_sweep` left it: its spec, folder, final event and robustness report.

    ``report`` is None when the run was not measured (it ended diverged / error, or stopped with
    ``measure_stopped=False``).
    """

    index: int
    spec: TrainSpec
    path: Path
    final: Event
    report: RobustnessReport | None = None

    @property
    def status(self) -> str:
        """The final event's kind: done | stopped | diverged | error."""
        return self.final.kind


def check_sweep(specs: Sequence[TrainSpec], runs_dir: str | Path | None = None, protocol: str = "autoattack-fast",
                n: int = 500, teacher_models: Mapping[str, nn.Module] | None = None) -> dict[str, nn.Module]:
    """Check a sweep before anything is written and load its teachers once; returns ``{role: model}``.

    Builds the first run's Trainer without a run folder (dataset, model, method settings, teacher
    roles), and loads each teacher reference (a run folder, a run name under ``runs_dir`` or a zoo
    name) unless ``teacher_models`` gives them. Raises ``ValueError`` (``RunError`` for a teacher that
    does not load) for an empty list, a protocol outside :data:`SWEEP_PROTOCOLS`, ``n < 1``, or
    any setting :func:`spec.prepare_training` rejects.
    """
    if not specs:
        raise ValueError("a sweep needs at least one run")
    if protocol not in SWEEP_PROTOCOLS:
        raise ValueError(f"a sweep measures robust accuracy with AutoAttack: protocol must be one of "
                         f"{', '.join(SWEEP_PROTOCOLS)}, got {protocol!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    teachers = dict(teacher_models or {})
    for spec in specs:
        for role, ref in spec.teachers.items():
            if role not in teachers:
                teachers[role] = resolve_model(ref, runs_dir)
    prepare_training(specs[0], None, teacher_models=teachers)
    return teachers


def run_sweep(specs: Sequence[TrainSpec], runs_dir: str | Path, protocol: str = "autoattack-fast", n: int = 500,
              seed: int = 0, *, teacher_models: Mapping[str, nn.Module] | None = None,
              on_run: Callable[[int, Path], None] | None = None,
              on_event: Callable[[int, Event], None] | None = None,
              on_measure: Callable[[int, float, str], None] | None = None,
              stop: StopToken | None = None, measure_stopped: bool = True) -> list[SweepRun]:
    """Train the runs of a sweep one after another and measure each finished one; returns them in order.

    Each spec goes through :func:`spec.prepare_training` + :func:`train.run_to_end` into a new
    folder under ``runs_dir``; a run that ends ``done`` (or ``stopped``, with ``measure_stopped``)
    is then measured by :func:`lab.tradeoff.evaluate_run_robustness` (``protocol``, the first ``n``
    test samples, attack ``seed``, on the run's training device), which writes the AutoAttack
    record into its summary.json. Callbacks: ``on_run(i, path)`` once run ``i``'s folder exists,
    ``on_event(i, event)`` for every Trainer event, ``on_measure(i, fraction, message)`` as the
    measurement goes (fraction in [0, 1]).

    ``stop`` (``is_set()``) ends the run in progress as ``stopped`` (model saved) and starts no
    further run; a measurement under way finishes first. The first run that does not end ``done``
    ends the sweep, so the list returned may be shorter than ``specs``. Raises what
    :func:`check_sweep` raises, before anything is written (``teacher_models`` skips loading the
    teachers again).
    """
    teachers = check_sweep(specs, runs_dir, protocol, n, teacher_models)
    results: list[SweepRun] = []
    for i, spec in enumerate(specs):
        if stop is not None and stop.is_set():
            break
        trainer, writer = prepare_training(spec, runs_dir, stop=stop, teacher_models=teachers)
        if on_run is not None:
            on_run(i, writer.path)
        final = run_to_end(trainer, None if on_event is None else (lambda e, i=i: on_event(i, e)))
        result = SweepRun(i, spec, writer.path, final)
        results.append(result)
        if final.kind == "done" or (final.kind == "stopped" and measure_stopped):
            progress = None if on_measure is None else (lambda f, m, i=i: on_measure(i, f, m))
            result.report = evaluate_run_robustness(writer.path, protocol, n, seed, progress, trainer.device)
        if final.kind != "done":
            break
    return results


# ---------------------------------------------------------------------- curves


def sweep_rows(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """The trade-off rows (:func:`lab.tradeoff.tradeoff_rows`) of the finished runs that belong to a sweep."""
    return [r for r in tradeoff_rows([], runs) if r.get("sweep")]


def _order(value: Any) -> tuple:
    """Knob order: numbers (and bools) ascending, then text, then None (the dataset's default)."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, numbers.Real):
        return (0, float(value), "")
    return (1, 0, str(value))


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def sweep_curves(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The trade-off rows grouped into one curve per sweep id, points in knob order (then seed).

    ``rows``: :func:`lab.tradeoff.tradeoff_rows` output (rows without a ``sweep`` are ignored).
    Each curve: ``id``, ``dataset``, ``model``, ``method``, ``knob``, ``protocols`` (those of its
    measured points), ``points`` and ``mean``. A point: ``value``, ``seed``, ``clean``, ``robust``
    (AutoAttack; None when not measured), ``apparent`` (PGD-CE), ``masked``, ``learned``, ``status``,
    ``name`` (the run folder), ``path`` and ``label`` (``beta=6``). ``mean``: one entry per value in
    knob order, ``value``, ``label``, ``clean``, ``robust``, ``apparent`` averaged over the seeds
    that have them (None when none has), ``seeds`` (how many points). Accuracies are fractions.
    Curves are sorted by dataset, method, knob and id.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("sweep"):
            groups.setdefault(r["sweep"], []).append(r)
    curves = []
    for sweep_id, members in groups.items():
        members = sorted(members, key=lambda r: (_order(r.get("value")), r.get("seed") or 0, r.get("name", "")))
        knob = members[0].get("knob")
        points = [{"value": r.get("value"), "seed": r.get("seed"), "clean": r.get("clean"), "robust": r.get("robust"),
                   "apparent": r.get("apparent"), "masked": r.get("masked"), "learned": r.get("learned"),
                   "status": r.get("status"), "name": r.get("name"), "path": r.get("path"),
                   "label": value_label(knob, r.get("value"))} for r in members]
        mean = []
        for p in points:
            if mean and mean[-1]["value"] == p["value"]:
                continue
            same = [q for q in points if q["value"] == p["value"]]
            mean.append({"value": p["value"], "label": p["label"], "seeds": len(same),
                         **{k: _mean([q[k] for q in same]) for k in ("clean", "robust", "apparent")}})
        curves.append({"id": sweep_id, "dataset": members[0].get("dataset"), "model": members[0].get("model"),
                       "method": members[0].get("method"), "knob": knob,
                       "protocols": sorted({r["protocol"] for r in members if r.get("protocol")}),
                       "points": points, "mean": mean})
    return sorted(curves, key=lambda c: (str(c["dataset"]), str(c["method"]), str(c["knob"]), c["id"]))
