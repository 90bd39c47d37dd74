"""Robustness benchmark: what each protocol costs, and how much the lab's own PGD overstates robustness.

    python bench/robustness.py                          # mnist-5k zoo, n = 500, autoattack-fast + pgd-ce
    python bench/robustness.py --protocols autoattack,autoattack-fast,pgd-ce   # + the standard version (slow)
    python bench/robustness.py --models mnist-5k/trades,mnist-5k/defensive-T100 --n 100

For every zoo model of the dataset: seconds per protocol of ``robustness.evaluate_robustness``
on the first ``n`` test samples (one torch thread unless ``--threads``), and, side by side in
the same process, the lab's own PGD (``attacks.pgd`` with its registry defaults: 40 steps of
0.01 at eps 0.3, uniform start) as the peer. ``PGD / AA`` is the ratio of that PGD-40 robust
accuracy to AutoAttack's: how many times our single attack overstates robustness (inf where
AutoAttack leaves nothing standing). The zoo manifest's own standard-AutoAttack seconds (from
``zoo build``, n = 500) are printed beside them. Goal of the issue: autoattack-fast at n = 500
in <= 60 s per mnist-5k zoo model on one laptop thread; this prints what it measures.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from distill_core.attacks import attack_defaults
from distill_core.data import load_dataset
from distill_core.evaluate import accuracy_under_attack
from distill_core.robustness import PROTOCOLS, evaluate_robustness
from distill_core.zoo import list_zoo, load_zoo_model


def pgd40(model, x, y, info, seed: int) -> tuple[float, float]:
    """The peer: accuracy under the lab's PGD with its registry defaults, and its seconds."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    acc = accuracy_under_attack(model, x, y, "pgd", info=info, batch_size=500)
    return acc, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--models", default="", help="comma-separated zoo names (default: every zoo model of --dataset)")
    p.add_argument("--protocols", default="autoattack-fast,pgd-ce")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    protocols = [s.strip() for s in args.protocols.split(",") if s.strip()]
    unknown = [s for s in protocols if s not in PROTOCOLS]
    if unknown:
        p.error(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    names = [s.strip() for s in args.models.split(",") if s.strip()] or [m["name"] for m in
                                                                         list_zoo(dataset=args.dataset)]
    test, info = load_dataset(args.dataset, "test")
    x, y = test.tensors[0][:args.n], test.tensors[1][:args.n]
    defaults = attack_defaults("pgd", info)
    print(f"{args.dataset}, n = {len(y)}, eps {info.default_eps:g}, {args.threads} thread(s); peer: the lab's PGD "
          f"({defaults['steps']} steps of {defaults['alpha']:g}, uniform start)")
    head = f"{'model':<26} {'clean':>6} " + " ".join(f"{s + ' %':>17} {'s':>6}" for s in protocols)
    print(head + f" {'PGD-40 %':>9} {'s':>5} {'PGD / AA':>9} {'zoo AA s':>9}")
    rows = []
    for name in names:
        model, _, entry = load_zoo_model(name)
        row = {"model": name}
        cells = []
        aa = None
        for proto in protocols:
            r = evaluate_robustness(model, x, y, eps=info.default_eps, protocol=proto, n=len(y), seed=args.seed)
            row[proto] = {"robust": r.robust_accuracy, "seconds": r.seconds}
            row["clean"] = r.clean_accuracy
            if proto.startswith("autoattack") and (aa is None or r.robust_accuracy < aa):
                aa = r.robust_accuracy
            cells.append(f"{100 * r.robust_accuracy:>17.1f} {r.seconds:>6.1f}")
        peer, peer_s = pgd40(model, x, y, info, args.seed)
        ratio = math.inf if aa == 0 and peer > 0 else (peer / aa if aa else float("nan"))
        row.update(pgd40=peer, pgd40_seconds=peer_s, ratio=ratio, zoo_seconds=entry.get("measure_seconds"))
        zoo_s = "" if row["zoo_seconds"] is None else f"{row['zoo_seconds']:.0f}"
        print(f"{name:<26} {100 * row['clean']:>6.1f} " + " ".join(cells)
              + f" {100 * peer:>9.1f} {peer_s:>5.1f} {ratio:>9.2f} {zoo_s:>9}", flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
