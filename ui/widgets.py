"""Widgets every page with a background job shares: the progress + Stop row, the end-of-job message, times.

A page calls :func:`job_progress_row` while its job runs and :func:`job_status_message` once it
has ended, so a run's progress, Stop and outcome read the same on the Train, Defensive
distillation and Multi-teacher pages.
"""

from __future__ import annotations

import streamlit as st

from ui.classroom import is_visitor, job_owner, may_control
from ui.common import divergence_advice

LIVE_POINTS = 400        # steps a live chart draws at most (a chart is a few hundred pixels wide)
LIVE_REDRAW_S = 1.0      # how often a live view redraws while a job runs
IDLE_POLL_S = 5.0        # how often an idle live view looks for a job started in another tab


def cached_figure(key: str, version, build):
    """The figure ``build()`` made for ``(key, version)``, rebuilt only when ``version`` changes (per session).

    For live views: a chart whose data did not change since the last redraw is not rebuilt.
    """
    cache = st.session_state.setdefault("_figure_cache", {})
    hit = cache.get(key)
    if hit is None or hit[0] != version:
        hit = cache[key] = (version, build())
    return hit[1]


def fmt_s(seconds: float | None) -> str:
    """A duration for people: ``"..."`` when unknown, ``"42 s"``, ``"3 min 05 s"``."""
    if seconds is None:
        return "..."
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _stop(job) -> None:
    """Stop's callback: checked again here, so a forged click from a visitor changes nothing."""
    if may_control(job):
        job.request_stop()


def job_progress_row(job, snap, key: str, label: str | None = None, container=st) -> None:
    """A running job's progress bar (where it is, share done, ETA) with its Stop button beside it.

    ``key`` names the Stop button's widget key; ``label`` replaces the job's own label in the bar. A class
    visitor's Stop is disabled on other people's jobs (``ui.classroom.may_control``).
    """
    c_bar, c_btn = container.columns([5, 1], vertical_alignment="bottom")
    last = snap.last("step")
    if last is not None:
        where = f"epoch {last.epoch + 1}, step {last.step}"
    elif snap.status == "starting":
        where = "starting: a worker process is loading torch, the data and the teachers"
    else:
        where = "loading the data and the teachers"
    stage = f"stage {snap.stage + 1} of {len(job.specs)} · " if len(job.specs) > 1 else ""
    c_bar.progress(snap.progress(), text=f"{label or job.label} · {stage}{where} · {snap.progress():.0%} · "
                                         f"ETA {fmt_s(snap.eta_s())}")
    mine = may_control(job)
    c_btn.button("Stop training", key=key, icon=":material/stop:", on_click=_stop, args=(job,),
                 disabled=job.stop.is_set() or not mine,
                 help=None if mine else "In class mode a visitor stops only their own jobs.")


def job_status_message(job, snap, container=st) -> None:
    """The end of a job in words: what happened, where it is saved, and what to change when it went wrong."""
    run = snap.run_paths[-1].name if snap.run_paths else None
    final = snap.final_event()
    data = final.data if final is not None else {}
    acc = data.get("test_accuracy")
    acc_text = f"test accuracy {acc:.1%}" if acc is not None else "no test accuracy"
    saved = f"Saved as run `{run}`." if run else "Nothing was saved."
    took = fmt_s(snap.elapsed_s())
    if data.get("warning") and snap.status in ("done", "stopped"):
        container.error(f"**The model did not learn** ({snap.status} in {took}): {data['warning']}. {saved}",
                        icon=":material/report:")
    elif snap.status == "done":
        container.success(f"**Done** in {took}: {acc_text}. {saved}", icon=":material/check:")
    elif snap.status == "stopped":
        container.warning(f"**Stopped by you** after {data.get('steps', '?')} steps ({data.get('epochs', 0)} full "
                          f"epochs): {acc_text}. What was learned so far is kept. {saved}", icon=":material/stop:")
    elif snap.status == "diverged":
        advice = divergence_advice(job.specs[min(snap.stage, len(job.specs) - 1)].train)
        container.error(f"**Training diverged**: {snap.message}. {advice} {saved}", icon=":material/trending_up:")
    elif snap.status == "interrupted":
        container.error(f"**Interrupted**: {snap.message}. The run keeps the model of its last finished epoch and is "
                        "listed as *interrupted* under Saved runs (the Train page), where it can be inspected or "
                        "deleted. Start again to train it fully.", icon=":material/power_off:")
    elif snap.status == "error":
        container.error(f"**Training failed**: {snap.message}. Check the settings (a teacher trained on another "
                        "dataset, a model that does not fit the data) and start again.", icon=":material/error:")
        tb = data.get("traceback")
        if tb:
            with container.expander("Details (traceback)"):
                st.code(tb, language="text")


def page_job(origin: str, state_key: str):
    """The job a page shows: the one this tab started (its id in ``st.session_state[state_key]``), else, after a
    reload or in a new tab, the latest one started from ``origin`` (``ui.jobs.JobBoard.page_job``); in class mode,
    a visitor's latest one only (another person's job neither shows nor blocks their Start button)."""
    from ui.jobs import JOBS

    job = JOBS.page_job(origin, st.session_state.get(state_key), owner=job_owner() if is_visitor() else ...)
    st.session_state[state_key] = None if job is None else job.id
    return job
