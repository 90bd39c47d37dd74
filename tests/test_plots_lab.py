"""The Temperature, Attack-lab and Sensitivity figures carry the data they are given."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from distill_core.evaluate import log10_histograms
from distill_core.plots import METHOD_SYMBOLS, method_symbol
from distill_core.plots.attacks import (
    attack_images_figure,
    probability_bars_figure,
    saliency_pair_figure,
    trajectory_figure,
    transfer_figure,
)
from distill_core.plots.sensitivity import attribution_gallery_figure, boundary_slice_figure, gradient_histogram_figure
from distill_core.plots.temperature import (
    ebb_entropy_figure,
    ebb_simulation_figure,
    entropy_figure,
    jacobian_scale_figure,
    softmax_bars_figure,
)

NAMES = tuple("0123456789")


def test_temperature_figures() -> None:
    p = np.full(10, 0.1)
    fig = softmax_bars_figure(p, np.eye(10)[3], 4.0, NAMES, true_class=3)
    assert [t.name for t in fig.data] == ["T = 4", "T = 1 (deployed)"] and fig.data[0].x[3] == "3 (true)"
    Ts = np.logspace(-1, 2, 7)
    fig = entropy_figure(Ts, np.linspace(0, 2.3, 7), 10.0, 2.0, 10)
    assert list(fig.data[1].x) == [10.0] and fig.layout.xaxis.type == "log"
    fig = jacobian_scale_figure(Ts, np.array([0, 1e-50, 1e-3, 1e-1, 1e-2, 1e-3, 1e-4]),
                                np.array([True, True, False, False, False, False, False]), 1.0, 1e-3)
    masked = next(t for t in fig.data if t.name == "exactly 0 in float32 (masked)")
    assert len(masked.x) == 2 and fig.layout.yaxis.type == "log"
    fig = ebb_entropy_figure(Ts, {"a": np.linspace(0, 2, 7), "b": np.linspace(0.5, 2.2, 7)}, {"a": (1.0, 1.0)})
    assert [t.name for t in fig.data if t.showlegend is not False] == ["a", "b"]
    sim = {"step": np.arange(3), "tau_nat": np.ones(3), "tau_adv": np.ones(3), "H_nat": np.zeros(3),
           "H_adv": np.ones(3)}
    assert len(ebb_simulation_figure(sim).data) == 4


def test_attack_figures() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x_adv = x.clone()
    x_adv[0, 0, 2, 2] = 0.25
    fig = attack_images_figure(x, x_adv)
    assert "x4" in fig.layout.annotations[1].text and float(np.max(fig.data[1].z)) == 0.25
    rgb = attack_images_figure(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    assert rgb.data[0].type == "image"
    fig = probability_bars_figure(np.eye(10)[1], np.eye(10)[2], NAMES, true_class=1, target=2)
    assert fig.data[0].x[1] == "1 (true)" and fig.data[0].x[2] == "2 (target)"
    series = {"step": np.arange(3), "loss": np.array([0.1, 0.5, 1.0]), "margin": np.array([2.0, 0.5, -1.0]),
              "pred": np.array([1, 1, 2])}
    fig = trajectory_figure(series, NAMES)
    assert list(fig.data[2].y) == ["1", "1", "2"]
    assert len(saliency_pair_figure(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)).data) == 2
    fig = transfer_figure([{"model": "a", "p_true_before": 0.9, "p_true_after": 0.1, "fooled": True}])
    assert list(fig.data[1].text) == ["fooled"]


def test_sensitivity_figures() -> None:
    amps = {"masked": np.array([0.0, 0.0, 1e-40, 1e-3]), "plain": np.array([1e-3, 2e-3, 5e-3, 1e-2])}
    fig = gradient_histogram_figure(log10_histograms(amps, bins=10), "softmax")
    zeros = {t.x[0]: t.y[0] for t in fig.data if t.xaxis == "x2"}
    assert zeros == {"masked": 2, "plain": 0}
    counts = sum(int(np.sum(t.y)) for t in fig.data if t.xaxis == "x")
    assert counts == 6                                    # every positive value lands in a shared bin
    imgs = torch.rand(2, 1, 4, 4)
    fig = attribution_gallery_figure(imgs, {"m sal": torch.rand(2, 1, 4, 4), "m ig": torch.rand(2, 1, 4, 4)},
                                     ["#0", "#1"])
    assert len(fig.data) == 6
    u = np.linspace(-0.5, 0.5, 5)
    pred = np.full((5, 5), 6)
    pred[:, 4] = 5
    fig = boundary_slice_figure({"u": u, "v": u, "pred": pred, "confidence": np.ones((5, 5)), "center_pred": 6}, NAMES)
    assert "u = 0.5 along the adversarial direction" in fig.layout.title.text
    assert "none along the random one" in fig.layout.title.text


def test_tradeoff_labels_do_not_pile_up_and_one_weak_model_does_not_squeeze_the_axis() -> None:
    from distill_core.plots.tradeoff import label_positions, tradeoff_figure

    # Four models on the floor of robustness, close in clean accuracy (the defensive models at 0 %).
    x, y = [94.0, 95.0, 96.0, 97.0], [0.0, 0.0, 0.0, 0.0]
    names = ["teacher-T20", "defensive-T20", "teacher-T100", "defensive-T100"]
    pos = label_positions(x, y, names)
    assert all(pos[i] != pos[i + 1] for i in range(len(pos) - 1))   # neighbours alternate, not all "top center"
    rows = [{"name": n, "label": n, "method": "defensive", "clean": a / 100, "robust": b / 100}
            for n, a, b in zip(names, x, y)]
    fig = tradeoff_figure(rows + [{"name": "weak", "method": "kd", "clean": 0.6, "robust": 0.1}])
    lo, hi = fig.layout.xaxis.range
    assert 50 <= lo < 60 and hi > 97                       # spans the points shown, not 0-100


def test_run_labels_say_method_and_time() -> None:
    from distill_core.lab.tradeoff import run_label

    assert run_label("2026-11-30_133546-kd-moons-mlp-616d9f", {"method": "kd"}) == "kd 13:35"
    assert run_label("2026-11-30_090102-standard-x", {"method": "standard", "method_config": {"T": 20.0}}) == \
        "standard T20 09:01"
    assert run_label("my-own-run", {"method": "kd"}) == "my-own-run"


def test_sweep_curves_follow_the_knob_and_the_apparent_toggle_lifts_a_masked_sweep() -> None:
    from distill_core.plots.tradeoff import tradeoff_figure

    curve = {"id": "defensive-T-1", "method": "defensive", "knob": "T",
             "points": [{"value": 100.0, "clean": 0.95, "robust": 0.0, "apparent": 0.9},
                        {"value": 1.0, "clean": 0.96, "robust": 0.0, "apparent": 0.05},
                        {"value": 20.0, "clean": 0.955, "robust": 0.01, "apparent": 0.6}]}
    true = tradeoff_figure([], curves=[curve])
    [line] = [t for t in true.data if t.name == "defensive: T sweep"]
    assert list(line.text) == ["T=1", "T=20", "T=100"]               # knob order, not the order given
    assert max(line.y) <= 1.0                                          # AutoAttack: flat at the floor
    apparent = tradeoff_figure([], curves=[curve], apparent=True)
    [line] = [t for t in apparent.data if t.name == "defensive: T sweep"]
    assert list(line.y) == [5.0, 60.0, 90.0]                           # PGD-CE: a rising curve
    assert apparent.layout.yaxis.title.text.startswith("apparent")
    assert not any(t.name == "Pareto front" for t in apparent.data)   # a front of apparent numbers would mislead
    assert any(t.name == "Pareto front" for t in true.data)


def _grey(color: str) -> float:
    """The grey level (0-255) a ``#RRGGBB`` colour prints as: ITU-R 601-2 luma, what PIL's ``convert("L")`` gives."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_the_tradeoff_figure_reads_in_grey() -> None:
    """Without hue: every legend entry looks different (marker symbols and line dash only), so do a run and a zoo
    model of one method, and the methods' colours differ in grey level too."""
    from itertools import combinations

    from distill_core.plots import METHOD_COLORS
    from distill_core.plots.tradeoff import tradeoff_figure

    methods = sorted(METHOD_COLORS)
    rows = [{"name": m, "method": m, "clean": 0.9 - 0.01 * i, "robust": 0.1 + 0.05 * i, "source": "zoo"}
            for i, m in enumerate(methods)]
    rows += [{"name": "run", "method": "kd", "clean": 0.8, "robust": 0.3, "source": "runs"},
             {"name": "masked", "method": "defensive", "clean": 0.9, "robust": 0.0, "apparent": 0.8,
              "gap_shown": True, "masked": True},
             {"name": "overstated", "method": "trades", "clean": 0.9, "robust": 0.5, "apparent": 0.7,
              "gap_shown": True, "masked": False}]
    curve = {"knob": "beta", "points": [{"value": 1, "clean": 0.9, "robust": 0.5}, {"value": 6, "clean": 0.8,
                                                                                       "robust": 0.6}]}
    curves = [{**curve, "method": "trades"}, {**curve, "method": "mtard", "knob": "w_adv"},
              {**curve, "method": "mtard", "knob": "tau_adv"}]
    fig = tradeoff_figure(rows, curves=curves)

    def look(t) -> tuple:
        symbols = t.marker.symbol
        symbols = frozenset([symbols] if isinstance(symbols, str) else symbols or ["circle"])
        return (symbols if "markers" in t.mode else None, (t.line.dash or "solid") if "lines" in t.mode else None)

    shown = [t for t in fig.data if t.showlegend is not False]
    assert {"PGD-CE: masked", "PGD-CE: overstated", "Pareto front", "trades: beta sweep", "mtard: w_adv sweep",
            "mtard: tau_adv sweep", *methods} <= {t.name for t in shown}
    looks = {t.name: look(t) for t in shown}
    assert len(set(looks.values())) == len(looks), looks
    points = {t.name: t for t in fig.data if t.mode == "markers+text"}
    assert set(points) == set(methods)
    for a, b in combinations(methods, 2):
        assert not look(points[a])[0] & look(points[b])[0], (a, b)          # no symbol shared by two methods
        assert abs(_grey(points[a].marker.color) - _grey(points[b].marker.color)) >= 15, (a, b)
        assert _grey(points[a].marker.color) <= 190                            # off the white background
    kd = list(points["kd"].marker.symbol)
    assert len(set(kd)) == 2                                                   # the run differs from the zoo model


@pytest.mark.parametrize("method", [*METHOD_SYMBOLS, "imported", "a-method-from-elsewhere", "x", "y1", "z22"])
def test_every_method_symbol_and_its_run_variant_are_plotly_symbols(method):
    """A run is drawn with the method's symbol + "-dot"; an unknown method (an imported model) gets a spare one: both
    must be symbols plotly accepts (a 'bowtie-dot' once broke the Trade-off page for an imported model)."""
    symbol = method_symbol(method)
    go.Scatter(marker=dict(symbol=symbol))
    go.Scatter(marker=dict(symbol=f"{symbol}-dot"))
    from distill_core.plots.tradeoff import tradeoff_figure

    fig = tradeoff_figure([{"name": "r", "method": method, "clean": 0.9, "robust": 0.5, "source": "runs",
                            "label": "r", "learned": True}], "t")
    assert any(t.marker.symbol is not None for t in fig.data)
