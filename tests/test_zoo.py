"""The shipped zoo: files match their hashes, models match their recorded accuracy, builds are reproducible."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill_core._torch import predict
from distill_core.data import load_dataset
from distill_core.robustness import read_record
from distill_core.zoo import ZOO_DIR, list_zoo, load_zoo_model, sha256
from distill_core.zoo_build import RECIPES, build_zoo

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = list_zoo()


def test_zoo_is_shipped_complete_and_small():
    names = {m["name"] for m in ENTRIES}
    assert names == {r.name for r in RECIPES}
    for required in ("mnist-5k/pgd_at", "mnist-5k/standard", "mnist-5k/defensive-T20", "mnist-5k/defensive-T100",
                     "mnist-5k/trades", "mnist-5k/kd", "mnist-5k/bss", "mnist-5k/ard", "mnist-5k/rslad",
                     "mnist-5k/mtard",
                     "moons/teacher", "moons/kd", "moons/bss"):
        assert required in names
    total = sum((ZOO_DIR / m["file"]).stat().st_size for m in ENTRIES)
    assert total < 20e6


@pytest.mark.parametrize("entry", ENTRIES, ids=[m["name"] for m in ENTRIES])
def test_file_matches_hash_and_accuracy_matches_manifest(entry):
    assert sha256(ZOO_DIR / entry["file"]) == entry["sha256"]
    model, info, _ = load_zoo_model(entry["name"])
    assert info.name == entry["dataset"]
    test, _ = load_dataset(entry["dataset"], "test")
    # The build measured with the Trainer's loader; this checks with the pages' batched predict, a different path.
    acc = float((predict(model, test.tensors[0]) == test.tensors[1]).float().mean())
    # Built on another machine's CPU; a different BLAS may flip at most a couple of test samples.
    assert acc == pytest.approx(entry["metrics"]["test_accuracy"], abs=2.5 / len(test))
    assert acc > 1.5 / info.num_classes, "a shipped model at chance did not train"


@pytest.mark.parametrize("entry", ENTRIES, ids=[m["name"] for m in ENTRIES])
def test_robust_accuracy_is_the_autoattack_record(entry):
    """One record under one key; the manifest's flat numbers are that record's (METHODS.md section 6)."""
    rec = read_record(entry)
    assert rec is not None and rec.protocol == "autoattack"
    test, info = load_dataset(entry["dataset"], "test")
    assert rec.n == min(500, len(test)) and rec.eps == info.default_eps
    assert entry["metrics"]["robust_accuracy"] == rec.robust_accuracy
    assert entry["metrics"]["apparent_robust_accuracy"] == rec.apparent_robust_accuracy
    assert entry["metrics"]["robust_attack"] == rec.label and rec.label.startswith("AutoAttack (APGD-CE")
    assert rec.robust_accuracy <= rec.clean_accuracy


def test_the_zoo_tells_masking_from_robustness():
    by_name = {m["name"]: read_record(m) for m in ENTRIES}
    masked = by_name["mnist-5k/defensive-T100"]
    assert masked.masked and masked.gap_shown
    assert masked.robust_accuracy <= 0.05 and masked.apparent_robust_accuracy >= 0.5
    assert masked.flags["zero_gradients"] > 0.5            # the saturated softmax: exactly zero CE gradients
    for name in ("mnist-5k/pgd_at", "mnist-5k/trades", "mnist-5k/ard", "mnist-5k/rslad", "mnist-5k/mtard"):
        assert by_name[name].flags["zero_gradients"] == 0, name   # robust models keep their gradients
        assert by_name[name].robust_accuracy >= 0.3, name
    pgd_at = next(m for m in ENTRIES if m["name"] == "mnist-5k/pgd_at")
    # The bar for PGD-AT (this recipe: the CLI's defaults, small-cnn, seed 0, with 10 epochs)
    assert pgd_at["metrics"]["test_accuracy"] >= 0.90 and by_name["mnist-5k/pgd_at"].robust_accuracy >= 0.35


def test_a_tampered_file_is_refused(tmp_path):
    entry = next(m for m in ENTRIES if m["name"] == "moons/student")
    data = bytearray((ZOO_DIR / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(data))
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [entry]}))
    with pytest.raises(Exception, match="sha256"):
        load_zoo_model("moons/student", zoo_dir=tmp_path)


def test_building_twice_gives_identical_weights(tmp_path):
    a = build_zoo(tmp_path / "a", only=["moons/student"])["models"][0]
    b = build_zoo(tmp_path / "b", only=["moons/student"])["models"][0]
    assert a["sha256"] == b["sha256"]
    assert a["metrics"] == b["metrics"]
    assert {**a["robustness"], "seconds": 0} == {**b["robustness"], "seconds": 0}


def test_zoo_list_cli():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "distill_core", "zoo", "verify"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "mnist-5k/mtard" in res.stdout and "HASH MISMATCH" not in res.stdout
