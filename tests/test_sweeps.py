"""Sweeps of one knob (distill_core.lab.sweeps): tagged runs, each measured with AutoAttack, grouped into curves;
a stop mid-way; bad knobs and values rejected before anything is written."""

import json
import threading

import pytest
import torch

from distill_core.lab.sweeps import (
    TRAIN_KNOBS,
    check_sweep,
    run_sweep,
    sweep_curves,
    sweep_rows,
    sweep_specs,
)
from distill_core.lab.tradeoff import tradeoff_rows
from distill_core.runs import list_runs, load_model, read_run
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import TrainConfig, run_to_end

N = 50   # test samples attacked per run (moons has 200)


def _base(method: str = "trades", epochs: int = 1, **config) -> TrainSpec:
    return TrainSpec(dataset="moons", model="mlp", method=method, method_config=config,
                     train=TrainConfig(epochs=epochs, lr=1e-2, device="cpu"))


def _summary(path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_a_two_value_sweep_writes_two_tagged_measured_runs_and_one_curve_in_knob_order(runs_dir):
    specs = sweep_specs(_base(steps=3), "beta", [6, 0.5], sweep_id="trades-beta-test01")   # given out of order
    assert [(s.tags["value"], s.tags["seed"]) for s in specs] == [(6.0, 0), (0.5, 0)]
    assert [s.method_config["beta"] for s in specs] == [6.0, 0.5] and all(s.name is None for s in specs)
    seen_runs, measures, finals = [], {0: [], 1: []}, []
    results = run_sweep(specs, runs_dir, "autoattack-fast", n=N,
                        on_run=lambda i, p: seen_runs.append((i, p)),
                        on_event=lambda i, e: finals.append((i, e.kind)) if e.kind == "done" else None,
                        on_measure=lambda i, f, m: measures[i].append(f))
    assert [r.status for r in results] == ["done", "done"] and finals == [(0, "done"), (1, "done")]
    assert [i for i, _ in seen_runs] == [0, 1] and [p for _, p in seen_runs] == [r.path for r in results]
    for i in (0, 1):
        assert measures[i] and measures[i][-1] == 1.0 and measures[i] == sorted(measures[i])
    runs = list_runs(runs_dir)
    assert len(runs) == 2
    for r, spec in zip(results, specs):
        summary, config = _summary(r.path), json.loads((r.path / "config.json").read_text())
        tags = {"sweep": "trades-beta-test01", "knob": "beta", "value": spec.tags["value"], "seed": 0}
        assert summary["tags"] == tags and config["tags"] == tags          # kept through the final summary write
        assert summary["status"] == "done" and config["method_config"]["beta"] == spec.tags["value"]
        rec = summary["robustness"]
        assert rec["protocol"] == "autoattack-fast" and rec["n"] == N and rec["eps"] == 0.1
        assert rec["robust_accuracy"] == r.report.robust_accuracy <= rec["clean_accuracy"]
    rows = tradeoff_rows([], runs)
    assert sorted(r["value"] for r in rows) == [0.5, 6.0] and {r["knob"] for r in rows} == {"beta"}
    assert sweep_rows(runs) == rows
    [curve] = sweep_curves(rows)
    assert (curve["id"], curve["method"], curve["knob"], curve["dataset"]) == \
        ("trades-beta-test01", "trades", "beta", "moons")
    assert [p["value"] for p in curve["points"]] == [0.5, 6.0]                 # knob order, not training order
    assert [p["label"] for p in curve["points"]] == ["beta=0.5", "beta=6"]
    by_value = {r.spec.tags["value"]: r for r in results}
    for p in curve["points"]:
        run = by_value[p["value"]]
        assert p["robust"] == run.report.robust_accuracy and p["apparent"] == run.report.apparent_robust_accuracy
        assert p["clean"] == run.final.data["test_accuracy"] and p["seed"] == 0 and p["name"] == run.path.name
    assert curve["protocols"] == ["autoattack-fast"] and [m["seeds"] for m in curve["mean"]] == [1, 1]


def test_a_sweep_stopped_mid_way_keeps_the_first_run_and_marks_the_stopped_one(runs_dir):
    stop = threading.Event()
    specs = sweep_specs(_base("standard", epochs=2), "lr", [0.01, 0.02, 0.03])

    def on_event(i, event):
        if i == 1 and event.kind == "step":     # the first run is finished and measured: stop the second
            stop.set()

    results = run_sweep(specs, runs_dir, "autoattack-fast", n=N, on_event=on_event, stop=stop)
    assert [r.status for r in results] == ["done", "stopped"]
    first, second = results
    assert read_run(first.path).status == "done" and _summary(first.path)["robustness"]["n"] == N
    assert first.report is not None and read_run(first.path).summary["epochs"] == 2
    stopped = read_run(second.path)
    assert stopped.status == "stopped" and stopped.summary["steps"] == 1 and stopped.summary["tags"]["value"] == 0.02
    assert second.report is not None                     # measured like the app's queue does (measure_stopped)
    model, _, _ = load_model(second.path)
    assert torch.isfinite(model(torch.rand(4, 2))).all()
    assert len(list_runs(runs_dir)) == 2                 # the third never started
    [curve] = sweep_curves(sweep_rows(list_runs(runs_dir)))
    assert [(p["value"], p["status"]) for p in curve["points"]] == [(0.01, "done"), (0.02, "stopped")]


def test_a_stopped_run_is_left_unmeasured_when_asked_and_a_stop_before_the_start_writes_nothing(runs_dir):
    stop = threading.Event()
    specs = sweep_specs(_base("standard"), "lr", [0.01, 0.02])
    results = run_sweep(specs, runs_dir, "autoattack-fast", n=N, stop=stop, measure_stopped=False,
                        on_event=lambda i, e: stop.set() if e.kind == "step" else None)
    assert [(r.status, r.report) for r in results] == [("stopped", None)]
    assert "robustness" not in _summary(results[0].path)
    stop.set()
    other = runs_dir / "other"
    assert run_sweep(specs, other, "autoattack-fast", n=N, stop=stop) == [] and not other.exists()


def test_specs_vary_a_trainer_knob_keep_the_base_and_put_seeds_inside_values():
    base = _base("kd", epochs=2, T=3.0)
    base.teachers = {"teacher": "some-run"}
    base.tags = {"study": "x"}
    specs = sweep_specs(base, "lr", "0.001, 0.01", seeds="0,1")
    assert [(s.train.lr, s.train.seed) for s in specs] == [(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)]
    assert all(s.method_config == {"T": 3.0} and s.train.epochs == 2 and s.teachers == {"teacher": "some-run"}
               for s in specs)
    assert len({s.tags["sweep"] for s in specs}) == 1 and specs[0].tags["sweep"].startswith("kd-lr-")
    assert specs[1].tags == {"study": "x", "sweep": specs[0].tags["sweep"], "knob": "lr", "value": 0.001, "seed": 1}
    assert base.train.lr == 1e-2 and base.train.seed == 0                     # the base is not changed
    assert [s.tags["value"] for s in sweep_specs(_base("trades"), "eps", "none,0.1")] == [None, 0.1]
    mtard = TrainSpec(dataset="moons", model="mlp", method="mtard",
                      teachers={"clean_teacher": "a", "robust_teacher": "b"})
    assert [s.method_config["ebb"] for s in sweep_specs(mtard, "ebb", "on,off")] == [True, False]
    assert [s.train.epochs for s in sweep_specs(_base(), "epochs", [1, 2.0])] == [1, 2]
    assert set(TRAIN_KNOBS) == {"lr", "weight_decay", "epochs"}


def _bad(method="trades", knob="beta", values="1", **kw):
    base = kw.pop("base", None) or _base(method)
    return lambda: sweep_specs(base, knob, values, **kw)


@pytest.mark.parametrize("make, words", [
    (_bad(method="magic", knob="T"), "unknown method 'magic'"),
    (_bad(knob="gamma"), "no knob 'gamma'"),
    (_bad(values=""), "at least one value"),
    (_bad(values=[]), "at least one value"),
    (_bad(values="1,abc"), "expects float"),
    (_bad(values=[True]), "expects float"),
    (_bad(knob="steps", values="0.5"), "expects int"),
    (_bad(knob="steps", values=[2.5]), "expects int"),
    (_bad(knob="eps_warmup", values="nan"), "finite"),
    (_bad(values="-1"), "must be >= 0"),
    (_bad(method="mtard", knob="tau_adv", values="2,11"), "must be <= 10"),
    (_bad(method="kd", knob="T", values="0", base=TrainSpec(dataset="moons", model="mlp", method="kd",
                                                           teachers={"teacher": "t"})), "must be > 0"),
    (_bad(knob="lr", values="0"), "must be > 0"),
    (_bad(values="1,1.0"), "given twice"),
    (_bad(seeds=""), "at least one seed"),
    (_bad(seeds="0,-1"), "seeds must be integers"),
    (_bad(method="kd", knob="T"), "needs teacher(s): teacher"),
    (_bad(method="kd", knob="T", base=TrainSpec(method="kd", teachers={"teacher": "@0"})), "stage reference"),
    (_bad(knob="beta", base=TrainSpec(method="trades", teachers={"teacher": "x"})), "takes teachers none"),
    (_bad(knob="beta", base=TrainSpec(method="trades", method_config={"steps": 0})), "steps must be >= 1"),
])
def test_bad_knobs_and_values_are_one_clear_line(make, words):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert words in message and "\n" not in message, message


@pytest.mark.parametrize("kwargs, words", [
    ({"protocol": "pgd-ce"}, "protocol must be one of"),
    ({"n": 0}, "n must be an integer >= 1"),
])
def test_a_sweep_is_checked_before_anything_is_written(runs_dir, kwargs, words):
    specs = sweep_specs(_base(), "beta", [1])
    with pytest.raises(ValueError, match=words):
        run_sweep(specs, runs_dir, **{"protocol": "autoattack-fast", "n": N, **kwargs})
    with pytest.raises(ValueError, match="no run folder or zoo model"):
        check_sweep(sweep_specs(TrainSpec(dataset="moons", model="mlp", method="kd", teachers={"teacher": "nope"}),
                                "T", [2]), runs_dir)
    with pytest.raises(ValueError, match="at least one run"):
        check_sweep([], runs_dir)
    bad_model = sweep_specs(TrainSpec(dataset="moons", model="papernot-cnn", method="standard"), "T", [1])
    with pytest.raises(ValueError):
        run_sweep(bad_model, runs_dir, n=N)
    assert list(runs_dir.iterdir()) == []


def test_curves_group_by_sweep_sort_values_and_average_seeds():
    def row(sweep, value, seed, clean, robust, method="trades", name=None):
        return {"sweep": sweep, "knob": "eps" if sweep == "b" else "beta", "value": value, "seed": seed,
                "clean": clean, "robust": robust, "apparent": robust, "masked": False, "learned": True,
                "status": "done", "name": name or f"{sweep}{value}{seed}", "path": "", "dataset": "moons",
                "model": "mlp", "method": method, "protocol": None if robust is None else "autoattack"}

    rows = [row("a", 6.0, 1, 0.8, 0.5), row("a", 0.5, 0, 0.9, 0.2), row("a", 6.0, 0, 0.7, 0.3),
            row("b", None, 0, 0.9, 0.1, method="pgd_at"), row("b", 0.2, 0, 0.6, None, method="pgd_at"),
            {**row("a", 1.0, 0, 0.1, 0.1), "sweep": None}]                    # not in a sweep: ignored
    b, a = sweep_curves(rows)                                                 # pgd_at before trades
    assert [(p["value"], p["seed"]) for p in a["points"]] == [(0.5, 0), (6.0, 0), (6.0, 1)]
    assert [(m["value"], m["seeds"]) for m in a["mean"]] == [(0.5, 1), (6.0, 2)]
    assert a["mean"][1]["clean"] == pytest.approx(0.75) and a["mean"][1]["robust"] == pytest.approx(0.4)
    assert [p["value"] for p in b["points"]] == [0.2, None]                   # None (the dataset's eps) last
    assert b["mean"][0]["robust"] is None and b["protocols"] == ["autoattack"] and b["points"][1]["label"] == "eps=None"
    assert sweep_curves([]) == []


def test_tags_reach_config_and_summary_and_zoo_rows_have_empty_sweep_columns(runs_dir):
    spec = _base("standard")
    spec.tags = {"sweep": "s1", "knob": "T", "value": 1.0, "seed": 0}
    spec.train = TrainConfig(epochs=1, max_steps=2, device="cpu")
    trainer, writer = prepare_training(spec, runs_dir)
    assert _summary(writer.path)["tags"] == spec.tags                           # from the start
    assert run_to_end(trainer).kind == "done"
    assert _summary(writer.path)["tags"] == spec.tags and _summary(writer.path)["status"] == "done"
    _, plain = prepare_training(_base("standard"), runs_dir)
    assert "tags" not in _summary(plain.path) and "tags" not in json.loads((plain.path / "config.json").read_text())
    zoo = [{"name": "moons/x", "dataset": "moons", "method": "standard", "metrics": {"test_accuracy": 0.9}}]
    [z] = tradeoff_rows(zoo, [])
    assert (z["sweep"], z["knob"], z["value"], z["seed"]) == (None, None, None, None)


def test_sweeping_one_of_mtards_weights_sets_the_other_to_one_minus_it():
    base = TrainSpec(dataset="moons", model="mlp", method="mtard",
                     teachers={"clean_teacher": "moons/teacher", "robust_teacher": "moons/teacher"},
                     method_config={"nlb": False})
    specs = sweep_specs(base, "w_adv", "0.2,0.8")
    pairs = [(s.method_config["w_adv"], s.method_config["w_nat"]) for s in specs]
    assert pairs == [(0.2, 0.8), (0.8, pytest.approx(0.2))]
    assert all(s.method_config["nlb"] is False for s in specs)


def test_the_shipped_sweeps_are_complete_measured_and_show_the_masking_lesson():
    from distill_core.lab.sweeps import SHIPPED_SWEEPS

    record = json.loads((SHIPPED_SWEEPS / "sweeps.json").read_text())
    curves = {(c["method"], c["knob"]): c for c in sweep_curves(sweep_rows(list_runs(SHIPPED_SWEEPS)))}
    assert set(curves) == {("standard", "T"), ("trades", "beta"), ("pgd_at", "eps"), ("mtard", "w_adv"),
                           ("mtard", "tau_adv"), ("ard", "a")}
    assert len(record["sweeps"]) == len(curves) and sum(s["seconds"] for s in record["sweeps"].values()) < 2 * 3600
    for c in curves.values():
        assert c["dataset"] == "mnist-5k" and len(c["points"]) >= 3
        assert all(p["robust"] is not None and p["clean"] is not None and p["learned"] for p in c["points"])
        assert c["protocols"] == ["autoattack-fast"]
    masked = curves[("standard", "T")]["mean"]                # the defensive teacher's T, low to high
    assert masked[-1]["apparent"] - masked[-1]["robust"] > 0.5 > masked[0]["apparent"] - masked[0]["robust"]
