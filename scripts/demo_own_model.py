"""The "your own model and data" flow end to end, on small files, with screenshots (issue 13's done-when).

    OMP_NUM_THREADS=1 python scripts/demo_own_model.py [OUT]        # default OUT: /tmp/demo

1. A learnable tiny CIFAR-10 (1,000 train / 300 test images; the class is a colour and a stripe pitch) written in
   the real python-batch format under OUT/data, and a resnet8 trained on it "elsewhere": a plain PyTorch loop on
   raw [0, 1] pixels, saved as {"state_dict": ..., "epoch": np.int64, "best_acc": np.float64}.
2. `streamlit run app.py` with $DISTILL_DATA=OUT/data and an empty runs folder; headless Chromium imports the
   checkpoint through the Train page's form, attacks one CIFAR image in the Attack lab and measures the model with
   AutoAttack on the Trade-off page. Screenshots: OUT/1-import.png, OUT/2-attack-lab.png, OUT/3-tradeoff.png.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from distill_core.data import registered_info  # noqa: E402
from distill_core.models import build_model  # noqa: E402


def write_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.1, 0.9, (10, 3))

    def batch(n: int) -> dict:
        y = np.arange(n) % 10
        x = colours[y][:, :, None, None] * 0.7 + rng.uniform(0, 0.3, (n, 3, 32, 32))
        stripes = (np.arange(32) % (2 + y[:, None] % 4) == 0)[:, None, None, :]
        x = np.clip(x + 0.15 * stripes, 0, 1)
        return {"data": (x * 255).astype(np.uint8).reshape(n, 3072), "labels": [int(v) for v in y]}

    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", 200) for i in range(1, 6)), ("test_batch", 300)]:
        with open(folder / name, "wb") as f:
            pickle.dump(batch(n), f, protocol=2)


def train_elsewhere(folder: Path, out: Path) -> None:
    """A plain training loop, no lab code in it, on raw [0, 1] pixels (the normalisation layer is the identity)."""
    batches = [pickle.load(open(folder / f"data_batch_{i}", "rb")) for i in range(1, 6)]
    x = torch.tensor(np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32)
    y = torch.tensor([v for b in batches for v in b["labels"]])
    torch.manual_seed(0)
    net = build_model("resnet8", registered_info("cifar10"))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for epoch in range(4):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 50):
            idx = perm[i:i + 50]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {float(loss):.3f}")
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("normalize.")}
    torch.save({"state_dict": state, "epoch": np.int64(4), "best_acc": np.float64(0.9)}, out)


def settle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"]', timeout=90_000)
    for _ in range(2):
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=90_000)
        page.wait_for_timeout(800)


def choose(page, key: str, option: str) -> None:
    for _ in range(2):
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5000)
            break
        except Exception:  # noqa: BLE001 - a rerun closed the list: try once more
            page.keyboard.press("Escape")
            settle(page)
    settle(page)


def browse(out: Path, ckpt: Path, port: int = 8622) -> None:
    from playwright.sync_api import sync_playwright

    shutil.rmtree(out / "runs", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISTILL_RUNS": str(out / "runs"), "DISTILL_DATA": str(out / "data"),
           "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--browser.gatherUsageStats", "false",
                               "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=env, stdout=open(out / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url + "/home")
            settle(page)
            page.goto(url + "/train")
            settle(page)
            choose(page, "dataset", "cifar10")
            page.locator(".st-key-train_import_file input[type=file]").set_input_files(str(ckpt))
            settle(page)
            choose(page, "train_import_arch", "resnet8")
            page.locator(".st-key-train_import_name input").fill("resnet8-from-my-cluster")
            page.get_by_role("button", name="Import").click()
            done = page.get_by_text("as run resnet8-from-my-cluster")
            done.wait_for(timeout=60_000)
            settle(page)
            done.scroll_into_view_if_needed()
            page.screenshot(path=str(out / "1-import.png"))
            page.get_by_role("link", name="Attack lab").first.click()
            settle(page)
            choose(page, "atk_name", "pgd")
            page.get_by_role("button", name="Run attack").click()
            settle(page)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.locator('[data-testid="stMetric"]').first.scroll_into_view_if_needed()
            page.screenshot(path=str(out / "2-attack-lab.png"))
            page.get_by_role("link", name="Trade-off").first.click()
            settle(page)
            page.get_by_role("button", name="Evaluate robustness").click()
            start = time.time()
            page.wait_for_selector('[data-testid="stProgress"]', timeout=60_000)
            while time.time() - start < 600 and page.locator('[data-testid="stProgress"]').count():
                page.wait_for_timeout(2000)
            settle(page)
            print(f"AutoAttack (fast) on the imported model: {time.time() - start:.0f} s")
            page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
            page.screenshot(path=str(out / "3-tradeoff.png"))
            browser.close()
    finally:
        server.terminate()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/demo")
    out.mkdir(parents=True, exist_ok=True)
    write_data(out / "data" / "cifar-10-batches-py")
    ckpt = out / "resnet8_cifar_elsewhere.pth"
    train_elsewhere(out / "data" / "cifar-10-batches-py", ckpt)
    browse(out, ckpt)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
