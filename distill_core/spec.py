"""From a description of a training job to a ready Trainer writing a run folder.

The CLI, the app's background worker and the tests all start training here::

    spec = TrainSpec(dataset="mnist-5k", model="papernot-cnn", method="standard",
                     train=TrainConfig(epochs=3))
    trainer, run = prepare_training(spec, runs_dir="runs")
    for event in trainer.run(): ...
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .data import load_dataset
from .methods import Controls, build_method, get_method
from .models import build_model
from .runs import RunError, RunWriter, create_run, load_model
from .train import StopToken, TrainConfig, Trainer, seed_everything


@dataclass
class TrainSpec:
    """Everything that defines a run (stored as its config.json)."""

    dataset: str = "mnist-5k"
    model: str = "papernot-cnn"
    method: str = "standard"
    method_config: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    teachers: dict[str, str] = field(default_factory=dict)    # role -> run folder or zoo name
    fraction: float = 1.0                                      # share of the train split (scarce data)
    data_root: str | None = None
    download: bool = False
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    name: str | None = None                                    # run folder name (default: generated)
    init: str | None = None                                    # run folder or zoo name whose weights start the model
    tags: dict[str, Any] = field(default_factory=dict)         # JSON labels kept in config.json and summary.json
                                                               # (a sweep's: sweep, knob, value, seed)


def resolve_model(ref: str, runs_dir: str | os.PathLike | None = None) -> nn.Module:
    """A trained model by reference: a run folder path, a run name under ``runs_dir``, or a zoo name."""
    candidates = [Path(ref)]
    if runs_dir is not None:
        candidates.append(Path(runs_dir) / ref)
    for path in candidates:
        if path.is_dir():
            return load_model(path)[0]
    try:
        from .zoo import load_zoo_model
    except ImportError:
        load_zoo_model = None
    if load_zoo_model is not None:
        try:
            return load_zoo_model(ref)[0]
        except KeyError:
            pass
    raise RunError(f"no run folder or zoo model named {ref!r}")


def prepare_training(spec: TrainSpec, runs_dir: str | os.PathLike | None = None, *, stop: StopToken | None = None,
                     controls: Controls | None = None, teacher_models: dict[str, nn.Module] | None = None,
                     init_state: dict | None = None) -> tuple[Trainer, RunWriter | None]:
    """Load data, build the model (seeded), load teachers, and return the Trainer and its run writer.

    ``teacher_models`` gives teachers directly (already loaded) instead of by reference;
    ``init_state`` starts the model from given weights (defensive distillation's shared init), by
    default those of ``spec.init`` when it names a model. ``spec.tags`` (JSON values) are written
    under ``"tags"`` in the run's config.json and summary.json (:mod:`lab.sweeps` groups runs by them).
    Raises ``ValueError`` for unknown names or bad settings before anything is written.
    """
    method_cls = get_method(spec.method)
    train_ds, info = load_dataset(spec.dataset, "train", spec.data_root, spec.download, seed=spec.train.seed,
                                  fraction=spec.fraction, **spec.dataset_options)
    test_ds, _ = load_dataset(spec.dataset, "test", spec.data_root, spec.download, seed=spec.train.seed,
                              **spec.dataset_options)
    seed_everything(spec.train.seed)
    model = build_model(spec.model, info, **spec.model_options)
    if init_state is None and spec.init is not None:
        init_state = resolve_model(spec.init, runs_dir).state_dict()
    if init_state is not None:
        model.load_state_dict(init_state)
    teachers = dict(teacher_models or {})
    for role, ref in spec.teachers.items():
        if role not in teachers:
            teachers[role] = resolve_model(ref, runs_dir)
    unknown = [r for r in teachers if r not in method_cls.teacher_roles]
    if unknown:
        raise ValueError(f"method {spec.method!r} takes teachers {list(method_cls.teacher_roles) or 'none'}, "
                         f"not {unknown}")
    method = build_method(spec.method, model, spec.method_config, teachers, info)
    writer = None
    if runs_dir is not None:
        config = {"dataset": spec.dataset, "model": spec.model, "method": spec.method,
                  "method_config": method.config_dict(), "train": asdict(spec.train), "teachers": spec.teachers,
                  "fraction": spec.fraction, "dataset_options": spec.dataset_options,
                  "model_options": spec.model_options, "info": info.to_dict(),
                  **({"init": spec.init} if spec.init is not None else {}),
                  **({"tags": dict(spec.tags)} if spec.tags else {})}
        writer = create_run(runs_dir, config, spec.name)
        if spec.tags:   # RunWriter.finish merges into the summary it keeps, so every later write holds the tags
            writer.finish({"tags": dict(spec.tags)})
    return Trainer(method, (train_ds, test_ds), spec.train, stop=stop, run=writer, controls=controls), writer
