"""Multi-teacher: MTARD live (a clean and a robust teacher, EBB and NLB), live tuning, and the comparison."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core.lab.sweeps import SHIPPED_SWEEPS, sweep_curves
from distill_core.lab.tradeoff import evaluate_run_robustness, percent_table, tradeoff_rows
from distill_core.methods import get_method
from distill_core.models import list_models
from distill_core.plots.tradeoff import tradeoff_figure
from distill_core.plots.training import comparison_figure, mtard_live_figures
from distill_core.robustness import read_record
from distill_core.runs import RunError, list_runs, read_run
from distill_core.spec import TrainSpec
from distill_core.train import TrainConfig
from distill_core.zoo import list_zoo
from ui.charts import show_chart
from ui.classroom import job_owner, may_control, visitor_job_refusal, visitor_notice
from ui.common import (
    app_datasets,
    available_models,
    cpu_time_note,
    dataset,
    dataset_with_info,
    init_state,
    pick_models,
    runs_dir,
)
from ui.jobs import JOBS, TrainingJob
from ui.url_state import Choice, Dynamic, Flag, Number, Param, UrlState
from ui.widgets import IDLE_POLL_S, LIVE_POINTS, LIVE_REDRAW_S, job_progress_row, job_status_message, page_job

init_state()
ss = st.session_state
ss.setdefault("mt_job", None)        # id of the MTARD job this page shows
ss.setdefault("mt_live", False)      # whether that job was running at the last full render
CFG = get_method("mtard").Config()   # the paper's defaults: one source of truth for the widgets
COMPARE = ("kd", "pgd_at", "ard", "rslad", "mtard")
# Live tuning: the quantity, its slider range and what the method does with it once handed back.
TUNABLE = {"tau_nat": ("tau_nat (clean teacher)", 1.0, 10.0, "EBB"),
           "tau_adv": ("tau_adv (robust teacher)", 1.0, 10.0, "EBB"),
           "w_adv": ("w_adv (w_nat = 1 - w_adv)", 0.0, 1.0, "NLB")}
PAPER = "Zhao, Wang & Wei, *Enhanced Accuracy and Robustness via Multi-Teacher Adversarial Distillation* " \
        "(ECCV 2022; extended version arXiv:2306.16170, 2023)"


def measure_run(path: Path) -> None:
    """The new student's robustness (AutoAttack fast, n = 500, through the one core function), saved in its
    summary.json once; a progress bar while it runs. The Trade-off page then shows the run too."""
    if read_record(read_run(path).summary) is not None:
        return
    bar = st.progress(0.0, text="Measuring the new student: AutoAttack (fast) on 500 test samples...")
    evaluate_run_robustness(path, "autoattack-fast", n=500,
                            progress=lambda f, m: bar.progress(min(f, 1.0), text=f"Measuring the new student: {m}"))
    bar.empty()


# ------------------------------------------------------------------ intro

st.title("Multi-teacher distillation (MTARD)")
share = st.container()


def _teacher_params() -> list[Param]:
    """The teacher and student boxes: their keys (and offers) depend on the dataset, applied first."""
    ds_now = ss.dataset
    labels = [r.label for r in available_models(ds_now)]
    image = dataset(ds_now, "test")[1].is_image
    return [Choice("clean", f"mt_clean_{ds_now}", labels), Choice("robust", f"mt_robust_{ds_now}", labels),
            Choice("student", f"mt_student_{'image' if image else 'points'}", list_models() if image else ["mlp"])]


link = UrlState("multi-teacher", [
    Choice("dataset", "dataset", app_datasets),
    Dynamic(_teacher_params),
    Number("tau_nat", "mt_tau_nat", 1.0, 10.0),
    Number("tau_adv", "mt_tau_adv", 1.0, 10.0),
    Number("lr_tau", "mt_lr_tau", 0.0, 1.0),
    Number("w_adv", "mt_w_adv", 0.0, 1.0),
    Number("r_w", "mt_r_w", 0.0, 1.0),
    Flag("ebb", "mt_ebb"),
    Flag("nlb", "mt_nlb"),
    Number("epochs", "mt_epochs", 1, 200, integer=True),
])
link.apply()
st.markdown(
    "A small student learns from **two teachers at once**: a *clean* teacher (standard training, high clean "
    "accuracy) on clean images and a *robust* teacher (adversarially trained) on the student's own adversarial "
    "examples. Two rules keep the teachers in balance while it trains: **EBB** moves their temperatures, "
    f"**NLB** their weights ({PAPER}). Start a run, watch the rules move, then take over any of them with a slider.")
st.latex(r"\mathcal{L} = w_{adv}\,\mathrm{KL}\!\left(\mathrm{softmax}\!\left(\tfrac{T_{adv}(x')}{\tau_{adv}}\right)"
         r"\Big\|\,S(x')\right) + w_{nat}\,\mathrm{KL}\!\left(\mathrm{softmax}\!\left(\tfrac{T_{nat}(x)}{\tau_{nat}}"
         r"\right)\Big\|\,S(x)\right)")

datasets = app_datasets()
c_models, c_balance, c_train = st.columns(3, gap="large")
with c_models:
    st.subheader("Teachers and student")
    ds, info = dataset_with_info("Dataset", key="mt_dataset", options=datasets)
    cpu_time_note(info)
    clean_ref = pick_models("Clean teacher", ds, key=f"mt_clean_{ds}", default=["zoo: standard", "zoo: teacher"])
    robust_ref = pick_models("Robust teacher", ds, key=f"mt_robust_{ds}",
                             default=["zoo: trades", "zoo: teacher-T20", "zoo: teacher"])
    students = list_models() if info.is_image else ["mlp"]
    student = st.selectbox("Student architecture", students,
                           index=students.index("small-cnn") if "small-cnn" in students else 0,
                           key=f"mt_student_{'image' if info.is_image else 'points'}")
    if clean_ref is not None and robust_ref is not None and clean_ref.key == robust_ref.key:
        st.caption("Both teachers are the same model: MTARD then reduces to one teacher seen clean and attacked.")

with c_balance:
    st.subheader("Balance (EBB and NLB)")
    t1, t2 = st.columns(2)
    tau_nat = t1.number_input("initial tau_nat", 1.0, 10.0, float(CFG.tau_nat), 0.1, key="mt_tau_nat")
    tau_adv = t2.number_input("initial tau_adv", 1.0, 10.0, float(CFG.tau_adv), 0.1, key="mt_tau_adv")
    lr_tau = st.number_input("lr_tau (EBB step per iteration)", 0.0, 1.0, float(CFG.lr_tau), 0.001, format="%g",
                             key="mt_lr_tau")
    w_adv = st.slider("initial w_adv (w_nat = 1 - w_adv)", 0.0, 1.0, float(CFG.w_adv), 0.05, key="mt_w_adv")
    r_w = st.number_input("r_w (NLB rate per iteration)", 0.0, 1.0, float(CFG.r_w), 0.005, format="%g",
                          key="mt_r_w")
    s1, s2 = st.columns(2)
    ebb = s1.toggle("EBB", value=CFG.ebb, key="mt_ebb", help="Entropy-Based Balance of the temperatures")
    nlb = s2.toggle("NLB", value=CFG.nlb, key="mt_nlb", help="Normalization Loss Balance of the weights")
    st.caption(f"The paper's lr_tau = {CFG.lr_tau:g} moves tau by at most {CFG.lr_tau:g} per step, tuned for 300 "
               "epochs; on a short CPU run raise it (e.g. 0.02) to see EBB act within a minute.")

with c_train:
    st.subheader("Training")
    d = TrainConfig()
    epochs = st.number_input("Epochs", 1, 200, 1, key="mt_epochs")
    steps = st.number_input("PGD steps for the student's x'", 1, 40, CFG.steps, key="mt_pgd_steps",
                            help="Each step is a forward and backward pass; fewer is faster on a CPU.")
    eps_warmup = st.slider("eps warm-up (share of training)", 0.0, 1.0, CFG.eps_warmup, 0.05, key="mt_eps_warmup",
                           help="The student's x' uses an eps that grows linearly from 0 to the dataset's budget over "
                                "this share of the steps (0: the full eps from the first step, the paper's CIFAR "
                                "recipe). Without it, MNIST's eps 0.3 can keep a short run at chance.")
    batch_size = st.selectbox("Batch size", [32, 64, 128, 256], index=1, key="mt_batch")
    lr = st.number_input("Learning rate (Adam)", min_value=0.0, value=d.lr, format="%g", step=1e-4, key="mt_lr")
    max_steps = st.number_input("Max steps (optional)", min_value=1, value=None, step=10, key="mt_max_steps",
                                placeholder="no limit")
    seed = st.number_input("Seed", 0, 2**31 - 1, d.seed, key="mt_seed")

link.publish(share)
job = page_job("multi-teacher", "mt_job")
running = job is not None and not job.snapshot().finished
ready = clean_ref is not None and robust_ref is not None
if ready:   # what Start will train, read back from the widgets (an out-of-range number keeps its last valid value)
    st.caption(f"**Start trains:** a {student} student on {ds} for {int(epochs)} epoch(s) from "
               f"{clean_ref.label.split(': ', 1)[-1]} (clean) and {robust_ref.label.split(': ', 1)[-1]} (robust); "
               f"tau {float(tau_nat):g} / {float(tau_adv):g}, lr_tau {float(lr_tau):g}, w_adv {float(w_adv):g}, "
               f"r_w {float(r_w):g}, EBB {'on' if ebb else 'off'}, NLB {'on' if nlb else 'off'}; {int(steps)} PGD "
               f"steps, eps warm-up {float(eps_warmup):g}; batch {batch_size}, Adam lr {float(lr):g}, seed {int(seed)}"
               + (f", max {int(max_steps)} steps" if max_steps else "") + ".")
b1, b2 = st.columns([1, 4], vertical_alignment="center")
start = b1.button("Start MTARD", key="mt_start", type="primary", icon=":material/play_arrow:", disabled=not ready)
if not ready:
    b2.warning("Pick both teachers first (the zoo has mnist-5k/standard and mnist-5k/trades).")
elif running:
    b2.caption("A run is going: starting another keeps it running (see the Train page for all jobs).")
visitor_notice(b2)
if start:
    try:
        spec = TrainSpec(
            dataset=ds, model=student, method="mtard",
            method_config={"tau_nat": float(tau_nat), "tau_adv": float(tau_adv), "lr_tau": float(lr_tau),
                           "w_nat": 1.0 - float(w_adv), "w_adv": float(w_adv), "r_w": float(r_w), "ebb": bool(ebb),
                           "nlb": bool(nlb), "steps": int(steps), "eps_warmup": float(eps_warmup)},
            train=TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                              max_steps=None if max_steps is None else int(max_steps), device=ss.device),
            teachers={"clean_teacher": clean_ref.key, "robust_teacher": robust_ref.key})
    except ValueError as e:
        st.error(f"Cannot start: {e}")
    else:
        refusal = visitor_job_refusal([spec])
        if refusal:
            st.error(refusal, icon=":material/lock:")
        else:
            job = JOBS.add(TrainingJob([spec], runs_dir(), label=f"mtard · {ds} · {student}",
                                       origin="multi-teacher", owner=job_owner()).start())
            ss.mt_job = job.id

job = page_job("multi-teacher", "mt_job")
ss.mt_live = job is not None and not job.snapshot().finished


def _clamped(q: str, value: float) -> float:
    lo, hi = TUNABLE[q][1:3]
    return min(max(float(value), lo), hi)


def _toggled(q: str) -> None:
    """Taking a quantity over starts its slider at the run's current value; handing it back clears the control.

    Only the user's own action writes ``job.controls`` (here and in :func:`_slid`); a redraw reads it, so two
    tabs on the same run never undo each other's takeover."""
    job = page_job("multi-teacher", "mt_job")
    if job is None or not may_control(job):      # checked again here: a forged event from a visitor does nothing
        return
    if ss[f"mt_take_{q}"]:
        last = job.snapshot().last("step")
        value = _clamped(q, last.data[q] if last is not None and q in last.data else getattr(CFG, q))
        ss[f"mt_val_{q}"] = value
        job.controls.set(q, value)
    else:
        job.controls.clear(q)


def _slid(q: str) -> None:
    job = page_job("multi-teacher", "mt_job")
    if job is not None and ss.get(f"mt_take_{q}") and may_control(job):
        job.controls.set(q, ss[f"mt_val_{q}"])


def live_tuning(job, snap) -> None:
    """Per quantity, a take-over toggle and a slider; the value goes to the worker through job.controls."""
    st.markdown("**Live tuning** - take a quantity over and the worker uses your value from its next step; "
                "hand it back and EBB / NLB go on from there.")
    last = snap.last("step")
    mine = may_control(job)                       # a class visitor steers only their own run
    cols = st.columns(len(TUNABLE))
    for col, (q, (label, lo, hi, rule)) in zip(cols, TUNABLE.items()):
        take_key, val_key = f"mt_take_{q}", f"mt_val_{q}"
        user_value = job.controls.get(q)          # the run's truth, whichever tab set it
        ss[take_key] = user_value is not None
        if user_value is not None:
            ss[val_key] = _clamped(q, user_value)
        else:                                     # follows the run while the rule is in charge
            current = last.data.get(q) if last is not None else getattr(CFG, q)
            ss[val_key] = _clamped(q, current if current is not None else getattr(CFG, q))
        taken = col.toggle(f"Take over {q}", key=take_key, on_change=_toggled, args=(q,), disabled=not mine,
                           help=f"Off: {rule} sets it. On: the slider does.")
        col.slider(label, lo, hi, step=0.05, key=val_key, disabled=not (taken and mine), on_change=_slid, args=(q,))


@st.fragment(run_every=LIVE_REDRAW_S if ss.mt_live else IDLE_POLL_S)
def live_run() -> None:
    """Progress, live tuning and the balance charts of this page's MTARD job, redrawn every second while it runs."""
    job = page_job("multi-teacher", "mt_job")
    if job is None:
        st.info("Press **Start MTARD** to train a student live. The charts show tau, w, the teachers' entropies "
                "and the two loss terms as they move.")
        return
    snap = job.snapshot()
    if ss.mt_live == snap.finished:
        st.rerun()   # the run just ended (measure it, compare it, slow the timer), or one started in another tab
    if snap.finished:
        job_status_message(job, snap)
    else:
        job_progress_row(job, snap, key="mt_stop")
    if not snap.finished:
        live_tuning(job, snap)
    figs = mtard_live_figures(job.series(max_points=LIVE_POINTS)["steps"])
    left, right = st.columns(2)
    for i, (name, fig) in enumerate(figs.items()):
        show_chart(fig, ("multi-teacher", job.label, name), key=f"mt_chart_{name}", width="stretch",
                   container=left if i % 2 == 0 else right, svg=snap.finished)   # live: SVG once it has ended


st.divider()
st.subheader("Live run")
live_run()

# ------------------------------------------------------------------ comparison

st.divider()
st.subheader("Compared with KD, ARD and RSLAD")
zoo = {m["name"]: m for m in list_zoo(dataset=ds)}
zoo_rows = {r["name"]: r for r in tradeoff_rows(zoo.values(), [])}
rows = [{**r, "name": name.split("/", 1)[1]} for name, r in zoo_rows.items() if r["method"] in COMPARE]
for ref, role in ((robust_ref, "robust teacher"), (clean_ref, "clean teacher")):   # clean ends up first
    if ref is not None and ref.source == "zoo" and ref.key in zoo_rows:
        rows.insert(0, {**zoo_rows[ref.key], "name": f"{role}: {ref.key.split('/', 1)[1]}"})
if job is not None and job.snapshot().finished and job.snapshot().run_paths:
    path = job.snapshot().run_paths[-1]
    if (path / "model.pt").exists() and job.snapshot().status in ("done", "stopped"):
        try:
            measure_run(path)
        except (RunError, OSError, ValueError) as e:
            st.warning(f"Could not measure the new student: {e}")
own = [r for r in tradeoff_rows([], list_runs(runs_dir())) if r["method"] == "mtard" and r["dataset"] == ds
       and r["robust"] is not None]
for r in own[:5]:
    stopped = " (stopped)" if r["status"] == "stopped" else ""
    rows.append({**r, "name": f"your run {r['name'][-6:]}{stopped}"})
if not rows:
    st.info(f"No zoo students for {ds} to compare with: build the zoo (`python -m distill_core zoo build`) or pick "
            "mnist-5k.")
else:
    columns = ("method", "clean (%)", "robust, AutoAttack (%)", "apparent, PGD-CE (%)", "W-Robust (%)",
               "measured with")
    table = [{"model": row["name"], **{k: row[k] for k in columns}} for row in percent_table(rows)]
    c_tab, c_fig = st.columns([1, 1], gap="large")
    c_tab.dataframe(table, hide_index=True, key="mt_compare_table", width="stretch")
    c_tab.caption("Robust accuracy is AutoAttack's, the field's standard check (the zoo: the standard version on 500 "
                  "test samples; your runs: the fast version, APGD-CE + APGD-T, on 500). *Apparent* is what a naive "
                  "PGD on the cross-entropy reports. W-Robust = (clean + AutoAttack) / 2, MTARD's metric. In the "
                  "paper (ResNet-18, CIFAR-10) MTARD reaches 87.36 % clean vs RSLAD's 83.99 %, but 50.73 % vs "
                  "53.94 % under PGD-20: it buys clean accuracy and W-Robust, not white-box robustness.")
    show_chart(comparison_figure(rows), ("multi-teacher", ds, "comparison"), key="mt_compare_chart", width="stretch",
               container=c_fig)

shipped = [c for c in sweep_curves(tradeoff_rows([], list_runs(SHIPPED_SWEEPS)))
           if c["dataset"] == ds and c["method"] in ("trades", "mtard")]
if shipped:
    st.markdown("**Where your tuning landed**: your MTARD runs (dark rims) on the shipped curves of TRADES (its beta) "
                "and MTARD (its balance weight w_adv, NLB off), all measured with AutoAttack fast on the same data.")
    landed = [{**r, "label": f"you: {r['label']}"} for r in own[:5]]
    show_chart(tradeoff_figure(landed, f"Your MTARD runs on the shipped curves ({ds})", height=420,
                               curves=[{**c, "points": c["mean"]} for c in shipped]),
               ("multi-teacher", ds, "runs-on-shipped-curves"), key="mt_landed_chart")
    if not landed:
        st.caption("Finish a run above and it appears on these curves.")
else:
    st.caption(f"No shipped TRADES / MTARD sweeps for {ds} (`python scripts/build_sweeps.py` builds those of "
               "mnist-5k): the curves your run would be placed on are missing.")

# ------------------------------------------------------------------ the two rules

st.divider()
c_ebb, c_nlb = st.columns(2, gap="large")
with c_ebb:
    st.subheader("Entropy-Based Balance (EBB)")
    st.markdown("A confident teacher (low entropy) pulls the student harder than an unsure one. EBB compares "
                "the mean entropies of the two teachers' softened outputs each iteration and moves the "
                "temperatures by a fixed step: the higher-entropy teacher is sharpened (its tau falls), the "
                f"lower-entropy one softened, until the entropies match; tau stays in [1, 10] ({PAPER}).")
    st.latex(r"\tau_{adv} \leftarrow \tau_{adv} - \gamma_\tau\,\mathrm{sign}\!\left(\frac{H_{adv}}{H_{nat}} - 1\right)")
    st.latex(r"\tau_{nat} \leftarrow \tau_{nat} - \gamma_\tau\,\mathrm{sign}\!\left(\frac{H_{nat}}{H_{adv}} - 1\right)")
    st.latex(r"H_{adv} = \mathbb{E}\, H\!\left(\mathrm{softmax}\!\left(T_{adv}(x')/\tau_{adv}\right)\right)")
    st.latex(r"H_{nat} = \mathbb{E}\, H\!\left(\mathrm{softmax}\!\left(T_{nat}(x)/\tau_{nat}\right)\right)")
    st.caption("gamma_tau is lr_tau; H is the Shannon entropy of a softmax, averaged over the batch.")
with c_nlb:
    st.subheader("Normalization Loss Balance (NLB)")
    st.markdown("The two KL terms start at different scales, so NLB compares each with its own value on the "
                "first batch. The term that has fallen *less* relative to its start is the one the student is "
                "learning more slowly, and it gets more weight; r_w sets how fast the weights follow "
                f"({PAPER}).")
    # One rule per line: a single long formula is cut off in a column this narrow.
    st.latex(r"\tilde{\mathcal{L}}_i = \frac{\mathcal{L}_i(t)}{\mathcal{L}_i(0)}")
    st.latex(r"r_i = \frac{\tilde{\mathcal{L}}_i^{\,\beta}}{\sum_j \tilde{\mathcal{L}}_j^{\,\beta}}")
    st.latex(r"w_i \leftarrow w_i - r_w\,(w_i - r_i)")
    st.caption(f"i in {{nat, adv}}; L_i(0) is term i on the first batch; beta (= {CFG.beta:g}, the paper's) sharpens "
               "the target weights r_i; w is clipped at 0 and renormalised to sum 1. Both rates shrink x0.1 at each "
               "learning-rate decay.")
