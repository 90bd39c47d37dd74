"""The Boundary page's KD vs BSS-KD study on moons, shipped as assets/reproductions/bss-moons/results.json.

    OMP_NUM_THREADS=1 python scripts/bss_moons.py                      # 10 seeds, all and 10 % of the data
    python scripts/bss_moons.py --seeds 0 1 --fractions 1 0.1 --out /tmp/bss-moons

Runs :func:`distill_core.papers.bss.bss_vs_kd` on the zoo's ``moons/teacher`` (its students are
the zoo's ``moons/kd`` and ``moons/bss`` recipes, retrained per seed and training fraction) and
writes its result with the command line that reruns it (paths relative to the repository root),
the seconds it took on how many torch threads, and the caption the page shows
(:func:`distill_core.papers.bss.bss_vs_kd_caption`). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from distill_core.papers.bss import BSS_MOONS_RESULTS, bss_vs_kd, bss_vs_kd_caption  # noqa: E402
from distill_core.runs import atomic_write_json  # noqa: E402
from distill_core.zoo import load_zoo_model  # noqa: E402

DEFAULT_OUT = BSS_MOONS_RESULTS.parent
DEFAULT_SEEDS = tuple(range(10))
DEFAULT_FRACTIONS = (1.0, 0.1)
TEACHER = "moons/teacher"


def recorded(path: str | Path) -> str:
    """``path`` relative to the repository root when under it (POSIX), absolute otherwise."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return str(resolved)


def command_line(seeds, fractions, epochs: int | None, out: Path) -> str:
    """The command that reruns this study from the repository root (defaults left out)."""
    args = ["python", "scripts/bss_moons.py"]
    if tuple(seeds) != DEFAULT_SEEDS:
        args += ["--seeds", *map(str, seeds)]
    if tuple(fractions) != DEFAULT_FRACTIONS:
        args += ["--fractions", *(f"{f:g}" for f in fractions)]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    if out.resolve() != DEFAULT_OUT.resolve():
        args += ["--out", recorded(out)]
    return shlex.join(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                        help="shares of the train split (default: 1 0.1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs at fraction 1 (default: the zoo recipe's); smaller fractions take as many steps")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    teacher = load_zoo_model(TEACHER)[0]
    study = bss_vs_kd(teacher, "moons", fractions=args.fractions, seeds=args.seeds, epochs=args.epochs,
                      log=lambda m: print(f"[bss-moons {time.perf_counter() - start:6.1f} s] {m}", file=sys.stderr,
                                          flush=True))
    seconds = time.perf_counter() - start
    results = {"study": "bss-moons", "teacher": TEACHER, **study, "caption": bss_vs_kd_caption(study),
               "seconds": round(seconds, 1), "command": command_line(args.seeds, args.fractions, args.epochs, args.out),
               "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "python": platform.python_version(), "machine": platform.machine()}}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", results)
    print(f"done in {seconds:.1f} s: {recorded(args.out / 'results.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
