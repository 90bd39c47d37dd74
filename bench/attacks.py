"""Attack benchmark: this repository's attacks against torchattacks 3.5.1, side by side on CPU.

    python bench/attacks.py            # papernot-cnn on mnist-5k (2 epochs, cached), full sizes
    python bench/attacks.py --quick    # smoke run: 1 short epoch, a few images and steps (JSMA gamma 0.02)
    python bench/attacks.py --threads 1   # on a busy shared machine: two threads on two oversubscribed
                                          # cores spend their time waiting on each other

The trained model is cached in artifacts/bench/ (``--retrain`` to redo it); ``main(argv)``
returns the table's rows as dicts, for a smoke test.

Rows: PGD-Linf (40 steps, batch 256, no random start, so both must give the same images),
JSMA (theta 1, gamma 0.1, target (y + 1) mod 10), DeepFool (overshoot 0.02, 50 steps) and
CW-L2 (the same total number of Adam steps). torchattacks runs JSMA and DeepFool one image at
a time, so it is timed on fewer images; images/s is comparable across sizes. All images are
test images the model classifies correctly; success = misclassified (untargeted) or predicted
as the target (JSMA); the median perturbation is over successful images.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torchattacks

from distill_core.attacks import cw_l2, deepfool, jsma, pgd
from distill_core.data import load_dataset
from distill_core.models import build_model

CHECKPOINT = ROOT / "artifacts" / "bench" / "papernot-cnn_mnist-5k.pt"
GOALS = {"PGD-Linf": 1.0, "JSMA": 20.0, "DeepFool": 10.0}


def trained_model(quick: bool, retrain: bool = False) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """papernot-cnn on mnist-5k (2 epochs of Adam, seeded; cached unless ``quick``) and its correct test images."""
    train, info = load_dataset("mnist-5k", "train")
    test, _ = load_dataset("mnist-5k", "test")
    torch.manual_seed(0)
    model = build_model("papernot-cnn", info)
    if not quick and CHECKPOINT.exists() and not retrain:
        model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    else:
        x, y = train.tensors
        if quick:
            x, y = x[:1000], y[:1000]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(1 if quick else 2):
            for batch in torch.randperm(len(x)).split(64):
                loss = F.cross_entropy(model(x[batch]), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        if not quick:
            CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), CHECKPOINT)
    model.eval()
    x, y = test.tensors
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return model, x[right], y[right]


def race(ours: Callable[[], torch.Tensor], peer: Callable[[], torch.Tensor],
         repeats: int) -> tuple[torch.Tensor, float, torch.Tensor, float]:
    """Run both ``repeats`` times, interleaved (a busy machine slows both alike); results and best wall times."""
    best = [float("inf"), float("inf")]
    out = [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((ours, peer)):
            start = time.perf_counter()
            out[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return out[0], best[0], out[1], best[1]


def row(attack: str, impl: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
        seconds: float, distance: str, target: torch.Tensor | None = None) -> dict:
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    success = pred == target if target is not None else pred != y
    delta = (x_adv - x).flatten(1)
    size = {"linf": delta.abs().amax(1), "l2": delta.norm(dim=1), "l0": (delta != 0).sum(1).float()}[distance]
    median = float(size[success].median()) if success.any() else float("nan")
    return {"attack": attack, "impl": impl, "n": len(x), "seconds": seconds, "images_per_s": len(x) / seconds,
            "success": float(success.float().mean()), "median": median, "distance": distance}


def bench(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, quick: bool, repeats: int) -> tuple[list, list]:
    rows, notes = [], []
    sizes = {"pgd": 16, "jsma": (4, 1), "deepfool": (4, 1), "cw": 4} if quick else \
        {"pgd": 256, "jsma": (100, 10), "deepfool": (100, 20), "cw": 50}
    pgd_steps, gamma, cw_outer, cw_inner = (5, 0.02, 2, 10) if quick else (40, 0.1, 5, 100)

    n = sizes["pgd"]
    xs, ys = x[:n], y[:n]
    peer_attack = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=pgd_steps, random_start=False)
    ours, t_ours, peer, t_peer = race(lambda: pgd(model, xs, ys, eps=0.3, alpha=0.01, steps=pgd_steps,
                                                  random_start=False), lambda: peer_attack(xs, ys), repeats)
    rows += [row("PGD-Linf", "ours", model, xs, ys, ours, t_ours, "linf"),
             row("PGD-Linf", "torchattacks", model, xs, ys, peer, t_peer, "linf")]
    notes.append(f"PGD-Linf: ours vs torchattacks, max |difference| = {(ours - peer).abs().max():.2e}")

    n, n_peer = sizes["jsma"]
    xs, ys = x[:n], y[:n]
    target = (ys + 1) % 10
    # torchattacks allows ceil(n gamma / 2) iterations, Papernot et al. (and ours) floor: same budget for both.
    iterations = math.ceil(xs[0].numel() * gamma / 2)
    ours_gamma = 2 * iterations / xs[0].numel()
    peer_attack = torchattacks.JSMA(model, theta=1.0, gamma=gamma)
    peer_attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10, quiet=True)
    ours, t_ours, peer, t_peer = race(lambda: jsma(model, xs, ys, target=target, theta=1.0, gamma=ours_gamma),
                                      lambda: peer_attack(xs[:n_peer], ys[:n_peer]), repeats)
    rows += [row("JSMA", "ours", model, xs, ys, ours, t_ours, "l0", target),
             row("JSMA", "torchattacks", model, xs[:n_peer], ys[:n_peer], peer, t_peer, "l0", target[:n_peer])]
    same = row("JSMA", "ours", model, xs[:n_peer], ys[:n_peer], ours[:n_peer], t_ours, "l0", target[:n_peer])
    notes.append(f"JSMA: both at most {iterations} iterations (gamma {gamma}); on the peer's {n_peer} images "
                 f"success ours {same['success']:.0%} vs torchattacks {rows[-1]['success']:.0%}")

    n, n_peer = sizes["deepfool"]
    xs, ys = x[:n], y[:n]
    peer_attack = torchattacks.DeepFool(model, steps=50, overshoot=0.02)
    ours, t_ours, peer, t_peer = race(lambda: deepfool(model, xs, ys, overshoot=0.02, steps=50),
                                      lambda: peer_attack(xs[:n_peer], ys[:n_peer]), repeats)
    rows += [row("DeepFool", "ours", model, xs, ys, ours, t_ours, "l2"),
             row("DeepFool", "torchattacks", model, xs[:n_peer], ys[:n_peer], peer, t_peer, "l2")]
    notes.append(both_fooled("DeepFool", model, xs[:n_peer], ys[:n_peer], ours[:n_peer], peer))

    n = sizes["cw"]
    xs, ys = x[:n], y[:n]
    total = cw_outer * cw_inner
    peer_attack = torchattacks.CW(model, c=1.0, kappa=0.0, steps=total, lr=0.01)
    ours, t_ours, peer, t_peer = race(lambda: cw_l2(model, xs, ys, c=0.1, steps=cw_inner, lr=0.1,
                                                    binary_search_steps=cw_outer), lambda: peer_attack(xs, ys), 1)
    rows += [row("CW-L2", f"ours ({cw_outer} c x {cw_inner} steps, lr 0.1)", model, xs, ys, ours, t_ours, "l2"),
             row("CW-L2", f"torchattacks (c=1, {total} steps, lr 0.01)", model, xs, ys, peer, t_peer, "l2")]
    notes.append(both_fooled("CW-L2", model, xs, ys, ours, peer))
    return rows, notes


def both_fooled(attack: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ours: torch.Tensor,
                peer: torch.Tensor) -> str:
    """The median L2 of both implementations on the images both fool: like for like."""
    with torch.no_grad():
        both = (model(ours).argmax(1) != y) & (model(peer).argmax(1) != y)
    if not both.any():
        return f"{attack}: no image fooled by both"
    l2_ours, l2_peer = ((a - x)[both].flatten(1).norm(dim=1).median() for a in (ours, peer))
    return (f"{attack} on the {int(both.sum())} images both fool: median L2 ours {l2_ours:.3f} vs "
            f"torchattacks {l2_peer:.3f}")


def print_table(rows: list[dict], notes: list[str]) -> None:
    head = (f"{'attack':<9} {'impl':<40} {'n':>4} {'seconds':>8} {'images/s':>9} {'success':>8} {'median pert':>12} "
            f"{'ratio':>7}")
    print(head)
    print("-" * len(head))
    for i, r in enumerate(rows):
        ratio = ""
        if r["impl"] == "ours" or r["impl"].startswith("ours "):
            peer = rows[i + 1]
            ratio = f"{r['images_per_s'] / peer['images_per_s']:.1f}x"
        goal = GOALS.get(r["attack"])
        goal_text = f" (goal >= {goal:g}x)" if goal and ratio else ""
        print(f"{r['attack']:<9} {r['impl']:<40} {r['n']:>4} {r['seconds']:>8.2f} {r['images_per_s']:>9.2f} "
              f"{r['success']:>8.1%} {r['distance'].upper():>4} {r['median']:>7.3f} {ratio:>7}{goal_text}")
    for note in notes:
        print(note)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short training, few images and steps")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached checkpoint")
    parser.add_argument("--repeats", type=int, default=None,
                        help="PGD, JSMA and DeepFool run this many times per implementation, interleaved, and the "
                             "best time counts (default 3, 1 with --quick); CW-L2 runs once")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, x, y = trained_model(args.quick, args.retrain)
    print(f"papernot-cnn on mnist-5k, {len(x)} correct test images; torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}, {torch.get_num_threads()} CPU threads")
    repeats = args.repeats or (1 if args.quick else 3)
    rows, notes = bench(model, x, y, args.quick, repeats)
    print_table(rows, notes)
    print(f"total {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
