"""Attack lab: one image (test set, upload or drawing), any model, any attack; what it did and whether it transfers."""

from __future__ import annotations

import hashlib
import inspect
import math

import numpy as np
import streamlit as st

from distill_core.attacks import attack_defaults, describe_attack, get_attack, list_attacks
from distill_core.lab.attack_lab import attack_one_image, attack_options
from distill_core.lab.uploads import MAX_BYTES, ImageInputError, canvas_to_input, convert_image
from distill_core.plots.attacks import (
    attack_images_figure,
    probability_bars_figure,
    saliency_pair_figure,
    trajectory_figure,
    transfer_figure,
)
from distill_core.plots.data import image_grid_figure
from distill_core.runs import RunError
from ui.charts import show_chart
from ui.common import app_datasets, available_models, dataset, get_model, init_state, pick_models, test_set_note
from ui.url_state import Choice, Choices, Dynamic, Flag, Number, Param, UrlState

try:  # a custom component: if it cannot load, the page still works without the Draw option
    from streamlit_drawable_canvas import st_canvas
    CANVAS_ERROR = ""
except Exception as e:  # noqa: BLE001 - any failure of a third-party component must only hide the option
    st_canvas, CANVAS_ERROR = None, f"{type(e).__name__}: {e}"

SOURCES = ["Test set", "Upload", "Draw"]
PLAIN = {"delta_color": "off", "delta_arrow": "off"}     # metric deltas that are notes, not changes
MODELS_LABEL = "Models to compare (the one under “Attack this model” is attacked; all of them see its image)"


def random_index(n: int) -> None:
    st.session_state.atk_index = int(np.random.default_rng().integers(n))


def param_bounds(attack: str, name: str, default, info) -> tuple[float, float | None]:
    """The range an attack option accepts, in its widget and in a link: eps up to 1 in pixel units (0.1 on sets
    whose budget is below 0.1, such as CIFAR's 8/255; ten times that for L2), theta in [-1, 1], gamma in [0, 1],
    counts 1-2000, other numbers >= 0."""
    if name == "eps":
        return 0.0, (1.0 if info.default_eps >= 0.1 else 0.1) * (10 if get_attack(attack).distance == "l2" else 1)
    if name in ("theta", "gamma"):
        return (-1.0 if name == "theta" else 0.0), 1.0
    return (1, 2000) if isinstance(default, int) else (0.0, None)


def attack_settings(attack: str, info) -> dict:
    """The attack's own options a user sets (``attack_defaults`` less its fixed ones), name -> default."""
    fixed = dict(get_attack(attack).fixed)
    return {k: v for k, v in attack_defaults(attack, info).items() if k not in fixed}


def link_params(attack: str, info) -> list[Param]:
    """The attack's own settings in a link, under their names (``eps``, ``steps``, ``loss`` ...), bounded as
    their widgets are (:func:`param_bounds`)."""
    if attack not in list_attacks():
        return []
    out: list[Param] = []
    for name, default in attack_settings(attack, info).items():
        key = f"atk_p_{attack}_{name}"
        if isinstance(default, bool):
            out.append(Flag(name, key))
        elif isinstance(default, (int, float)):
            lo, hi = param_bounds(attack, name, default, info)
            out.append(Number(name, key, lo, math.inf if hi is None else hi, integer=isinstance(default, int)))
    options = attack_options(attack)
    if options[0].param is not None:
        out.append(Choice(options[0].param, f"atk_p_{attack}_{options[0].param}", [o.value for o in options]))
    return out


def param_widget(attack: str, name: str, default, info):
    """One attack option as a widget initialised from ``attack_defaults``; keys are per attack."""
    key = f"atk_p_{attack}_{name}"
    if isinstance(default, bool):
        return st.checkbox(name, value=default, key=key)
    if not isinstance(default, (int, float)):
        st.caption(f"{name} = {default}")
        return default
    lo, hi = param_bounds(attack, name, default, info)
    if name == "eps":
        l2 = get_attack(attack).distance == "l2"
        return st.slider("eps (budget" + (", L2)" if l2 else ", Linf, pixel units)"), lo, hi, float(default),
                         step=hi / 100, key=key)
    if name in ("theta", "gamma"):
        return st.slider(name, lo, hi, float(default), step=0.005, key=key,
                         help="theta: change per chosen pixel; gamma: the largest fraction of pixels changed")
    if isinstance(default, int):
        return int(st.number_input(name, lo, hi, int(default), step=1, key=key))
    fmt = "%.1e" if 0 < abs(default) < 1e-2 else "%.4f"
    return float(st.number_input(name, lo, hi, float(default), format=fmt, key=key))


@st.cache_data(show_spinner=False, max_entries=8)
def convert_upload(payload: bytes, ds: str, invert: str) -> dict:
    """The converted upload (cached: a big photo is decoded once, not on every rerun)."""
    conv = convert_image(payload, dataset(ds, "test")[1], invert={"auto": "auto", "yes": True, "no": False}[invert])
    return {"x": conv.x, "notes": conv.notes, "mode": conv.source_mode, "size": conv.source_size}


def use_unblinded(attack: str, param: str, value: str) -> None:
    """The one-click fix of a masked result: the same attack on the logits, then run it at once."""
    st.session_state[f"atk_p_{attack}_{param}"] = value
    st.session_state.atk_autorun = True


def image_key(kind: str, payload: bytes | int) -> str:
    if isinstance(payload, int):
        return f"{kind}:{payload}"
    return f"{kind}:{hashlib.sha1(payload).hexdigest()[:16]}"


init_state()
ss = st.session_state
st.title("Attack lab")
share = st.container()      # the "Copy link" control, filled once the settings are known


def image_set() -> str:
    """The dataset this page works on: the sidebar's, or mnist-5k when that one is 2-D."""
    return ss.dataset if dataset(ss.dataset, "test")[1].is_image else "mnist-5k"


# The page's settings in the address bar (ui.url_state): a shared link reopens the image, models, attack and result.
link = UrlState("attack-lab", [
    Choice("dataset", "dataset", app_datasets),
    Choice("source", "atk_source", ["Test set"]),            # an uploaded or drawn image never goes into a link
    Number("index", "atk_index", 0, lambda: len(dataset(image_set(), "test")[0]) - 1, integer=True),
    Choices("models", "atk_models", lambda: [r.label for r in available_models(image_set())]),
    Choice("attacked", "atk_target_model", lambda: ss.get("atk_models") or []),
    Choice("attack", "atk_name", list_attacks),
    Dynamic(lambda: link_params(ss.get("atk_name", list_attacks()[0]), dataset(image_set(), "test")[1])),
    Flag("targeted", "atk_targeted"),
    Choice("target", "atk_target_class", lambda: list(dataset(image_set(), "test")[1].class_names)),
])
link.apply()
if link.applied and st.query_params.get("run") == "1":
    ss.atk_autorun = True    # the link was copied with a result on screen: show it again
ds = image_set()
data, info = dataset(ds, "test")
if ds != ss.dataset:
    st.info(f"The attack lab works on images; {ss.dataset} is a 2-D dataset, so {ds} is used here.")
test_set_note(ds)
st.markdown(
    "Pick one image, one or more models and an attack. The model chosen under **Attack this model** is attacked "
    "(white box); the adversarial image is then shown to the other models too (transfer). Every attack clips to "
    "[0, 1] and works in pixel units.")

# ------------------------------------------------------------------ the image

st.header("1 · The image")
sources = SOURCES if st_canvas is not None else SOURCES[:2]
if st_canvas is None:
    st.caption(f"Drawing is unavailable: the canvas component did not load ({CANVAS_ERROR}).")
source = st.radio("Image from", sources, horizontal=True, key="atk_source")
x, y_true, img_id = None, None, None
c_in, c_prev = st.columns([2, 1])
with c_in:
    if source == "Test set":
        n = len(data.tensors[0])
        ss.setdefault("atk_index", 0)
        a, b = st.columns([2, 1], vertical_alignment="bottom")
        index = int(a.number_input(f"Test image (0 - {n - 1})", 0, n - 1, step=1, key="atk_index"))
        b.button("Random image", key="atk_random", on_click=random_index, args=(n,))
        x, y_true = data.tensors[0][index:index + 1], int(data.tensors[1][index])
        img_id = image_key("test", index)
    elif source == "Upload":
        file = st.file_uploader("A PNG or JPEG image", type=["png", "jpg", "jpeg"], key="atk_upload",
                                help=f"At most {MAX_BYTES // 2**20} MB and 40 megapixels. It is converted to "
                                     f"{info.name}'s shape ({'x'.join(map(str, info.input_shape))}: "
                                     f"{'grey' if info.input_shape[0] == 1 else 'colour'}, fitted and resized, "
                                     "values in [0, 1]).")
        invert = "no"
        if info.input_shape[0] == 1:
            invert = st.radio("Invert", ["auto", "yes", "no"], horizontal=True, key="atk_invert",
                              help=f"{info.name} digits are white on black; 'auto' inverts a mostly bright image.")
        if file is not None:
            try:
                if file.size > MAX_BYTES:
                    raise ImageInputError(f"The file is too large: {file.size / 2**20:.1f} MB (the limit is "
                                          f"{MAX_BYTES // 2**20} MB).")
                payload = file.getvalue()
                conv = convert_upload(payload, ds, invert)
                x = conv["x"]
                img_id = image_key("upload", payload + invert.encode())
                st.caption(f"Read a {conv['size'][0]} x {conv['size'][1]} {conv['mode']} image. "
                           + " ".join(conv["notes"]))
            except ImageInputError as e:
                st.error(f"Cannot use {file.name}: {e}")
    else:
        st.caption("Draw a digit: white ink on black, like the dataset. The trash icon above the canvas clears it."
                   if info.input_shape[0] == 1 else
                   f"Draw a shape in white on black: it becomes a {'x'.join(map(str, info.input_shape))} image "
                   f"(grey in all three channels), which {ds} models have rarely seen. The trash icon clears it.")
        st.markdown("&nbsp;")  # room for the canvas's floating toolbar
        result = st_canvas(stroke_width=16, stroke_color="#FFFFFF", background_color="#000000", height=196, width=196,
                           drawing_mode="freedraw", key="atk_canvas", return_image_data=True)
        try:
            conv = canvas_to_input(result.image_data, info)
            x = conv.x
            img_id = image_key("canvas", np.ascontiguousarray(result.image_data).tobytes())
        except ImageInputError as e:
            st.info(str(e))
with c_prev:
    if x is not None:
        title = f"model input ({'x'.join(map(str, info.input_shape[1:]))})"
        show_chart(image_grid_figure(x, [title], cols=1, height=220), ("attack-lab", ds, "input"), key="atk_preview")

# ------------------------------------------------------------------ models and attack

st.header("2 · Models and attack")
refs = pick_models(MODELS_LABEL, ds, key="atk_models", multi=True,
                   default=["zoo: standard", "zoo: defensive-T20", "zoo: trades"])
c1, c2 = st.columns([1, 2])
with c1:
    attacked_label = st.selectbox(
        "Attack this model", [r.label for r in refs], key="atk_target_model",
        help="The attack is computed white-box on this model; the other models above only see the adversarial "
             "image it gives (transfer).") if refs else None
    attack = st.selectbox("Attack", list_attacks(), key="atk_name")
    spec = get_attack(attack)
    st.caption(describe_attack(attack))
    if attack == "cw_l2":
        st.caption("C&W runs steps x binary_search_steps Adam steps (900 by default): several seconds on a CPU.")
with c2:
    accepted = inspect.signature(spec.fn).parameters
    params = {}
    p_cols = st.columns(3)
    for i, (name, default) in enumerate(attack_settings(attack, info).items()):
        with p_cols[i % 3]:
            params[name] = param_widget(attack, name, default, info)
options = attack_options(attack)
param = options[0].param

# the label the untargeted attack moves away from: the truth for test images, else chosen (default: the prediction)
label_options = ["the model's prediction"] + list(info.class_names)
t1, t2 = st.columns(2)
if y_true is None and x is not None:
    choice = t1.selectbox("True class of your image", label_options, key="atk_label")
    y_label = None if choice == label_options[0] else info.class_names.index(choice)
else:
    y_label = y_true
target = None
if "target" in accepted:
    targeted = spec.targeted_only or t2.checkbox("Targeted", key="atk_targeted")
    if spec.targeted_only:
        t2.caption(f"{attack} is targeted only.")
    if targeted:
        default_t = ((y_label if y_label is not None else 0) + 1) % info.num_classes
        target = info.class_names.index(t2.selectbox("Target class", info.class_names, index=default_t,
                                                     key="atk_target_class"))

# the objective: which loss (PGD / FGSM) or which output (JSMA) the attack follows, and whether a saturated softmax
# blinds it (the core's table, the same names as the Defensive page's Break it)
targeted_run = target is not None
if param is not None:
    by_value = {o.value: o for o in options}
    params[param] = st.radio(
        "Loss" if param == "loss" else "JSMA's saliency map on", list(by_value), horizontal=True,
        key=f"atk_p_{attack}_{param}", format_func=lambda v: by_value[v].short,
        captions=[o.masking(targeted_run) for o in options],
        help="A saturated softmax (defensive distillation at T = 1) makes the gradient of any loss through the "
             "softmax exactly zero in float32, the cross-entropy included: the attack gets no signal. Margins on "
             "the logits do not pass through the softmax." + (
                 " Targeted, the cross-entropy -log p_t keeps its gradient." if param == "loss" else ""))
    option = by_value[params[param]]
else:
    option = options[0]
    st.caption(f"Follows the {option.short}: {option.masking(targeted_run)}.")
st.caption(f"This is **{option.name}**" + (" (targeted)" if targeted_run else "")
           + (" - the same attack as in the Defensive page's *Break it*." if option.break_key else "."))

run = st.button("Run attack", type="primary", key="atk_run", disabled=x is None or not refs)
run = bool(ss.pop("atk_autorun", False) and x is not None) or run
if x is None:
    st.info("Choose an image above to attack.")
LINK_NOTE = "An uploaded or drawn image is not put in a link: the link opens the test-set image of these settings."
if not refs:
    link.publish(share, note=LINK_NOTE)
    st.stop()

attacked = next((r for r in refs if r.label == attacked_label), refs[0])
settings_key = (img_id, attacked.key, attack, tuple(sorted((k, str(v)) for k, v in params.items())), target, y_label,
                tuple(r.key for r in refs))

if run and x is not None:
    try:
        models = {r.label: get_model(r)[0] for r in refs}
        with st.spinner(f"Running {attack} on {attacked.label}..."):
            result = attack_one_image(models, attacked.label, x, y_label, attack, info=info, target=target, **params)
        ss.atk_result = {"key": settings_key, "result": result, "attack": attack, "dataset": ds}
    except (RunError, ValueError, RuntimeError, KeyError) as e:
        st.error(f"The attack failed: {e}")

stored = ss.get("atk_result")
shown = stored is not None and stored["dataset"] == ds and stored["key"] == settings_key
link.extra = {"run": ["1"]} if shown and source == "Test set" else {}
link.publish(share, note=LINK_NOTE)

# ------------------------------------------------------------------ results

if stored is None or stored["dataset"] != ds:
    st.stop()
st.header("3 · What the attack did")
if stored["key"] != settings_key:
    st.info("The image, models or settings changed since this result: press **Run attack** to update it.")
res = stored["result"]
p_before, p_after = res.probs[res.attacked]
pred_before, pred_after = res.pred_before, res.pred_after
norms = res.norms()
names = info.class_names
m1, m2, m3, m4 = st.columns(4)
m1.metric("Prediction before", names[pred_before], f"p = {p_before[pred_before]:.3f}", **PLAIN)
verdict = ("fooled" if res.success else "not fooled") if res.target is None else \
    ("target reached" if res.success else "target not reached")
m2.metric("Prediction after", names[pred_after], f"p = {p_after[pred_after]:.3f} · {verdict}",
          **PLAIN)
m3.metric("Perturbation", f"Linf {norms['linf']:.3f}", f"L2 {norms['l2']:.2f} · L0 {norms['l0']} px", **PLAIN)
m4.metric("Attack time", f"{res.seconds * 1000:.0f} ms", f"{stored['attack']} on {res.attacked}", **PLAIN)
done = res.option
if res.gradient_masked:
    st.warning("**Gradient masked: the attack got no gradient signal (a saturated softmax).** The input gradient of "
               f"{done.name if done else stored['attack']} was exactly zero at this image, so the attack had no "
               f"direction: \"not fooled\" does not mean that {res.attacked} is robust.",
               icon=":material/visibility_off:")
    alt = res.alternative()
    if alt is not None and stored["key"] == settings_key:
        alt_option, _ = alt
        what = f"with the {alt_option.short}" if alt_option.param == "loss" else f"as {alt_option.short}"
        st.button(f"Rerun {what}, same " + ("eps" if "eps" in res.settings else "settings"), key="atk_unblind",
                  type="primary", on_click=use_unblinded, args=(stored["attack"], alt_option.param, alt_option.value),
                  help=f"{alt_option.name}: {alt_option.masking(res.target is not None)}.")
elif res.gradient_zero:
    st.caption("The input gradient was exactly zero at the clean image, yet the attack succeeded (from its random "
               "start, or the image was already on the wrong side).")

eps = res.settings.get("eps")
shot = ("attack-lab", stored["dataset"], stored["attack"], f"eps{eps:.3g}" if isinstance(eps, (int, float)) else "",
        res.attacked)      # the charts' file names: page, dataset, attack, eps, attacked model
show_chart(attack_images_figure(res.x, res.x_adv), (*shot, "images"), key="atk_images")
b1, b2 = st.columns(2)
with b1:
    st.subheader("Probabilities before and after")
    show_chart(probability_bars_figure(p_before, p_after, names, res.y, res.target), (*shot, "probabilities"),
               key="atk_bars")
with b2:
    st.subheader("Trajectory")
    show_chart(trajectory_figure(res.series, names, done.objective if done else "attack loss"),
               (*shot, "trajectory"), key="atk_trajectory")
s1, s2 = st.columns(2)
with s1:
    st.subheader("Saliency before and after")
    show_chart(saliency_pair_figure(*res.saliency, titles=(f"before: |d Z_{names[pred_before]} / dx|",
                                                               f"after: |d Z_{names[pred_after]} / dx|")),
               (*shot, "saliency"), key="atk_saliency")
    st.caption("captum Saliency (Simonyan et al. 2014): the gradient magnitude of the predicted class's logit, "
               "each map scaled to its own maximum.")
with s2:
    st.subheader("Transfer to the other models")
    rows = res.transfer_rows(names)
    show_chart(transfer_figure(rows), (*shot, "transfer"), key="atk_transfer")
    st.dataframe([{k: v for k, v in r.items() if not k.startswith("p_true")} for r in rows], hide_index=True,
                 key="atk_transfer_table")
