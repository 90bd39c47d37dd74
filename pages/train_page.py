"""Train: any model with any method, live in a background worker; progress, curves, stop; the saved runs."""

from __future__ import annotations

import math
import time

import streamlit as st

from distill_core.data import dataset_description
from distill_core.methods import config_fields, get_method, list_methods, make_config
from distill_core.models import describe_model, list_models
from distill_core.plots.training import (
    accuracy_figure,
    group_series,
    loss_figure,
    run_curves_figure,
    series_figure,
    switch_points,
)
from distill_core.runs import RunError, delete_run, is_live, list_runs, read_metrics
from distill_core.spec import TrainSpec
from distill_core.train import TrainConfig
from ui.charts import show_chart
from ui.classroom import is_visitor, job_owner, visitor_job_refusal, visitor_notice
from ui.common import app_datasets, cpu_time_note, dataset_with_info, init_state, pick_models, runs_dir
from ui.import_form import import_form
from ui.jobs import JOBS, TrainingJob
from ui.navigation import page_title
from ui.url_state import UrlState
from ui.widgets import (
    IDLE_POLL_S,
    LIVE_POINTS,
    LIVE_REDRAW_S,
    cached_figure,
    fmt_s,
    job_progress_row,
    job_status_message,
)

init_state()
ss = st.session_state
ss.setdefault("train_live", [])          # ids of the jobs that were running at the last full render
# Zoo models offered first for each teacher role (labels as ui.common.pick_models shows them).
ROLE_DEFAULTS = {"clean_teacher": ["zoo: standard", "zoo: teacher"], "robust_teacher": ["zoo: trades"]}
TEACHER_DEFAULTS = {"defensive": ["zoo: teacher-T20", "zoo: teacher-T100"],
                    "ard": ["zoo: trades"], "rslad": ["zoo: trades"]}
SERIES_TITLES = {"tau": "Teacher temperatures tau (EBB)", "w": "Balance weights w (NLB)",
                 "H": "Teacher entropies H", "loss": "The two loss terms"}


# ------------------------------------------------------------------ helpers (widgets, no training math)


def _step_for(default: float) -> float:
    """A number-input step one decade below the default (0.001 -> 1e-4, 20 -> 1)."""
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.1


def method_settings(method: str, container) -> dict:
    """One widget per field of the method's Config, initialised with the paper's default; returns the values."""
    values = {}
    for f in config_fields(method):       # type, default, range and help, declared once in the method's Config
        default, key, help_text = f.default, f"train_cfg_{method}_{f.name}", f.help or None
        lo, hi, lo_open = f.lo, f.hi, f.lo_open
        if f.kind == "bool":
            values[f.name] = container.checkbox(f.name, value=bool(default), key=key, help=help_text)
        elif f.kind == "int":
            values[f.name] = container.number_input(
                f.name, value=default, step=1, key=key, help=help_text, placeholder="auto" if f.optional else None,
                min_value=None if lo is None else int(lo) + int(lo_open), max_value=None if hi is None else int(hi))
        elif f.kind == "float":
            step = _step_for(default or 0.0)
            values[f.name] = container.number_input(
                f.name, value=None if default is None else float(default), format="%g", key=key, help=help_text,
                step=step, placeholder="auto (the dataset's)" if f.optional else None,
                min_value=None if lo is None else float(lo) + (min(step, 1e-6) if lo_open else 0.0),
                max_value=None if hi is None else float(hi))
        else:
            container.caption(f"{f.name} = {default!r} (fixed)")
    return values


def job_charts(job, snap, prefix: str) -> None:
    """Loss and accuracy curves of a job's current stage, then one chart per group of the method's own series."""
    stage = snap.stage
    series = job.series(stage, max_points=LIVE_POINTS)
    steps, evals = series["steps"], series["evals"]
    if len(job.specs) > 1:
        st.caption(f"Stage {stage + 1} of {len(job.specs)}: {job.specs[stage].method} · {job.specs[stage].model}")
    left, right = st.columns(2)
    shot = ("train", job.label, f"stage{stage + 1}" if len(job.specs) > 1 else "")   # file names; SVG once ended
    show_chart(loss_figure(steps), (*shot, "loss"), key=f"{prefix}_loss", width="stretch", container=left,
               svg=snap.finished)
    acc = cached_figure(f"{prefix}_acc_{stage}", len(evals["step"]),      # changes once per evaluation only
                        lambda: accuracy_figure(evals, epochs=job.specs[stage].train.epochs))
    show_chart(acc, (*shot, "accuracy"), key=f"{prefix}_acc", width="stretch", container=right, svg=snap.finished)
    groups = group_series(steps)
    if groups:
        cols = st.columns(min(len(groups), 2))
        for i, (group, names) in enumerate(groups.items()):
            markers = []
            for name in names:
                flag = steps.get(f"user_{name}")
                if flag is not None:
                    markers += [(x, f"you: {name}" if on else f"{name} handed back")
                                for x, on in switch_points(steps["step"], flag)]
            fig = series_figure(steps["step"], {n: steps[n] for n in names}, SERIES_TITLES.get(group, group),
                                markers=markers)
            show_chart(fig, (*shot, group), key=f"{prefix}_series_{group}", width="stretch",
                       container=cols[i % len(cols)], svg=snap.finished)


# ------------------------------------------------------------------ page

st.title("Train")
UrlState("train", []).publish()        # its address alone: "Copy link" like every page
st.caption("Train any model with any method on any dataset in the sidebar's list. Training runs in the background: "
           "keep "
           "using the lab, switch pages, come back; every run is saved under the runs folder and shows up in "
           "the other pages' model lists.")

datasets = app_datasets()
c_data, c_method, c_train = st.columns(3, gap="large")

with c_data:
    st.subheader("Data and model")
    ds, info = dataset_with_info("Dataset", key="train_dataset", options=datasets)
    st.caption(dataset_description(ds))
    cpu_time_note(info)
    models = list_models() if info.is_image else ["mlp"]
    default_model = "small-cnn" if info.is_image and "small-cnn" in models else models[0]
    model_name = st.selectbox("Model", models, index=models.index(default_model),
                              key=f"train_model_{'image' if info.is_image else 'points'}")
    st.caption(describe_model(model_name))
    fraction = st.slider("Share of the training set", 0.05, 1.0, 1.0, 0.05, key="train_fraction",
                         help="Distillation helps most when data is scarce (Heo et al. 2019).")

with c_method:
    st.subheader("Method")
    methods = list_methods()
    method = st.selectbox("Method", methods, index=methods.index("standard"), key="train_method")
    method_cls = get_method(method)
    st.caption(method_cls.summary)
    teachers = {}
    for role in method_cls.teacher_roles:
        default = ROLE_DEFAULTS.get(role) or TEACHER_DEFAULTS.get(method, ["zoo: standard", "zoo: teacher"])
        teachers[role] = pick_models(role.replace("_", " ").capitalize(), ds, key=f"train_{method}_{role}_{ds}",
                                     default=default)
    with st.expander("Method settings (the paper's defaults)", expanded=True):
        method_values = method_settings(method, st)

with c_train:
    st.subheader("Trainer")
    d = TrainConfig()
    epochs = st.number_input("Epochs", 1, 500, d.epochs, key="train_epochs")
    batch_sizes = [16, 32, 64, 128, 256, 512]
    batch_size = st.selectbox("Batch size", batch_sizes, index=batch_sizes.index(d.batch_size), key="train_batch")
    optimizer = st.selectbox("Optimiser", ["adam", "sgd"], index=["adam", "sgd"].index(d.optimizer),
                             key="train_optimizer")
    lr = st.number_input("Learning rate", min_value=0.0, value=d.lr, format="%g", step=1e-4, key="train_lr")
    schedule = st.selectbox("Schedule", ["none", "step", "cosine"], key="train_schedule",
                            help="step: x0.1 at half and three quarters of training; cosine: down to 0.")
    seed = st.number_input("Seed", 0, 2**31 - 1, d.seed, key="train_seed")
    max_steps = st.number_input("Max steps (optional)", min_value=1, value=None, step=10, key="train_max_steps",
                                placeholder="no limit", help="Stop after this many optimiser steps.")
    with st.expander("More"):
        weight_decay = st.number_input("Weight decay", min_value=0.0, value=d.weight_decay, format="%g", step=1e-4,
                                       key="train_wd")
        grad_clip = st.number_input("Gradient clipping (norm)", min_value=0.0, value=None, format="%g", step=0.5,
                                    key="train_clip", placeholder="off")

missing = [r for r, ref in teachers.items() if ref is None]
# What Start will train, read back from the widgets: a number typed out of range and not accepted by its box
# keeps the last valid value, and this line says which one that is.
defaults = {f.name: f.default for f in config_fields(method)}
changed = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in method_values.items() if v != defaults[k])
st.caption(f"**Start trains:** {method} on {ds} ({model_name}, {fraction:.0%} of the training set) for {int(epochs)} "
           f"epoch(s), batch {batch_size}, {optimizer} lr {lr:g}, seed {int(seed)}"
           + (f", max {int(max_steps)} steps" if max_steps else "")
           + (f"; method settings {changed}" if changed else "; the method's default settings") + ".")
start = st.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:",
                  disabled=bool(missing), help="Runs in the background; you can start several.")
visitor_notice()
if missing:
    st.warning(f"Pick a {' and a '.join(m.replace('_', ' ') for m in missing)} first (or train one with "
               "the standard method).")
if start:
    try:
        config = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), optimizer=optimizer, lr=float(lr),
                             schedule=schedule, seed=int(seed), weight_decay=float(weight_decay),
                             max_steps=None if max_steps is None else int(max_steps),
                             grad_clip=grad_clip or None, device=ss.device)
        method_config = dict(method_values)
        make_config(method, method_config)     # validates the settings before a thread starts
        spec = TrainSpec(dataset=ds, model=model_name, method=method, method_config=method_config, train=config,
                         teachers={role: ref.key for role, ref in teachers.items()}, fraction=float(fraction))
    except (ValueError, TypeError) as e:
        st.error(f"Cannot start: {e}")
    else:
        refusal = visitor_job_refusal([spec])
        if refusal:
            st.error(refusal, icon=":material/lock:")
        else:
            job = JOBS.add(TrainingJob([spec], runs_dir(), origin="train", owner=job_owner()).start())
            ss.train_focus = job.id

st.divider()
st.subheader("Training jobs")
st.caption("Every job of this lab's server, from any page or browser tab: a reload or another tab sees them too.")
ss.train_live = [j.id for j in JOBS.running()]


@st.fragment(run_every=LIVE_REDRAW_S if ss.train_live else IDLE_POLL_S)
def live_jobs() -> None:
    """Progress of every job of the server, and the focused job's curves; redrawn every second while one runs."""
    jobs = JOBS.all()
    if not jobs:
        st.info("No training yet: choose the settings above and press **Start training**.")
        return
    snaps = {j.id: j.snapshot() for j in jobs}
    if any(jid in snaps and snaps[jid].finished for jid in ss.train_live):
        st.rerun()   # a job just ended: a full rerun refreshes the runs table and slows this timer down
    if any(j.id not in ss.train_live for j in JOBS.running()):
        st.rerun()   # a job started elsewhere (another tab, another page): show it live
    for job in jobs[:8]:
        snap = snaps[job.id]
        origin = f" (from {page_title(job.origin)})" if job.origin and job.origin != "train" else ""
        if snap.finished:
            st.markdown(f"**{job.label}**{origin} · `{job.id}` · {snap.status} · {fmt_s(snap.elapsed_s())}")
        else:
            job_progress_row(job, snap, key=f"train_stop_{job.id}", label=f"**{job.label}**{origin} · `{job.id}`")
    if len(jobs) > 8:
        st.caption(f"... and {len(jobs) - 8} older jobs.")
    ids = [j.id for j in jobs]
    if ss.get("train_focus") not in ids:
        ss.train_focus = ids[0]
    by_id = {j.id: j for j in jobs}
    focus = st.selectbox("Show the curves of", ids, key="train_focus",
                         format_func=lambda i: f"{by_id[i].label} · {i} · started "
                                               f"{time.strftime('%H:%M:%S', time.localtime(by_id[i].started))}")
    job, snap = by_id[focus], snaps[focus]
    if snap.finished:
        job_status_message(job, snap)
    else:
        last = snap.last("step")
        loss = last.data.get("loss") if last else None
        acc = snap.last("eval")
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Progress", f"{snap.progress():.0%}")
        m2.metric("ETA", fmt_s(snap.eta_s()))
        m3.metric("Loss", "..." if loss is None else f"{loss:.4f}")
        m4.metric("Test accuracy", "after epoch 1" if acc is None else f"{acc.data['test_accuracy']:.1%}")
    job_charts(job, snap, f"train_{focus}")


live_jobs()

# ------------------------------------------------------------------ runs on disk

st.divider()
st.subheader("Saved runs")
folder = runs_dir()
runs = list_runs(folder)
st.caption(f"Folder: `{folder.resolve()}` · {len(runs)} runs. Headless: `python -m distill_core train ...` "
           "writes here too.")
if not runs:
    st.info("No saved runs yet.")
else:
    training_here = {name for j in JOBS.running() for name in j.run_names}
    rows = []
    for r in runs:
        row = r.row()
        status, error = row["status"], row["error"]
        if r.name in training_here:
            status, error = ("starting", "") if r.broken else ("training", error)   # half-written while it starts
        elif status == "running":
            status = "running elsewhere"
        rows.append({"run": row["name"], "status": status, "method": row["method"],
                     "dataset": row["dataset"], "model": row["model"], "epochs": row["epochs"],
                     "seconds": None if row["seconds"] is None else round(row["seconds"], 1),
                     "test acc (%)": None if row["test_accuracy"] is None else round(100 * row["test_accuracy"], 2),
                     "AutoAttack (%)": None if row["robust_accuracy"] is None else
                     round(100 * row["robust_accuracy"], 2), "error": error})
    st.dataframe(rows, key="train_runs_table", hide_index=True, width="stretch")
    broken = [r for r in runs if r.broken and r.name not in training_here]
    if broken:
        st.warning(f"{len(broken)} run folder(s) cannot be read (see the error column); delete them or fix them "
                   "by hand. The other pages skip them.")
    if any(row["status"] in ("running elsewhere", "interrupted") for row in rows):
        st.caption("*running elsewhere*: another browser session or a `python -m distill_core train` process is "
                   "training it. *interrupted*: its process died mid-run (killed, out of memory, server restarted); "
                   "it keeps the model of its last finished epoch (see the error column) and can be deleted.")
    names = [r.name for r in runs]
    c_view, c_delete = st.columns(2, gap="large")
    with c_view:
        view = st.selectbox("Curves of a saved run", names, key="train_view_run")
        records = read_metrics(folder / view)
        if records:
            show_chart(run_curves_figure(records), ("train", view, "curves"), key="train_view_curves", width="stretch")
        else:
            st.caption("No finished epoch recorded in this run.")

    busy = training_here | {r.name for r in runs if is_live(r)}

    def _delete(name: str) -> None:
        if is_visitor():            # the button is disabled for them; a forged click changes nothing
            return
        try:
            delete_run(folder / name)
            ss.train_delete_msg = ("success", f"Deleted run {name}.")
        except (RunError, OSError) as e:
            ss.train_delete_msg = ("error", f"Could not delete {name}: {e}")
        ss.train_delete_confirm = False

    with c_delete:
        target = st.selectbox("Delete a run", names, key="train_delete_run")
        sure = st.checkbox(f"Yes, delete `{target}` for good", key="train_delete_confirm")
        visitor = is_visitor()
        if visitor:
            st.caption(":material/lock: In class mode only the teacher's machine deletes runs.")
        elif target in busy:
            st.caption("This run is still training (here or in another process): stop it first.")
        st.button("Delete run", key="train_delete_go", icon=":material/delete:",
                  disabled=visitor or not sure or target in busy, on_click=_delete, args=(target,))
msg = ss.pop("train_delete_msg", None)
if msg:
    getattr(st, msg[0])(msg[1])

# ------------------------------------------------------------------ a model from elsewhere

st.divider()
st.subheader("Import a model", anchor="import-a-model")
import_form("train_import")
