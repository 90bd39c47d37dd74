"""The Trainer's overhead against a plain hand-written loop on the same model, data and seed.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/train_overhead.py [--epochs 2] [--model papernot-cnn]
        [--dataset mnist-5k] [--repeats 3] [--record]

Both loops run in this process, interleaved (plain, trainer, plain, trainer, ...) so machine
noise hits both; prints samples/s for each and the ratio trainer / plain (goal >= 0.95). The
Trainer copies each step's loss to the host once, for its step event; the plain loop reads it
once at the end. ``--record`` gives the Trainer a run folder (in a temporary directory) as the
CLI and the app do, so the per-epoch checkpoint and the heartbeat are counted too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from distill_core.data import load_dataset
from distill_core.methods import build_method
from distill_core.models import build_model
from distill_core.runs import create_run
from distill_core.train import TrainConfig, Trainer, seed_everything


def plain_loop(model, x_all, y_all, epochs, batch_size, lr, seed):
    generator = seed_everything(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(x_all)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i: i + batch_size]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return float(loss.detach())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--model", default="papernot-cnn")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", action="store_true", help="the Trainer writes a run folder (checkpoint per epoch)")
    args = p.parse_args()

    train, info = load_dataset(args.dataset, "train")
    x_all, y_all = train.tensors
    n = len(train) * args.epochs
    rates = {"plain loop": [], "Trainer": []}
    for r in range(args.repeats):
        seed_everything(r)
        model = build_model(args.model, info)
        t = time.perf_counter()
        plain_loop(model, x_all, y_all, args.epochs, args.batch_size, 1e-3, r)
        rates["plain loop"].append(n / (time.perf_counter() - t))

        seed_everything(r)
        model = build_model(args.model, info)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seed=r, device="cpu")
        with tempfile.TemporaryDirectory() as runs_dir:
            writer = create_run(runs_dir, {"method": "standard"}) if args.record else None
            trainer = Trainer(build_method("standard", model), (train, None), config, run=writer)
            t = time.perf_counter()
            for _ in trainer.run():
                pass
            rates["Trainer"].append(n / (time.perf_counter() - t))

    print(f"{args.model} on {args.dataset}, {args.epochs} epoch(s) x {args.repeats} repeats, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads"
          f"{', the Trainer writing a run folder' if args.record else ''}")
    print(f"{'loop':<12} {'median samples/s':>17}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k:<12} {v:>17.0f}")
    print(f"ratio Trainer / plain loop: {med['Trainer'] / med['plain loop']:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
