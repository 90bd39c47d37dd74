"""Boundary-supporting samples (Heo et al. 2019): teacher and student boundaries, BSS step by step."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from distill_core._torch import predict
from distill_core.evaluate import accuracy, boundary_similarity
from distill_core.explain import decision_grid
from distill_core.papers import bss as papers_bss
from distill_core.papers.bss import METHOD_NAMES, METRIC_NAMES, bss_paths, bss_toward_each_class, bss_vs_kd_caption
from distill_core.plots.boundary import boundary_figure, bss_image_figure
from distill_core.runs import RunError
from ui.charts import show_chart
from ui.common import ModelRef, available_models, dataset, get_model, init_state, model_for
from ui.url_state import Choice, Number, UrlState

POINTS_SET = "moons"
DEFAULTS = {"teacher": "moons/teacher", "kd": "moons/kd", "bss": "moons/bss"}
IMAGE_SET, IMAGE_TEACHER = "mnist-5k", "mnist-5k/standard"
MAX_STEPS = 10
ETAS_2D = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3)

init_state()
ss = st.session_state
ss.setdefault("bd_seed", 0)

st.title("Boundary-supporting samples (BSS)")
share = st.container()


def _point_labels() -> list[str]:
    return [r.label for r in available_models(POINTS_SET)]


link = UrlState("boundary", [
    Choice("teacher", "bd_teacher", _point_labels),
    Choice("kd", "bd_kd", _point_labels),
    Choice("bss", "bd_bss", _point_labels),
    Choice("points", "bd_mode", ["random", "by index"]),
    Number("n", "bd_n", 1, 20, integer=True),
    Number("seed", "bd_seed", 0, 10**6, integer=True),      # which random points ("New random points" moves it)
    Number("index", "bd_index", 0, lambda: len(dataset(POINTS_SET, "test")[0]) - 1, integer=True),
    Choice("towards", "bd_target", lambda: ["sampled (BSS's rule)", *dataset(POINTS_SET, "test")[1].class_names]),
    Choice("eta", "bd_eta", ETAS_2D),
    Number("step", "bd_step", 0, MAX_STEPS, integer=True),
    Number("image", "bd_img", 0, lambda: len(dataset(IMAGE_SET, "test")[0]) - 1, integer=True),
    Number("image_eta", "bd_img_eta", 0.05, 1.0),
])
link.apply()
st.markdown(
    "Heo, Lee, Yun and Choi (*Knowledge Distillation with Adversarial Samples Supporting Decision Boundary*, "
    "AAAI 2019) make the student imitate the teacher **near its decision boundary**, where plain KD gives it "
    "little information. From a base sample x of the teacher's class b they walk towards a class k, on the "
    "**teacher**, with a step that shrinks as the margin closes:")
st.latex(r"x_{i+1} = x_i - \eta\,\bigl(L_k(x_i) + \epsilon\bigr)\,"
         r"\frac{\nabla_x L_k(x_i)}{\lVert \nabla_x L_k(x_i) \rVert_2},\qquad L_k(x) = f_b(x) - f_k(x)")
st.markdown(
    "with η = 0.3, ε = 1e-4, at most 10 steps, stopping as soon as the teacher's class is no longer b. The "
    "student is then trained with KD on the clean data **and** on these boundary-supporting samples:")
st.latex(r"\mathcal{L} = \mathrm{CE}(S(x), y) + \alpha\,\mathrm{KD}_T\bigl(T(x), S(x)\bigr)"
         r" + \beta\,\mathrm{KD}_T\bigl(T(x_{bss}), S(x_{bss})\bigr)")


def _ref(name: str, refs: list[ModelRef]) -> ModelRef | None:
    return next((r for r in refs if r.key == name), None)


@st.cache_data(show_spinner=False, max_entries=32)
def _grid(model_key: tuple, resolution: int = 100) -> dict:
    model, _, _ = model_for(model_key)
    return decision_grid(model, 0.0, 1.0, resolution)


@st.cache_data(show_spinner=False, max_entries=64)
def _paths(model_key: tuple, indices: tuple[int, ...], target: int | None, eta: float,
           seed: int) -> dict:
    teacher, _, _ = model_for(model_key)
    data, _ = dataset(POINTS_SET, "test")
    x = data.tensors[0][list(indices)]
    k = None if target is None else torch.full((len(x),), target)
    return bss_paths(teacher, x, k, seed=seed, eta=eta, max_steps=MAX_STEPS)


@st.cache_data(show_spinner=False, max_entries=32)
def _similarity(teacher_key: tuple, student_key: tuple) -> dict:
    teacher, _, _ = model_for(teacher_key)
    student, _, _ = model_for(student_key)
    data, _ = dataset(POINTS_SET, "test")
    x, y = data.tensors
    sim = boundary_similarity(teacher, student, x, "all", y=y)
    return {"mag_sim": sim["mag_sim"], "ang_sim": sim["ang_sim"], "n_pairs": sim["n_pairs"],
            "accuracy": accuracy(student, (x, y))}


# ------------------------------------------------------------------ 2-D: teacher, paths, students

st.header(f"On a 2-D set ({POINTS_SET})")
refs = available_models(POINTS_SET)
if not refs:
    st.warning(f"No {POINTS_SET} model: build the zoo (`python -m distill_core zoo build`) or train one on the "
               "Train page.")
else:
    labels = [r.label for r in refs]

    def _select(label: str, role: str, col) -> ModelRef:
        default = _ref(DEFAULTS[role], refs)
        index = labels.index(default.label) if default is not None else 0
        return refs[labels.index(col.selectbox(label, labels, index=index, key=f"bd_{role}"))]

    m1, m2, m3 = st.columns(3)
    t_ref = _select("Teacher", "teacher", m1)
    kd_ref = _select("Student trained with KD", "kd", m2)
    bss_ref = _select("Student trained with BSS-KD", "bss", m3)
    try:
        teacher, info, _ = get_model(t_ref)
    except (RunError, OSError, ValueError) as e:
        st.error(f"Could not load the teacher {t_ref.label}: {e}")
        st.stop()
    data, _ = dataset(POINTS_SET, "test")
    x_all, y_all = data.tensors
    names = list(info.class_names)

    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    mode = c1.radio("Base points", ["random", "by index"], key="bd_mode", horizontal=True)
    if mode == "random":
        n_points = c2.slider("How many", 1, 20, 6, key="bd_n")
        if c2.button("New random points", key="bd_shuffle"):
            ss.bd_seed += 1
        perm = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(ss.bd_seed))
        indices = tuple(int(i) for i in perm[:n_points])
    else:
        indices = (c2.slider("Test point index", 0, len(x_all) - 1, 0, key="bd_index"),)
    target_label = c3.selectbox("Towards class", ["sampled (BSS's rule)"] + names, key="bd_target",
                                help="BSS draws k with probability q_k / (1 - max q) over the teacher's other classes.")
    eta = c3.select_slider("Step scale η", ETAS_2D, value=0.01, key="bd_eta",
                           help="The paper's 0.3 assumes CIFAR-scale inputs: see the note under the chart.")
    step = c4.slider("Step", 0, MAX_STEPS, MAX_STEPS, key="bd_step", help="Show each path up to this BSS iterate.")
    target = None if target_label.startswith("sampled") else names.index(target_label)
    base = predict(teacher, x_all[list(indices)]).tolist() if target is not None else []
    if target is not None and target in base:
        st.warning(f"Some base points are already in class {names[target]} for the teacher; their BSS goes nowhere. "
                   "They are left out.")
        indices = tuple(i for i, b in zip(indices, base) if b != target)
    if not indices:
        st.info("No base point left: pick other points or another class.")
        link.publish(share)
        st.stop()
    paths = _paths(t_ref.cache_key, indices, target, float(eta), ss.bd_seed)
    t_grid = _grid(t_ref.cache_key)
    pts = (x_all.numpy(), y_all.numpy())
    left, right = st.columns([3, 2])
    show_chart(boundary_figure(t_grid, info.num_classes, pts, names, paths=paths, step=step,
                               title=f"Teacher ({t_ref.label}): BSS paths, step {step} of {MAX_STEPS}"),
               ("boundary", POINTS_SET, "teacher", t_ref.label, f"step{step}"), key="bd_teacher_fig", container=left)
    with right:
        st.markdown("**The paths**: white circle = base point, star = the BSS at this step, coloured by its "
                    "target class. The map is the teacher's p(class); white is its boundary.")
        st.dataframe(pd.DataFrame({"point": indices, "from": [names[b] for b in paths["base"]],
                                   "towards": [names[k] for k in paths["target"]], "steps": paths["steps"],
                                   "ends in": [names[c] for c in paths["final_pred"]]}),
                     hide_index=True, key="bd_paths_table")
        st.caption("A path stops as soon as it crosses into another class; one still in its class after 10 steps "
                   "ends just short of the boundary. Either way the sample *supports* the boundary. The step is "
                   "η × margin (in logits) along the unit gradient: the zoo teacher's margin grows by about 90 "
                   "logits per unit of the plane, so the paper's η = 0.3 jumps across the whole square in one step; "
                   "η = 0.01 shows the walk.")

    st.subheader("KD vs BSS-KD students")
    cols = st.columns(2)
    for col, ref, tag in zip(cols, (kd_ref, bss_ref), ("kd", "bss")):
        with col:
            try:
                s_grid = _grid(ref.cache_key)
                sim = _similarity(t_ref.cache_key, ref.cache_key)
            except (RunError, OSError, ValueError) as e:
                st.error(f"Could not evaluate {ref.label}: {e}")
                continue
            show_chart(boundary_figure(s_grid, info.num_classes, pts, names, paths=paths, step=step,
                                       teacher_grid=t_grid, title=ref.label, height=380),
                       ("boundary", POINTS_SET, tag, ref.label, f"step{step}"), key=f"bd_{tag}_fig")
            a, b, c = st.columns(3)
            a.metric("MagSim", f"{sim['mag_sim']:.3f}", help="mean min(|v_t|,|v_s|)/max(|v_t|,|v_s|) of BSS "
                     "perturbations from the same points: 1 = the boundaries are as far away.")
            b.metric("AngSim", f"{sim['ang_sim']:.3f}", help="mean cosine between the teacher's and the student's BSS "
                     "perturbations: 1 = the boundaries face the same way.")
            c.metric("Test accuracy", f"{100 * sim['accuracy']:.1f} %")
    st.caption("Dashed: the teacher's boundary. MagSim and AngSim (Heo et al. 2019) compare the BSS perturbations "
               "v_t (on the teacher) and v_s (on the student) from every test point both classify correctly: the "
               "closer to 1, the more the student's boundary matches the teacher's. Each zoo student is one training "
               "run (seed 0, all the data): how KD and BSS compare over seeds, and with scarce data, is below.")

# ------------------------------------------------------------------ KD vs BSS over seeds (shipped study)


@st.cache_data(show_spinner=False, max_entries=4)
def _study(path: str, mtime: float) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pm(cell: dict) -> str:
    std = cell["std"]
    return f"{cell['mean']:.3f}" if std is None or math.isnan(std) else f"{cell['mean']:.3f} ± {std:.3f}"


def _data_name(row: dict) -> str:
    return "all" if math.isclose(row["fraction"], 1.0) else f"{100 * row['fraction']:g} %"


def _study_figure(study: dict) -> go.Figure:
    """MagSim and AngSim, mean ± std over the seeds, KD beside BSS for each share of the data."""
    fig = go.Figure()
    for method, color in zip(papers_bss.STUDY_METHODS, ("#1f77b4", "#d62728")):
        rows = [r for r in study["rows"] if r["method"] == method]
        xs, ys, errs, texts = [], [], [], []
        for metric in ("mag_sim", "ang_sim"):
            for r in rows:
                xs.append(f"{METRIC_NAMES[metric]}<br>{_data_name(r)} data ({r['n_train']} samples)")
                ys.append(r[metric]["mean"])
                errs.append(r[metric]["std"])
                texts.append(_pm(r[metric]))
        fig.add_trace(go.Scatter(x=xs, y=ys, error_y={"type": "data", "array": errs, "visible": True},
                                 mode="markers", name=METHOD_NAMES[method], marker={"size": 11, "color": color},
                                 text=texts, hovertemplate="%{x}: %{text}<extra>" + METHOD_NAMES[method] + "</extra>"))
    low = min(r[m]["mean"] - (r[m]["std"] or 0) for r in study["rows"] for m in ("mag_sim", "ang_sim"))
    fig.update_layout(scattermode="group", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"title": "mean ± std over seeds", "range": [max(-1.0, low - 0.03), 1.005]},
                      xaxis={"tickangle": 0}, uirevision="bd_study",
                      title=f"MagSim and AngSim to the teacher (1 = its boundary), {len(study['seeds'])} seeds")
    return fig


def _shipped_study() -> None:
    st.subheader("KD vs BSS-KD over seeds, with all and with scarce data")
    path = papers_bss.BSS_MOONS_RESULTS
    if not path.is_file():
        st.info(f"The KD vs BSS study over seeds is not built yet: run `{papers_bss.BSS_MOONS_COMMAND}` from the "
                "repository root (about a minute on one CPU thread); it writes "
                "`assets/reproductions/bss-moons/results.json`, which this page reads.")
        return
    try:
        study = _study(str(path), path.stat().st_mtime)
        caption = bss_vs_kd_caption(study)
        table = pd.DataFrame([{"training data": f"{_data_name(r)} ({r['n_train']} samples)", "epochs": r["epochs"],
                               "student": METHOD_NAMES[r["method"]], "test accuracy": _pm(r["accuracy"]),
                               "MagSim": _pm(r["mag_sim"]), "AngSim": _pm(r["ang_sim"])} for r in study["rows"]])
    except (OSError, ValueError, KeyError, TypeError) as e:
        st.warning(f"Could not read the KD vs BSS study ({e}): rebuild it with `{papers_bss.BSS_MOONS_COMMAND}`.")
        return
    st.markdown(f"The zoo's KD and BSS recipes for {study['dataset']}, retrained with seeds "
                f"{', '.join(map(str, study['seeds']))} (initial weights, batch order and the subset of the data) on "
                "all of the training split and on a stratified share of it, from the same teacher; a smaller share "
                "trains as many optimiser steps (more epochs). Measured on the whole test split.")
    show_chart(_study_figure(study), ("boundary", "kd-vs-bss", study["dataset"]), key="bd_study_fig")
    st.dataframe(table, hide_index=True, key="bd_study_table")
    st.caption(caption)
    st.caption(f"Command: `{study.get('command', papers_bss.BSS_MOONS_COMMAND)}`, {study.get('seconds', 0):.0f} s on "
               f"{study.get('environment', {}).get('threads', '?')} CPU thread(s). Every number and per-seed value is "
               "in assets/reproductions/bss-moons/results.json.")


_shipped_study()

# ------------------------------------------------------------------ one image towards every class

st.header("On an image: its BSS towards each class")
img_refs = available_models(IMAGE_SET)
img_ref = _ref(IMAGE_TEACHER, img_refs)
if img_ref is None:
    st.warning(f"The zoo model {IMAGE_TEACHER} is missing: build the zoo (`python -m distill_core zoo build`).")
    link.publish(share)
    st.stop()


@st.cache_data(show_spinner=False, max_entries=64)
def _image_bss(index: int, eta: float) -> dict:
    teacher, _, _ = get_model(_ref(IMAGE_TEACHER, available_models(IMAGE_SET)))
    data, _ = dataset(IMAGE_SET, "test")
    return bss_toward_each_class(teacher, data.tensors[0][index], eta=eta, max_steps=MAX_STEPS)


img_data, img_info = dataset(IMAGE_SET, "test")
i1, i2 = st.columns([3, 1])
img_index = i1.slider("Test image", 0, len(img_data) - 1, 0, key="bd_img")
img_eta = i2.slider("η (image)", 0.05, 1.0, 0.3, step=0.05, key="bd_img_eta")
res = _image_bss(img_index, float(img_eta))
show_chart(bss_image_figure(img_data.tensors[0][img_index].numpy(), res, list(img_info.class_names)),
           ("boundary", IMAGE_SET, f"image{img_index}", f"eta{img_eta:g}"), key="bd_image_fig")
crossed = int(np.sum(res["landed"] != res["base"]))
st.caption(f"Teacher: {IMAGE_TEACHER}. Each BSS walks from the image towards one class for at most {MAX_STEPS} "
           f"steps; {crossed} of {len(res['targets'])} crossed the boundary (title: the class the teacher now gives "
           "and the target's probability), the others stopped just before it. Bottom row: what changed "
           "(red: pixels made darker, blue: brighter, one scale for all).")
link.publish(share)
