"""Shared test settings: CPU only, few threads, the repository root importable."""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """An empty runs folder for one test."""
    d = tmp_path / "runs"
    d.mkdir()
    return d
