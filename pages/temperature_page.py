"""Temperature: how T reshapes a softmax, on a real image and a real model; EBB on two teachers."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from distill_core.lab import temperature as temperature_curves
from distill_core.lab.temperature import (
    ebb_simulation,
    temperature_grid,
    temperatures_for_entropies,
)
from distill_core.plots.data import image_grid_figure
from distill_core.plots.temperature import (
    ebb_entropy_figure,
    ebb_simulation_figure,
    entropy_figure,
    jacobian_scale_figure,
    softmax_bars_figure,
)
from distill_core.runs import RunError
from ui.charts import show_chart
from ui.common import app_datasets, available_models, dataset, init_state, model_for, pick_models, test_set_note
from ui.url_state import Choice, Number, UrlState

# 20 per decade: 0.1 ... 1 ... 10 ... 100, rounded for display. Every curve is cached on this grid, so moving
# the slider only looks values up and redraws.
T_OPTIONS = [float(f"{t:.3g}") for t in temperature_grid(0.1, 100.0, 61)]
T_GRID = np.array(T_OPTIONS)
EBB_BATCH = 256


@st.cache_data(show_spinner=False, max_entries=64)
def image_curves(model_key: tuple, ds: str, index: int) -> dict:
    """One test sample's logits and, at every grid T, its softmax, entropy and softmax-Jacobian norm."""
    model, _, _ = model_for(model_key)
    data, _ = dataset(ds, "test")
    return temperature_curves.image_curves(model, data.tensors[0][index:index + 1], T_GRID)


@st.cache_data(show_spinner=False, max_entries=16)
def batch_entropies(model_key: tuple, ds: str, n: int) -> dict:
    """A teacher's logits on ``n`` seeded test samples and their mean entropy over the T grid."""
    model, _, _ = model_for(model_key)
    data, _ = dataset(ds, "test")
    return temperature_curves.batch_entropies(model, data.tensors[0], n, T_GRID)


@st.cache_data(show_spinner=False, max_entries=16)
def matching_temperatures(nat: tuple, adv: tuple, ds: str) -> np.ndarray:
    """For each grid T of the clean teacher, the robust teacher's temperature with the same mean entropy."""
    h_nat = batch_entropies(nat, ds, EBB_BATCH)["entropy"]
    z_adv = torch.from_numpy(batch_entropies(adv, ds, EBB_BATCH)["logits"])
    return temperatures_for_entropies(z_adv, h_nat, lo=1e-2, hi=1e3)


@st.cache_data(show_spinner=False, max_entries=16)
def ebb_run(nat: tuple, adv: tuple, ds: str, lr_tau: float, steps: int) -> dict:
    z_nat = torch.from_numpy(batch_entropies(nat, ds, EBB_BATCH)["logits"])
    z_adv = torch.from_numpy(batch_entropies(adv, ds, EBB_BATCH)["logits"])
    return ebb_simulation(z_nat, z_adv, lr_tau=lr_tau, steps=steps)


@st.cache_resource(show_spinner=False, max_entries=64)
def image_figure(ds: str, index: int):
    """The chosen image as a figure; cached (and never mutated) because it does not change with T."""
    data, info = dataset(ds, "test")
    y = int(data.tensors[1][index])
    return image_grid_figure(data.tensors[0][index:index + 1], [f"true: {info.class_names[y]}"], cols=1, height=230)


@st.cache_resource(show_spinner=False, max_entries=16)
def ebb_figure(nat: tuple, adv: tuple, ds: str, lr_tau: float, steps: int,
               names: tuple[str, str]):
    """The EBB simulation's figure; cached because it does not change with T."""
    return ebb_simulation_figure(ebb_run(nat, adv, ds, lr_tau, steps), names)


def random_index(n: int) -> None:
    st.session_state.temp_index = int(np.random.default_rng().integers(n))


init_state()
ss = st.session_state
st.title("Temperature")
share = st.container()
link = UrlState("temperature", [
    Choice("dataset", "dataset", app_datasets),
    Choice("model", "temp_model", lambda: [r.label for r in available_models(ss.dataset)]),
    Number("index", "temp_index", 0, lambda: len(dataset(ss.dataset, "test")[0]) - 1, integer=True),
    Choice("T", "temp_T", T_OPTIONS),
    Choice("clean", "temp_ebb_nat", lambda: [r.label for r in available_models(ss.dataset)]),
    Choice("robust", "temp_ebb_adv", lambda: [r.label for r in available_models(ss.dataset)]),
])
link.apply()
ds = ss.dataset
data, info = dataset(ds, "test")
test_set_note(ds)
st.markdown(
    "Distillation softens a model's outputs with a **temperature**: `softmax_T(z) = softmax(z / T)`. Large T "
    "spreads probability over the classes (the teacher's *dark knowledge*: which wrong classes look alike); "
    "small T sharpens it to one-hot. Move T and watch one real image's probabilities, the entropy, and the size "
    "of the gradient an attacker gets.")

c_model, c_img, c_rand, c_T = st.columns([2, 1, 1, 3], vertical_alignment="bottom")
with c_model:
    ref = pick_models("Model", ds, key="temp_model", default=["zoo: standard"])
with c_img:
    st.session_state.setdefault("temp_index", 0)
    index = st.number_input("Test image", 0, len(data.tensors[0]) - 1, step=1, key="temp_index")
with c_rand:
    st.button("Random image", key="temp_random", on_click=random_index, args=(len(data.tensors[0]),))
with c_T:
    T = st.select_slider("Temperature T (log scale)", options=T_OPTIONS, value=10.0, key="temp_T",
                         format_func=lambda t: f"{t:g}")
link.publish(share)
if ref is None:
    st.stop()

try:
    curves = image_curves(ref.cache_key, ds, int(index))
except (RunError, KeyError, FileNotFoundError, RuntimeError) as e:
    st.error(f"Could not load {ref.label}: {e}")
    st.stop()

i_T, i_1 = T_OPTIONS.index(T), T_OPTIONS.index(1.0)
z = curves["logits"]
probs_t, probs_1 = curves["probs"][i_T], curves["probs"][i_1]
h_t = float(curves["entropy"][i_T])
y_true = int(data.tensors[1][int(index)])

left, right = st.columns([1, 3])
with left:
    x = data.tensors[0][int(index)]
    if info.is_image:
        show_chart(image_figure(ds, int(index)), ("temperature", ds, f"image{int(index)}"), key="temp_image")
    else:
        st.markdown(f"**Point** ({float(x[0]):.3f}, {float(x[1]):.3f}), true class **{info.class_names[y_true]}**")
    st.metric("Prediction", info.class_names[int(probs_1.argmax())], f"p = {probs_1.max():.3f} at T = 1",
              delta_color="off", delta_arrow="off")
    st.caption(f"Logits: min {z.min():.1f}, max {z.max():.1f} (spread {float(z.max() - z.min()):.1f}).")
with right:
    show_chart(softmax_bars_figure(probs_t, probs_1, T, info.class_names, y_true),
               ("temperature", ds, ref.label, f"image{int(index)}", f"T{T:g}"), key="temp_bars")

c1, c2 = st.columns(2)
with c1:
    st.subheader("Entropy vs T")
    show_chart(entropy_figure(T_GRID, curves["entropy"], T, h_t, info.num_classes),
               ("temperature", ds, ref.label, f"image{int(index)}", "entropy", f"T{T:g}"), key="temp_entropy")
    st.caption(f"At T = {T:g} the entropy is {h_t:.3f} nats of at most log {info.num_classes} = "
               f"{np.log(info.num_classes):.3f}.")
with c2:
    st.subheader("The 1/T scale of the Jacobian")
    fig = jacobian_scale_figure(T_GRID, curves["norm"], curves["zero_float32"], T, float(curves["norm"][i_T]))
    show_chart(fig, ("temperature", ds, ref.label, f"image{int(index)}", "jacobian", f"T{T:g}"), key="temp_jacobian")
    at_one = float(curves["norm"][i_1])
    peak = float(T_GRID[int(np.argmax(curves["norm"]))])
    st.caption(
        "`d softmax(z/T)/dx = (1/T) (diag(p) - p pᵀ) dz/dx`: large T divides the gradient by T, small T saturates the "
        f"softmax and it collapses. For this image the norm peaks near T = {peak:.3g} and is {at_one:.2g} at T = 1"
        + (" - **exactly 0 in float32**: the gradient is masked." if bool(curves["zero_float32"][i_1])
           else ".")
        + " A student distilled at T₀ has logits about T₀ times larger, which shifts this curve right by T₀: "
          "deployed at T = 1 its softmax saturates (compare zoo: defensive-T20 and defensive-T100).")

st.header("Entropy-Based Balance (EBB) on two teachers")
st.markdown(
    "MTARD (Zhao et al. 2023) distills from a clean and a robust teacher at temperatures τ_nat and τ_adv, and "
    "nudges them each step, `τ ← τ − lr_τ · sign(H / H_other − 1)`, so that the teacher with the higher entropy "
    f"is sharpened and the other softened until their entropies match. Here: mean entropies on {EBB_BATCH} test "
    "images (clean inputs for both teachers; MTARD feeds the robust one adversarial inputs).")
refs = available_models(ds)
if len(refs) < 2:
    st.info(f"EBB needs two models for {ds}; the zoo or the Train page can provide them.")
    st.stop()
e1, e2, e3, e4 = st.columns([2, 2, 1, 1])
with e1:
    nat = pick_models("Clean teacher", ds, key="temp_ebb_nat", default=["zoo: standard"])
with e2:
    adv = pick_models("Robust teacher", ds, key="temp_ebb_adv", default=["zoo: trades", refs[-1].label])
with e3:
    lr_tau = st.number_input("lr_τ (simulation)", 0.001, 1.0, 0.05, step=0.01, format="%.3f", key="temp_ebb_lr",
                             help="MTARD uses 0.001 per training step over thousands of steps; a larger step "
                                  "reaches the balance point in a few hundred here.")
with e4:
    steps = st.number_input("EBB steps", 10, 5000, 300, step=50, key="temp_ebb_steps")
try:
    h_nat = batch_entropies(nat.cache_key, ds, EBB_BATCH)
    h_adv = batch_entropies(adv.cache_key, ds, EBB_BATCH)
except (RunError, KeyError, FileNotFoundError, RuntimeError) as e:
    st.error(f"Could not load a teacher: {e}")
    st.stop()

target = float(h_nat["entropy"][i_T])
t_adv = float(matching_temperatures(nat.cache_key, adv.cache_key, ds)[i_T])
sim = ebb_run(nat.cache_key, adv.cache_key, ds, float(lr_tau), int(steps))
names = (nat.label, adv.label) if nat.label != adv.label else (f"{nat.label} (clean)", f"{adv.label} (robust)")
g1, g2 = st.columns(2)
with g1:
    show_chart(ebb_entropy_figure(T_GRID, {names[0]: h_nat["entropy"], names[1]: h_adv["entropy"]},
                                  {names[0]: (T, target), names[1]: (t_adv, target)}),
               ("temperature", ds, "ebb", nat.label, adv.label, f"T{T:g}"), key="temp_ebb_curves")
    st.caption(f"With the clean teacher at T = {T:g} (the slider), its mean entropy is {target:.3f} nats; the robust "
               f"teacher matches it at **T = {t_adv:.3g}** (bisection in log T).")
with g2:
    show_chart(ebb_figure(nat.cache_key, adv.cache_key, ds, float(lr_tau), int(steps), names),
               ("temperature", ds, "ebb-run", nat.label, adv.label, f"lr{lr_tau:g}", f"steps{int(steps)}"),
               key="temp_ebb_sim")
    st.caption(f"EBB from τ = 1 for both, clamped to [1, 10], lr_τ = {lr_tau:g}: after {int(steps)} steps "
               f"τ_nat = {sim['tau_nat'][-1]:.3g}, τ_adv = {sim['tau_adv'][-1]:.3g}, entropies "
               f"{sim['H_nat'][-1]:.3f} / {sim['H_adv'][-1]:.3f} nats. The sign steps never stop: at the balance "
               "point they oscillate by one lr_τ.")
