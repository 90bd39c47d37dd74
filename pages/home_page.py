"""Home: the accuracy-robustness trade-off in one picture, and where to start."""

from __future__ import annotations

import streamlit as st

from distill_core.lab.tradeoff import tradeoff_rows
from distill_core.plots.data import dataset_preview_figure
from distill_core.plots.tradeoff import tradeoff_figure
from distill_core.zoo import list_zoo
from ui.charts import show_chart
from ui.common import dataset, init_state
from ui.navigation import START_HERE, page
from ui.url_state import UrlState

init_state()
st.title("Robust Distillation Lab")
UrlState("home", []).publish()        # its address alone: "Copy link" like every page
st.markdown(
    "Knowledge distillation trains a small **student** to imitate a **teacher**. Making a model robust "
    "to adversarial examples usually costs clean accuracy: that is the **accuracy-robustness trade-off**. "
    "This lab lets you see it, tune it and attack it, on real models that train in seconds on a CPU.")

ds = st.session_state.dataset
zoo = list_zoo(dataset=ds) or list_zoo(dataset="mnist-5k")
left, right = st.columns([3, 2], gap="large")
with left:
    if zoo:
        shown = zoo[0]["dataset"]
        rows = [{**r, "name": r["label"]} for r in tradeoff_rows(zoo, [])]
        show_chart(tradeoff_figure(rows, f"The trade-off on {shown}: every zoo model"), ("home", "tradeoff", shown),
                   key="home_tradeoff")
        masked = [r["name"] for r in rows if r["gap_shown"] and r["masked"]]
        overstated = [r["name"] for r in rows if r["gap_shown"] and not r["masked"]]
        attack = next((r["robust_attack"] for r in rows if r["robust"] is not None), "not evaluated")
        st.caption(f"Robust accuracy: {attack}, the field's standard check. Up and to the right is better; the "
                   "dashed line is the Pareto front (of the true numbers).")
        if masked:
            st.caption(f"**Gradient masking** ({', '.join(masked)}): the open circle is where a naive PGD attack on "
                       "the cross-entropy puts the model (its *apparent* robustness); the filled one, joined by the "
                       "dotted line, is where AutoAttack puts it. AutoAttack's masking checks fired: exactly-zero "
                       "gradients (a saturated softmax: the defensive models) or its black-box Square attack beating "
                       "the gradient-based ones. Hiding the gradient does not make a model robust - the Defensive "
                       "distillation page breaks the defensive models.")
        if overstated:
            st.caption(f"**Overstated by a weaker attack** ({', '.join(overstated)}): the open diamonds are PGD-CE's "
                       "numbers, more than 10 points above AutoAttack's although no masking check fired. A single "
                       "attack is an upper bound on robustness; report the ensemble's.")
    else:
        st.info("The model zoo is empty. Build it once with `python -m distill_core zoo build` "
                "(about an hour on one CPU thread, most of it AutoAttack), or train your own models on the Train page.")
with right:
    st.subheader("Where to start")
    for p in (page(u) for u in START_HERE):
        st.page_link(p.file, label=p.blurb, icon=p.icon)
    st.caption("Teaching? Start with Temperature, then Defensive distillation. Researching? Multi-teacher and "
               "Train, then compare on Trade-off.")

st.subheader("Embedded datasets (offline)")
cols = st.columns(3)
for col, name in zip(cols, ("mnist-5k", "digits", "moons")):
    data, info = dataset(name, "test")
    with col:
        show_chart(dataset_preview_figure(data.tensors[0], data.tensors[1], info), ("home", "preview", name),
                   key=f"preview_{name}")
        st.caption(f"**{name}**: {info.description}")
