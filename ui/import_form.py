"""The "Import a model" form: a checkpoint trained elsewhere, uploaded, becomes a run every page lists.

Only uploads: the app never reads a path typed into it (a server path is read only by the command
line, ``python -m distill_core runs import``). The work is :func:`distill_core.model_import.import_checkpoint`.
"""

from __future__ import annotations

import streamlit as st

from distill_core.data import files_present, list_datasets
from distill_core.model_import import ModelImportError, import_checkpoint, import_summary
from distill_core.models import describe_model, list_models
from ui.classroom import is_visitor
from ui.common import runs_dir

# Streamlit's own upload limit (server.maxUploadSize, 200 MB by default) is the same: a WRN-34-10 (46M parameters,
# 185 MB in float32) fits.
MAX_MB = 200
EVAL_IMAGES = 500          # clean accuracy is measured on this many test images when the dataset is here


def import_form(key: str = "import") -> None:
    """Upload a ``.pt`` / ``.pth``, choose its architecture and dataset, name it: a new run, or why not (one line).
    A class visitor (``ui.classroom``) gets one line saying that the teacher's machine imports models."""
    if is_visitor():
        st.caption(":material/lock: In class mode only the teacher's machine imports models.")
        return
    ss = st.session_state
    st.caption(f"A checkpoint trained elsewhere (a `.pt` / `.pth` of at most {MAX_MB} MB): a state dict, or one under "
               "`state_dict` / `model` / `net` (DataParallel `module.` prefixes and numpy numbers beside it are "
               "fine). It is read with `weights_only=True`: pickled code is refused, never run. A checkpoint "
               "without this lab's normalisation layer is taken to expect raw [0, 1] pixels, as the TRADES, ARD, "
               "RSLAD and MTARD code feeds them. Files on the server are imported from the command line only: "
               "`python -m distill_core runs import CKPT --model ARCH --dataset D`.")
    datasets = list_datasets()
    if ss.get("dataset") in datasets and ss.get(f"{key}_follows") != ss.get("dataset"):
        ss[f"{key}_follows"] = ss[f"{key}_dataset"] = ss.dataset     # follow the sidebar until the user picks one
    with st.form(f"{key}_form", clear_on_submit=False):
        upload = st.file_uploader("Checkpoint", type=["pt", "pth"], key=f"{key}_file",
                                  help=f"At most {MAX_MB} MB.")
        c1, c2, c3 = st.columns(3)
        models = list_models()
        arch = c1.selectbox("Architecture", models, index=models.index("resnet18") if "resnet18" in models else 0,
                            key=f"{key}_arch", help="The registry's ResNets and WRNs use the key names of the TRADES, "
                                                    "ARD, RSLAD, MTARD and BSS code, so their checkpoints load "
                                                    "as saved.")
        dataset = c2.selectbox("Trained on", datasets, key=f"{key}_dataset",
                               help="Its files need not be here to import it; to attack or measure it they must be.")
        name = c3.text_input("Your name for it", key=f"{key}_name", max_chars=80, placeholder="e.g. mtard-resnet18",
                             help="Also the run folder's name (letters, digits, . _ -). Empty: a dated name.")
        submitted = st.form_submit_button("Import", icon=":material/upload:")
    st.caption(f"{arch}: {describe_model(arch)}")
    if submitted:
        ss[f"{key}_msg"] = _import(upload, arch, dataset, name)
        if ss[f"{key}_msg"][0] != "error":
            st.rerun()          # the new run in the lists drawn above this form (runs table, sidebar count)
    msg = ss.get(f"{key}_msg")
    if msg:
        getattr(st, msg[0])(msg[1])


def _import(upload, arch: str, dataset: str, name: str) -> tuple[str, str]:
    """Do the import; ``(kind, message)`` for ``st.success`` / ``st.error``."""
    if upload is None:
        return "error", "Choose a checkpoint file first."
    size = upload.size
    if size > MAX_MB * 2**20:
        return "error", (f"{upload.name} is {size / 2**20:.0f} MB; the limit is {MAX_MB} MB. Import it from the "
                         "command line.")
    here = files_present(dataset)
    try:
        with st.spinner(f"Reading {upload.name} and fitting it to {arch}..."):
            path = import_checkpoint(upload.getvalue(), arch, dataset, runs_dir(), name=name.strip() or None,
                                     source_name=upload.name, n_eval=EVAL_IMAGES if here else 0)
    except ModelImportError as e:
        return "error", f"Not imported: {e}"
    kind, text = import_summary(path)
    return kind, (f"Imported `{upload.name}` as run {text}. It is in every page's model list for its dataset "
                  "now: attack it in the Attack lab, and measure its AutoAttack robustness on the Trade-off page "
                  "(*Evaluate robustness*).")
