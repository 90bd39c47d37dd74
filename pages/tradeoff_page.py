"""Trade-off: every zoo model and run as clean vs robust (AutoAttack) accuracy, the masking gap, the Pareto front,
a table, CSV export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from distill_core.lab.tradeoff import evaluate_run_robustness, filter_rows, percent_table, tradeoff_rows
from distill_core.plots.tradeoff import pareto_front, tradeoff_figure
from distill_core.runs import RunError, list_runs
from distill_core.zoo import list_zoo
from ui.common import init_state, runs_dir
from ui.jobs import TASKS, BackgroundTask

init_state()
ss = st.session_state

st.title("The accuracy-robustness trade-off")
st.markdown(
    "Every model of the zoo and every finished run, as **clean** accuracy against **robust** accuracy under "
    "AutoAttack at the dataset's budget (MNIST: eps 0.3), the field's standard check. Up and to the right is better; "
    "the dashed line joins the models no other model beats on both axes (the Pareto front, of the true numbers). "
    "Circles: zoo; diamonds: your runs. Where a naive PGD attack on the cross-entropy puts a model more than 10 "
    "points higher than AutoAttack does, an open marker shows that *apparent* robustness: an open circle on a dotted "
    "line when AutoAttack's masking checks fired (gradient masking), an open diamond on a dashed line when they did "
    "not (a single attack overstating robustness).")

rows = tradeoff_rows(list_zoo(), list_runs(runs_dir()))
if not rows:
    st.info("No model yet: build the zoo (`python -m distill_core zoo build`) or train one on the Train page.")
    st.stop()

datasets = sorted({r["dataset"] for r in rows if r["dataset"]})
methods = sorted({r["method"] for r in rows if r["method"]})
f1, f2, f3 = st.columns([2, 1, 3])
default_ds = [ss.dataset] if ss.get("dataset") in datasets else datasets[:1]
chosen_ds = f1.multiselect("Dataset", datasets, default=default_ds, key="to_datasets")
chosen_src = f2.multiselect("Source", ["zoo", "runs"], default=["zoo", "runs"], key="to_sources")
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
    if e1.button(f"Evaluate robustness of the {len(missing)} run(s) that lack it", key="to_evaluate"):
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

if not shown:
    st.info("No model matches these filters.")
    st.stop()

plotted = [r for r in shown if r["clean"] is not None and r["robust"] is not None and r["learned"]]
collapsed = [r["name"] for r in shown if not r["learned"]]
if collapsed:
    st.caption(f"Not on the chart: {len(collapsed)} run(s) that did not learn (test accuracy within 5 points of "
               f"chance): {', '.join(collapsed[:5])}{' ...' if len(collapsed) > 5 else ''}. A collapsed model is not "
               "robust, it answers one class everywhere.")
title = " + ".join(chosen_ds) if chosen_ds else "all datasets"
st.plotly_chart(tradeoff_figure(plotted, f"Clean vs robust accuracy ({title})", height=480), key="to_figure")
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
