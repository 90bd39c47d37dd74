"""Defensive distillation (Papernot et al. 2016), told in three steps: train it, sweep T, break it."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from distill_core.data import list_datasets
from distill_core.lab.tradeoff import train_temperature
from distill_core.papers import defensive
from distill_core.papers.defensive import (
    DEFAULT_BREAK_N,
    DEFAULT_T,
    MEASURED_DEFAULTS,
    PAPERNOT_TEMPERATURES,
    accuracy_sentence,
    break_verdict,
    default_train,
    defensive_specs,
    model_role,
    stage_roles,
    sweep_baseline,
    sweep_rows,
)
from distill_core.plots.defensive import (
    break_it_figure,
    confidence_figure,
    gradient_histogram_figure,
    sweep_figure,
    training_figure,
)
from distill_core.reproduce import default_out, expectation_status
from distill_core.runs import RunError, list_runs
from distill_core.train import Event
from distill_core.zoo import list_zoo
from ui.charts import show_chart
from ui.classroom import job_owner, teacher_only, visitor_job_refusal, visitor_notice
from ui.common import (
    app_datasets,
    available_models,
    cpu_time_note,
    dataset,
    get_model,
    init_state,
    runs_dir,
    test_set_note,
    zoo_model,
)
from ui.jobs import JOBS, TASKS, BackgroundTask, ReproductionRun, TrainingJob
from ui.url_state import Choice, Flag, Number, UrlState
from ui.widgets import LIVE_POINTS, LIVE_REDRAW_S, fmt_s, job_progress_row, job_status_message, page_job

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_SWEEP = default_out("papernot") / "results.json"
BREAK_DEFAULT = "mnist-5k/defensive-T100"
UNDISTILLED = "mnist-5k/standard"

init_state()
ss = st.session_state
zoo_names = {m["name"] for m in list_zoo()}

st.title("Defensive distillation, and how it is broken")
share = st.container()


def _dd_sets() -> list[str]:
    """The paper's MNIST (embedded), a 2-D set to see it on points, and the full image sets whose files are on disk."""
    return ["mnist-5k", "moons"] + [n for n in app_datasets() if n not in list_datasets(embedded_only=True)]


def _break_set() -> str:
    return "mnist-5k" if ss.get("dd_dataset", "mnist-5k") == "moons" else ss.get("dd_dataset", "mnist-5k")


link = UrlState("defensive", [
    Choice("dataset", "dd_dataset", _dd_sets),
    Choice("T", "dd_T", PAPERNOT_TEMPERATURES),
    Choice("model", "dd_break_model", lambda: [r.label for r in available_models(_break_set())]),
    Number("n", "dd_break_n", 5, 100, integer=True),
    Flag("cw_l2", "dd_break_cw"),
])
link.apply()
st.markdown(
    "Papernot et al. (IEEE S&P 2016) train a **teacher** at a high softmax temperature T, relabel the data with "
    "its soft outputs at T, train a **student** of the same architecture on them at the same T, and **deploy the "
    "student at T = 1**. The paper reported JSMA's success on MNIST falling from 95.9 % to 0.45 %. Three steps: "
    "train it yourself, look at the temperature sweep, then break it.")

# ------------------------------------------------------------------ step 1: train teacher and student live

st.header("1 · Train a teacher and its student at T")
c1, c2, c3 = st.columns([1, 2, 1])
dd_sets = _dd_sets()
if ss.get("dd_dataset") not in dd_sets:
    ss.dd_dataset = "mnist-5k"
ds_name = c1.radio("Dataset", dd_sets, key="dd_dataset", horizontal=True)
break_ds = _break_set()                                       # step 3 attacks images
T = c2.select_slider("Temperature T", options=list(PAPERNOT_TEMPERATURES), value=int(DEFAULT_T), key="dd_T",
                     help=f"The paper sweeps T in {{1, 2, 5, 10, 20, 30, 40, 50, 100}}; the default here is "
                          f"{DEFAULT_T:g}, the temperature at which the paper's JSMA success fell to 0.45 %.")
loop = default_train(ds_name)
epochs = c3.number_input("Epochs per stage", 1, 50, loop.epochs, key=f"dd_epochs_{ds_name}")
specs = defensive_specs(ds_name, float(T), int(epochs))
st.dataframe(pd.DataFrame([{"stage": i, "role": role, "method": s.method, "model": s.model, "T": s.method_config["T"],
                            "teacher": f"stage {s.teachers['teacher'][1:]}" if s.teachers else "-",
                            "epochs": s.train.epochs,
                            "optimiser": f"{s.train.optimizer} lr {s.train.lr:g}, batch {s.train.batch_size}"}
                           for i, (role, s) in enumerate(zip(stage_roles(specs), specs))]),
             hide_index=True, key="dd_specs")
if ds_name not in ("mnist-5k", "moons"):
    cpu_time_note(dataset(ds_name, "test")[1])
st.caption("Stage 0 trains the teacher on the labels with CE(softmax(Z/T), y); stage 1 trains a student of the same "
           "architecture on the soft labels of stage 0's teacher, softmax(Z_teacher/T), at the same T. Deployed, the "
           "student uses softmax(Z): its logits are about T times larger than an undistilled model's.")
m = MEASURED_DEFAULTS
if ds_name == "mnist-5k":
    measured = (f"The defaults (T = {DEFAULT_T:g}, {loop.epochs} epochs per stage, {loop.optimizer.capitalize()} lr "
                f"{loop.lr:g}, batch {loop.batch_size}), measured headless on a 2-core CPU with one thread "
                f"(`{m['command']}`, seeds {m['seeds']}): teacher {m['teacher']}, student {m['student']} (at most "
                f"{m['gap']} points below), training {m['train_s']}; then Break it on {DEFAULT_BREAK_N} images "
                f"({m['break_s']}; {m['total_s']} in all): the softmax-side attacks succeed on {m['softmax_side']}, "
                f"with {m['zero_grad']} softmax gradients exactly zero, while PGD on Z/T and the C&W margin succeed "
                f"on {m['logit_side']}. "
                f"JSMA on the logits reaches only {m['jsma_logits']} (the undistilled model: "
                f"{m['jsma_logits_undistilled']}): its 14.5 % pixel cap limits it on any model, so that one row misses "
                "the 80 % the other logit-side attacks reach.")
    if float(T) != DEFAULT_T or int(epochs) != loop.epochs:
        measured += (f" **Your settings differ from these.** Lower T or fewer epochs give partial masking: T = 20 "
                     f"with 1 epoch at lr 0.001 gave {m['old_defaults']}. Break it (step 3) says what your run shows.")
    st.caption(measured)


job = page_job("defensive", "dd_job")
running = job is not None and not job.snapshot().finished
refusal = visitor_job_refusal(specs)        # a class visitor's job beyond the limits (ui.classroom); else None
if st.button("Train teacher + student", key="dd_start", type="primary", disabled=running or bool(refusal),
             help="Runs in the background; a reload or another tab sees it too."):
    try:
        label = f"defensive distillation T={T:g} · {ds_name}"
        job = JOBS.add(TrainingJob(specs=specs, runs_dir=runs_dir(), label=label, origin="defensive",
                                   owner=job_owner()).start())
    except (ValueError, RunError) as e:
        st.error(f"Could not start training: {e}")
    else:
        ss.dd_job = job.id
        st.rerun()           # redraw with the button disabled (a second press would start a second job)
if refusal:
    st.caption(f":material/lock: {refusal}")
visitor_notice()


def _trained(snap) -> bool:
    """The job trained both stages and the model learned (no 'did not learn' warning)."""
    return snap.status == "done" and not (snap.final_event() or Event("", 0, 0)).data.get("warning")


def _show_job(job: TrainingJob) -> None:
    snap = job.snapshot()
    if not snap.finished:
        role = ("teacher", "student")[min(snap.stage, 1)]
        job_progress_row(job, snap, key="dd_stop", label=f"Training the {role}")
    roles = stage_roles(job.specs)
    series = {roles[i]: job.series(i, max_points=LIVE_POINTS) for i in range(min(snap.stage + 1, snap.stages))}
    show_chart(training_figure(series), ("defensive", "training", job.label), key="dd_training_chart",
               svg=snap.finished)      # live: no SVG button while it redraws every second
    if snap.finished:
        if _trained(snap):
            accs = {roles[i]: job.series(i)["evals"]["test_accuracy"] for i in range(snap.stages)}
            T_job = float(job.specs[-1].method_config.get("T", 1.0))
            names = {"teacher": model_role("standard", T_job), "student": model_role("defensive", T_job)}
            msg = " · ".join(f"{names.get(r, r)}: {100 * a[-1]:.1f} % test accuracy" for r, a in accs.items() if a)
            gap = (accuracy_sentence(accs["teacher"][-1], accs["student"][-1])
                   if accs.get("teacher") and accs.get("student") else "")
            st.success(f"Done in {fmt_s(snap.elapsed_s())}. {msg}. {gap} The student is saved as run "
                       f"`{snap.run_paths[-1].name}`"
                       + (": step 3 below now attacks it." if job.specs[0].dataset != "moons" else "."))
        else:
            job_status_message(job, snap)


@st.fragment(run_every=LIVE_REDRAW_S)
def _poll_job(job_id: str) -> None:
    job = JOBS.get(job_id)
    if job is None:
        return
    _show_job(job)
    if job.snapshot().finished:
        st.rerun()


if job is not None:
    if running:
        _poll_job(job.id)
    else:
        _show_job(job)
        snap = job.snapshot()
        if _trained(snap) and snap.run_paths and job.specs[-1].dataset == break_ds \
                and ss.get("dd_handed_off") != job.id:
            ss.dd_handed_off = job.id                       # once per job: step 3 selects the new student
            ss.dd_select_run = snap.run_paths[-1].name

# ------------------------------------------------------------------ step 2: the temperature sweep

st.header("2 · The temperature sweep")


def _read_results(path: Path) -> tuple[dict | None, str]:
    if not path.exists():
        return None, ""
    try:
        results = json.loads(path.read_text())
        sweep_rows(results)
        return results, ""
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        return None, f"{path.name} could not be read: {e}"


shipped, problem = _read_results(SHIPPED_SWEEP)
if problem:
    st.warning(f"The shipped sweep: {problem}")
quick_job: ReproductionRun | None = ss.get("dd_quick")
choices = (["your quick rerun"] if quick_job and quick_job.results else []) + (["shipped full run"] if shipped else [])
shown = st.radio("Sweep", choices, key="dd_sweep_source", horizontal=True) if len(choices) > 1 else (
    choices[0] if choices else None)
results = shipped if shown == "shipped full run" else (quick_job.results if shown else None)

with st.expander("Rerun the sweep (quick version, trained live)", expanded=results is None):
    st.caption("Runs `python -m distill_core reproduce papernot --quick` in the background: an undistilled model, then "
               "a teacher and a student at T = 1, 20 and 100 (1 epoch on a quarter of mnist-5k), each measured with "
               "JSMA on the softmax, rho_adv, confidence and gradient amplitudes; then the T = 100 student is broken. "
               "A pipeline check with few samples, not the paper's numbers: one to a few minutes on a CPU.")
    busy = quick_job is not None and quick_job.status == "running"
    refused = teacher_only("the quick sweep")
    if refused:
        st.caption(refused)
    if st.button("Run the quick sweep", key="dd_sweep_run", disabled=busy or refused is not None):
        quick_job = ReproductionRun("papernot", Path(tempfile.mkdtemp(prefix="papernot-quick-"))).start()
        ss.dd_quick = quick_job
        busy = True

    def _show_quick(job: ReproductionRun) -> None:
        if job.status == "running":
            st.info(f"Running for {job.elapsed_s():.0f} s: " + (job.lines[-1] if job.lines else "starting..."))
        elif job.status == "error":
            st.error(f"The quick sweep failed: {job.error}")
        else:
            st.success(f"Quick sweep done in {job.elapsed_s():.0f} s (results in {job.out}).")
        if job.lines:
            st.code("\n".join(job.lines[-8:]), language=None)

    @st.fragment(run_every=1.0)
    def _poll_quick() -> None:
        _show_quick(ss.dd_quick)
        if ss.dd_quick.status != "running":
            st.rerun()

    if busy:
        _poll_quick()
    elif quick_job is not None:
        _show_quick(quick_job)

if results is not None:
    rows = sweep_rows(results)
    base = sweep_baseline(results)
    kind = "quick rerun" if results.get("quick") else "full run"
    st.caption(f"{kind.capitalize()}: `{results.get('command', '')}`, {results.get('seconds', 0):.0f} s. "
               "Students deployed at T = 1; the diamond is the undistilled model.")
    g1, g2 = st.columns(2)
    has_truth = any(not math.isnan(r["robust_accuracy"]) for r in rows)   # sweeps before AutoAttack have none
    show_chart(sweep_figure(rows, highlight_T=float(T), baseline=base,
                            title="JSMA on the softmax vs T" + (", and the truth" if has_truth else "")),
               ("defensive", "T-sweep", kind, "jsma"), key="dd_sweep_fig", container=g1)
    if has_truth:
        g1.caption("The paper's curve (JSMA success falling with T) next to the truth: **AutoAttack's robust "
                   "accuracy stays at the floor at every T**, while the apparent robustness a naive PGD on the "
                   "cross-entropy measures climbs with T. The softmax hides the gradient; the model is no harder to "
                   "fool (Carlini & Wagner).")
    else:
        g1.caption("This run predates the AutoAttack measurement: rerun the reproduction to see the true robust "
                   "accuracy against T beside the paper's curve.")
    show_chart(confidence_figure(rows, highlight_T=float(T), title="Confidence and rho_adv vs T"),
               ("defensive", "T-sweep", kind, "confidence"), key="dd_conf_fig", container=g2)
    temps = [r["T"] for r in rows]
    default_t = sorted({temps[0], temps[-1]} | ({float(T)} if float(T) in temps else set()))
    hist_t = st.multiselect("Temperatures in the histogram", temps, default=default_t, key="dd_hist_T",
                            format_func=lambda t: f"T = {t:g}")
    show_chart(gradient_histogram_figure([r for r in rows if r["T"] in hist_t], highlight_T=float(T),
                                         title="Adversarial gradient amplitude (softmax), log scale"),
               ("defensive", "T-sweep", kind, "gradients", "T" + "-".join(f"{t:g}" for t in hist_t)),
               key="dd_grad_fig")
    st.caption("As T grows the deployed softmax saturates: its input gradient shrinks by tens of orders of magnitude "
               "and, in float32, becomes **exactly zero** for many images (the share is in the legend). JSMA on "
               "the softmax has nothing left to follow, so its success collapses while accuracy barely moves.")
    if results.get("expectations"):
        with st.expander("Did the papers' effects show in this run?"):
            st.dataframe(pd.DataFrame([{"shown": expectation_status(e),
                                        "claim": e["claim"], "numbers": e["detail"]}
                                       for e in results["expectations"]]),
                         hide_index=True, key="dd_expectations")
else:
    st.info("No sweep yet: the shipped one (`python -m distill_core reproduce papernot`, written to "
            f"{SHIPPED_SWEEP.relative_to(ROOT)}) is missing. Run the quick version above.")

# ------------------------------------------------------------------ step 3: break it

st.header("3 · Break it")
st.markdown(
    "**Defensive distillation masks gradients; it does not make the model robust** (Carlini & Wagner 2016, 2017). "
    "Deployed at T = 1, the student's logits are about T times larger; once its softmax saturates, the gradient of "
    "anything computed through it underflows to zero in float32 and attacks that look at the softmax go blind, "
    "while the same attacks on the logits, on softmax(Z/T), with C&W's margin loss, or crafted on an undistilled "
    "model and transferred, still get through. Press **Break it** to measure how far that holds for a model: the "
    "verdict beside the chart is read from the numbers of that run.")

mnist_models = available_models(break_ds)
if break_ds != "mnist-5k":
    st.caption(f"Step 3 attacks the {break_ds} models (step 1's dataset); pick mnist-5k there for the zoo's.")
    test_set_note(break_ds)
if not mnist_models:
    st.warning(f"No {break_ds} model: build the zoo (`python -m distill_core zoo build`) or train one in step 1.")
    link.publish(share)
    st.stop()
run_configs = {str(r.path): r.config for r in list_runs(runs_dir())}


def _display(ref) -> str:
    """A model's name in this page's lists: a run says what it is in defensive distillation (not "standard")."""
    if ref.source != "run":
        return ref.label
    config = run_configs.get(ref.key, {})
    return f"run: {model_role(ref.method, train_temperature(config) or 1.0)} · {Path(ref.key).name}"


labels = [r.label for r in mnist_models]
by_label = dict(zip(labels, mnist_models))
pending = ss.pop("dd_select_run", None)             # a student just trained in step 1: select it
fresh = next((r.label for r in mnist_models if r.source == "run" and Path(r.key).name == pending), None)
if fresh is not None:
    ss.dd_break_model = fresh
elif ss.get("dd_break_model") not in by_label:
    ss.dd_break_model = next((r.label for r in mnist_models if r.key == BREAK_DEFAULT), labels[0])
k1, k2, k3 = st.columns([4, 4, 1])
ref = by_label[k1.selectbox("Distilled model to attack", labels, key="dd_break_model",
                            format_func=lambda label: _display(by_label[label]),
                            help="Defensive students from the zoo or your runs (step 1 selects its new student).")]
n_break = k2.slider("Test images (N)", 5, 100, DEFAULT_BREAK_N, step=5, key="dd_break_n",
                    help="The first N test images the model classifies correctly; JSMA attacks each towards every "
                         "other class (Papernot's protocol).")
with_cw_l2 = k3.checkbox("CW-L2", key="dd_break_cw", help="Also Carlini & Wagner's L2 attack (9 x 100 Adam steps: "
                         "about as long as all the others together).")
try:
    model, info, cfg = get_model(ref)
except (RunError, OSError, ValueError, KeyError) as e:
    st.error(f"Could not load {_display(ref)}: {e}")
    link.publish(share)
    st.stop()
T_model = train_temperature(cfg) or 1.0
st.caption(f"{_display(ref)}: {model_role(ref.method, T_model)} (method `{ref.method}`, trained at T = {T_model:g}). "
           + ("" if break_ds == "mnist-5k" and UNDISTILLED in zoo_names
              else "No undistilled zoo model for this dataset: no transfer attack."))


def _show_break(res: dict, title: str, key: str) -> None:
    """One Break-it result (the live one or the reproduction's): its bars, the verdict read from it, its table."""
    verdict = break_verdict(res)
    left, right = st.columns([3, 2])
    show_chart(break_it_figure(res, title=title), ("defensive", "break-it", title), key=f"{key}_fig",
               container=left)
    with right:
        zg = res["zero_grad"]
        m1, m2 = st.columns(2)
        m1.metric("Zero softmax gradient", f"{zg['softmax']} / {zg['n']}",
                  help="Images whose input Jacobian of softmax(Z) is exactly 0 in float32.")
        m2.metric("Zero logit gradient", f"{zg['logits']} / {zg['n']}",
                  help="The same for the logits Z.")
        st.markdown(verdict.text)
        st.caption("Grey bars: attacks through the deployed softmax; red: the same budget spent on the logits, Z/T, "
                   "the C&W margin, or on another model. An exactly-zero softmax gradient is the signature of "
                   "gradient masking (one of AutoAttack's checks), not of robustness.")
    st.dataframe(pd.DataFrame([{"attack": r["attack"], "success": f"{100 * r['success']:.0f} %",
                                "detail": r["detail"]} for r in res["rows"]]),
                 hide_index=True, key=f"{key}_table")


def _break_work(target, target_info, T: float, n: int, cw_l2: bool, source, settings: tuple, title: str):
    """Break it as a background task (no streamlit in it): returns what the page shows, also after leaving it."""
    data, _ = dataset(break_ds, "test")
    x, y = data.tensors
    run = defensive.break_defensive

    def work(report) -> dict:
        def progress(done: int, total: int, name: str) -> None:
            report(done / (total + 1), f"{name} on {n} images ({done + 1} of {total + 1})")

        res = run(target, x, y, T, source=source, n=n, cw_l2=cw_l2, info=target_info, progress=progress)
        return {"settings": settings, "title": title, "result": res}
    return work


mtime = (Path(ref.key) / "model.pt").stat().st_mtime if ref.source == "run" else 0.0
settings = (ref.source, ref.key, mtime, n_break, with_cw_l2)
cache = ss.setdefault("dd_break_cache", {})       # (title, result) by settings, for this browser session
task: BackgroundTask | None = ss.get("dd_break_task") or TASKS.latest("defensive")   # after a reload: the last one
busy = task is not None and not task.finished
if st.button("Break it", key="dd_break", type="primary", disabled=busy,
             help="Runs in the background: leave the page and come back, the result waits here."):
    ss.dd_break_shown = settings
    if settings not in cache:
        source = (zoo_model(UNDISTILLED)[0] if break_ds == "mnist-5k" and UNDISTILLED in zoo_names
                  and ref.key != UNDISTILLED else None)
        title = f"Attack success on {_display(ref)} (T = {T_model:g})"
        task = TASKS.add(BackgroundTask(f"Break it on {_display(ref)}, {n_break} images",
                                        _break_work(model, info, T_model, n_break, with_cw_l2, source, settings,
                                                    title), origin="defensive")).start()
        ss.dd_break_task = task
        st.rerun()           # redraw with the button disabled and the progress below it


@st.fragment(run_every=1.0)
def _break_progress() -> None:
    if task.finished:
        st.rerun()           # the result, below
    st.progress(task.progress, text=f"{task.label}: {task.message or 'starting'} · {time.time() - task.started:.0f} s "
                                    "(runs in the background: you can leave this page and come back)")


if busy:
    _break_progress()
elif task is not None and task.status == "error":
    st.error(f"{task.label} failed: {task.error}")
elif task is not None and task.status == "done":
    done = task.result
    if done["settings"] not in cache:                # finished while the page was away, or in another tab
        cache[done["settings"]] = (done["title"], done["result"])
        ss.dd_break_shown = done["settings"]
shown = ss.get("dd_break_shown")
if shown in cache and not busy:
    title, res = cache[shown]
    if shown != settings:
        st.caption(f"Showing the last result (**{title}**, {res['n']} images). The selection above has changed: "
                   "press **Break it** to attack it.")
    _show_break(res, title, "dd_break")
broken = (results or {}).get("break_it")
if broken:
    with st.expander(f"The same attacks in the {kind} of the reproduction (T = {broken['T']:g} student, "
                     f"{broken['n']} images)"):
        _show_break(broken, f"Attack success on the reproduction's T = {broken['T']:g} student", "dd_repro_break")
link.publish(share)
