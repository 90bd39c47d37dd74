"""What watching a live run costs: the same MTARD job headless and through the app's job machinery, watched.

    python bench/live_overhead.py [--epochs 1] [--repeats 2] [--dataset mnist-5k] [--student small-cnn] [--browser]

(a) headless: ``spec.prepare_training`` + ``train.run_to_end`` in this process (what the CLI does);
(b) the app's way: a :class:`ui.jobs.TrainingJob` (the Trainer in a spawned worker process) while a
    simulated viewer in this process polls it at the live pages' rate (``ui.widgets.LIVE_REDRAW_S``)
    and builds the Multi-teacher page's live figures from the downsampled series, serialised to
    JSON as ``st.plotly_chart`` would.

(c) with ``--browser``: ``streamlit run app.py`` and headless Chromium (Playwright) on the
    Multi-teacher page, which starts the same 1-epoch MTARD job with its defaults and watches it to
    the end; the run's ``summary.json`` gives its steps and seconds.

All are timed by the Trainer's own clock (``steps / seconds`` of its final event), interleaved
a, b, a, b ... so machine noise hits both; the worker's start-up (spawn, imports, data, teachers)
is printed apart. Prints steps/s for each and the ratio b / a (goal >= 0.9). The zoo's
mnist-5k/standard and mnist-5k/trades are the teachers, as on the Multi-teacher page.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import plotly.io as pio
import torch

from distill_core.plots.training import mtard_live_figures
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import TrainConfig, run_to_end
from ui.jobs import TrainingJob
from ui.widgets import LIVE_POINTS, LIVE_REDRAW_S


def mtard_spec(dataset: str, student: str, epochs: int) -> TrainSpec:
    return TrainSpec(dataset=dataset, model=student, method="mtard",
                     teachers={"clean_teacher": f"{dataset}/standard", "robust_teacher": f"{dataset}/trades"},
                     train=TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=0, device="cpu"))


def headless(spec: TrainSpec) -> float:
    with tempfile.TemporaryDirectory() as runs:
        trainer, _ = prepare_training(spec, runs)
        final = run_to_end(trainer)
    return final.data["steps"] / final.data["seconds"]


def live_figures(job: TrainingJob) -> int:
    """One redraw of the Multi-teacher page's live view: snapshot, thinned series, five figures as JSON."""
    snap = job.snapshot()
    figs = mtard_live_figures(job.series(max_points=LIVE_POINTS)["steps"]).values()     # what the page draws
    size = sum(len(pio.to_json(f, validate=False)) for f in figs)
    _ = snap.progress(), snap.eta_s()
    return size


def watched(spec: TrainSpec) -> tuple[float, float, int]:
    """Steps/s of the job while a viewer redraws it; also its start-up seconds and the number of redraws."""
    with tempfile.TemporaryDirectory() as runs:
        job = TrainingJob([spec], Path(runs))
        t0 = time.perf_counter()
        job.start()
        while job.status == "starting":
            time.sleep(0.01)
        startup = time.perf_counter() - t0
        redraws = 0
        done = threading.Event()

        def viewer() -> None:
            nonlocal redraws
            while not done.is_set():
                live_figures(job)
                redraws += 1
                done.wait(LIVE_REDRAW_S)

        thread = threading.Thread(target=viewer, daemon=True)
        thread.start()
        job.join()
        done.set()
        thread.join()
        final = job.snapshot().final_event()
        if final is None or final.kind != "done":
            raise RuntimeError(f"the watched job ended as {job.status}: {job.snapshot().message}")
    return final.data["steps"] / final.data["seconds"], startup, redraws


def in_browser(timeout_s: float = 900.0) -> float:
    """Steps/s of an MTARD run started and watched on the Multi-teacher page in headless Chromium."""
    import json
    import os
    import shutil
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "DISTILL_RUNS": runs, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1",
                                   "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(180):
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             headless=True, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)              # the first session after a start: see tests/test_browser.py
                page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=180_000)
                page.goto(f"{url}/multi-teacher")
                for _ in range(2):      # the script has finished running and stays finished
                    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                           timeout=180_000)
                    page.wait_for_timeout(1000)
                try:
                    page.locator(".st-key-mt_start button").click(timeout=60_000)
                except Exception:
                    page.screenshot(path=str(ROOT / "artifacts" / "live_overhead_failed.png"), full_page=True)
                    raise
                end = time.time() + timeout_s
                summary = {}
                while time.time() < end:
                    files = list(Path(runs).glob("*/summary.json"))
                    summary = json.loads(files[0].read_text()) if files else {}
                    if summary.get("status") in ("done", "stopped", "diverged", "error"):
                        break
                    time.sleep(1.0)
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    if summary.get("status") != "done":
        raise RuntimeError(f"the browser's run did not finish: {summary.get('status')}")
    return summary["steps"] / summary["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--student", default="small-cnn")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--browser", action="store_true", help="also (c): the Multi-teacher page in headless Chromium")
    args = p.parse_args()
    spec = mtard_spec(args.dataset, args.student, args.epochs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads in this process; MTARD on {args.dataset}, "
          f"student {args.student}, {args.epochs} epoch(s); viewer every {LIVE_REDRAW_S} s, "
          f"at most {LIVE_POINTS} points per chart")
    rates: dict[str, list[float]] = {"headless": [], "watched": []}
    for r in range(args.repeats):
        rates["headless"].append(headless(spec))
        rate, startup, redraws = watched(spec)
        rates["watched"].append(rate)
        print(f"repeat {r + 1}: headless {rates['headless'][-1]:.2f} steps/s, watched {rate:.2f} steps/s "
              f"({redraws} redraws; worker start-up {startup:.1f} s)")
    a, b = statistics.median(rates["headless"]), statistics.median(rates["watched"])
    print(f"\nheadless (CLI)                  {a:6.2f} steps/s")
    print(f"app job, watched (1 redraw/s)   {b:6.2f} steps/s")
    print(f"ratio watched / headless        {b / a:6.3f}   (goal >= 0.9)")
    if args.browser:
        c = in_browser()
        print(f"Multi-teacher page in Chromium  {c:6.2f} steps/s   ratio to headless {c / a:.3f}")


if __name__ == "__main__":
    main()
