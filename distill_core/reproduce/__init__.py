"""The three papers' experiments, headless and seeded: ``results.json`` + ``results.md`` in one folder.

    python -m distill_core reproduce papernot --quick --out /tmp/papernot     # under 90 s on 2 CPU cores
    python -m distill_core reproduce mtard                                    # -> assets/reproductions/mtard/

One module per paper, each with a ``Settings`` dataclass (the full run's values; ``QUICK``
holds the overrides of the CPU-minute version the test suite runs), ``run(settings, log)``
returning the measurements and the checked expectations, and ``markdown(results)``:

- :mod:`.papernot` — defensive distillation's T sweep (with each model's AutoAttack and apparent
  PGD-CE robust accuracy) and the attacks that break it;
- :mod:`.bss` — standard vs KD vs BSS-KD students with scarce data, MagSim / AngSim, AutoAttack;
- :mod:`.mtard` — the MTARD paper's table over seeds 0, 1, 2: clean, FGSM, PGD-20, CW-inf,
  AutoAttack and W-Robust = (clean + AutoAttack) / 2 per method, mean ± std.

Robust accuracy is always :func:`distill_core.robustness.evaluate_robustness` (AutoAttack); each
model's whole report is stored under ``robustness`` and the protocol's label and library version
with the run. ``results.json`` holds ``experiment``, ``quick``, ``settings``, ``seconds``,
``command`` (the command line that reruns it from the repository root; an output folder under the
repository is recorded relative to it, so no machine's paths ship), the experiment's data and
``expectations`` (``[{"claim", "shown", "status", "detail"}]``: did the paper's effect show on
this data, and by how much; ``status`` is ``shown``, ``not shown`` or ``did not train`` (a model
the claim rests on is within 5 points of chance), and ``shown`` is ``status == "shown"``).
Progress goes to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..runs import atomic_write_bytes, atomic_write_json
from . import bss, mtard, papernot
from ._common import Log, ReproductionError, expectation_status, jsonable

__all__ = ["EXPERIMENTS", "ReproductionError", "check_options", "cli_command", "default_out", "expectation_status",
           "recorded_path", "run_reproduction", "stderr_log"]

MODULES: dict[str, ModuleType] = {"papernot": papernot, "bss": bss, "mtard": mtard}
EXPERIMENTS = tuple(MODULES)
TITLES = {"papernot": "Defensive distillation (Papernot et al., IEEE S&P 2016) and its breaking (Carlini & Wagner)",
          "bss": "Boundary-supporting samples with scarce data (Heo et al., AAAI 2019)",
          "mtard": "Multi-teacher adversarial robustness distillation, MTARD (Zhao et al., ECCV 2022)"}
REPO_ROOT = Path(__file__).resolve().parents[2]
REPRODUCTIONS_DIR = REPO_ROOT / "assets" / "reproductions"


def default_out(experiment: str) -> Path:
    """Where a full run writes by default: ``assets/reproductions/<experiment>/`` in the repository (absolute)."""
    return REPRODUCTIONS_DIR / experiment


def shipped_results(experiment: str) -> dict | None:
    """The shipped ``results.json`` of ``experiment`` (:func:`default_out`); None when it is missing or unreadable."""
    try:
        results = json.loads((default_out(experiment) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def recorded_path(path: str | Path) -> str:
    """``path`` as a results file records it: relative to the repository root (POSIX separators) when
    it lies under it, so shipped results name no machine's folders; absolute otherwise. A relative
    ``path`` is taken from the current directory."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(resolved)


def cli_command(experiment: str, quick: bool = False, out: str | Path | None = None, seed: int = 0,
                train_teachers: bool = False) -> str:
    """The command line that reruns a reproduction with these options, from the repository root.

    ``--out`` is left out when ``out`` is the default folder (:func:`default_out`) and written as
    :func:`recorded_path` otherwise (relative to the repository root when under it).
    """
    args = ["python", "-m", "distill_core", "reproduce", experiment]
    args += ["--quick"] if quick else []
    if out is not None and Path(out).expanduser().resolve() != default_out(experiment).resolve():
        args += ["--out", recorded_path(out)]
    args += ["--seed", str(seed)]
    args += ["--train-teachers"] if train_teachers else []
    return shlex.join(args)


def stderr_log(experiment: str) -> Log:
    """A progress printer: ``[experiment  12.3 s] message`` on stderr, time since it was made."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{experiment} {time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return log


def check_options(experiment: str, quick: bool = False, out: str | Path | None = None,
                  train_teachers: bool = False) -> Path:
    """Validate a reproduction's options before anything runs; return the output folder.

    Raises ``ValueError`` for an unknown experiment, ``train_teachers`` with papernot (which
    trains all its models) and ``quick`` without ``out`` (the default folder holds the shipped
    full results).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from: {', '.join(EXPERIMENTS)}")
    if train_teachers and experiment == "papernot":
        raise ValueError("papernot trains all its models; --train-teachers applies to bss and mtard")
    if out is None and quick:
        raise ValueError("--quick needs --out DIR (the default folder holds the shipped full results)")
    return Path(out) if out is not None else default_out(experiment)


def run_reproduction(experiment: str, *, quick: bool = False, out: str | Path | None = None, seed: int = 0,
                     train_teachers: bool = False, log: Log | None = None) -> dict[str, Any]:
    """Run one reproduction and write ``results.json`` and ``results.md`` into ``out``; return the results.

    ``out`` defaults to :func:`default_out` for a full run and is required with ``quick`` (the
    default folder holds the shipped full results). ``seed`` seeds models, data order and
    attacks (BSS: the first of its seeds). ``train_teachers`` (bss, mtard) trains the teachers
    instead of loading them from the zoo. ``log`` gets progress lines (default: stderr).
    Raises ``ValueError`` for bad options (:func:`check_options`) and :class:`ReproductionError`
    when a needed zoo teacher is missing.
    """
    out = check_options(experiment, quick, out, train_teachers)
    module = MODULES[experiment]
    kwargs = {"train_teachers": train_teachers} if experiment != "papernot" else {}
    settings = module.settings(quick, seed, **kwargs)
    log = log or stderr_log(experiment)
    command = cli_command(experiment, quick, out, seed, train_teachers)
    log(f"{'quick' if quick else 'full'} run, seed {seed}, writing to {recorded_path(out)}")

    start = time.perf_counter()
    data = module.run(settings, log)
    seconds = time.perf_counter() - start
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
                   "machine": platform.machine(), "processor": platform.processor() or platform.machine()}
    results = jsonable({"experiment": experiment, "quick": quick,
                        "settings": {**dataclasses.asdict(settings), "environment": environment},
                        "seconds": round(seconds, 1), "command": command, **data})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    atomic_write_bytes(out / "results.md", markdown(results, module).encode())
    log(f"done in {seconds:.1f} s: {recorded_path(out / 'results.json')}, {recorded_path(out / 'results.md')}")
    return results


def markdown(results: dict[str, Any], module: ModuleType) -> str:
    """results.md: title, how it was made, the experiment's tables and its verdict."""
    kind = "quick run (a pipeline check, not the paper's numbers)" if results["quick"] else "full run"
    env = results["settings"]["environment"]
    return "\n\n".join([
        f"# {TITLES[results['experiment']]}",
        f"{kind.capitalize()}: `{results['command']}`, {results['seconds']:.0f} s on {env['threads']} CPU "
        f"thread(s), torch {env['torch']}. Every setting is in results.json.",
        module.markdown(results),
    ]) + "\n"
