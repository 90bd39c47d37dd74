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
# One intra-op thread: the suite's small models gain little from more, and on a busy 2-core
# machine (background training threads, subprocesses) extra threads thrash badly.
torch.set_num_threads(1)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """An empty runs folder for one test."""
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test():
    """The app's job board is one per process (jobs belong to the server): stop and forget a test's jobs after it."""
    yield
    jobs = sys.modules.get("ui.jobs")
    if jobs is not None:
        jobs.JOBS.clear()
        jobs.TASKS.clear()
