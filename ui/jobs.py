"""Background training for the app: a worker thread per job that never touches streamlit.

A :class:`TrainingJob` runs one or more :class:`~distill_core.spec.TrainSpec` in sequence (a
later stage may name an earlier stage's run as a teacher with ``"@0"``, ``"@1"``: the
defensive-distillation page trains a teacher, then its student). The worker appends the
Trainer's events to a locked list; pages read :meth:`TrainingJob.snapshot` from a fragment
that reruns on a timer. Stop sets the event the Trainer checks between steps, so the run ends
as ``stopped`` with its checkpoint saved. Jobs live in the browser session's state, so they
survive switching pages, and two sessions each have their own thread and run folders::

    job = TrainingJob([TrainSpec(dataset="moons", model="mlp")], runs_dir).start()
    snap = job.snapshot()            # status, progress(), eta_s(), events, run_paths, message
    job.controls.set("tau_adv", 3.0) # live tuning, read by the method at its next step
    job.request_stop()
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from distill_core import reproduce
from distill_core.methods import Controls
from distill_core.runs import new_run_name
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import FINAL_KINDS, Event, run_to_end


@dataclass
class JobSnapshot:
    """A consistent copy of a job's progress for one redraw."""

    status: str                 # queued | running | done | stopped | diverged | error
    stage: int                  # index of the spec being trained
    stages: int
    events: list[Event]
    run_paths: list[Path]
    message: str = ""
    label: str = ""
    started: float = 0.0        # time.time() at start()
    ended: float | None = None  # time.time() when the worker finished

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
        """Seconds left in the current stage (the Trainer's estimate), None before the first step or once done."""
        step = self.last("step")
        return None if step is None or self.finished else step.data.get("eta_s")

    def elapsed_s(self) -> float:
        return max(0.0, (self.ended or time.time()) - self.started) if self.started else 0.0

    def final_event(self, stage: int | None = None) -> Event | None:
        """The done / stopped / diverged / error event (of ``stage``, default the last one that ended)."""
        for e in reversed(self.events):
            if e.kind in FINAL_KINDS and (stage is None or e.data.get("stage") == stage):
                return e
        return None


@dataclass
class TrainingJob:
    """One training job (one or several stages) in a background thread.

    ``origin`` names the page that started it (the Train page lists every job of the session).
    """

    specs: list[TrainSpec]
    runs_dir: Path
    label: str = ""
    origin: str = ""
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
    _ended: float | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self):
        if not self.specs:
            raise ValueError("a training job needs at least one TrainSpec")
        self.runs_dir = Path(self.runs_dir)
        # Name the run folders now, so a page can tell this job's folders from others' before they exist.
        self.specs = [s if s.name else replace(s, name=new_run_name({"method": s.method, "dataset": s.dataset,
                                                                     "model": s.model}))
                      for s in self.specs]
        if not self.label:
            s = self.specs[-1]
            self.label = f"{s.method} · {s.dataset} · {s.model}"

    def start(self) -> TrainingJob:
        """Start the worker thread (once); returns the job."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"job {self.id} was already started")
            self._status = "running"
            self.started = time.time()
            self._thread = threading.Thread(target=self._work, name=f"train-{self.id}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the worker to stop at its next step; the run is saved as ``stopped``."""
        self.stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def run_names(self) -> list[str]:
        """The run folder names of the stages, known from the start (folders appear as stages begin)."""
        return [s.name for s in self.specs]

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self._status, self._stage, len(self.specs), list(self._events),
                               list(self._run_paths), self._message, self.label, self.started, self._ended)

    # ----------------------------------------------------------------- worker (no streamlit here)

    def _resolve(self, spec: TrainSpec) -> TrainSpec:
        """Replace ``"@i"`` teacher references by the run folder of stage ``i``."""
        teachers = {}
        for role, ref in spec.teachers.items():
            if ref.startswith("@"):
                i = int(ref[1:])
                if not 0 <= i < len(self._run_paths):
                    raise ValueError(f"teacher {role!r} refers to stage {ref}, which has not run yet")
                teachers[role] = str(self._run_paths[i])
            else:
                teachers[role] = ref
        return replace(spec, teachers=teachers)

    def _append(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if event.kind in FINAL_KINDS:
                self._message = event.data.get("reason", "")

    def _work(self) -> None:
        final = "done"
        i = 0
        try:
            for i, spec in enumerate(self.specs):
                with self._lock:
                    self._stage = i
                trainer, writer = prepare_training(self._resolve(spec), self.runs_dir, stop=self.stop,
                                                   controls=self.controls)
                if writer is not None:
                    with self._lock:
                        self._run_paths.append(writer.path)
                def on_event(event: Event, stage: int = i) -> None:
                    event.data["stage"] = stage
                    self._append(event)

                final = run_to_end(trainer, on_event).kind
                if final != "done":
                    break
        except Exception as e:  # noqa: BLE001 - report any failure on the page, never crash the app
            final = "error"
            self._append(Event("error", 0, 0, {"reason": f"{type(e).__name__}: {e}", "stage": i,
                                               "traceback": traceback.format_exc()}))
        with self._lock:
            self._status = final
            self._ended = time.time()


def job_series(events: list[Event], stage: int | None = None) -> dict[str, dict[str, list]]:
    """Columns for the live charts: per step (``step``, ``loss`` and every logged value) and per eval.

    Returns ``{"steps": {"step": [...], "loss": [...], "lr": [...], <method logs>...},
    "evals": {"epoch": [...], "step": [...], "test_accuracy": [...]}}``; a value missing at a step
    is None, so every column of ``steps`` has the length of ``steps["step"]``.
    """
    steps: dict[str, list] = {"step": []}
    evals: dict[str, list] = {"epoch": [], "step": [], "test_accuracy": []}
    for e in events:
        if stage is not None and e.data.get("stage") != stage:
            continue
        if e.kind == "step":
            steps["step"].append(e.step)
            for k, v in e.data.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("progress", "eta_s",
                                                                                        "stage"):
                    steps.setdefault(k, [None] * (len(steps["step"]) - 1)).append(v)
            for k in steps:
                if len(steps[k]) < len(steps["step"]):
                    steps[k].append(None)
        elif e.kind == "eval":
            evals["epoch"].append(e.epoch + 1)
            evals["step"].append(e.step)
            evals["test_accuracy"].append(e.data["test_accuracy"])
    return {"steps": steps, "evals": evals}


@dataclass
class ReproductionRun:
    """``reproduce.run_reproduction`` in a background thread, for a page to poll (no streamlit here).

    ``start()`` runs the experiment (``quick`` by default) writing into ``out``; the log lines
    collect in ``lines``; ``status`` is ``running``, ``done`` or ``error`` (``error`` holds the
    message) and ``results`` the returned dict once done::

        job = ReproductionRun("papernot", out=tmp).start()
        while job.status == "running": time.sleep(1); print(job.lines[-1:])
    """

    experiment: str
    out: Path
    quick: bool = True
    seed: int = 0
    status: str = "queued"
    lines: list[str] = field(default_factory=list)
    results: dict | None = None
    error: str = ""
    started: float = 0.0
    ended: float | None = None

    def start(self) -> ReproductionRun:
        self.status, self.started = "running", time.time()
        threading.Thread(target=self._work, name=f"reproduce-{self.experiment}", daemon=True).start()
        return self

    def elapsed_s(self) -> float:
        return (self.ended or time.time()) - self.started if self.started else 0.0

    def _work(self) -> None:
        def log(message: str) -> None:
            self.lines.append(f"{self.elapsed_s():6.1f} s  {message}")

        try:
            self.results = reproduce.run_reproduction(self.experiment, quick=self.quick, out=self.out, seed=self.seed,
                                                      log=log)
            self.status = "done"
        except Exception as e:  # noqa: BLE001 - shown on the page, never crashes the app
            self.error, self.status = f"{type(e).__name__}: {e}", "error"
        self.ended = time.time()
