"""How the model zoo is built: one recipe per shipped model, trained seeded, measured, hashed.

    python -m distill_core zoo build     # retrain and re-measure all of them, seeded (one CPU thread: about an hour,
                                         # most of it AutoAttack on the robust models)

Reading the zoo is :mod:`distill_core.zoo`; this module trains it (through
:func:`distill_core.spec.prepare_training`) and writes ``assets/zoo/manifest.json``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import load_dataset
from .robustness import evaluate_robustness
from .runs import atomic_write_json
from .spec import TrainSpec, prepare_training
from .train import TrainConfig, evaluate_accuracy, run_to_end
from .zoo import ZOO_DIR, _manifest_path, load_zoo_model, read_manifest, sha256

ROBUST_N = 500          # test samples for the manifest's robust accuracy (AutoAttack at the dataset's eps)
ROBUST_PROTOCOL = "autoattack"


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained (teachers are other zoo names, built first)."""

    name: str
    dataset: str
    model: str
    method: str
    method_config: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    teachers: dict[str, str] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    role: str = ""           # one line for the sidebar: what the model is for


def _mnist(epochs: int = 3, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=0, device="cpu", **kw)


def _moons(epochs: int = 40) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, seed=0, device="cpu")


_ADV: dict[str, Any] = {}            # adversarial methods: their defaults (10 PGD steps, eps warm-up over 40 %)
_ADV_EPOCHS = 5                      # adversarial training needs the warm-up plus time at the full eps
# Robust students (PGD-AT and the distilled ones) get the same, longer budget: at 5 epochs ARD / RSLAD / MTARD
# stay at 29-34 % under AutoAttack while PGD-AT reaches 44 %; ARD at 10 epochs reaches 52 % (2026-11-30).
_STUDENT_EPOCHS = 10
_TINY = {"hidden": [16]}             # moons students

RECIPES: tuple[Recipe, ...] = (
    Recipe("mnist-5k/standard", "mnist-5k", "papernot-cnn", "standard", {}, _mnist(),
           role="clean teacher (papernot-cnn, T = 1)"),
    Recipe("mnist-5k/teacher-T20", "mnist-5k", "papernot-cnn", "standard", {"T": 20.0}, _mnist(),
           role="defensive-distillation teacher trained at T = 20"),
    Recipe("mnist-5k/defensive-T20", "mnist-5k", "papernot-cnn", "defensive", {"T": 20.0}, _mnist(),
           {"teacher": "mnist-5k/teacher-T20"}, role="defensively distilled student, T = 20"),
    Recipe("mnist-5k/teacher-T100", "mnist-5k", "papernot-cnn", "standard", {"T": 100.0}, _mnist(),
           role="defensive-distillation teacher trained at T = 100"),
    Recipe("mnist-5k/defensive-T100", "mnist-5k", "papernot-cnn", "defensive", {"T": 100.0}, _mnist(),
           {"teacher": "mnist-5k/teacher-T100"}, role="defensively distilled student, T = 100"),
    Recipe("mnist-5k/trades", "mnist-5k", "papernot-cnn", "trades", dict(_ADV), _mnist(_ADV_EPOCHS),
           role="robust teacher (TRADES, beta = 6)"),
    Recipe("mnist-5k/pgd_at", "mnist-5k", "small-cnn", "pgd_at", dict(_ADV), _mnist(_STUDENT_EPOCHS),
           role="small model, Madry's PGD adversarial training (no teacher)"),
    Recipe("mnist-5k/kd", "mnist-5k", "small-cnn", "kd", {}, _mnist(), {"teacher": "mnist-5k/standard"},
           role="small student, Hinton KD from the clean teacher"),
    Recipe("mnist-5k/bss", "mnist-5k", "small-cnn", "bss", {}, _mnist(), {"teacher": "mnist-5k/standard"},
           role="small student, KD with boundary-supporting samples"),
    Recipe("mnist-5k/ard", "mnist-5k", "small-cnn", "ard", dict(_ADV), _mnist(_STUDENT_EPOCHS),
           {"teacher": "mnist-5k/trades"},
           role="small student, ARD from the robust teacher"),
    Recipe("mnist-5k/rslad", "mnist-5k", "small-cnn", "rslad", dict(_ADV), _mnist(_STUDENT_EPOCHS),
           {"teacher": "mnist-5k/trades"},
           role="small student, RSLAD from the robust teacher"),
    Recipe("mnist-5k/mtard", "mnist-5k", "small-cnn", "mtard", dict(_ADV), _mnist(_STUDENT_EPOCHS),
           {"clean_teacher": "mnist-5k/standard", "robust_teacher": "mnist-5k/trades"},
           role="small student, MTARD from both teachers (EBB + NLB)"),
    Recipe("moons/teacher", "moons", "mlp", "standard", {}, _moons(), role="2-D teacher, MLP 64-64"),
    Recipe("moons/student", "moons", "mlp", "standard", {}, _moons(), model_options=_TINY,
           role="2-D student trained alone, MLP 16"),
    Recipe("moons/kd", "moons", "mlp", "kd", {}, _moons(), {"teacher": "moons/teacher"}, model_options=_TINY,
           role="2-D student, Hinton KD"),
    Recipe("moons/bss", "moons", "mlp", "bss", {}, _moons(), {"teacher": "moons/teacher"}, model_options=_TINY,
           role="2-D student, KD with boundary-supporting samples"),
    Recipe("moons/defensive-T20", "moons", "mlp", "defensive", {"T": 20.0}, _moons(),
           {"teacher": "moons/teacher-T20"}, role="2-D defensively distilled student, T = 20"),
    Recipe("moons/teacher-T20", "moons", "mlp", "standard", {"T": 20.0}, _moons(),
           role="2-D teacher trained at T = 20"),
)


# ---------------------------------------------------------------------- reading


def measure(model: nn.Module, dataset: str, seed: int = 0, protocol: str = ROBUST_PROTOCOL,
            progress: Callable[[float, str], None] | None = None) -> tuple[dict, dict]:
    """``(metrics, record)``: clean test accuracy (whole test split) and the robustness record.

    Robustness is :func:`robustness.evaluate_robustness` (AutoAttack, standard version, at the
    dataset's eps) on the first ``ROBUST_N`` test samples. ``metrics`` keeps the manifest's flat
    numbers: ``test_accuracy``, ``robust_accuracy`` (AutoAttack), ``robust_attack`` (its label)
    and ``apparent_robust_accuracy`` (PGD-CE); ``record`` is the full report (``to_dict``).
    """
    test, info = load_dataset(dataset, "test", seed=seed)
    acc = evaluate_accuracy(model, test)
    x, y = test.tensors
    report = evaluate_robustness(model, x, y, eps=info.default_eps, protocol=protocol,
                                 n=min(ROBUST_N, len(x)), seed=seed, progress=progress)
    metrics = {"test_accuracy": acc, "robust_accuracy": report.robust_accuracy, "robust_attack": report.label,
               "apparent_robust_accuracy": report.apparent_robust_accuracy}
    return metrics, report.to_dict()


def build_zoo(zoo_dir: Path | None = None, only: list[str] | None = None,
              on_event: Callable[[str, Any], None] | None = None,
              on_measure: Callable[[str, float, str], None] | None = None) -> dict:
    """Train every recipe (or ``only`` these and what they need), seeded, measure it, and write the manifest.

    ``on_event(name, event)`` gets each model's Trainer events; ``on_measure(name, fraction, message)``
    the progress of its robustness measurement (:func:`measure`).
    """
    zoo_dir = Path(zoo_dir or ZOO_DIR)
    zoo_dir.mkdir(parents=True, exist_ok=True)
    existing = {m["name"]: m for m in read_manifest(zoo_dir)["models"]}
    by_name = {r.name: r for r in RECIPES}
    unknown = [n for n in only or [] if n not in by_name]
    if unknown:
        raise ValueError(f"no zoo recipe named {unknown[0]!r}; choose from: {', '.join(by_name)}")
    wanted = list(only or by_name)  # teachers not rebuilt now are loaded from the zoo on disk
    built: dict[str, nn.Module] = {}
    order = _topological(wanted, by_name)
    for name in order:
        r = by_name[name]
        t0 = time.perf_counter()
        teachers = {}
        for role, ref in r.teachers.items():
            teachers[role] = built[ref] if ref in built else load_zoo_model(ref, zoo_dir)[0]
        spec = TrainSpec(dataset=r.dataset, model=r.model, method=r.method, method_config=r.method_config,
                         train=r.train, model_options=r.model_options)
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = prepare_training(spec, None, teacher_models=teachers)
            run_to_end(trainer, None if on_event is None else (lambda e, name=name: on_event(name, e)),
                       require_done=f"zoo model {name}")
            model = trainer.model.eval()
            file = name.replace("/", "__") + ".pt"
            tmp_file = Path(tmp) / file
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp_file)
            shutil.move(tmp_file, zoo_dir / file)
        built[name] = model
        train_seconds = round(time.perf_counter() - t0, 1)
        progress = None if on_measure is None else (lambda f, msg, name=name: on_measure(name, f, msg))
        metrics, record = measure(model, r.dataset, progress=progress)
        _, info = load_dataset(r.dataset, "test")
        existing[name] = {"name": name, "file": file, "sha256": sha256(zoo_dir / file),
                          "bytes": (zoo_dir / file).stat().st_size, "dataset": r.dataset, "model": r.model,
                          "model_options": r.model_options, "method": r.method, "method_config": r.method_config,
                          "train": asdict(r.train), "teachers": r.teachers, "role": r.role, "info": info.to_dict(),
                          "metrics": metrics, "robustness": record, "train_seconds": train_seconds,
                          "measure_seconds": record["seconds"], "torch": torch.__version__}
    manifest = {"command": "python -m distill_core zoo build",
                "models": [existing[n] for n in [r.name for r in RECIPES] if n in existing]}
    atomic_write_json(_manifest_path(zoo_dir), manifest)
    return manifest


def _topological(names: list[str], by_name: dict[str, Recipe]) -> list[str]:
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        for ref in by_name[n].teachers.values():
            if ref in names:
                visit(ref)
        order.append(n)

    for n in names:
        visit(n)
    return order
