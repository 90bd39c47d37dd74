"""How fast the app answers: the calls the pages make, timed outside streamlit, and each page's warm render.

    python bench/app_latency.py [--repeats 5] [--threads N] [--pages temperature,attack-lab]

1. Moving the temperature slider: the Temperature page's cached curves are looked up at the new T,
   its four T-dependent figures are built and all six serialised to JSON (what ``st.plotly_chart``
   sends) - goal < 300 ms; also the whole page's rerun under AppTest after a slider move.
2. The Attack lab: a 40-step PGD on one mnist-5k test image against the zoo's standard model, shown
   to the page's three default models, with saliency, and its five figures - goal < 0.5 s on a CPU.
3. Every page (``ui.navigation.PAGES``): its first render in a fresh AppTest session under ``app.py``'s
   router (``switch_page(page).run()``), after one warm-up that fills the caches (AppTest caches
   are process-wide) - goal < 2 s.

Medians over ``--repeats``; the machine's load average is printed because the numbers depend on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np
import plotly.io as pio
import torch

from distill_core.data import load_dataset
from distill_core.lab.attack_lab import attack_one_image
from distill_core.lab.temperature import (
    batch_entropies,
    ebb_simulation,
    image_curves,
    temperature_grid,
    temperatures_for_entropies,
)
from distill_core.plots.attacks import (
    attack_images_figure,
    probability_bars_figure,
    saliency_pair_figure,
    trajectory_figure,
    transfer_figure,
)
from distill_core.plots.data import image_grid_figure
from distill_core.plots.temperature import (
    ebb_entropy_figure,
    ebb_simulation_figure,
    entropy_figure,
    jacobian_scale_figure,
    softmax_bars_figure,
)
from distill_core.zoo import list_zoo, load_zoo_model
from ui.navigation import PAGES, page

GOALS_MS = {"temperature": 300.0, "attack": 500.0, "page": 2000.0}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_temperature_slider(repeats: int) -> float:
    """The slider path of pages/temperature_page.py: lookups in the cached curves, six figures, JSON."""
    test, info = load_dataset("mnist-5k", "test")
    model, _, _ = load_zoo_model("mnist-5k/standard")
    robust, _, _ = load_zoo_model("mnist-5k/trades")
    grid = np.array([float(f"{t:.3g}") for t in temperature_grid(0.1, 100.0, 61)])
    x = test.tensors[0][:1]
    # what the page caches once per image / teacher pair (the same lab functions it calls)
    curves = image_curves(model, x, grid)
    b_nat = batch_entropies(model, test.tensors[0], 256, grid)
    b_adv = batch_entropies(robust, test.tensors[0], 256, grid)
    z_nat, z_adv = torch.from_numpy(b_nat["logits"]), torch.from_numpy(b_adv["logits"])
    h_nat, h_adv = b_nat["entropy"], b_adv["entropy"]
    match = temperatures_for_entropies(z_adv, h_nat)
    sim = ebb_simulation(z_nat, z_adv)
    i_1 = int(np.argmin(np.abs(grid - 1)))
    y = int(test.tensors[1][0])
    positions = iter(np.random.default_rng(0).integers(0, len(grid), 10_000))
    static = [image_grid_figure(x, [f"true: {y}"], cols=1, height=230),
              ebb_simulation_figure(sim, ("standard", "trades"))]

    def move() -> None:
        i = int(next(positions))
        T = float(grid[i])
        figs = [softmax_bars_figure(curves["probs"][i], curves["probs"][i_1], T, info.class_names, y),
                entropy_figure(grid, curves["entropy"], T, float(curves["entropy"][i]), info.num_classes),
                jacobian_scale_figure(grid, curves["norm"], curves["zero_float32"], T, float(curves["norm"][i])),
                ebb_entropy_figure(grid, {"standard": h_nat, "trades": h_adv},
                                   {"standard": (T, float(h_nat[i])), "trades": (float(match[i]), float(h_nat[i]))})]
        figs += static  # the image and EBB-simulation figures are built once and cached by the page
        for f in figs:
            pio.to_json(f, validate=False)

    move()
    return median_ms(move, repeats)


def bench_attack(repeats: int) -> tuple[float, float]:
    """The Run-attack path of pages/attack_lab_page.py: 40-step PGD, three models, saliency, five figures."""
    test, info = load_dataset("mnist-5k", "test")
    names = [n for n in ("mnist-5k/standard", "mnist-5k/defensive-T20", "mnist-5k/trades")
             if n in {m["name"] for m in list_zoo()}]
    models = {n: load_zoo_model(n)[0] for n in names}
    x, y = test.tensors[0][:1], int(test.tensors[1][0])
    attack_only = []

    def run() -> None:
        res = attack_one_image(models, names[0], x, y, "pgd", info=info, eps=0.3, alpha=0.01, steps=40)
        attack_only.append(res.seconds * 1000)
        rows = res.transfer_rows(info.class_names)
        figs = [attack_images_figure(res.x, res.x_adv),
                probability_bars_figure(*res.probs[names[0]], info.class_names, y),
                trajectory_figure(res.series, info.class_names), saliency_pair_figure(*res.saliency),
                transfer_figure(rows)]
        for f in figs:
            pio.to_json(f, validate=False)

    run()
    attack_only.clear()
    total = median_ms(run, repeats)
    return total, statistics.median(attack_only)


def bench_pages(repeats: int, only: list[str] | None) -> list[tuple[str, float | str]]:
    """Each page's first render in a session, under app.py's router, after a warm-up that fills the caches.

    A session starts on the home page (not timed, except for home itself); the time is that of
    ``switch_page(page).run()``: the page and the shared sidebar, as a user who clicks it sees it.
    """
    from streamlit.testing.v1 import AppTest

    app = str(ROOT / "app.py")
    out: list[tuple[str, float | str]] = []
    for p in PAGES:
        if only and p.url_path not in only:
            continue
        rel = p.file

        def render(rel: str = rel) -> float:
            at = AppTest.from_file(app, default_timeout=600)
            t0 = time.perf_counter()
            at.run()
            if rel != page("home").file:
                t0 = time.perf_counter()
                at.switch_page(rel).run()
            ms = (time.perf_counter() - t0) * 1000
            if at.exception:
                raise RuntimeError(at.exception[0].message.splitlines()[0])
            return ms

        try:
            render()
            out.append((p.url_path, statistics.median(render() for _ in range(repeats))))
        except Exception as e:  # noqa: BLE001 - a broken page is reported in the table, the others still run
            out.append((p.url_path, f"error: {e}"[:60]))
    return out


def bench_slider_rerun(repeats: int) -> float:
    """The whole Temperature page rerun after a slider move (AppTest), caches warm."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page("temperature").file), default_timeout=600).run()
    values = [0.1, 0.316, 1.0, 3.16, 10.0, 31.6, 100.0]
    for v in values:
        at.select_slider(key="temp_T").set_value(v).run()
    positions = iter(values * 100)
    return median_ms(lambda: at.select_slider(key="temp_T").set_value(next(positions)).run(), repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--pages", default="", help="comma-separated URL paths of the pages to render (default: all)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rows = []
    rows.append(("temperature: slider move (lookups, 4 figures, JSON)", bench_temperature_slider(args.repeats * 4),
                 GOALS_MS["temperature"]))
    total, attack_ms = bench_attack(args.repeats)
    rows.append(("attack lab: 40-step PGD, 3 models, saliency, 5 figures", total, GOALS_MS["attack"]))
    rows.append(("  of which the PGD alone", attack_ms, None))
    only = [s for s in args.pages.split(",") if s] or None
    if only is None or "temperature" in only:
        rows.append(("temperature: AppTest rerun after a slider move", bench_slider_rerun(args.repeats * 2),
                     GOALS_MS["temperature"]))
    for name, ms in bench_pages(args.repeats, only):
        rows.append((f"first render, caches warm: /{name}", ms, GOALS_MS["page"]))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'median ms':>10}  {'goal ms':>8}  ok")
    for name, ms, goal in rows:
        if isinstance(ms, str):
            print(f"{name:<{width}}  {ms}")
            continue
        ok = "" if goal is None else ("yes" if ms < goal else "NO")
        print(f"{name:<{width}}  {ms:>10.0f}  {'' if goal is None else f'{goal:.0f}':>8}  {ok}")


if __name__ == "__main__":
    main()
