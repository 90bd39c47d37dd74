"""The run registry: one folder per training run, written atomically, listed safely.

    runs/2026-11-22_101500-standard-mnist-5k-papernot-cnn-3f2a/
        config.json     what was trained: dataset (+ its info), model, method and its settings, trainer settings
        metrics.jsonl   one JSON record per epoch (train loss, test accuracy, ...)
        model.pt        the state dict only, loaded with ``torch.load(..., weights_only=True)``; rewritten at
                        the end of every epoch and at the end of the run
        summary.json    method, dataset, model, status, epochs, seconds, test_accuracy, the writing process
                        (pid, host, process_start), and once evaluated the robustness record under
                        "robustness" (schema: robustness.py)

Every file is written to a temporary name and renamed into place, so a reader never sees half
a file. A folder whose config or summary is missing or unreadable is listed as *broken* with
the reason, never raised: one bad folder must not take a page down.

A run's status (:data:`STATUSES`) is what its summary says, except that a run still marked
``running`` whose process is gone reads as ``interrupted`` (killed, out of memory, server
restarted): on the writer's host the process id and its start time are checked; from another
host, a summary.json untouched for :data:`STALE_AFTER_S` seconds (the writer touches it at least
every :data:`HEARTBEAT_S` seconds while training) means the run is dead. An interrupted run keeps
the model.pt of its last finished epoch and can be deleted; a live one (:func:`is_live`) cannot.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import CheckpointError, fit_state_dict, read_state_dict
from .data import DatasetInfo
from .models import build_model
from .robustness import read_record

CONFIG, METRICS, MODEL, SUMMARY = "config.json", "metrics.jsonl", "model.pt", "summary.json"
DEFAULT_RUNS_DIR = os.environ.get("DISTILL_RUNS", "runs")
# "running" while a process trains it; the Trainer's endings; then the two that only a reader assigns.
STATUSES = ("running", "done", "stopped", "diverged", "error", "interrupted", "broken")
HEARTBEAT_S = 30.0      # a training process touches its summary.json at least this often (seconds)
STALE_AFTER_S = 600.0   # a "running" summary untouched this long, seen from another host: interrupted


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
    """Writes one run folder; the Trainer calls :meth:`checkpoint` after every epoch, :meth:`heartbeat`
    between steps, and :meth:`save_model` + :meth:`finish` at the end.

    The summary records the writing process (``pid``, ``host``, ``process_start``) so that a
    reader can tell a live run from a killed one (:func:`read_run`).
    """

    def __init__(self, path: Path, config: dict):
        self.path = Path(path)
        self.config = config
        if self.path.exists():
            raise FileExistsError(f"run folder {self.path} already exists")
        self.created = time.time()
        self._summary = {"name": self.path.name, "method": config.get("method"), "dataset": config.get("dataset"),
                         "model": config.get("model"), "status": "running", "epochs": 0, "seconds": 0.0,
                         "test_accuracy": None, "created": self.created, "pid": os.getpid(),
                         "host": socket.gethostname(), "process_start": _process_start(os.getpid())}
        self._last_beat = time.monotonic()
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
        """Save the state dict (tensors only: loadable with ``weights_only=True``), atomically: written
        and flushed to disk under a temporary name, then renamed over model.pt."""
        state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
        tmp = self.path / f".{MODEL}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / MODEL)
        finally:
            tmp.unlink(missing_ok=True)

    def checkpoint(self, model: nn.Module, record: dict) -> None:
        """The end of an epoch: save the model, append the epoch's metrics ``record`` (its ``epoch``
        and ``step`` counts, ``test_accuracy`` when the epoch was evaluated) and bring the summary up
        to date, in that order, so the summary never claims an epoch model.pt does not hold.
        A run killed later keeps this model (status ``interrupted``)."""
        self.save_model(model)
        self.log(record)
        self._summary.update(epochs=record["epoch"], steps=record.get("step"),
                             test_accuracy=record.get("test_accuracy"),
                             seconds=round(time.time() - self.created, 3))
        atomic_write_json(self.path / SUMMARY, self._summary)
        self._last_beat = time.monotonic()

    def heartbeat(self) -> None:
        """Show that the run is alive: touch summary.json, at most once per :data:`HEARTBEAT_S` seconds
        (cheap to call every step)."""
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            with contextlib.suppress(OSError):   # a missed beat is harmless; the next one retries
                os.utime(self.path / SUMMARY)

    def finish(self, summary: dict) -> None:
        """Merge the Trainer's final ``summary`` (status, reason, epochs, ...) and write it."""
        self._summary.update(summary)
        atomic_write_json(self.path / SUMMARY, self._summary)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel / torch.compile wrappers


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); ``[]`` when Linux has no
    such process, None where there is no /proc to ask."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return [] if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    return text.rpartition(")")[2].split()   # the name, in parentheses, may hold spaces


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell it from a later process
    given the same id; None where unknown."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _process_alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` of this host still runs (and is the one that started at ``started``)."""
    fields = _proc_stat(pid)
    if fields is not None:
        if not fields or fields[0] in ("Z", "X"):     # gone, or a zombie waiting for its parent
            return False
        return started is None or len(fields) <= 19 or fields[19] == started
    try:
        os.kill(pid, 0)                                # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except PermissionError:                            # it exists, under another user
        return True
    return True


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = 120) -> str:
    """``text`` as a file or folder name: runs of characters outside ``[A-Za-z0-9._-]`` become one ``-``, the ends
    lose ``-``, ``.`` and ``_``, at most ``limit`` characters ("" when nothing is left). Run folders of imported
    models and the names of exported charts use it."""
    return _UNSAFE.sub("-", str(text)).strip("-._")[:limit].rstrip("-._")


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
    interrupted: str = ""    # why a run its summary calls "running" is dead ("" otherwise)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`: ``broken``, ``interrupted``, or the summary's status."""
        if self.broken:
            return "broken"
        return "interrupted" if self.interrupted else str(self.summary.get("status", "unknown"))

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
                "learned": s.get("learned"), "created": s.get("created"), "error": self.error or self.interrupted}


def _read_json(path: Path) -> dict:
    with open(path) as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return obj


def read_run(path: str | os.PathLike) -> Run:
    """Read a run folder; never raises for a bad folder (it comes back ``broken``).

    A summary saying ``running`` whose process is gone reads as ``interrupted``, with the reason
    in ``Run.interrupted`` (see the module docstring for how death is detected).
    """
    path = Path(path)
    run = Run(path)
    try:
        run.config = _read_json(path / CONFIG)
        run.summary = _read_json(path / SUMMARY)
        if run.summary.get("status") in ("done", "stopped", "diverged") and not (path / MODEL).exists():
            raise FileNotFoundError("model.pt is missing")
        if run.summary.get("status") == "running":
            run.interrupted = _why_dead(path, run.summary)
    except (OSError, ValueError) as e:
        run.broken, run.error = True, f"{type(e).__name__}: {e}"
    return run


def _why_dead(path: Path, summary: dict) -> str:
    """Why the run at ``path``, whose summary says running, is not training any more; "" while it is.

    On the writer's host (POSIX) the process decides: gone, a zombie, or its id reused by a later
    process means dead, and a live process is never called dead. Elsewhere (another host, a run
    written before the summary held a process id, Windows) a summary.json untouched for
    :data:`STALE_AFTER_S` seconds does.
    """
    pid, host = summary.get("pid"), summary.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and os.name == "posix":
        if _process_alive(pid, summary.get("process_start")):
            return ""
        why = f"its process {pid} on {host} is gone"
    else:
        quiet = time.time() - (path / SUMMARY).stat().st_mtime
        if quiet <= STALE_AFTER_S:
            return ""
        why = f"no sign of life for {quiet / 60:.0f} min" + (f" from process {pid} on {host}" if pid else "")
    epochs = summary.get("epochs") or 0
    kept = (f"model.pt holds epoch {epochs}" if epochs and (path / MODEL).exists()
            else "no epoch finished, so there is no model.pt")
    return f"{why}; {kept}"


def is_live(run: Run) -> bool:
    """True while a process is training ``run`` (status ``running``, not found dead by :func:`read_run`):
    such a run must not be deleted or used as a finished model."""
    return run.status == "running"


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
    """Remove a run folder: finished, broken or interrupted.

    Raises ``RunError`` for a folder that does not look like a run, and for a run that is still
    training (:func:`is_live`): stop it first.
    """
    path = Path(path)
    if not path.is_dir() or not ((path / CONFIG).exists() or (path / SUMMARY).exists() or (path / MODEL).exists()):
        raise RunError(f"{path} is not a run folder")
    run = read_run(path)
    if is_live(run):
        s = run.summary
        raise RunError(f"run {run.name} is still training (process {s.get('pid', '?')} on {s.get('host', '?')}); "
                       "stop it first, then delete it")
    shutil.rmtree(path)


def load_state_dict(path: str | os.PathLike | bytes, name: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict read safely from a path or the raw bytes of an upload: :func:`checkpoints.read_state_dict`
    (``weights_only=True``, numpy scalars allowed, wrappers and prefixes undone), raising ``RunError``
    with its one-line message."""
    try:
        return read_state_dict(path, name=name)
    except CheckpointError as e:
        raise RunError(str(e)) from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], what: str = "checkpoint") -> nn.Module:
    """Load ``state`` into ``model`` strictly (:func:`checkpoints.fit_state_dict`, no identity
    normalisation: the lab's own files hold their ``normalize`` buffers); ``RunError`` naming the
    missing, unexpected and wrongly shaped keys when the architecture differs."""
    try:
        return fit_state_dict(model, state, name=what, identity_normalize=False)
    except CheckpointError as e:
        raise RunError(str(e)) from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, DatasetInfo, dict]:
    """Rebuild a run's model from its config and weights; returns ``(model in eval mode, info, config)``."""
    run = read_run(path)
    if run.broken:
        raise RunError(f"run {Path(path).name} is broken: {run.error}")
    if not (run.path / MODEL).exists():
        raise RunError(f"run {run.name} has no model.pt yet (status {run.status})")
    info = DatasetInfo.from_dict(run.config["info"])
    model = build_model(run.config["model"], info, **run.config.get("model_options", {}))
    what = f"run {run.name}'s model.pt"
    load_weights(model, load_state_dict(run.path / MODEL, what), what)
    return model.to(device).eval(), info, run.config
