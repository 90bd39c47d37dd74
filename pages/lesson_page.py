"""Lesson: "The accuracy-robustness trade-off in 45 minutes", five steps, each a link that opens its exact setup."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from distill_core.lab.lesson import LESSON_IMAGE, STANDARD, lesson_facts, lesson_steps, temperature_fact
from distill_core.lab.tradeoff import tradeoff_rows
from distill_core.reproduce import expectation_status, shipped_results
from distill_core.zoo import list_zoo
from ui.common import dataset, init_state, zoo_model
from ui.navigation import page
from ui.url_state import UrlState, query_string


@st.cache_data(show_spinner=False)
def _temperature() -> dict:
    model, _, _ = zoo_model(STANDARD)
    data, _ = dataset("mnist-5k", "test")
    return temperature_fact(model, data.tensors[0][LESSON_IMAGE:LESSON_IMAGE + 1])


def _as_lists(params: dict) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


init_state()
st.title("Lesson: the accuracy-robustness trade-off in 45 minutes")
UrlState("lesson", []).publish()        # its address alone: "Copy link" like every page
st.markdown(
    "Five steps for a class (or a student alone): each opens a page with its exact setup, says what to do, which "
    "question to ask, and what you should see on the lab's shipped models. The numbers below are read from the "
    "zoo and the reproductions in `assets/` as this page is drawn. Every step's link works in a fresh browser too: "
    "copy it into your slides.")

zoo = list_zoo()
zoo_names = {m["name"] for m in zoo}
if STANDARD not in zoo_names:
    st.warning("The shipped zoo is missing (`python -m distill_core zoo build`): the lesson quotes its models.")
    st.stop()
mtard = shipped_results("mtard")
claims = [(expectation_status(e), e["claim"], e["detail"]) for e in (mtard or {}).get("expectations", [])]
facts = lesson_facts(tradeoff_rows(zoo, []), shipped_results("papernot"), mtard, _temperature(), claims)
steps = lesson_steps(facts)
st.caption(" → ".join(f"**{i}** {s.title} ({s.minutes} min)" for i, s in enumerate(steps, 1))
           + f" · {sum(s.minutes for s in steps)} minutes in all.")

for i, step in enumerate(steps, 1):
    st.subheader(f"{i} · {step.title}", anchor=f"step-{i}")
    target = page(step.page)
    left, right = st.columns([3, 1], vertical_alignment="top")
    with left:
        st.markdown(f"**Do:** {step.do}")
        st.markdown(f"**Ask the class:** {step.ask}")
        st.markdown(f"**You should see:** {step.see}")
    with right:
        try:
            st.page_link(target.file, label=f"Open {target.title}", icon=target.icon, query_params=step.params)
        except StreamlitAPIException:       # the page runs on its own, without the router (tests)
            st.markdown(f"[Open {target.title}](/{target.url_path}?{query_string(_as_lists(step.params))})")
        st.caption(f"{step.minutes} min")
st.divider()
st.caption("Every number here is a measurement on mnist-5k (4,000 training images), not the papers' CIFAR-10: "
           "where a paper's effect does not show on this data, step 5 says so.")
