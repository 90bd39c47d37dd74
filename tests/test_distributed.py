"""Training under torchrun: 2 CPU processes with gloo match one process, write one run folder, and
adversarial methods (attacks through the DDP-wrapped student) neither hang nor fail."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from distill_core import distributed
from distill_core.__main__ import main
from distill_core.data import load_dataset
from distill_core.device import choose_device
from distill_core.methods import build_method
from distill_core.models import build_model
from distill_core.runs import read_metrics, read_run
from distill_core.train import TrainConfig, Trainer, iterate_batches

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300   # a deadlocked collective would otherwise hang the suite


GLOO_ABORT = "terminate called without an active exception"


def torchrun(*args, nproc=2):
    """``torchrun ... -m distill_core train ARGS``; one retry when a rank aborts in gloo's C++ runtime.

    On a loaded 2-core machine a rank sometimes dies with SIGABRT and "terminate called without an
    active exception" before training starts (seen about 1 run in 6, on this commit and on f2bddc9
    alike, 2026-11-30); the retry starts afresh in an empty runs folder, so a real failure still fails.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "distill_core", "train", *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if res.returncode != 0 and GLOO_ABORT in res.stderr:
        runs = Path(args[args.index("--runs-dir") + 1]) if "--runs-dir" in args else None
        if runs is not None and runs.is_dir():
            shutil.rmtree(runs)
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    return res


# ---------------------------------------------------------------- in-process pieces


def test_ranks_slices_make_up_the_single_process_batch():
    data = TensorDataset(torch.arange(23.0)[:, None], torch.arange(23))

    def run(rank, world):
        return list(iterate_batches(data, 8, True, torch.Generator().manual_seed(5), rank=rank, world_size=world))

    single = run(0, 1)
    ranks = [run(r, 2) for r in range(2)]
    assert [len(b) for b in ranks] == [len(single)] * 2
    for i, (_, y) in enumerate(single):
        y0, y1 = ranks[0][i][1], ranks[1][i][1]
        assert len(y0) == len(y1)
        assert set(torch.cat([y0, y1]).tolist()) == set(y.tolist())   # the short last batch pads with repeats
        if len(y) == 8:
            assert torch.cat([y0, y1]).tolist() == y.tolist()


def test_augmentation_is_drawn_for_the_global_batch():
    data = TensorDataset(torch.rand(8, 3, 8, 8), torch.arange(8))

    def run(rank, world):
        return list(iterate_batches(data, 8, True, torch.Generator().manual_seed(5), augment="crop-flip",
                                    rank=rank, world_size=world))

    [(x, _)] = run(0, 1)
    assert torch.equal(torch.cat([run(r, 2)[0][0] for r in range(2)]), x)


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(0, 2, 0, "gloo"))
    train, info = load_dataset("digits", "train")
    method = build_method("standard", build_model("mlp", info))
    with pytest.raises(ValueError, match="divisible by the 2 processes"):
        Trainer(method, (train, None), TrainConfig(batch_size=33))


def test_single_process_defaults():
    info = distributed.current()
    assert not info.enabled and info.is_main and info.world_size == 1
    assert distributed.all_reduce_sum([1.5, 2], torch.device("cpu")) == [1.5, 2.0]
    choice = choose_device("cpu")
    assert distributed.rank_device(choice, distributed.DistInfo(1, 2, 1, "gloo")) == choice


# ---------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    args = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--seed", "0",
            "--quiet"]
    res = torchrun(*args, "--runs-dir", str(tmp_path / "ddp"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "DDP over 2 processes, 32 samples each per step" in res.stderr
    assert res.stdout.count("done: test accuracy") == 1                  # rank 0 alone prints
    [folder] = list((tmp_path / "ddp").iterdir())                       # rank 0 alone writes
    assert main(["train", *args, "--runs-dir", str(tmp_path / "one")]) == 0
    [single] = list((tmp_path / "one").iterdir())
    ddp_run, one_run = read_run(folder), read_run(single)
    assert ddp_run.status == "done" and ddp_run.config["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert abs(ddp_run.summary["test_accuracy"] - one_run.summary["test_accuracy"]) <= 0.03
    for a, b in zip(read_metrics(folder), read_metrics(single), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.01)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.jsonl", "model.pt", "summary.json"]


@pytest.mark.slow
def test_adversarial_training_under_ddp_does_not_hang(tmp_path):
    res = torchrun("--dataset", "digits", "--model", "small-cnn", "--method", "trades", "--set", "steps=3",
                   "--epochs", "1", "--max-steps", "4", "--batch-size", "32", "--eval-samples", "100",
                   "--runs-dir", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    [folder] = list(tmp_path.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 4
