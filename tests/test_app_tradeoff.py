"""The trade-off page: zoo and runs on one chart; filters change the points; unevaluated runs get evaluated."""

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import TrainConfig
from distill_core.zoo import list_zoo
from tests._apptest import ROOT, require_zoo
from ui.jobs import JOBS, TASKS

PAGE = str(ROOT / "pages" / "tradeoff_page.py")
require_zoo("moons/teacher", "mnist-5k/standard", "mnist-5k/defensive-T100")


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A runs folder with one finished moons run that has no robust accuracy yet."""
    d = tmp_path / "runs"
    monkeypatch.setenv("DISTILL_RUNS", str(d))
    spec = TrainSpec(dataset="moons", model="mlp", method="standard", name="tiny-moons-run",
                     train=TrainConfig(epochs=1, max_steps=5, device="cpu"))
    trainer, _ = prepare_training(spec, d)
    for _ in trainer.run():
        pass
    return d


def _points(at: AppTest) -> set[str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {text for t in spec["data"] if t.get("mode") == "markers+text" for text in t["text"]}


def _table(at: AppTest) -> pd.DataFrame:
    return at.dataframe[0].value


def test_filters_change_the_points(runs):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    mnist = {m["name"].split("/", 1)[1] for m in list_zoo(dataset="mnist-5k")}
    assert _points(at) == mnist
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    hollow = [t for t in spec["data"] if t.get("legendgroup") == "masking" and t.get("mode") == "markers"]
    assert {t["text"][0] for t in hollow} >= {"defensive-T100", "teacher-T100"}   # apparent vs true, joined
    table = _table(at)
    masked = table[table["name"] == "mnist-5k/defensive-T100"].iloc[0]
    assert masked["gradient masking"] and not masked["Pareto"]     # the front uses the true numbers only
    assert masked["apparent, PGD-CE (%)"] - masked["robust, AutoAttack (%)"] > 10
    at.multiselect(key="to_datasets").set_value(["moons"]).run()
    assert _points(at) == {m["name"].split("/", 1)[1] for m in list_zoo(dataset="moons")}
    at.multiselect(key="to_methods").set_value(["kd", "bss"]).run()
    assert _points(at) == {"kd", "bss"}
    assert set(_table(at)["name"]) == {"moons/kd", "moons/bss"}
    assert sorted(d.proto.label for d in at.get("download_button")) == ["Download CSV", "SVG"]   # table, chart
    at.multiselect(key="to_sources").set_value(["runs"]).run()
    assert any("No model matches" in i.value for i in at.info)
    at.multiselect(key="to_methods").set_value(["standard"]).run()
    assert list(_table(at)["name"]) == ["tiny-moons-run"]
    assert _points(at) == set()                           # no robust accuracy yet: in the table, not on the chart
    assert not at.exception, at.exception


def test_unevaluated_run_is_listed_then_evaluated(runs):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.multiselect(key="to_datasets").set_value(["moons"]).run()
    table = _table(at)
    row = table[table["name"] == "tiny-moons-run"].iloc[0]
    assert row["source"] == "runs" and pd.isna(row["robust, AutoAttack (%)"]) and not pd.isna(row["clean (%)"])
    assert row["measured with"] == "not evaluated"
    assert "Pareto" in table.columns and table["Pareto"].any()
    at.slider(key="to_eval_n").set_value(100).run()
    at.button(key="to_evaluate").click().run()
    assert not at.exception, at.exception
    assert at.get("progress"), "no progress while the evaluation runs"
    # Leave the page mid-evaluation: the work goes on in the background, and coming back shows it done.
    task = TASKS.latest("trade-off")
    again = AppTest.from_file(PAGE, default_timeout=120)
    assert task.join(120) and task.status == "done", task.error
    again.session_state["dataset"] = "moons"
    again.run()
    assert not again.exception, again.exception
    assert any("done in" in s.value for s in again.success)
    at = again
    table = _table(at)
    row = table[table["name"] == "tiny-moons-run"].iloc[0]
    assert 0 <= row["robust, AutoAttack (%)"] <= row["apparent, PGD-CE (%)"] + 1e-9
    assert row["robust, AutoAttack (%)"] <= row["clean (%)"]
    assert "AutoAttack fast" in row["measured with"]
    summary = json.loads((runs / "tiny-moons-run" / "summary.json").read_text())
    assert summary["robustness"]["n"] == 100 and summary["robustness"]["protocol"] == "autoattack-fast"
    assert "tiny-moons-run" in _points(at)                # on the chart now, labelled by its (short) name
    assert not any(b.key == "to_evaluate" for b in at.button)


def test_missing_zoo_is_a_message_not_an_exception(tmp_path, monkeypatch):
    import distill_core.lab.sweeps as sweeps

    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    monkeypatch.setattr(sweeps, "SHIPPED_SWEEPS", tmp_path / "no-sweeps")
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No model yet" in i.value for i in at.info)


def _sweep_on_moons(runs_dir: Path) -> list:
    from distill_core.lab.sweeps import run_sweep, sweep_specs

    base = TrainSpec(dataset="moons", model="mlp", method="standard",
                     train=TrainConfig(epochs=1, max_steps=20, device="cpu"))
    return run_sweep(sweep_specs(base, "T", "1,20"), runs_dir, protocol="autoattack-fast", n=50)


def test_a_sweep_is_drawn_as_one_curve_in_knob_order_and_the_apparent_toggle_redraws_it(runs):
    _sweep_on_moons(runs)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = "moons"
    at.run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    [curve] = [t for t in spec["data"] if t.get("name") == "standard: T sweep"]
    assert curve["text"] == ["T=1", "T=20"]
    assert not any("T=" in text for t in spec["data"] if t.get("mode") == "markers+text" for text in t["text"])
    at.toggle(key="to_apparent").set_value(True).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"].startswith("apparent")
    table = _table(at)
    assert len(table[table["name"].str.contains("standard-moons")]) == 2      # the sweep's runs stay in the table


def test_a_sweep_started_on_the_page_trains_and_measures_in_the_background(runs):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = "moons"
    at.run()
    at.selectbox(key="to_sw_dataset").set_value("moons").run()
    at.selectbox(key="to_sw_method").set_value("standard").run()
    at.selectbox(key="to_sw_knob_standard").set_value("T").run()
    at.text_input(key="to_sw_values_standard_T").set_value("1,5").run()
    at.number_input(key="to_sw_epochs").set_value(1).run()
    at.button(key="to_sw_start").click().run()
    assert not at.exception, at.exception
    job = JOBS.get(at.session_state["to_sweep_job"])
    assert job is not None and len(job.specs) == 2 and job.evaluate["protocol"] == "autoattack-fast"
    assert job.join(240), job.snapshot().message
    assert job.snapshot().status == "done" and sorted(job.snapshot().measured) == [0, 1]
    at.run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    [curve] = [t for t in spec["data"] if t.get("name") == "standard: T sweep"]
    assert curve["text"] == ["T=1", "T=5"]


def test_bad_sweep_values_are_a_message(runs):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.selectbox(key="to_sw_method").set_value("trades").run()
    at.text_input(key="to_sw_values_trades_beta").set_value("-1,x").run()
    at.button(key="to_sw_start").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("Cannot start:") for e in at.error)
    assert "to_sweep_job" not in at.session_state or at.session_state["to_sweep_job"] is None


def test_two_sessions_each_run_their_own_sweep(runs):
    def start(values: str) -> tuple[AppTest, object]:
        at = AppTest.from_file(PAGE, default_timeout=120)
        at.run()
        at.selectbox(key="to_sw_dataset").set_value("moons").run()
        at.selectbox(key="to_sw_method").set_value("standard").run()
        at.selectbox(key="to_sw_knob_standard").set_value("epochs").run()
        at.text_input(key="to_sw_values_standard_epochs").set_value(values).run()
        at.button(key="to_sw_start").click().run()
        assert not at.exception, at.exception
        return at, JOBS.get(at.session_state["to_sweep_job"])

    a, job_a = start("200,300")
    b, job_b = start("250,350")                 # another browser session: its own sweep, not blocked by the first
    assert job_a is not job_b and not job_b.snapshot().finished
    b.run()
    assert b.button(key=f"to_sw_stop_{job_a.id}")   # and it sees the other one, with its Stop
    job_a.request_stop()
    job_b.request_stop()
    assert job_a.join(120) and job_b.join(120)
