"""Background training for the app: a worker thread per job that never touches streamlit.

A :class:`TrainingJob` runs one or more :class:`~distill_core.jobs.TrainSpec` in sequence (a
later stage may name an earlier stage's run as a teacher with ``"@0"``, ``"@1"``: the
defensive-distillation page trains a teacher, then its student). The worker appends the
Trainer's events to a locked list; pages read :meth:`TrainingJob.snapshot` from a fragment
that reruns on a timer. Stop sets the event the Trainer checks between steps, so the run ends
as ``stopped`` with its checkpoint saved. Jobs live in the browser session's state, so they
survive switching pages, and two sessions each have their own thread and run folders.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from distill_core.jobs import TrainSpec, prepare_training
from distill_core.methods import Controls
from distill_core.train import FINAL_KINDS, Event


@dataclass
class JobSnapshot:
    """A consistent copy of a job's progress for one redraw."""

    status: str                 # queued | running | done | stopped | diverged | error
    stage: int                  # index of the spec being trained
    stages: int
    events: list[Event]
    run_paths: list[Path]
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.status not in ("queued", "running")

    def last(self, kind: str) -> Event | None:
        for e in reversed(self.events):
            if e.kind == kind:
                return e
        return None

    def progress(self) -> float:
        """Overall progress in [0, 1] across stages."""
        if self.finished:
            return 1.0
        step = self.last("step")
        inner = step.data.get("progress", 0.0) if step is not None and step.data.get("stage") == self.stage else 0.0
        return min(1.0, (self.stage + inner) / max(self.stages, 1))

    def eta_s(self) -> float | None:
        step = self.last("step")
        return None if step is None or self.finished else step.data.get("eta_s")


@dataclass
class TrainingJob:
    """One training job (one or several stages) in a background thread."""

    specs: list[TrainSpec]
    runs_dir: Path
    label: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    stop: threading.Event = field(default_factory=threading.Event)
    controls: Controls = field(default_factory=Controls)
    started: float = field(default_factory=time.time)
    _events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _status: str = "queued"
    _stage: int = 0
    _run_paths: list[Path] = field(default_factory=list)
    _message: str = ""
    _thread: threading.Thread | None = None

    def start(self) -> TrainingJob:
        self._thread = threading.Thread(target=self._work, name=f"train-{self.id}", daemon=True)
        self._status = "running"
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the worker to stop at its next step; the run is saved as ``stopped``."""
        self.stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self._status, self._stage, len(self.specs), list(self._events),
                               list(self._run_paths), self._message)

    # ----------------------------------------------------------------- worker (no streamlit here)

    def _resolve(self, spec: TrainSpec) -> TrainSpec:
        teachers = {}
        for role, ref in spec.teachers.items():
            if ref.startswith("@"):
                teachers[role] = str(self._run_paths[int(ref[1:])])
            else:
                teachers[role] = ref
        return replace(spec, teachers=teachers)

    def _work(self) -> None:
        final = "done"
        try:
            for i, spec in enumerate(self.specs):
                with self._lock:
                    self._stage = i
                trainer, writer = prepare_training(self._resolve(spec), self.runs_dir, stop=self.stop,
                                                   controls=self.controls)
                with self._lock:
                    self._run_paths.append(writer.path)
                for event in trainer.run():
                    event.data["stage"] = i
                    with self._lock:
                        self._events.append(event)
                    if event.kind in FINAL_KINDS:
                        final = event.kind
                        with self._lock:
                            self._message = event.data.get("reason", "")
                if final != "done":
                    break
        except Exception as e:  # noqa: BLE001 - report any failure on the page, never crash the app
            final = "error"
            with self._lock:
                self._message = f"{type(e).__name__}: {e}"
                self._events.append(Event("error", 0, 0, {"reason": self._message,
                                                          "traceback": traceback.format_exc()}))
        with self._lock:
            self._status = final


def job_series(events: list[Event], stage: int | None = None) -> dict[str, list]:
    """Columns for the live charts: per step (``step``, ``loss`` and every logged value) and per eval."""
    steps: dict[str, list] = {"step": []}
    evals: dict[str, list] = {"epoch": [], "step": [], "test_accuracy": []}
    for e in events:
        if stage is not None and e.data.get("stage") != stage:
            continue
        if e.kind == "step":
            steps["step"].append(e.step)
            for k, v in e.data.items():
                if isinstance(v, (int, float)) and k not in ("progress", "eta_s", "stage"):
                    steps.setdefault(k, [None] * (len(steps["step"]) - 1)).append(v)
            for k in steps:
                if len(steps[k]) < len(steps["step"]):
                    steps[k].append(None)
        elif e.kind == "eval":
            evals["epoch"].append(e.epoch + 1)
            evals["step"].append(e.step)
            evals["test_accuracy"].append(e.data["test_accuracy"])
    return {"steps": steps, "evals": evals}
