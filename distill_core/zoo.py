"""The model zoo: small pretrained checkpoints shipped in ``assets/zoo`` so every page works at once.

    python -m distill_core zoo list      # what is there, with test and robust accuracy
    python -m distill_core zoo build     # retrain and re-measure all of them (:mod:`distill_core.zoo_build`)

``assets/zoo/manifest.json`` records for every model its recipe (dataset, architecture,
method and settings, trainer settings, teachers), its metrics, and the sha256 of its weights
file. Weights are plain state dicts loaded with ``weights_only=True`` (:mod:`distill_core.checkpoints`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .checkpoints import CheckpointError, load_into
from .data import DatasetInfo
from .models import build_model
from .runs import RunError

ZOO_DIR = Path(os.environ.get("DISTILL_ZOO", Path(__file__).resolve().parents[1] / "assets" / "zoo"))
MANIFEST = "manifest.json"


def _manifest_path(zoo_dir: Path | None = None) -> Path:
    return Path(zoo_dir or ZOO_DIR) / MANIFEST


def read_manifest(zoo_dir: Path | None = None) -> dict:
    """The manifest (``{"models": [...]}``); an empty one when the zoo has not been built."""
    path = _manifest_path(zoo_dir)
    if not path.exists():
        return {"models": []}
    with open(path) as f:
        return json.load(f)


def list_zoo(zoo_dir: Path | None = None, dataset: str | None = None) -> list[dict]:
    """Manifest entries, optionally for one dataset."""
    return [m for m in read_manifest(zoo_dir)["models"] if dataset is None or m["dataset"] == dataset]


def zoo_entry(name: str, zoo_dir: Path | None = None) -> dict:
    for m in list_zoo(zoo_dir):
        if m["name"] == name:
            return m
    raise KeyError(f"no zoo model named {name!r}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_zoo_model(name: str, zoo_dir: Path | None = None, device: str | torch.device = "cpu",
                   verify: bool = True) -> tuple[nn.Module, DatasetInfo, dict]:
    """A zoo model in eval mode on ``device``, its dataset info and manifest entry.

    The file's sha256 is checked first (``verify``). Raises ``KeyError`` for an unknown name and
    ``RunError`` (one line) for a file that does not match its hash, is not a loadable state dict
    or does not fit the entry's architecture.
    """
    entry = zoo_entry(name, zoo_dir)
    path = Path(zoo_dir or ZOO_DIR) / entry["file"]
    if verify and sha256(path) != entry["sha256"]:
        raise RunError(f"zoo file {entry['file']} does not match its sha256 in the manifest: rebuild the zoo")
    info = DatasetInfo.from_dict(entry["info"])
    model = build_model(entry["model"], info, **entry.get("model_options", {}))
    try:
        load_into(model, path, name=f"zoo model {name} ({entry['file']})", arch=entry["model"],
                  identity_normalize=False)
    except CheckpointError as e:
        raise RunError(str(e)) from None
    return model.to(device).eval(), info, entry
