"""What every page shares: session defaults, the sidebar, cached datasets and models.

Cached objects are shared by all sessions (``st.cache_resource``) and never mutated: a page
that needs to change a model copies it first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch
from streamlit.errors import StreamlitAPIException
from torch import nn

from distill_core.data import (
    DatasetInfo,
    available_datasets,
    data_root,
    list_datasets,
    load_dataset,
    subsample,
    where_to_put,
)
from distill_core.device import choose_device
from distill_core.lab.tradeoff import train_temperature
from distill_core.model_import import is_imported
from distill_core.papers.defensive import model_role
from distill_core.runs import RunError, list_runs, load_model
from distill_core.train import TrainConfig
from distill_core.zoo import list_zoo, load_zoo_model
from ui.classroom import sidebar_note
from ui.jobs import JOBS


def runs_dir() -> Path:
    """The runs folder: ``$DISTILL_RUNS`` or ``./runs``, read on every call (tests point it at a tmp folder)."""
    return Path(os.environ.get("DISTILL_RUNS", "runs"))




# Widget values that are not settings: buttons and other one-shot triggers, uploads, chat input. Streamlit refuses
# a value set for these through the Session State API, so they are never kept.
_NOT_SETTINGS = ("trigger_value", "json_trigger_value", "string_trigger_value", "chat_input_value",
                 "file_uploader_state_value", "camera_input_value")


def keep_settings() -> None:
    """Keep every page's widget values for the whole browser session (call before the page runs).

    Streamlit forgets a widget's value when its page is not drawn (leaving a page and coming back
    would reset it to the default, and Start would then train something else). Writing the value
    back through the Session State API marks it as the user's, which survives the page switch;
    the widget shows it when its page is drawn again. Buttons, uploads and other triggers are
    skipped. A copy of each value is kept too, because a fragment's timed rerun (a live job's
    progress) makes Streamlit drop the page's other widget values; a value dropped that way is put
    back before the page is drawn. Relies on Streamlit's widget metadata; if that is not
    available, nothing is kept.
    """
    try:
        from streamlit.runtime.state import get_session_state

        state = get_session_state()._state
        widgets = state._new_widget_state.widget_metadata
        id_of = state._key_id_mapper.get_id_from_key
    except (AttributeError, ImportError):   # another Streamlit version: settings reset as Streamlit does
        return
    ss = st.session_state
    kinds = ss.setdefault("_widget_kinds", {})   # key -> value type, remembered from the runs that listed it
    kept = ss.setdefault("_kept_settings", {})   # key -> the user's last value
    for key, value in kept.items():
        if key not in ss:                        # dropped while its page was away (a fragment's rerun drops the
            try:                                 # widgets outside it too): put it back before the page is drawn
                ss[key] = value
            except Exception:  # noqa: BLE001 - a widget that refuses it keeps Streamlit's own behaviour
                pass
    for key in list(ss.keys()):
        if not isinstance(key, str) or key.startswith("_"):
            continue
        meta = widgets.get(id_of(key) or "")
        if meta is not None:
            kinds[key] = meta.value_type
        if kinds.get(key) in (None, *_NOT_SETTINGS):
            continue                        # not a widget (plain state survives anyway), or a trigger
        try:
            ss[key] = kept[key] = ss[key]
        except Exception:  # noqa: BLE001 - a widget that refuses it keeps Streamlit's own behaviour
            continue


def init_state() -> None:
    """Session defaults every page can rely on (safe to call many times)."""
    ss = st.session_state
    ss.setdefault("dataset", "mnist-5k")
    ss.setdefault("device", "auto")


@st.cache_resource(show_spinner=False)
def device_choice(requested: str = "auto"):
    return choose_device(requested)


# The most test images a page works on: a larger on-disk test set (MNIST's and CIFAR-10's 10,000) is replaced by a
# seeded, stratified sample of this size, so every page stays interactive on a CPU. The CLI always uses all of it.
APP_TEST_IMAGES = 2000


def app_datasets() -> list[str]:
    """The datasets the app offers: the embedded ones, then the on-disk sets whose files are under the data root
    (``$DISTILL_DATA`` or ``./data``; checked on every call, so files put there appear without a restart)."""
    return available_datasets()


@st.cache_resource(show_spinner="Loading the dataset...")
def _loaded(name: str, split: str, seed: int, root: str):
    """``(data, info, n_full)``: the split as pages use it (see :func:`dataset`) and how many samples it had."""
    data, info = load_dataset(name, split, root, seed=seed)
    n_full = len(data)
    if split == "test" and not info.embedded:
        data = subsample(data, APP_TEST_IMAGES, seed)
    return data, info, n_full


def dataset(name: str, split: str = "test", seed: int = 0):
    """``(TensorDataset, DatasetInfo)`` (shared, read-only): an embedded set, or an on-disk set from the data root
    whose test split is cut to :data:`APP_TEST_IMAGES` (seeded, stratified; :func:`test_set_note` says so)."""
    return _loaded(name, split, seed, str(data_root()))[:2]


def cpu_time_note(info: DatasetInfo, container=st) -> None:
    """On a CPU, a note under a training form's dataset box when the set is a full-size one from disk."""
    if info.embedded or device_choice(st.session_state.get("device", "auto")).device.type != "cpu":
        return
    container.caption(f":material/schedule: **{info.name}** is a full-size set: on this CPU one epoch of small-cnn "
                      "takes minutes and a ResNet's far longer. Lower *Share of the training set* for a quick look, "
                      "or train on a GPU with the command line (`python -m distill_core train --preset ...`) and "
                      "import the result here.")


def test_set_note(name: str, container=st) -> None:
    """A caption for a page that works on a sample of an on-disk test set: how many of its images it uses."""
    data, _, n_full = _loaded(name, "test", 0, str(data_root()))
    if len(data) < n_full:
        container.caption(f"{name}: this page uses {len(data):,} of the {n_full:,} test images (a seeded, "
                          "stratified sample, the same on every page) to stay interactive; the command line uses "
                          "all of them.")


@st.cache_resource(show_spinner="Loading a model from the zoo...")
def zoo_model(name: str) -> tuple[nn.Module, DatasetInfo, dict]:
    model, info, entry = load_zoo_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, info, entry


@st.cache_resource(show_spinner="Loading a model from a run...", max_entries=32)
def run_model(path: str, mtime: float) -> tuple[nn.Module, DatasetInfo, dict]:
    """A run's model; ``mtime`` (of its model.pt) keys the cache so a retrained run reloads."""
    model, info, config = load_model(path)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, info, config


@dataclass(frozen=True)
class ModelRef:
    """A model the pages can offer: from the zoo or from a run folder."""

    label: str
    source: str          # "zoo" | "run"
    key: str             # zoo name or run folder path
    dataset: str
    method: str
    arch: str

    @property
    def cache_key(self) -> tuple[str, str, float]:
        """``(source, key, version)``: what a cached computation on this model is keyed by.

        The version is the mtime of a run's model.pt (a retrained run is recomputed) and 0 for a
        zoo model (its file is fixed by the manifest's hash).
        """
        path = Path(self.key) / "model.pt"
        version = path.stat().st_mtime if self.source == "run" and path.exists() else 0.0
        return self.source, self.key, version


def model_for(cache_key: tuple[str, str, float]) -> tuple[nn.Module, DatasetInfo, dict]:
    """The model a :attr:`ModelRef.cache_key` names (cached); ``RunError`` with a readable message."""
    source, key, _ = cache_key
    return get_model(ModelRef(label=key, source=source, key=key, dataset="", method="", arch=""))


def run_label(name: str, config: dict) -> str:
    """A run's label in model lists: ``run: <folder name>``; a ``standard`` run trained at T != 1 (a
    defensive-distillation teacher) says so (``papers.defensive.model_role``), as its folder name says "standard"."""
    if is_imported(config):
        return f"run: {name} (imported)"
    T = train_temperature(config)
    hot = config.get("method") == "standard" and T not in (None, 1.0)
    return f"run: {name}" + (f" ({model_role('standard', T)})" if hot else "")


def available_models(dataset_name: str | None = None) -> list[ModelRef]:
    """Zoo models, then finished runs, optionally for one dataset."""
    refs = [ModelRef(f"zoo: {m['name'].split('/', 1)[-1]}", "zoo", m["name"], m["dataset"], m["method"], m["model"])
            for m in list_zoo()]
    for r in list_runs(runs_dir()):
        if r.broken or r.status not in ("done", "stopped") or not (r.path / "model.pt").exists():
            continue
        refs.append(ModelRef(run_label(r.name, r.config), "run", str(r.path), r.config.get("dataset", ""),
                             r.config.get("method", ""), r.config.get("model", "")))
    return [r for r in refs if dataset_name is None or r.dataset == dataset_name]


def get_model(ref: ModelRef) -> tuple[nn.Module, DatasetInfo, dict]:
    """Load a model by reference (cached); raises ``RunError`` with a readable message."""
    if ref.source == "zoo":
        return zoo_model(ref.key)
    path = Path(ref.key) / "model.pt"
    if not path.exists():
        raise RunError(f"run {Path(ref.key).name} has no model.pt")
    return run_model(ref.key, path.stat().st_mtime)


def pick_models(label: str, dataset_name: str, key: str, default: list[str] | None = None,
                multi: bool = False, container=st) -> list[ModelRef] | ModelRef | None:
    """A select box (or multiselect) of the models for ``dataset_name``."""
    refs = available_models(dataset_name)
    if not refs:
        no_model_advice(dataset_name, key, container)
        return [] if multi else None
    labels = [r.label for r in refs]
    by_label = dict(zip(labels, refs))
    if multi:
        start = [d for d in (default or []) if d in by_label] or labels[:1]    # none of the defaults here: the first
        chosen = container.multiselect(label, labels, default=start, key=key)
        return [by_label[c] for c in chosen]
    index = next((labels.index(d) for d in (default or []) if d in by_label), 0)
    return by_label[container.selectbox(label, labels, index=index, key=key)]


def _use_dataset(name: str) -> None:
    st.session_state.dataset = name


def no_model_advice(dataset_name: str, key: str, container=st) -> None:
    """Say that ``dataset_name`` has no model yet, and offer what works: a dataset the zoo covers, or training one."""
    zoo_sets = sorted({m["dataset"] for m in list_zoo()})
    where = f"the shipped zoo covers {', '.join(zoo_sets)}" if zoo_sets else "the zoo is empty"
    container.warning(f"No model for {dataset_name} yet ({where}). Train one on the Train page (its dataset follows "
                      "this one; *standard* takes seconds), or switch to a dataset that has models.",
                      icon=":material/info:")
    cols = container.columns(max(len(zoo_sets), 1) + 1)
    for col, name in zip(cols, zoo_sets):
        if name != dataset_name:
            col.button(f"Use {name}", key=f"{key}_use_{name}", on_click=_use_dataset, args=(name,))
    try:
        cols[-1].page_link("pages/train_page.py", label="Open Train", icon=":material/model_training:")
    except StreamlitAPIException:   # the page runs on its own, without the router (tests, `streamlit run page`)
        pass


def dataset_select(label: str, key: str, options: list[str] | None = None, container=st,
                   help: str | None = None) -> str:
    """A page's dataset box tied to the sidebar's: both always show the same dataset; changing one changes both.

    ``options`` (default: every embedded dataset) may be fewer; when the sidebar's dataset is not
    among them, the page box keeps its own choice.
    """
    ss = st.session_state
    options = options or app_datasets()
    if ss.get("dataset") in options:
        ss[key] = ss.dataset                 # set before the widget is drawn: it shows the sidebar's choice

    def follow() -> None:
        if ss[key] in app_datasets():
            ss.dataset = ss[key]

    return container.selectbox(label, options, key=key, on_change=follow,
                               help=help or "The same choice as the sidebar's Dataset: every page follows it.")


def dataset_with_info(label: str, key: str, options: list[str] | None = None):
    """:func:`dataset_select` and the chosen dataset's info; a dataset that cannot be loaded stops the page with
    the reason (``(name, DatasetInfo)``)."""
    name = dataset_select(label, key, options)
    try:
        _, info = dataset(name, "test")
    except (ValueError, OSError) as e:
        st.error(f"Cannot load {name}: {e}")
        st.stop()
    return name, info


def sidebar() -> None:
    """The shared sidebar: device, dataset, models available."""
    init_state()
    with st.sidebar:
        choice = device_choice(st.session_state.device)
        st.caption(f"**Device:** {choice.describe()}")
        if torch.cuda.is_available() is False and choice.device.type == "cpu":
            st.caption("CPU mode: everything here is sized to stay interactive on a laptop.")
        names = app_datasets()
        if st.session_state.dataset not in names:     # its files were removed, or a link named a set not here
            st.session_state.dataset = "mnist-5k"
        st.selectbox("Dataset", names, key="dataset",
                     help=f"Embedded datasets work offline. The full MNIST, Fashion-MNIST and CIFAR-10 appear here "
                          f"when their files are under the data root ({data_root()}; set $DISTILL_DATA to move it).")
        missing = [n for n in list_datasets() if n not in names]
        if missing:
            with st.expander("More datasets"):
                st.caption("Put a set's files under the data root and it appears in this list (no restart): "
                           + "; ".join(f"**{n}**: {where_to_put(n)}" for n in missing) + ".")
        zoo = list_zoo()
        runs = list_runs(runs_dir())
        ds = st.session_state.dataset
        n_zoo = sum(m["dataset"] == ds for m in zoo)
        n_runs = sum(r.config.get("dataset") == ds for r in runs if not r.broken)
        st.caption(f"**Models for {ds}:** {n_zoo} in the zoo, {n_runs} from your runs")
        active = JOBS.running()
        if active:
            st.caption(f"**Training now:** {len(active)} job(s) - see the Train page")
        sidebar_note()


def divergence_advice(train: TrainConfig) -> str:
    """What to change after a diverged run, from the run's own settings."""
    tips = [f"lower the learning rate (try {train.lr / 10:g} instead of {train.lr:g})"]
    if train.optimizer == "sgd":
        tips.append("use Adam rather than SGD")
    if train.grad_clip is None:
        tips.append("set gradient clipping (More > Gradient clipping)")
    else:
        tips.append(f"clip gradients harder than {train.grad_clip:g}")
    return "Try: " + "; ".join(tips) + ", then start again."
