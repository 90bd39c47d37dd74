"""The run registry: one folder per training run, written atomically, listed safely.

    runs/2026-11-22_101500-standard-mnist-5k-papernot-cnn-3f2a/
        config.json     what was trained: dataset (+ its info), model, method and its settings, trainer settings
        metrics.jsonl   one JSON record per epoch (train loss, test accuracy, ...)
        model.pt        the state dict only, loaded with ``torch.load(..., weights_only=True)``
        summary.json    method, dataset, model, status, epochs, seconds, test_accuracy, and once evaluated
                        the robustness record under "robustness" (schema: robustness.py)

Every file is written to a temporary name and renamed into place, so a reader never sees half
a file. A folder whose config or summary is missing or unreadable is listed as *broken* with
the reason, never raised: one bad folder must not take a page down.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import DatasetInfo
from .models import build_model
from .robustness import read_record

CONFIG, METRICS, MODEL, SUMMARY = "config.json", "metrics.jsonl", "model.pt", "summary.json"
DEFAULT_RUNS_DIR = os.environ.get("DISTILL_RUNS", "runs")


class RunError(ValueError):
    """A run folder or checkpoint that cannot be used; the message says why."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (Path, torch.device)):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class RunWriter:
    """Writes one run folder; the Trainer calls :meth:`log`, :meth:`save_model` and :meth:`finish`."""

    def __init__(self, path: Path, config: dict):
        self.path = Path(path)
        self.config = config
        if self.path.exists():
            raise FileExistsError(f"run folder {self.path} already exists")
        self.created = time.time()
        self._summary = {"name": self.path.name, "method": config.get("method"), "dataset": config.get("dataset"),
                         "model": config.get("model"), "status": "running", "epochs": 0, "seconds": 0.0,
                         "test_accuracy": None, "created": self.created}
        # Written under a hidden name and renamed into place, so a listing never sees a folder
        # without its config and summary (list_runs skips dot-folders).
        staging = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:6]}.creating")
        staging.mkdir(parents=True)
        atomic_write_json(staging / CONFIG, config)
        atomic_write_json(staging / SUMMARY, self._summary)
        os.rename(staging, self.path)

    def log(self, record: dict) -> None:
        """Append one metrics record (a line of JSON; a torn last line is skipped by readers)."""
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")

    def save_model(self, model: nn.Module) -> None:
        """Save the state dict (tensors only: loadable with ``weights_only=True``)."""
        state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
        tmp = self.path / f".{MODEL}.{uuid.uuid4().hex}.tmp"
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path / MODEL)
        finally:
            tmp.unlink(missing_ok=True)

    def finish(self, summary: dict) -> None:
        self._summary.update(summary)
        atomic_write_json(self.path / SUMMARY, self._summary)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel / torch.compile wrappers


def new_run_name(config: dict) -> str:
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    parts = [config.get("method", "run"), config.get("dataset", ""), config.get("model", "")]
    return "-".join([stamp, *[str(p) for p in parts if p], uuid.uuid4().hex[:6]])


def create_run(runs_dir: str | os.PathLike, config: dict, name: str | None = None) -> RunWriter:
    """Make a new, uniquely named run folder under ``runs_dir`` holding ``config``."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    return RunWriter(runs_dir / (name or new_run_name(config)), config)


@dataclass
class Run:
    """A run folder as read from disk; ``broken`` with ``error`` when it cannot be used."""

    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    broken: bool = False
    error: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return "broken" if self.broken else str(self.summary.get("status", "unknown"))

    def row(self) -> dict:
        """A flat dict for tables (runs list, trade-off page); robustness None when not evaluated."""
        s = self.summary
        rec = read_record(s)
        return {"name": self.name, "status": self.status, "method": self.config.get("method", s.get("method")),
                "dataset": self.config.get("dataset", s.get("dataset")),
                "model": self.config.get("model", s.get("model")), "epochs": s.get("epochs"),
                "seconds": s.get("seconds"), "test_accuracy": s.get("test_accuracy"),
                "robust_accuracy": None if rec is None else rec.robust_accuracy,
                "apparent_robust_accuracy": None if rec is None else rec.apparent_robust_accuracy,
                "robust_protocol": None if rec is None else rec.protocol,
                "learned": s.get("learned"), "created": s.get("created"), "error": self.error}


def _read_json(path: Path) -> dict:
    with open(path) as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return obj


def read_run(path: str | os.PathLike) -> Run:
    """Read a run folder; never raises for a bad folder (it comes back ``broken``)."""
    path = Path(path)
    run = Run(path)
    try:
        run.config = _read_json(path / CONFIG)
        run.summary = _read_json(path / SUMMARY)
        if run.summary.get("status") in ("done", "stopped", "diverged") and not (path / MODEL).exists():
            raise FileNotFoundError("model.pt is missing")
    except (OSError, ValueError) as e:
        run.broken, run.error = True, f"{type(e).__name__}: {e}"
    return run


def list_runs(runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR) -> list[Run]:
    """All run folders under ``runs_dir``, newest first; unreadable ones marked broken."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [read_run(p) for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(runs, key=lambda r: (r.summary.get("created") or 0, r.name), reverse=True)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The metrics records of a run (a torn or corrupt line is skipped)."""
    out = []
    try:
        lines = (Path(path) / METRICS).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def update_summary(path: str | os.PathLike, **fields) -> dict:
    """Merge ``fields`` into a run's summary.json (atomically) and return it."""
    path = Path(path)
    summary = _read_json(path / SUMMARY)
    summary.update(fields)
    atomic_write_json(path / SUMMARY, summary)
    return summary


def delete_run(path: str | os.PathLike) -> None:
    """Remove a run folder (refuses anything that does not look like one)."""
    path = Path(path)
    if not path.is_dir() or not ((path / CONFIG).exists() or (path / SUMMARY).exists() or (path / MODEL).exists()):
        raise RunError(f"{path} is not a run folder")
    shutil.rmtree(path)


def load_state_dict(path: str | os.PathLike | bytes) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``): a path or the raw bytes of an upload."""
    import io

    src = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt files
        first = (str(e).splitlines() or [""])[0][:200]
        raise RunError(f"not a loadable PyTorch weights file ({type(e).__name__}: {first})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError("the file is not a state dict (a mapping of names to tensors)")
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], what: str = "checkpoint") -> nn.Module:
    """Load ``state`` into ``model`` strictly, with a clear message when the architecture differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(wrong)} of another shape (e.g. {wrong[0]})" if wrong else ""]))
        raise RunError(f"{what} does not fit this architecture: {details}")
    model.load_state_dict(state)
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, DatasetInfo, dict]:
    """Rebuild a run's model from its config and weights; returns ``(model in eval mode, info, config)``."""
    run = read_run(path)
    if run.broken:
        raise RunError(f"run {Path(path).name} is broken: {run.error}")
    if not (run.path / MODEL).exists():
        raise RunError(f"run {run.name} has no model.pt yet (status {run.status})")
    info = DatasetInfo.from_dict(run.config["info"])
    model = build_model(run.config["model"], info, **run.config.get("model_options", {}))
    load_weights(model, load_state_dict(run.path / MODEL), f"run {run.name}'s model.pt")
    return model.to(device).eval(), info, run.config
