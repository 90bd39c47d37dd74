"""Trade-off: every zoo model and run as clean vs robust (AutoAttack) accuracy, the masking gap, the Pareto front,
a table, CSV export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from distill_core.lab.sweeps import SHIPPED_SWEEPS, TRAIN_KNOBS, sweep_curves, sweep_specs
from distill_core.lab.tradeoff import evaluate_run_robustness, filter_rows, percent_table, tradeoff_rows
from distill_core.methods import config_fields, get_method, list_methods
from distill_core.plots.tradeoff import pareto_front, tradeoff_figure
from distill_core.runs import RunError, list_runs
from distill_core.spec import TrainSpec
from distill_core.train import TrainConfig
from distill_core.zoo import list_zoo
from ui.charts import show_chart
from ui.classroom import job_owner, teacher_only, visitor_job_refusal, visitor_notice
from ui.common import init_state, pick_models, runs_dir
from ui.jobs import JOBS, TASKS, BackgroundTask, TrainingJob
from ui.url_state import Choices, Flag, UrlState
from ui.widgets import LIVE_REDRAW_S, job_progress_row, job_status_message

init_state()
ss = st.session_state

st.title("The accuracy-robustness trade-off")
share = st.container()
st.markdown(
    "Every model of the zoo and every finished run, as **clean** accuracy against **robust** accuracy under "
    "AutoAttack at the dataset's budget (MNIST: eps 0.3), the field's standard check. Up and to the right is better; "
    "the dashed line joins the models no other model beats on both axes (the Pareto front, of the true numbers). "
    "Each method has its own colour and symbol; your runs' markers have a dark rim and a centre dot. Where a naive "
    "PGD attack on the cross-entropy puts a model more than 10 points higher than AutoAttack does, an open marker "
    "shows that *apparent* robustness: an open circle on a dotted line when AutoAttack's masking checks fired "
    "(gradient masking), an open diamond on a dashed line when they did not (a single attack overstating "
    "robustness).")

rows = tradeoff_rows(list_zoo(), list_runs(runs_dir()))
rows += [{**r, "source": "shipped"} for r in tradeoff_rows([], list_runs(SHIPPED_SWEEPS))]
if not rows:
    st.info("No model yet: build the zoo (`python -m distill_core zoo build`) or train one on the Train page.")
    st.stop()

datasets = sorted({r["dataset"] for r in rows if r["dataset"]})
methods = sorted({r["method"] for r in rows if r["method"]})
link = UrlState("trade-off", [
    Choices("datasets", "to_datasets", datasets),
    Choices("sources", "to_sources", ["zoo", "runs", "shipped"]),
    Choices("methods", "to_methods", methods),
    Flag("apparent", "to_apparent"),
    Choices("sweeps", "to_curves", lambda: [c["id"] for c in sweep_curves(       # the curves the filters leave
        filter_rows(rows, ss.get("to_datasets"), ss.get("to_sources"), ss.get("to_methods")))]),
])
link.apply()
f1, f2, f3 = st.columns([2, 1, 3])
default_ds = [ss.dataset] if ss.get("dataset") in datasets else datasets[:1]
chosen_ds = f1.multiselect("Dataset", datasets, default=default_ds, key="to_datasets")
chosen_src = f2.multiselect("Source", ["zoo", "runs", "shipped"], default=["zoo", "runs", "shipped"], key="to_sources",
                            help="shipped: the sweeps that come with the lab (assets/sweeps)")
chosen_methods = f3.multiselect("Method", methods, default=methods, key="to_methods")
shown = filter_rows(rows, chosen_ds, chosen_src, chosen_methods)

def evaluate_runs(paths: list[tuple[str, str]], n: int):
    """The background work of the button: AutoAttack fast on each run, saved in its summary; failures listed."""
    def work(progress) -> list[str]:
        failed = []
        for i, (name, path) in enumerate(paths):
            def report(f: float, message: str, i: int = i, name: str = name) -> None:
                progress((i + f) / len(paths), f"{name} ({i + 1} of {len(paths)}): {message}")

            report(0.0, "starting")
            try:
                evaluate_run_robustness(path, "autoattack-fast", n=n, progress=report)
            except (RunError, OSError, ValueError, KeyError) as e:
                failed.append(f"{name}: {e}")
        return failed
    return work


task = TASKS.latest("trade-off")
missing = [r for r in rows if r["source"] == "runs" and r["robust"] is None]
if missing and (task is None or task.finished):
    e1, e2 = st.columns([3, 1])
    n_eval = e2.slider("Test samples", 100, 1000, 500, step=100, key="to_eval_n",
                       help="AutoAttack fast (APGD-CE + APGD-T) runs on the first N test samples of each run.")
    e1.caption(f"{len(missing)} run(s) have no robust accuracy yet: they are in the table, not on the chart. "
               "AutoAttack fast (APGD-CE + APGD-T, the authors' code) takes about 10-60 s per small model on a CPU; "
               "it runs in the background (leave the page and come back), and the result is saved in each run.")
    refused = teacher_only("measuring every run with AutoAttack")
    if refused:
        e1.caption(refused)
    if e1.button(f"Evaluate robustness of the {len(missing)} run(s) that lack it", key="to_evaluate",
                 disabled=refused is not None):
        task = TASKS.add(BackgroundTask(f"AutoAttack on {len(missing)} run(s)",
                                        evaluate_runs([(r["name"], r["path"]) for r in missing], int(n_eval)),
                                        origin="trade-off")).start()


@st.fragment(run_every=1.0)
def evaluation_progress() -> None:
    if task.finished:
        st.rerun()          # the new points and the summary below
    st.progress(task.progress, text=f"{task.label}: {task.message or 'starting'} (runs in the background)")


if task is not None and not task.finished:
    evaluation_progress()
elif task is not None and not task.seen:
    task.seen = True        # say once what the evaluation did, also to a user who left the page and came back
    if task.status == "error":
        st.error(f"The robustness evaluation failed: {task.error}")
    else:
        for problem in task.result:
            st.warning(f"Could not evaluate {problem}")
        st.success(f"{task.label}: done in {task.ended - task.started:.0f} s.", icon=":material/check:")

# ------------------------------------------------------------------ trace a curve: a sweep of one knob


def sweep_job() -> TrainingJob | None:
    """This session's sweep (each browser session runs its own; the others' are listed below the form)."""
    return JOBS.get(ss.get("to_sweep_job"))


with st.expander("Trace a curve: sweep one knob", expanded=False):
    st.caption("One method, one setting, a few values: each value trains a model in the background and is measured "
               "with AutoAttack fast (APGD-CE + APGD-T, 200 test samples); its point joins the chart as it finishes. "
               "Small models on a CPU: about a minute per value for standard training, several for adversarial ones.")
    s1, s2, s3, s4 = st.columns(4)
    sw_ds = s1.selectbox("Dataset", datasets or ["moons"], key="to_sw_dataset")
    sw_method = s2.selectbox("Method", list_methods(), index=list_methods().index("trades"), key="to_sw_method")
    knobs = [f.name for f in config_fields(sw_method) if f.kind in ("int", "float")] + list(TRAIN_KNOBS)
    sw_knob = s3.selectbox("Knob", knobs, key=f"to_sw_knob_{sw_method}")
    sw_values = s4.text_input("Values", "0.5,2,6" if sw_knob == "beta" else "",
                              key=f"to_sw_values_{sw_method}_{sw_knob}", placeholder="comma-separated, e.g. 0.5,2,6")
    t1, t2, t3 = st.columns(3)
    sw_epochs = t1.number_input("Epochs per run", 1, 100, 3, key="to_sw_epochs")
    sw_seeds = t2.text_input("Seeds", "0", key="to_sw_seeds", help="One run per value and seed; the curve shows means.")
    sw_model = t3.selectbox("Model", ["mlp"] if sw_ds in ("moons", "circles", "spirals", "blobs") else
                            ["papernot-cnn", "small-cnn"], key=f"to_sw_model_{sw_ds}")
    teachers = {role: pick_models(role.replace("_", " ").capitalize(), sw_ds, key=f"to_sw_{role}_{sw_ds}")
                for role in get_method(sw_method).teacher_roles}
    job = sweep_job()
    busy = job is not None and not job.snapshot().finished
    if st.button("Start the sweep", key="to_sw_start", type="primary", disabled=busy or None in teachers.values(),
                 help="One sweep at a time per page; another browser tab can run its own."):
        try:
            base = TrainSpec(dataset=sw_ds, model=sw_model, method=sw_method,
                             teachers={r: ref.key for r, ref in teachers.items()},
                             train=TrainConfig(epochs=int(sw_epochs), batch_size=64, lr=1e-3, device=ss.device))
            specs = sweep_specs(base, sw_knob, sw_values, sw_seeds)
        except ValueError as e:
            st.error(f"Cannot start: {e}")
        else:
            refusal = visitor_job_refusal(specs)
            if refusal:
                st.error(refusal, icon=":material/lock:")
            else:
                job = JOBS.add(TrainingJob(specs, runs_dir(), label=f"{sw_method}: {sw_knob} sweep on {sw_ds}",
                                           origin="trade-off", evaluate={"protocol": "autoattack-fast", "n": 200},
                                           owner=job_owner()).start())
                ss.to_sweep_job, busy = job.id, True
                ss.to_sw_measured = 0
    visitor_notice()


@st.fragment(run_every=LIVE_REDRAW_S)
def sweep_progress(job_id: str) -> None:
    job = JOBS.get(job_id)
    if job is None:
        return
    snap = job.snapshot()
    if snap.finished or len(snap.measured) != ss.get("to_sw_measured", 0):
        ss.to_sw_measured = len(snap.measured)
        st.rerun()          # a new point (or the end): redraw the chart and the table
    job_progress_row(job, snap, key="to_sw_stop", label=f"{job.label} · {snap.activity()}")


job = sweep_job()
if job is not None:
    if not job.snapshot().finished:
        sweep_progress(job.id)
    elif not ss.get(f"to_sw_seen_{job.id}"):
        ss[f"to_sw_seen_{job.id}"] = True
        job_status_message(job, job.snapshot())
others = [j for j in JOBS.running() if j.origin == "trade-off" and j is not job]
if others:   # sweeps of other sessions (or of this one before a reload): their progress and Stop
    st.caption(f"{len(others)} other sweep(s) running on this lab's server:")
    for other in others:
        job_progress_row(other, other.snapshot(), key=f"to_sw_stop_{other.id}",
                         label=f"{other.label} · {other.snapshot().activity()}")

if not shown:
    st.info("No model matches these filters.")
    link.publish(share)
    st.stop()

curves = sweep_curves(shown)          # runs tagged with a sweep are drawn as curves, not as single points
plotted = [r for r in shown if r["clean"] is not None and r["robust"] is not None and r["learned"]
           and not r.get("sweep")]
collapsed = [r["name"] for r in shown if not r["learned"]]
if collapsed:
    st.caption(f"Not on the chart: {len(collapsed)} run(s) that did not learn (test accuracy within 5 points of "
               f"chance): {', '.join(collapsed[:5])}{' ...' if len(collapsed) > 5 else ''}. A collapsed model is not "
               "robust, it answers one class everywhere.")
title = " + ".join(chosen_ds) if chosen_ds else "all datasets"
c_view, c_curves = st.columns([1, 3])
apparent = c_view.toggle("Apparent robustness (PGD-CE)", key="to_apparent",
                         help="Draw what a naive PGD attack on the cross-entropy reports instead of AutoAttack's "
                              "number. A masked model (high T) looks robust there and not under AutoAttack.")
if curves:
    names = {c["id"]: f"{c['method']}: {c['knob']} ({c['dataset']}, {len(c['mean'])} values)" for c in curves}
    chosen_curves = c_curves.multiselect("Sweeps drawn", list(names), default=list(names), format_func=names.get,
                                         key="to_curves")
    curves = [c for c in curves if c["id"] in chosen_curves]
drawn_curves = [{**c, "points": c["mean"]} for c in curves]     # one point per value: the mean over its seeds
link.publish(share)
show_chart(tradeoff_figure(plotted, f"Clean vs {'apparent' if apparent else 'robust'} accuracy ({title})",
                           height=480, curves=drawn_curves, apparent=apparent),
           ("trade-off", title, "apparent" if apparent else "autoattack"), key="to_figure")
if curves:
    st.caption("Lines: sweeps of one knob, each point a model trained with that value (the mean over its seeds), in "
               "knob order. A method beats another only if its curve lies above and to the right, not just one "
               "point. " + ("Apparent view (no Pareto front: it would crown masked models): the *standard: T* sweep "
                            "(the defensive-distillation teacher trained at T) rises with T here, while under "
                            "AutoAttack it stays at the floor - Carlini & Wagner's lesson." if apparent else
                            "Switch on *Apparent robustness* to see what a naive attack would have reported."))
if len({r["dataset"] for r in plotted}) > 1:
    st.caption("Several datasets on one chart: their accuracies are not comparable, and the Pareto front mixes them.")
front = {plotted[i]["name"] for i in pareto_front([r["clean"] for r in plotted], [r["robust"] for r in plotted])}

table = pd.DataFrame(percent_table(shown, front))
st.dataframe(table, hide_index=True, key="to_table")
st.download_button("Download CSV", table.to_csv(index=False), file_name="tradeoff.csv", mime="text/csv",
                   key="to_csv")
st.caption("W-Robust = (clean + robust) / 2, MTARD's single number (Zhao et al. 2022). *Gradient masking*: "
           "AutoAttack's checks fired (exactly zero input gradients, or Square beating the white-box attacks). Models "
           "trained at a high temperature (defensive students and their teachers, 'trained at T' > 1) look robust to "
           "the naive attack only because their saturated softmax hides the gradient - the Defensive distillation page "
           "breaks them. A run whose 'learned' is false stayed at chance level: it is not a result.")
