"""Figures of the defensive-distillation, boundary and trade-off pages: their data, not their look."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from distill_core.plots.boundary import boundary_figure, bss_image_figure
from distill_core.plots.defensive import (
    break_it_figure,
    confidence_figure,
    gradient_histogram_figure,
    sweep_figure,
    training_figure,
)
from distill_core.plots.tradeoff import tradeoff_figure


def _rows():
    def point(T, jsma, acc, rho, zero):
        return {"T": T, "jsma_softmax_success": jsma, "test_accuracy": acc, "rho_adv": rho, "confidence": 0.99,
                "zero_grad_fraction": zero, "grad_hist": {"edges": [-30.0, -20.0, -10.0, 0.0], "counts": [1, 2, 5]}}

    return [point(1.0, 0.9, 0.95, 0.02, 0.0), point(20.0, 0.1, 0.94, 0.1, 0.4), point(100.0, 0.01, 0.93, math.nan, 0.8)]


def _trace(fig: go.Figure, name: str):
    return next(t for t in fig.data if t.name == name)


def test_sweep_figure_plots_percentages_on_a_log_axis_and_marks_T():
    fig = sweep_figure(_rows(), highlight_T=20.0, baseline={"jsma_softmax_success": 0.95,
                                                                      "test_accuracy": 0.96})
    jsma = _trace(fig, "JSMA success on the softmax")
    assert list(jsma.x) == [1.0, 20.0, 100.0] and list(jsma.y) == pytest.approx([90.0, 10.0, 1.0])
    assert list(_trace(fig, "clean test accuracy").y) == pytest.approx([95.0, 94.0, 93.0])
    assert list(_trace(fig, "undistilled model").y) == pytest.approx([95.0, 96.0])
    assert _trace(fig, "paper (MNIST, JSMA success)").y == (95.89, 0.45)
    assert fig.layout.xaxis.type == "log"
    [line] = fig.layout.shapes
    assert line.x0 == 20.0                      # the data value on the log axis (see the test below)
    assert not sweep_figure(_rows(), paper=False).layout.shapes


def test_confidence_figure_shows_rho_only_where_measured():
    fig = confidence_figure(_rows())
    rho = _trace(fig, "rho_adv (pixels JSMA must change)")
    assert list(rho.y)[:2] == pytest.approx([2.0, 10.0]) and rho.y[2] is None
    assert rho.xaxis == "x2" and len(fig.layout.shapes) == 0
    assert len(confidence_figure(_rows(), highlight_T=20.0).layout.shapes) == 2
    no_rho = [{**r, "rho_adv": math.nan} for r in _rows()]
    assert len(confidence_figure(no_rho).data) == 1


def test_gradient_histogram_has_one_curve_per_T_with_its_zero_share():
    fig = gradient_histogram_figure(_rows(), highlight_T=100.0)
    assert [t.name for t in fig.data] == ["T = 1, 0 % exactly 0", "T = 20, 40 % exactly 0",
                                          "T = 100, 80 % exactly 0"]
    assert list(fig.data[0].x) == pytest.approx([-25.0, -15.0, -5.0])
    # Percent of all samples, the exact zeros included: 8 counted + 32 zeros at T = 100 -> 5 / 40.
    assert fig.data[2].y[2] == pytest.approx(100 * 5 / 40)
    assert fig.data[2].line.width == 4 and fig.data[0].line.width == 2
    assert len(gradient_histogram_figure([]).data) == 0


def test_break_it_figure_greys_the_masked_attacks():
    res = {"n": 10, "rows": [{"key": "jsma_softmax", "attack": "JSMA soft", "success": 0.0, "masked": True},
                             {"key": "jsma_logits", "attack": "JSMA logits", "success": 0.6, "masked": False}]}
    [bars] = break_it_figure(res).data
    assert list(bars.y) == ["JSMA logits", "JSMA soft"] and list(bars.x) == [60.0, 0.0]
    assert bars.marker.color[1] == "#9a9a9a" and bars.marker.color[0] != "#9a9a9a"


def test_training_figure_has_loss_and_accuracy_per_stage():
    series = {"teacher": {"steps": {"step": [1, 2], "loss": [2.0, 1.0]},
                          "evals": {"epoch": [1], "test_accuracy": [0.9]}},
              "student": {"steps": {"step": [1], "loss": [1.5]}, "evals": {"epoch": [], "test_accuracy": []}}}
    fig = training_figure(series)
    assert [t.name for t in fig.data] == ["teacher loss", "teacher accuracy", "student loss"]
    assert list(fig.data[1].y) == [90.0]


def _grid(n_classes=2, r=5):
    xs = np.linspace(0, 1, r)
    probs = np.random.default_rng(0).dirichlet(np.ones(n_classes), size=(r, r))
    return {"xs": xs, "ys": xs, "probs": probs, "pred": probs.argmax(2), "max_prob": probs.max(2)}


def test_boundary_figure_draws_paths_up_to_the_step():
    grid = _grid()
    path = np.stack([np.linspace([0.1, 0.1], [0.5, 0.5], 11), np.linspace([0.9, 0.2], [0.6, 0.4], 11)], 1)
    paths = {"path": path, "base": np.array([0, 1]), "target": np.array([1, 0])}
    fig = boundary_figure(grid, 2, (np.zeros((4, 2)), np.array([0, 1, 1, 0])), paths=paths, step=3,
                          teacher_grid=grid)
    assert np.allclose(fig.data[0].z, grid["probs"][..., 1])
    assert isinstance(fig.data[1], go.Contour)
    lines = [t for t in fig.data if t.name and t.name.startswith("BSS path")]
    assert len(lines) == 2 and len(lines[0].x) == 4 and lines[1].x[-1] == pytest.approx(path[3, 1, 0])
    full = boundary_figure(grid, 2, paths=paths)
    assert len(next(t for t in full.data if t.name == "BSS path 0").x) == 11
    three = boundary_figure(_grid(3), 3)
    assert np.array_equal(three.data[0].z, _grid(3)["pred"])


def test_bss_image_figure_shows_the_image_its_bss_and_the_perturbations():
    x = np.zeros((1, 4, 4))
    res = {"x_bss": np.full((3, 1, 4, 4), 0.5), "targets": np.array([1, 2, 3]), "landed": np.array([1, 0, 3]),
           "p_target": np.array([0.6, 0.2, 0.5]), "l2": np.array([2.0, 2.0, 2.0]), "base": 0}
    fig = bss_image_figure(x, res, ["a", "b", "c", "d"])
    assert len(fig.data) == 1 + 2 * 3
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "original: a" and titles[1].startswith("→ b: in b")


def test_tradeoff_figure_marks_runs_with_a_dark_rim_and_a_dot():
    rows = [{"name": "z", "method": "kd", "clean": 0.9, "robust": 0.1, "source": "zoo"},
            {"name": "r", "method": "kd", "clean": 0.8, "robust": 0.3, "source": "runs"},
            {"name": "u", "method": "kd", "clean": 0.7, "robust": None, "source": "runs"}]
    fig = tradeoff_figure(rows)
    assert list(fig.data[0].marker.symbol) == ["triangle-up", "triangle-up-dot"] and len(fig.data[0].x) == 2
    assert list(fig.data[0].marker.line.color) == ["white", "#222"]


def test_the_highlighted_temperature_is_drawn_at_T_on_the_log_axis():
    # plotly places a shape on a log axis at its data value (checked in Chromium): T, not log10(T).
    fig = sweep_figure(_rows(), highlight_T=100.0)
    assert [s.x0 for s in fig.layout.shapes] == [100.0]
