"""Background training for the app: each job trains in its own worker process, and jobs belong to the server.

A :class:`TrainingJob` runs one or more :class:`~distill_core.spec.TrainSpec` in sequence (a
later stage may name an earlier stage's run as a teacher or initial weights with ``"@0"``,
``"@1"``: the defensive-distillation page trains a teacher, then its student). The stages run in
a process started with *spawn* (:mod:`ui.worker`), so training never competes with the Streamlit
server for its interpreter lock; a reader thread here collects the worker's events, keeps the
live series for the charts, and notices a worker that died. Stop sets an event the Trainer checks
between steps, so the run ends as ``stopped`` with its checkpoint saved; live values (MTARD's
takeovers) go through :class:`~ui.worker.SharedControls`.

With ``evaluate={"protocol": "autoattack-fast", "n": 500}`` the worker also measures each stage
that ends done or stopped (AutoAttack, the record written into the run's summary.json) before
the next starts: a sweep of independent runs (``distill_core.lab.sweeps.sweep_specs``) queued as
one job, whose snapshot says ``activity()`` "training run 2 of 5" / "measuring run 2 of 5", with
the measurement's progress in ``measure`` and each stage's record in ``measured``.

Jobs are kept in :data:`JOBS`, one board per server process: every browser tab, a reloaded one
included, sees the running jobs with their progress and Stop::

    job = JOBS.add(TrainingJob([TrainSpec(dataset="moons", model="mlp")], runs_dir).start())
    snap = job.snapshot()            # status, progress(), eta_s(), events, run_paths, message
    series = job.series(max_points=400)   # the live charts' columns, downsampled
    job.controls.set("tau_adv", 3.0) # live tuning, read by the method at its next step
    job.request_stop()
"""

from __future__ import annotations

import contextlib
import math
import queue as queue_module
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distill_core import reproduce
from distill_core.methods import get_method
from distill_core.robustness import PROTOCOLS
from distill_core.runs import new_run_name
from distill_core.spec import TrainSpec
from distill_core.train import FINAL_KINDS, Event
from ui.worker import SPAWN, SharedControls, work

ACTIVE = ("starting", "running")     # a job in one of these states has not finished
SERIES_SKIP = ("progress", "eta_s", "stage")


@dataclass(frozen=True)
class MeasureProgress:
    """Where a stage's robustness measurement is (jobs started with ``evaluate``)."""

    stage: int                  # the stage being measured
    fraction: float             # in [0, 1]
    message: str                # e.g. "APGD-CE: robust accuracy 41.0%"
    done: bool = False          # the record is written (``JobSnapshot.measured[stage]``)


@dataclass
class JobSnapshot:
    """A consistent copy of a job's progress for one redraw."""

    status: str                 # starting | running | done | stopped | diverged | error | interrupted
    stage: int                  # index of the spec being trained
    stages: int
    events: list[Event]         # every event but the per-step ones (see TrainingJob.series), plus the last step
    run_paths: list[Path]
    message: str = ""
    label: str = ""
    started: float = 0.0        # time.time() at start()
    ended: float | None = None  # time.time() when the worker finished
    measure: MeasureProgress | None = None                      # the latest measurement's progress (evaluate)
    measured: dict[int, dict] = field(default_factory=dict)     # stage -> its AutoAttack record (evaluate)

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    @property
    def measuring(self) -> bool:
        """True while the worker measures the current stage's run (after its training ended)."""
        m = self.measure
        return not self.finished and m is not None and m.stage == self.stage and not m.done

    def activity(self) -> str:
        """What the job does now, for a progress line: "training run 2 of 5" or "measuring run 2 of 5";
        "" once finished."""
        if self.finished:
            return ""
        return f"{'measuring' if self.measuring else 'training'} run {self.stage + 1} of {self.stages}"

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


class _Series:
    """One stage's live columns, appended to as events arrive (no re-scan of the event list per redraw)."""

    def __init__(self) -> None:
        self.steps: dict[str, list] = {"step": []}
        self.evals: dict[str, list] = {"epoch": [], "step": [], "test_accuracy": []}

    def add(self, e: Event) -> None:
        if e.kind == "step":
            n = len(self.steps["step"])
            self.steps["step"].append(e.step)
            for k, v in e.data.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in SERIES_SKIP:
                    self.steps.setdefault(k, [None] * n).append(v)
            for column in self.steps.values():
                if len(column) == n:
                    column.append(None)
        elif e.kind == "eval":
            self.evals["epoch"].append(e.epoch + 1)
            self.evals["step"].append(e.step)
            self.evals["test_accuracy"].append(e.data["test_accuracy"])

    def view(self, max_points: int | None) -> dict[str, dict[str, list]]:
        n = len(self.steps["step"])
        stride = 1 if not max_points or n <= max_points else math.ceil(n / max_points)
        keep = list(range(0, n, stride))
        if keep and keep[-1] != n - 1:
            keep.append(n - 1)                       # the latest value is always drawn
        steps = {k: [col[i] for i in keep] for k, col in self.steps.items()} if stride > 1 else \
            {k: list(col) for k, col in self.steps.items()}
        return {"steps": steps, "evals": {k: list(v) for k, v in self.evals.items()}}


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = {"SIGKILL": "killed (out of memory, or by hand)", "SIGTERM": "terminated"}.get(name, name)
        return f"the training process was {why} before the run finished"
    return f"the training process ended unexpectedly (exit code {exitcode}) before the run finished"


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_rerun():
    """Start a spawned process without it re-running the parent's ``__main__`` script.

    *spawn* re-executes the file of ``sys.modules["__main__"]`` in the child (as ``__mp_main__``).
    Streamlit puts the script it is running there (``app.py``, or under AppTest a page file or a
    generated script that fails outside Streamlit), which the worker does not need: it imports
    :func:`ui.worker.work` by name. So ``__main__`` is a bare module while the process starts.
    """
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


@dataclass
class TrainingJob:
    """One training job (one or several stages) in a worker process.

    ``origin`` is the URL path of the page that started it (``ui.navigation``; the Train page lists every job);
    ``owner`` the address of the class visitor who started it (``ui.classroom.job_owner``), None otherwise.
    ``evaluate`` (``{"protocol": a robustness protocol, "n": samples >= 1, "seed": int}``, each key
    optional: "autoattack-fast", 500, 0) has the worker measure each stage that ends done or stopped;
    ``ValueError`` for an unknown protocol or a bad ``n``.
    """

    specs: list[TrainSpec]
    runs_dir: Path
    label: str = ""
    origin: str = ""
    evaluate: dict | None = None
    owner: str | None = None                           # a class visitor's address (ui.classroom); None: the teacher
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: float = field(default_factory=time.time)
    controls: SharedControls = field(init=False)
    stop: object = field(init=False)                   # a multiprocessing Event: is_set(), set()
    _events: list[Event] = field(default_factory=list)
    _series: list[_Series] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _status: str = "queued"
    _stage: int = 0
    _run_paths: list[Path] = field(default_factory=list)
    _message: str = ""
    _ended: float | None = None
    _measure: MeasureProgress | None = None
    _measured: dict[int, dict] = field(default_factory=dict)
    _pending: str | None = None                        # a stage's ending, held while the worker goes on
    _process: object = None
    _reader: threading.Thread | None = None

    def __post_init__(self):
        if not self.specs:
            raise ValueError("a training job needs at least one TrainSpec")
        if self.evaluate is not None:
            ev = {"protocol": "autoattack-fast", "n": 500, "seed": 0, **self.evaluate}
            if ev["protocol"] not in PROTOCOLS:
                raise ValueError(f"unknown protocol {ev['protocol']!r}; choose from: {', '.join(PROTOCOLS)}")
            if isinstance(ev["n"], bool) or not isinstance(ev["n"], int) or ev["n"] < 1:
                raise ValueError(f"evaluate's n must be an integer >= 1, got {ev['n']!r}")
            self.evaluate = ev
        self.runs_dir = Path(self.runs_dir)
        # Name the run folders now, so a page can tell this job's folders from others' before they exist.
        self.specs = [s if s.name else replace(s, name=new_run_name({"method": s.method, "dataset": s.dataset,
                                                                     "model": s.model}))
                      for s in self.specs]
        if not self.label:
            s = self.specs[-1]
            self.label = f"{s.method} · {s.dataset} · {s.model}"
        keys = sorted({k for s in self.specs for k in get_method(s.method).control_keys})
        self.controls = SharedControls(keys)
        self.stop = SPAWN.Event()
        self._series = [_Series() for _ in self.specs]

    # ----------------------------------------------------------------- control (any thread)

    def start(self) -> TrainingJob:
        """Start the worker process and the thread that reads its events (once); returns the job.

        The job is ``starting`` until the worker has loaded the data and the first run folder exists.
        """
        with self._lock:
            if self._process is not None:
                raise RuntimeError(f"job {self.id} was already started")
            self._status = "starting"
            self.started = time.time()
            q = SPAWN.Queue()
            self._process = SPAWN.Process(target=work, args=(self.specs, str(self.runs_dir), q, self.stop,
                                                             self.controls, self.evaluate),
                                          name=f"train-{self.id}", daemon=True)
            self._reader = threading.Thread(target=self._read, args=(q,), name=f"train-{self.id}-events", daemon=True)
        try:
            with _main_not_rerun():
                self._process.start()
        except Exception as e:  # noqa: BLE001 - e.g. no process can be started: the job ends with the reason
            with self._lock:
                self._status, self._message, self._ended = "error", f"could not start the worker: {e}", time.time()
                self._events.append(Event("error", 0, 0, {"reason": self._message, "stage": 0}))
            return self
        self._reader.start()
        return self

    def request_stop(self) -> None:
        """Ask the worker to stop at its next step; the run is saved as ``stopped``."""
        self.stop.set()

    def kill(self) -> None:
        """Kill the worker process at once (what an out-of-memory kill does); the job ends as ``interrupted``."""
        if self._process is not None:
            self._process.kill()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to finish; True when it has."""
        if self._reader is not None:
            self._reader.join(timeout)
            return not self._reader.is_alive()
        return True

    @property
    def pid(self) -> int | None:
        """The worker process's id (None before start)."""
        return None if self._process is None else self._process.pid

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
                               list(self._run_paths), self._message, self.label, self.started, self._ended,
                               self._measure, dict(self._measured))

    def series(self, stage: int | None = None, max_points: int | None = 400) -> dict[str, dict[str, list]]:
        """The live charts' columns of ``stage`` (default: the current one), at most ``max_points`` steps.

        ``{"steps": {"step": [...], "loss": [...], <method logs>...}, "evals": {"epoch", "step",
        "test_accuracy"}}``; a value missing at a step is None. Long runs are thinned evenly (every
        k-th step, the latest always kept), so a chart costs the same after 100 or 100,000 steps.
        """
        with self._lock:
            return self._series[self._stage if stage is None else stage].view(max_points)

    # ----------------------------------------------------------------- the reader thread (no streamlit)

    def _append(self, stage: int, event: Event) -> None:
        event.data["stage"] = stage
        with self._lock:
            self._series[stage].add(event)
            if event.kind == "step":   # keep the last step event only: the series hold the rest
                if self._events and self._events[-1].kind == "step":
                    self._events[-1] = event
                else:
                    self._events.append(event)
            else:
                self._events.append(event)
            if event.kind in FINAL_KINDS:
                self._message = event.data.get("reason", "")
                # The job is still at work when the worker measures this run next, or goes on to the next
                # stage: the ending is held until the worker's "end" (a worker that dies first: interrupted).
                measured_next = self.evaluate is not None and event.kind in ("done", "stopped")
                if measured_next or (event.kind == "done" and stage < len(self.specs) - 1):
                    self._pending = event.kind
                else:
                    self._status = event.kind

    def _read(self, q) -> None:
        """Collect the worker's messages until its "end"; a worker that dies first ends the job as interrupted."""
        from multiprocessing.connection import wait

        ended = False
        stage = 0
        try:
            while not ended:
                try:
                    kind, stage, payload = q.get(timeout=0.5)
                except queue_module.Empty:
                    # Nothing within half a second: either still working, or dead. A dead worker's process
                    # sentinel is ready; its last messages (if any) were already read or are lost.
                    if wait([self._process.sentinel], timeout=0) and q.empty():
                        break
                    continue
                if kind == "run":
                    with self._lock:
                        self._stage, self._status = stage, "running"
                        self._run_paths.append(Path(payload))
                elif kind == "event":
                    self._append(stage, payload)
                elif kind in ("measure", "measured"):
                    with self._lock:
                        if kind == "measure":
                            self._measure = MeasureProgress(stage, min(max(float(payload[0]), 0.0), 1.0),
                                                            str(payload[1]))
                        else:
                            self._measured[stage] = payload
                            self._measure = MeasureProgress(stage, 1.0, "measured", done=True)
                elif kind == "cancelled":
                    with self._lock:
                        left = len(self.specs) - stage
                        self._status, self._pending = "stopped", None
                        self._message = f"stopped by the user; {left} run(s) not started"
                else:
                    ended = True
                    with self._lock:
                        if self._status in ACTIVE and self._pending is not None:
                            self._status = self._pending
        except Exception:  # noqa: BLE001 - a broken message must not leave the job "running" forever
            with self._lock:
                self._message = traceback.format_exc(limit=2)
        self._process.join(5)
        if self._process.is_alive():        # never leave a worker behind a job that has ended
            self._process.kill()
            self._process.join(5)
        with self._lock:
            if self._status in ACTIVE:      # no final event arrived: the worker died (a finished job keeps its end)
                reason = _death_message(self._process.exitcode)
                self._events.append(Event("error", 0, 0, {"reason": reason, "stage": stage, "interrupted": True}))
                self._status, self._message = "interrupted", reason
            self._ended = time.time()


class JobBoard:
    """The server's jobs, shared by every browser session (one board per process)."""

    def __init__(self) -> None:
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    KEEP_FINISHED = 20    # finished jobs kept for their pages (the runs themselves are on disk)

    def add(self, job: TrainingJob) -> TrainingJob:
        """Put ``job`` on the board; the oldest finished jobs beyond :attr:`KEEP_FINISHED` are forgotten."""
        with self._lock:
            self._jobs[job.id] = job
            done = sorted((j for j in self._jobs.values() if j.status not in ACTIVE), key=lambda j: j.started)
            for old in done[:max(0, len(done) - self.KEEP_FINISHED)]:
                del self._jobs[old.id]
        return job

    def get(self, job_id: str | None) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def all(self, origin: str | None = None) -> list[TrainingJob]:
        """Every job (of ``origin``, the page that started it), the most recent first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if origin is None or j.origin == origin]
        return sorted(jobs, key=lambda j: j.started, reverse=True)

    def page_job(self, origin: str, job_id: str | None = None, owner: Any = ...) -> TrainingJob | None:
        """A page's job: ``job_id`` (the one this tab started) if the board has it, else the latest job started
        from ``origin`` (after a reload or in a new tab), so its progress, Stop and controls are never orphaned.
        ``owner`` (when given) limits that fallback to the jobs of one owner (a class visitor's own)."""
        job = self.get(job_id)
        if job is None:
            mine = [j for j in self.all(origin=origin) if owner is ... or j.owner == owner]
            job = mine[0] if mine else None
        return job

    def running(self) -> list[TrainingJob]:
        return [j for j in self.all() if j.status in ACTIVE]

    def training(self, run_name: str) -> bool:
        """Whether a running job of this server trains the run folder ``run_name``."""
        return any(run_name in j.run_names for j in self.running())

    def clear(self) -> None:
        """Stop every running job, wait for it, and forget all jobs (tests; a server shutting down)."""
        for job in self.running():
            job.request_stop()
        for job in self.all():
            job.join(60)
        with self._lock:
            self._jobs.clear()


JOBS = JobBoard()


def job_series(events: list[Event], stage: int | None = None) -> dict[str, dict[str, list]]:
    """Columns for charts from a list of events (a finished run's, or a test's): as :meth:`TrainingJob.series`."""
    s = _Series()
    for e in events:
        if stage is None or e.data.get("stage") == stage:
            s.add(e)
    return s.view(None)


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


@dataclass
class BackgroundTask:
    """Page work that must not be lost when the user leaves the page: ``fn(progress)`` in a thread (no streamlit).

    ``fn`` receives ``progress(fraction, message)`` and returns the result. ``status`` is
    ``running``, ``done`` or ``error`` (``error`` holds the message); ``progress`` and ``message``
    the last report. Kept on :data:`TASKS`, so a page finds its task again after a page switch or
    a reload::

        task = TASKS.add(BackgroundTask("evaluate 3 runs", work, origin="trade-off")).start()
        task.status, task.progress, task.message, task.result
    """

    label: str
    fn: Callable[[Callable[[float, str], None]], Any]
    origin: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    status: str = "queued"
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str = ""
    started: float = 0.0
    ended: float | None = None
    seen: bool = False            # a page has shown the finished result once

    def start(self) -> BackgroundTask:
        self.status, self.started = "running", time.time()
        threading.Thread(target=self._work, name=f"task-{self.id}", daemon=True).start()
        return self

    def _report(self, fraction: float, message: str) -> None:
        self.progress, self.message = min(max(float(fraction), 0.0), 1.0), message

    def _work(self) -> None:
        try:
            self.result = self.fn(self._report)
            self.status = "done"
        except Exception as e:  # noqa: BLE001 - shown on the page, never crashes the app
            self.error, self.status = f"{type(e).__name__}: {e}", "error"
        self.ended = time.time()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "error")

    def join(self, timeout: float | None = None) -> bool:
        end = time.time() + (timeout if timeout is not None else 1e9)
        while not self.finished and time.time() < end:
            time.sleep(0.05)
        return self.finished


class TaskBoard:
    """The server's background tasks (one board per process), found again by any page or tab."""

    def __init__(self) -> None:
        self._tasks: dict[str, BackgroundTask] = {}
        self._lock = threading.Lock()

    def add(self, task: BackgroundTask) -> BackgroundTask:
        with self._lock:
            self._tasks[task.id] = task
        return task

    def latest(self, origin: str) -> BackgroundTask | None:
        """The most recent task started from ``origin``."""
        with self._lock:
            tasks = [t for t in self._tasks.values() if t.origin == origin]
        return max(tasks, key=lambda t: t.started, default=None)

    def clear(self) -> None:
        """Wait for running tasks (a minute at most) and forget all (tests; a server shutting down)."""
        with self._lock:
            tasks = list(self._tasks.values())
        for t in tasks:
            t.join(60)
        with self._lock:
            self._tasks.clear()


TASKS = TaskBoard()
