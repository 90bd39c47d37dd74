"""Sensitivity: how strongly each model's output reacts to its input - gradients, attributions, the nearby boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from distill_core.evaluate import gradient_amplitude_stats, log10_histograms
from distill_core.explain import boundary_slice, integrated_gradients, saliency
from distill_core.plots.sensitivity import attribution_gallery_figure, boundary_slice_figure, gradient_histogram_figure
from distill_core.runs import RunError
from ui.charts import show_chart
from ui.common import app_datasets, available_models, dataset, init_state, model_for, pick_models, test_set_note
from ui.url_state import Choice, Choices, Number, UrlState

DEFAULT_MODELS = ["zoo: standard", "zoo: defensive-T20", "zoo: defensive-T100", "zoo: trades"]
GALLERY_SIZE = 4
LOAD_ERRORS = (RunError, KeyError, FileNotFoundError, RuntimeError, ValueError)


@st.cache_data(show_spinner="Computing input Jacobians...", max_entries=64)
def amplitudes(model_key: tuple, ds: str, n: int, wrt: str) -> dict:
    """Per-sample mean |dF/dx| on the first ``n`` test samples, and the exact-zero count."""
    model, _, _ = model_for(model_key)
    data, _ = dataset(ds, "test")
    stats = gradient_amplitude_stats(model, data.tensors[0][:n], wrt=wrt)
    return {"amplitude": stats["amplitude"], "n_zero": stats["n_zero"], "n": stats["n"]}


@st.cache_data(show_spinner="Computing saliency and integrated gradients...", max_entries=32)
def attributions(model_key: tuple, ds: str, indices: tuple[int, ...], ig_steps: int) -> dict:
    model, _, _ = model_for(model_key)
    data, _ = dataset(ds, "test")
    x = data.tensors[0][list(indices)]
    return {"saliency": saliency(model, x).numpy(),
            "ig": integrated_gradients(model, x, n_steps=ig_steps, internal_batch_size=128).numpy()}


@st.cache_data(show_spinner="Evaluating the model on the slice...", max_entries=32)
def slice_around(model_key: tuple, ds: str, index: int, radius: float, direction: str, resolution: int) -> dict:
    model, _, _ = model_for(model_key)
    data, _ = dataset(ds, "test")
    return boundary_slice(model, data.tensors[0][index], direction=None if direction == "gradient" else "sign",
                          radius=radius, resolution=resolution)


def random_start(n: int) -> None:
    st.session_state.sens_index = int(np.random.default_rng().integers(n - GALLERY_SIZE + 1))


init_state()
ss = st.session_state
st.title("Sensitivity")
share = st.container()


def _labels() -> list[str]:
    return [r.label for r in available_models(ss.dataset)]


def _last_image() -> int:
    return len(dataset(ss.dataset, "test")[0]) - 1


link = UrlState("sensitivity", [
    Choice("dataset", "dataset", app_datasets),
    Choices("models", "sens_models", _labels),
    Choice("wrt", "sens_wrt", ["softmax", "logits"]),
    Choice("n", "sens_n", [32, 64, 128, 256, 512]),
    Number("images", "sens_index", 0, lambda: _last_image() + 1 - GALLERY_SIZE, integer=True),
    Choice("slice_model", "sens_slice_model", lambda: ss.get("sens_models") or []),
    Number("slice_image", "sens_slice_index", 0, _last_image, integer=True),
    Number("radius", "sens_radius", 0.05, 1.0),
    Choice("direction", "sens_direction", ["sign", "gradient"]),
])
link.apply()
ds = ss.dataset
data, info = dataset(ds, "test")
n_test = len(data.tensors[0])
test_set_note(ds)
st.markdown(
    "How much does each model's output move when its input moves? Gradient-based attacks follow exactly this "
    "signal, so a tiny or zero gradient can mean a robust model - or one that merely *hides* its gradient.")

labels = [r.label for r in available_models(ds)]
refs = pick_models("Models", ds, key="sens_models", multi=True,
                   default=[m for m in DEFAULT_MODELS if m in labels] or labels[:3])
link.publish(share)
if not refs:
    st.stop()

# ------------------------------------------------------------------ Jacobian histograms

st.header("Input-gradient magnitudes")
c1, c2, c3 = st.columns([2, 2, 3])
wrt = c1.radio("Differentiate", ["softmax", "logits"], horizontal=True, key="sens_wrt",
               help="softmax: Papernot et al.'s F = softmax(Z) as deployed (T = 1); logits: Z itself.")
st.session_state.setdefault("sens_n", 64)
n = c2.select_slider("Test samples", [32, 64, 128, 256, 512], key="sens_n")
amps, failed = {}, []
for r in refs:
    try:
        amps[r.label] = amplitudes(r.cache_key, ds, min(int(n), n_test), wrt)
    except LOAD_ERRORS as e:
        failed.append(f"{r.label}: {e}")
for msg in failed:
    st.error(f"Could not evaluate {msg}")
if amps:
    show_chart(gradient_histogram_figure(log10_histograms({k: v["amplitude"] for k, v in amps.items()}), wrt),
               ("sensitivity", ds, "gradients", wrt, f"n{int(n)}"), key="sens_hist")
    st.caption(
        "Per sample: the mean |dF_c/dx_i| over classes c and pixels i (Papernot et al. 2016's adversarial gradient "
        "amplitude), float64 after a float32 Jacobian. **Exactly-zero gradients are gradient masking**: a saturated "
        "softmax underflows to 0 in float32, so gradient attacks get no signal although the model is not robust "
        "(Carlini & Wagner 2016; one of AutoAttack's checks). Switch to *logits* and the gradient is back.")
    c3.dataframe(pd.DataFrame([{"model": k, "zero gradients": f"{v['n_zero']} / {v['n']}",
                                "median amplitude": float(np.median(v["amplitude"]))} for k, v in amps.items()]),
                 hide_index=True, key="sens_zero_table")

# ------------------------------------------------------------------ attribution gallery

st.header("Saliency and integrated gradients")
if info.is_image:
    g1, g2, g3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    st.session_state.setdefault("sens_index", 0)
    start = int(g1.number_input(f"First image (of {GALLERY_SIZE})", 0, n_test - GALLERY_SIZE, step=1,
                                key="sens_index"))
    g2.button("Random images", key="sens_random", on_click=random_start, args=(n_test,))
    ig_steps = g3.select_slider("Integrated-gradients steps", [16, 32, 64, 128], value=32, key="sens_ig_steps")
    indices = tuple(range(start, start + GALLERY_SIZE))
    maps: dict[str, np.ndarray] = {}
    for r in refs[:4]:
        try:
            att = attributions(r.cache_key, ds, indices, int(ig_steps))
        except LOAD_ERRORS as e:
            st.error(f"Could not explain {r.label}: {e}")
            continue
        maps[f"{r.label}<br>saliency"] = att["saliency"]
        maps[f"{r.label}<br>int. gradients"] = att["ig"]
    if len(refs) > 4:
        st.caption(f"The gallery shows the first 4 of the {len(refs)} selected models.")
    titles = [f"#{i} (true {info.class_names[int(data.tensors[1][i])]})" for i in indices]
    show_chart(attribution_gallery_figure(data.tensors[0][list(indices)], maps, titles),
               ("sensitivity", ds, "attributions", f"images{start}-{start + GALLERY_SIZE - 1}"), key="sens_gallery")
    st.caption("captum Saliency (|d Z_pred / dx|, Simonyan et al. 2014) and IntegratedGradients (from a black image, "
               "Sundararajan et al. 2017) of each model's predicted class; every map scaled to its own maximum.")
else:
    st.info(f"{ds} is a 2-D dataset: attributions are shown for image datasets (pick mnist-5k or digits).")

# ------------------------------------------------------------------ decision-boundary slice

st.header("The decision boundary around one image")
b1, b2, b3, b4 = st.columns(4)
chosen = [r.label for r in refs]
slice_label = b1.selectbox("Model", chosen, key="sens_slice_model")
slice_ref = refs[chosen.index(slice_label)]
slice_index = int(b2.number_input("Test sample", 0, n_test - 1, value=0, step=1, key="sens_slice_index"))
radius = b3.slider("Radius (pixel units)", 0.05, 1.0, 0.5, step=0.05, key="sens_radius")
direction = b4.radio("Adversarial direction", ["sign", "gradient"], horizontal=True, key="sens_direction",
                     help="sign: the sign of the logit margin's gradient, the FGSM direction (every pixel moves by "
                          "u); gradient: the gradient itself, scaled so its largest pixel moves by u.")
try:
    sl = slice_around(slice_ref.cache_key, ds, slice_index, float(radius), direction, 41)
    show_chart(boundary_slice_figure(sl, info.class_names),
               ("sensitivity", ds, "slice", slice_label, f"image{slice_index}", direction, f"r{radius:g}"),
               key="sens_slice")
    st.caption(f"Predicted classes of {slice_label} on the plane x + u·d_adv + v·d_rand (41 x 41 points, each clipped "
               "to [0, 1]); d_adv follows the gradient of the logit margin towards the nearest boundary (its sign by "
               "default: the FGSM step), d_rand is random and orthogonal to it; both have L-inf norm 1, so u and v "
               "are in the units of an attack's eps. A robust model keeps its class over a wide region; the "
               "defensively distilled ones, whose softmax gradient is masked, do not.")
except LOAD_ERRORS as e:
    st.error(f"Could not compute the slice: {e}")
