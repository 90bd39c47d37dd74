"""Importing a model trained elsewhere: a checkpoint becomes an ordinary run folder, marked as imported.

A researcher trains an MTARD or TRADES student on CIFAR-10 on a cluster and wants to look at it
here: attack single images, see its saliency, measure it with AutoAttack, put it on the
trade-off chart. :func:`import_checkpoint` reads the checkpoint safely
(:mod:`distill_core.checkpoints`: ``weights_only=True``, wrappers, ``module.`` prefixes and
numpy scalars accepted), fits it to a registry architecture for a dataset, and writes a run::

    runs/resnet18-trades-cifar10/
        config.json     dataset (+ its info), model, method "imported", and "imported": source file name,
                        its sha256 and size, the user's name for it, where its normalisation comes from
        model.pt        the state dict re-saved plainly (tensors only), normalisation layer included
        summary.json    status "done"; test_accuracy when the dataset is here and ``n_eval`` > 0

The run is listed, evaluated (``eval``, ``eval --robust``) and used as a teacher like any other.
A checkpoint without this lab's normalisation buffers comes from code that feeds raw [0, 1]
pixels (TRADES, ARD, RSLAD, MTARD): its normalisation layer is the identity, and the run says so.
Nothing is written unless the checkpoint fits.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from pathlib import Path
from typing import IO

import torch

from .checkpoints import CheckpointError, fit_state_dict, normalize_keys, one_line, read_state_dict
from .data import DatasetInfo, files_present, list_datasets, load_dataset, registered_info
from .models import build_model, list_models
from .runs import create_run, new_run_name, read_run, safe_name
from .train import did_not_learn, evaluate_accuracy

IMPORTED = "imported"                       # the ``method`` an imported run records
MAX_NAME = 80


class ModelImportError(ValueError):
    """A checkpoint that cannot be imported; the message is one line saying why (nothing was written)."""


def run_folder_name(name: str) -> str:
    """A user's name for a model as a run folder name: letters, digits, ``.``, ``_`` and ``-`` (other runs of
    characters become one ``-``), at most 80 characters; :class:`ModelImportError` when nothing is left."""
    folder = safe_name(name, MAX_NAME)
    if not folder:
        raise ModelImportError(f"the name {name!r} has no letters or digits to make a folder name from")
    return folder


def _first_and_last_weights(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The first weight that reads the input (a conv or linear weight, in the file's order) and the last linear
    weight (the classifier), ignoring normalisation buffers."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim in (2, 4)]
    linears = [v for v in weights if v.ndim == 2]
    return (weights[0] if weights else None), (linears[-1] if linears else None)


def _dataset_mismatch(state: dict[str, torch.Tensor], info: DatasetInfo, name: str) -> str | None:
    """Why ``state`` was not trained on ``info``'s inputs or classes (one sentence), or None when it may be."""
    first, last = _first_and_last_weights(state)
    shape = "x".join(str(d) for d in info.input_shape)
    if first is not None and first.ndim == 4 and len(info.input_shape) == 3 and first.shape[1] != info.input_shape[0]:
        return (f"{name} was trained on images with {first.shape[1]} channel(s), but {info.name} images have "
                f"{info.input_shape[0]} ({shape}): choose the dataset it was trained on")
    if first is not None and first.ndim == 2 and first.shape[1] != math.prod(info.input_shape):
        return (f"{name}'s first layer reads {first.shape[1]} inputs, but {info.name} has {shape} = "
                f"{math.prod(info.input_shape)}: choose the dataset it was trained on")
    if last is not None and last.shape[0] != info.num_classes:
        return (f"{name} predicts {last.shape[0]} classes, but {info.name} has {info.num_classes}: choose the "
                "dataset it was trained on")
    return None


def _has_normalize_buffers(state: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    return any(k in state for pair in normalize_keys(model) for k in pair)


def import_checkpoint(source: str | os.PathLike | bytes | IO[bytes], arch: str, dataset: str,
                      runs_dir: str | os.PathLike, *, name: str | None = None, source_name: str | None = None,
                      n_eval: int = 0, data_root: str | os.PathLike | None = None) -> Path:
    """Import the checkpoint at ``source`` (a path, its bytes, or a binary file object) as a run; returns its folder.

    ``arch``: a registry architecture (``python -m distill_core models``); ``dataset``: the dataset it
    was trained on (its files need not be here; its registered shape and classes are used).
    ``name``: the user's name for it, which is also the folder name (default: a dated
    ``imported-<dataset>-<arch>`` name); ``source_name``: the file's name as the user knows it (for
    uploads; default the path's name). ``n_eval`` > 0 measures clean accuracy on the first
    ``n_eval`` test images when the dataset's files are present.

    Raises :class:`ModelImportError` (a ``ValueError``, one line, nothing written) for an unknown
    architecture or dataset, a name already taken, a file that is not a checkpoint or holds
    pickled code (:class:`~distill_core.checkpoints.CheckpointError`'s message), a checkpoint made
    for another input shape or class count, and weights that do not fit ``arch`` (which keys, which
    shapes).
    """
    if arch not in list_models():
        raise ModelImportError(f"unknown architecture {arch!r}; choose from: {', '.join(list_models())}")
    if dataset not in list_datasets():
        raise ModelImportError(f"unknown dataset {dataset!r}; choose from: {', '.join(list_datasets())}")
    info = registered_info(dataset)
    if hasattr(source, "read"):
        source = source.read()
    raw = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) and Path(source).is_file() else source
    label = source_name or (Path(source).name if isinstance(source, (str, os.PathLike)) else "the upload")
    runs_dir = Path(runs_dir)
    folder = run_folder_name(name) if name else None
    if folder and (runs_dir / folder).exists():
        raise ModelImportError(f"a run named {folder!r} already exists in {runs_dir}; choose another name")
    try:
        state = read_state_dict(raw, name=label)
        try:
            model = build_model(arch, info)
        except ValueError as e:
            raise ModelImportError(f"{arch} cannot take {dataset}: {e}") from None
        mismatch = _dataset_mismatch(state, info, label)
        if mismatch:
            raise ModelImportError(mismatch)
        normalisation = "from the checkpoint" if _has_normalize_buffers(state, model) else "identity"
        fit_state_dict(model, state, name=label, arch=arch, identity_normalize=True)
    except CheckpointError as e:
        raise ModelImportError(str(e)) from None
    model.eval()
    accuracy, n, why_not = _accuracy(model, dataset, n_eval, data_root)    # before anything is written
    digest = hashlib.sha256(bytes(raw)).hexdigest()
    config = {"dataset": dataset, "model": arch, "method": IMPORTED, "method_config": {}, "teachers": {},
              "train": {"seed": 0}, "fraction": 1.0, "dataset_options": {}, "model_options": {},
              "info": info.to_dict(),
              "imported": {"name": name or "", "source": label, "sha256": digest, "bytes": len(bytes(raw)),
                           "normalization": normalisation,
                           "note": ("raw [0, 1] pixels: no normalisation layer in the checkpoint, so the lab's is "
                                    "the identity" if normalisation == "identity" else
                                    "the checkpoint's own normalisation buffers")}}
    writer = create_run(runs_dir, config, folder or new_run_name(config))
    writer.save_model(model)
    chance = 1.0 / info.num_classes
    writer.finish({"status": "done", "epochs": None, "test_accuracy": accuracy, "eval_samples": n,
                   "not_measured": why_not, "reason": f"imported from {label} (sha256 {digest[:12]})",
                   "chance_accuracy": chance,
                   "learned": None if accuracy is None else not did_not_learn(accuracy, chance)})
    return writer.path


def _accuracy(model: torch.nn.Module, dataset: str, n: int, root) -> tuple[float | None, int | None, str]:
    """Clean accuracy on the first ``n`` test images and ``n``, or ``(None, None, why not)``: ``n`` is 0, the
    dataset's files are not under the data root, or they cannot be read (the import goes on without it)."""
    if n <= 0:
        return None, None, "not asked for"
    if not files_present(dataset, root):
        return None, None, f"{dataset}'s files are not under the data root"
    try:
        test, _ = load_dataset(dataset, "test", root)
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        return None, None, f"{dataset}'s files cannot be read: {one_line(str(e), 160)}"
    n = min(n, len(test))
    return float(evaluate_accuracy(model, test, limit=n)), n, ""


def import_summary(path: str | os.PathLike) -> tuple[str, str]:
    """What an import gave, for people: ``(kind, sentence)``, kind ``"success"`` or ``"warning"`` (clean accuracy at
    chance: not trained, or its code normalised the inputs in the data loader). The CLI and the app print it."""
    run = read_run(path)
    s, imported = run.summary, run.config.get("imported", {})
    acc = s.get("test_accuracy")
    measured = (f"clean accuracy {100 * acc:.1f} % on the first {s.get('eval_samples')} test images" if acc is not None
                else f"clean accuracy not measured ({s.get('not_measured') or 'no data'})")
    text = (f"{run.name}: {run.config.get('model')} on {run.config.get('dataset')}, normalisation "
            f"{imported.get('normalization', '?')}; {measured}")
    if s.get("learned") is False:
        return "warning", (text + ": at chance level. Either it is not trained, or its code fed it inputs normalised "
                           "in the data loader (this lab feeds [0, 1] pixels to a model without a normalisation layer)")
    return "success", text


def is_imported(config: dict) -> bool:
    """True for a run :func:`import_checkpoint` wrote."""
    return config.get("method") == IMPORTED
