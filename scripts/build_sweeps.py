"""Build the sweeps the Trade-off page ships with: `python -m distill_core sweep` lines, one after another.

    OMP_NUM_THREADS=1 python scripts/build_sweeps.py [--only standard-T,trades-beta]

Each sweep is a set of ordinary run folders under ``assets/sweeps/`` (tagged with its sweep id,
knob and value; model.pt is small), measured with AutoAttack fast at n = 200. The command lines
and their seconds are written to ``assets/sweeps/sweeps.json`` beside the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = "assets/sweeps"
COMMON = ["--dataset", "mnist-5k", "--protocol", "autoattack-fast", "--n", "200", "--runs-dir", OUT, "--quiet"]
SWEEPS = {
    # The defensive-distillation teacher's temperature: apparent robustness rises with T, AutoAttack's does not.
    "standard-T": ["--method", "standard", "--knob", "T", "--values", "1,5,20,100", "--model", "papernot-cnn",
                   "--epochs", "3"],
    "trades-beta": ["--method", "trades", "--knob", "beta", "--values", "0.5,2,6", "--model", "papernot-cnn",
                    "--epochs", "5"],
    "pgd_at-eps": ["--method", "pgd_at", "--knob", "eps", "--values", "0.1,0.2,0.3", "--model", "small-cnn",
                   "--epochs", "5"],
    # MTARD's balance weight with NLB off (the weight stays where it is set), the zoo's teachers.
    "mtard-w_adv": ["--method", "mtard", "--knob", "w_adv", "--values", "0.2,0.5,0.8", "--set", "nlb=false",
                    "--teacher", "clean_teacher=mnist-5k/standard", "--teacher", "robust_teacher=mnist-5k/trades",
                    "--model", "small-cnn", "--epochs", "5"],
    # MTARD's robust-teacher temperature with EBB off (it stays where it is set).
    "mtard-tau_adv": ["--method", "mtard", "--knob", "tau_adv", "--values", "1,3,10", "--set", "ebb=false",
                      "--teacher", "clean_teacher=mnist-5k/standard", "--teacher", "robust_teacher=mnist-5k/trades",
                      "--model", "small-cnn", "--epochs", "5"],
    # ARD's balance of the robust teacher's KL and the clean CE (the paper's alpha; here `a`: `alpha` is PGD's step).
    "ard-a": ["--method", "ard", "--knob", "a", "--values", "0.5,0.8,1", "--teacher", "teacher=mnist-5k/trades",
              "--model", "small-cnn", "--epochs", "5"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated, among {', '.join(SWEEPS)}")
    args = p.parse_args()
    only = [s for s in args.only.split(",") if s] or list(SWEEPS)
    record_path = ROOT / OUT / "sweeps.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"sweeps": {}}
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for name in only:
        argv = ["python", "-m", "distill_core", "sweep", *SWEEPS[name], *COMMON]
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, text=True, capture_output=True)
        seconds = round(time.perf_counter() - t0, 1)
        print(done.stdout, end="")
        if done.returncode != 0:
            sys.exit(f"{name} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        record["sweeps"][name] = {"command": shlex.join(argv), "seconds": seconds, "table": done.stdout}
        record.update(threads=env["OMP_NUM_THREADS"], machine=platform.machine(), python=platform.python_version())
        (ROOT / OUT).mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {seconds} s")


if __name__ == "__main__":
    main()
