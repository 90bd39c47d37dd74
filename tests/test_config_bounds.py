"""Method settings are validated where they are declared: core, CLI and Train page share one range per field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.__main__ import main
from distill_core.data import load_dataset
from distill_core.methods import build_method, field_bounds, get_method, list_methods, make_config
from distill_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]

BAD = [("kd", "T", -1.0), ("kd", "T", 0.0), ("kd", "a", 1.5), ("trades", "steps", 0), ("trades", "beta", -1.0),
       ("pgd_at", "eps", -0.1), ("pgd_at", "eps_warmup", 1.5), ("ard", "alpha", 0.0), ("mtard", "tau_adv", 0.5),
       ("mtard", "w_adv", 2.0), ("bss", "max_steps", 0), ("defensive", "T", -20.0), ("rslad", "steps", -3)]


@pytest.mark.parametrize("method, key, value", BAD)
def test_core_refuses_settings_outside_their_range(method, key, value):
    with pytest.raises(ValueError, match=rf"method {method!r}: {key} must be"):
        make_config(method, {key: value})
    cfg = dataclasses.replace(get_method(method).Config(), **{key: value})   # a Config object built by hand
    _, info = load_dataset("digits", "test")
    teachers = {r: build_model("mlp", info) for r in get_method(method).teacher_roles}
    with pytest.raises(ValueError, match=f"{key} must be"):
        build_method(method, build_model("mlp", info), cfg, teachers=teachers, info=info)


def test_defaults_and_edges_are_accepted():
    for name in list_methods():
        make_config(name)                                   # every paper default is inside its own range
    make_config("pgd_at", {"eps": 0.0, "eps_warmup": 0.0, "steps": 1})
    make_config("mtard", {"tau_nat": 10.0, "w_adv": 0.0})
    make_config("pgd_at", {"eps": None, "alpha": None})     # None: the dataset's budget / 2.5 eps / steps


@pytest.mark.parametrize("setting", ["T=-1", "steps=0", "a=2"])
def test_cli_set_out_of_range_is_one_line_and_exit_2(setting, tmp_path, capsys):
    method = {"T=-1": "kd", "steps=0": "trades", "a=2": "kd"}[setting]
    teacher = ["--teacher", "teacher=mnist-5k/standard"] if method == "kd" else []
    code = main(["train", "--method", method, "--set", setting, *teacher, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "must be" in err[0]
    assert not list(tmp_path.iterdir())


def test_train_page_inputs_carry_the_declared_bounds(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "pages" / "train_page.py"), default_timeout=60).run()
    at.selectbox(key="train_method").set_value("trades").run()
    assert not at.exception
    fields = {f.name: f for f in dataclasses.fields(get_method("trades").Config)}
    steps = at.number_input(key="train_cfg_trades_steps")
    assert steps.min == 1 and field_bounds(fields["steps"])[0] == 1
    warm = at.number_input(key="train_cfg_trades_eps_warmup")
    assert warm.min == 0 and warm.max == 1
    beta = at.number_input(key="train_cfg_trades_beta")
    assert beta.min == 0 and (beta.max is None or beta.max > 1e300)
