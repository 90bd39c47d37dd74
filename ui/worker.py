"""The training worker process: runs a job's stages through the Trainer and reports every event on a queue.

It is started by :class:`ui.jobs.TrainingJob` with ``multiprocessing``'s *spawn* start method, so
the Streamlit server's interpreter (its lock, its threads) never runs a training step, and a
worker that dies (killed, out of memory) takes nothing else with it. It imports only the core
(no streamlit). Messages on the queue, in order::

    ("run", stage, run_folder)        a stage's run folder exists (before its first event)
    ("event", stage, Event)           every Trainer event, numbers as plain floats
    ("measure", stage, (f, message))  with ``evaluate``: the stage's robustness measurement, f in [0, 1]
    ("measured", stage, record)       with ``evaluate``: its AutoAttack record (``RobustnessReport.to_dict()``),
                                      now also in the run's summary.json
    ("cancelled", stage, None)        Stop came between stages: stage ``stage`` and the later ones never start
    ("end", stage, None)              the worker is done (after the last stage or the first failure)

Live values (MTARD's takeovers) come in through :class:`SharedControls`, read by the method at
its next step; Stop is a ``multiprocessing.Event`` the Trainer checks between steps.
"""

from __future__ import annotations

import math
import multiprocessing
import traceback
from dataclasses import replace
from pathlib import Path

SPAWN = multiprocessing.get_context("spawn")


class SharedControls:
    """Live values shared with a worker process: the interface of :class:`distill_core.methods.Controls`.

    Backed by a shared ``double`` array over a fixed list of keys (NaN = not set), so a value the
    page sets is seen by the worker at its next read, with no message passing. ``set`` of a key
    not in the list raises ``KeyError``; ``get`` of one returns None.
    """

    def __init__(self, keys: tuple[str, ...] | list[str]):
        self.keys = tuple(keys)
        self._values = SPAWN.Array("d", [math.nan] * max(len(self.keys), 1))

    def _index(self, key: str) -> int:
        try:
            return self.keys.index(key)
        except ValueError:
            raise KeyError(f"{key!r} is not a live control of this job; it has {', '.join(self.keys) or 'none'}")\
                from None

    def set(self, key: str, value: float) -> None:
        with self._values.get_lock():
            self._values[self._index(key)] = float(value)

    def clear(self, key: str | None = None) -> None:
        with self._values.get_lock():
            for i, k in enumerate(self.keys):
                if key is None or k == key:
                    self._values[i] = math.nan

    def get(self, key: str) -> float | None:
        if key not in self.keys:
            return None
        v = self._values[self.keys.index(key)]
        return None if math.isnan(v) else float(v)

    def snapshot(self) -> dict[str, float]:
        with self._values.get_lock():
            return {k: float(v) for k, v in zip(self.keys, self._values) if not math.isnan(v)}


def resolve_stage_refs(spec, run_paths: list[Path]):
    """Replace ``"@i"`` references (teachers, ``init``) by the run folder of stage ``i``."""
    def path(what: str, ref: str | None) -> str | None:
        if ref is None or not ref.startswith("@"):
            return ref
        i = int(ref[1:])
        if not 0 <= i < len(run_paths):
            raise ValueError(f"{what} refers to stage {ref}, which has not run yet")
        return str(run_paths[i])

    return replace(spec, teachers={role: path(f"teacher {role!r}", ref) for role, ref in spec.teachers.items()},
                   init=path("init", spec.init))


def _measure(stage: int, path: Path, evaluate: dict, queue, device) -> None:
    """Measure a finished stage's run (``lab.tradeoff.evaluate_run_robustness``), reporting its progress on ``queue``.

    ``evaluate``: ``protocol`` (default "autoattack-fast"), ``n`` (default 500), ``seed`` (default 0).
    A failure is raised as ``RuntimeError`` naming the run (the worker reports it as the stage's error).
    """
    from distill_core.lab.tradeoff import evaluate_run_robustness

    queue.put(("measure", stage, (0.0, "loading the model")))

    def progress(fraction: float, message: str) -> None:
        queue.put(("measure", stage, (float(fraction), str(message))))

    try:
        report = evaluate_run_robustness(path, evaluate.get("protocol", "autoattack-fast"), int(evaluate.get("n", 500)),
                                         int(evaluate.get("seed", 0)), progress, device)
    except Exception as e:  # noqa: BLE001 - named and passed on as the stage's error
        raise RuntimeError(f"measuring the robustness of run {Path(path).name} failed: {type(e).__name__}: {e}") \
            from e
    queue.put(("measured", stage, report.to_dict()))


def work(specs: list, runs_dir: str, queue, stop, controls: SharedControls, evaluate: dict | None = None) -> None:
    """The worker's body (in the spawned process): train each stage in turn, stop at the first that is not done.

    With ``evaluate`` (``{"protocol": ..., "n": ..., "seed": ...}``), a stage that ends ``done`` or
    ``stopped`` is measured right after (AutoAttack, :func:`_measure`) before the next one starts;
    a measurement finishes even after Stop. Stop between stages starts no further stage.
    """
    from distill_core.spec import prepare_training
    from distill_core.train import Event, run_to_end

    run_paths: list[Path] = []
    i = 0
    try:
        for i, spec in enumerate(specs):
            if i > 0 and stop.is_set():
                queue.put(("cancelled", i, None))
                break
            trainer, writer = prepare_training(resolve_stage_refs(spec, run_paths), runs_dir, stop=stop,
                                               controls=controls)
            run_paths.append(writer.path)
            queue.put(("run", i, str(writer.path)))

            def report(event: Event, stage: int = i) -> None:
                queue.put(("event", stage, event))   # numbers are plain floats (Trainer._to_host)

            kind = run_to_end(trainer, report).kind
            if evaluate is not None and kind in ("done", "stopped"):
                _measure(i, writer.path, evaluate, queue, trainer.device)
            if kind != "done":
                break
    except Exception as e:  # noqa: BLE001 - any failure is reported to the page, never lost
        queue.put(("event", i, Event("error", 0, 0, {"reason": f"{type(e).__name__}: {e}",
                                                      "traceback": traceback.format_exc()})))
    finally:
        queue.put(("end", i, None))
        queue.close()
        queue.join_thread()
