"""KD vs BSS-KD over seeds and data fractions (papers.bss.bss_vs_kd) and the caption written from its numbers."""

import math

import numpy as np
import pytest

from distill_core.data import load_dataset
from distill_core.evaluate import accuracy, boundary_similarity
from distill_core.papers.bss import (
    bss_vs_kd,
    bss_vs_kd_caption,
    compare_cell,
    equal_step_epochs,
    study_row,
)
from distill_core.reproduce._common import beyond_spread as reexported
from distill_core.stats import beyond_spread
from distill_core.zoo import load_zoo_model
from tests._apptest import require_zoo

require_zoo("moons/teacher", "moons/kd", "moons/bss")


@pytest.fixture(scope="module")
def teacher():
    return load_zoo_model("moons/teacher")[0]


@pytest.fixture(scope="module")
def tiny(teacher):
    return bss_vs_kd(teacher, fractions=(1.0, 0.25), seeds=(0, 1), epochs=2)


def test_tiny_study_shapes_and_statistics(tiny):
    assert tiny["fractions"] == [1.0, 0.25] and tiny["seeds"] == [0, 1]
    assert [(r["fraction"], r["method"]) for r in tiny["rows"]] == [(1.0, "kd"), (1.0, "bss"), (0.25, "kd"),
                                                                    (0.25, "bss")]
    for r in tiny["rows"]:
        assert r["n_train"] == (800 if r["fraction"] == 1.0 else 200)
        assert r["epochs"] == equal_step_epochs(2, 800, r["n_train"], 64)
        for metric in ("accuracy", "mag_sim", "ang_sim"):
            cell = r[metric]
            assert len(cell["values"]) == 2 and all(math.isfinite(v) for v in cell["values"])
            assert cell["mean"] == pytest.approx(np.mean(cell["values"]))
            assert cell["std"] == pytest.approx(np.std(cell["values"], ddof=1))
        assert 0.5 < r["accuracy"]["mean"] <= 1 and 0 < r["mag_sim"]["mean"] <= 1
    # the seed and the method matter: KD and BSS are different students, seeds give different ones
    kd, bss = study_row(tiny, 1.0, "kd"), study_row(tiny, 1.0, "bss")
    assert kd["mag_sim"]["values"] != bss["mag_sim"]["values"]
    assert kd["mag_sim"]["values"][0] != kd["mag_sim"]["values"][1]
    assert tiny["recipes"] == {"kd": "moons/kd", "bss": "moons/bss"} and tiny["model_options"] == {"hidden": [16]}


def test_the_study_is_deterministic(teacher, tiny):
    again = bss_vs_kd(teacher, fractions=(1.0, 0.25), seeds=(0, 1), epochs=2)
    assert again["rows"] == tiny["rows"]


def test_seed_0_with_all_the_data_is_the_zoo_student(teacher):
    """Same settings as the zoo recipes: seed 0 on all the data retrains moons/kd and moons/bss."""
    study = bss_vs_kd(teacher, fractions=(1.0,), seeds=(0,))
    x, y = load_dataset("moons", "test")[0].tensors
    for method in ("kd", "bss"):
        zoo_student = load_zoo_model(f"moons/{method}")[0]
        sim = boundary_similarity(teacher, zoo_student, x, "all", y=y)
        row = study_row(study, 1.0, method)
        assert math.isnan(row["mag_sim"]["std"])                                   # one seed: no spread
        assert row["accuracy"]["values"][0] == pytest.approx(accuracy(zoo_student, (x, y)), abs=1e-6)
        assert row["mag_sim"]["values"][0] == pytest.approx(sim["mag_sim"], abs=1e-3)
        assert row["ang_sim"]["values"][0] == pytest.approx(sim["ang_sim"], abs=1e-3)


def test_bad_settings_are_refused(teacher):
    with pytest.raises(ValueError, match="fractions"):
        bss_vs_kd(teacher, fractions=(0.0,), seeds=(0,))
    with pytest.raises(ValueError, match="seed"):
        bss_vs_kd(teacher, seeds=())
    with pytest.raises(ValueError, match="recipe"):
        bss_vs_kd(teacher, dataset="circles", seeds=(0,))


def test_equal_step_epochs():
    assert equal_step_epochs(40, 800, 800, 64) == 40
    assert equal_step_epochs(40, 800, 80, 64) == 260          # 13 batches x 40 = 2 batches x 260
    assert equal_step_epochs(1, 10, 10_000, 64) == 1


# ---------------------------------------------------------------------- the caption


def _cell(values):
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": list(values)}


def _study(kd_scarce, bss_scarce, kd_full=(0.96, 0.97, 0.95), bss_full=(0.95, 0.97, 0.96)):
    rows = []
    for fraction, kd, bss in ((1.0, kd_full, bss_full), (0.1, kd_scarce, bss_scarce)):
        for method, values in (("kd", kd), ("bss", bss)):
            rows.append({"fraction": fraction, "method": method, "n_train": 800 if fraction == 1 else 80,
                         "epochs": 40, "accuracy": _cell([0.98, 0.99, 0.97]), "mag_sim": _cell(values),
                         "ang_sim": _cell(values)})
    return {"seeds": [0, 1, 2], "fractions": [1.0, 0.1], "rows": rows}


def test_overlapping_numbers_are_within_the_spread():
    caption = bss_vs_kd_caption(_study(kd_scarce=(0.90, 0.95, 0.92), bss_scarce=(0.93, 0.96, 0.91)))
    assert "With all the data (800 samples), KD and BSS are within the seeds' spread on MagSim" in caption
    assert "With 10 % of the data (80 samples), KD and BSS are within the seeds' spread on MagSim" in caption
    assert "raises" not in caption and "lowers" not in caption
    assert "this run does not show it with scarce data" in caption
    assert "Mean ± std over 3 seeds" in caption


def test_separated_numbers_raise():
    caption = bss_vs_kd_caption(_study(kd_scarce=(0.90, 0.91, 0.89), bss_scarce=(0.95, 0.96, 0.94)))
    assert "With 10 % of the data (80 samples), BSS raises MagSim from 0.900 ± 0.010 (KD) to 0.950 ± 0.010" in caption
    assert "BSS raises AngSim from 0.900 ± 0.010 (KD) to 0.950 ± 0.010" in caption
    assert "this run shows it with scarce data" in caption
    assert "With all the data (800 samples), KD and BSS are within the seeds' spread" in caption


def test_kd_above_bss_is_said():
    caption = bss_vs_kd_caption(_study(kd_scarce=(0.95, 0.96, 0.94), bss_scarce=(0.90, 0.91, 0.89)))
    assert "BSS lowers MagSim from 0.950 ± 0.010 (KD) to 0.900 ± 0.010" in caption
    assert "does not show it" in caption


def test_compare_cell_uses_the_spread_rule():
    kd, bss = _cell([0.90, 0.91, 0.89]), _cell([0.93, 0.94, 0.92])      # 3 apart, spread 2
    assert compare_cell(kd, bss) == "raises" and compare_cell(bss, kd) == "lowers"
    wide = _cell([0.85, 0.99, 0.95])
    assert compare_cell(kd, wide) == "within"
    assert reexported is beyond_spread                                    # reproduce uses the same rule
