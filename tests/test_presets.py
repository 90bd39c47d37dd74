"""The papers' presets: each runs (2 steps on tiny data in the real on-disk formats), flags override them,
and teachers load from bare checkpoints."""

import json
import pickle
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch

from distill_core.__main__ import main
from distill_core.data import load_dataset
from distill_core.methods import get_method
from distill_core.models import build_model
from distill_core.presets import get_preset, list_presets, load_checkpoint, load_teacher, method_settings
from distill_core.runs import read_run

CIFAR_PRESETS = [p for p in list_presets() if p.endswith("cifar10")]


def _write_cifar(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"labels": [int(v) for v in rng.integers(0, 10, n)],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def _write_mnist(root, n_train=12, n_test=6):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))),
                            ("labels-idx1", np.arange(n) % 10)):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _write_cifar(root)
    _write_mnist(root)
    return root


@pytest.fixture(scope="module")
def cifar_info(data_root):
    return load_dataset("cifar10", "test", data_root)[1]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, cifar_info):
    """Bare state dicts, as the papers' code saves them: resnet56 (clean) and a small wide ResNet (robust)."""
    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for arch in ("resnet56", "wrn-16-4"):
        torch.manual_seed(0)
        paths[arch] = folder / f"{arch}.pt"
        torch.save(build_model(arch, cifar_info).state_dict(), paths[arch])
    return paths


def _teacher_flags(name, teachers):
    """Teachers for a preset: the clean one as a bare path (the preset names its architecture), the robust
    one as ARCH:PATH with a small wide ResNet standing in for the WRN-34-10."""
    roles = get_preset(name).teachers
    flags = []
    for role in roles:
        ref = str(teachers["resnet56"]) if roles[role] == "resnet56" else f"wrn-16-4:{teachers['wrn-16-4']}"
        flags += ["--teacher", f"{role}={ref}"]
    return flags


@pytest.mark.parametrize("name", list_presets())
def test_each_preset_runs_two_steps_and_is_recorded(name, data_root, teachers, tmp_path):
    preset = get_preset(name)
    fast = ["--set", "steps=1"] if "steps" in preset.method_config else []
    code = main(["train", "--preset", name, "--data-root", str(data_root), "--runs-dir", str(tmp_path),
                 "--batch-size", "2", "--max-steps", "2", "--eval-samples", "2", "--quiet", "--device", "cpu",
                 *fast, *_teacher_flags(name, teachers)])
    assert code == 0
    [folder] = list(tmp_path.iterdir())
    run = read_run(folder)
    assert run.status == "done" and run.summary["steps"] == 2
    config = run.config
    assert config["preset"] == name
    assert (config["dataset"], config["model"], config["method"]) == (preset.dataset, preset.model, preset.method)
    assert config["train"]["batch_size"] == 2                                    # the flag wins
    for key, value in preset.train.items():
        if key != "batch_size":
            assert config["train"][key] == (list(value) if isinstance(value, tuple) else value), key
    for key, value in preset.method_config.items():
        assert config["method_config"][key] == (1 if key == "steps" else value), key
    assert set(config["teachers"]) == set(preset.teachers)


def test_cifar_presets_augment_and_mnist_does_not():
    assert all(get_preset(p).train["augment"] == "crop-flip" for p in CIFAR_PRESETS if "papernot" not in p)
    assert "augment" not in get_preset("papernot-mnist").train
    mtard = get_preset("mtard-cifar10")
    assert mtard.train["milestones"] == (215, 260, 285) and mtard.train["epochs"] == 300
    assert mtard.teachers == {"clean_teacher": "resnet56", "robust_teacher": "wrn-34-10"}
    assert all(get_preset(p).sources for p in list_presets())


def test_another_method_keeps_the_settings_it_shares():
    mtard = get_preset("mtard-cifar10")
    assert method_settings(mtard, get_method("rslad").Config) == {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10,
                                                                  "eps_warmup": 0.0}
    assert method_settings(mtard, get_method("standard").Config) == {}


def test_unknown_preset_is_a_one_line_usage_error(tmp_path, capsys):
    assert main(["train", "--preset", "nosuch", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "mtard-cifar10" in err[0]
    assert not list(tmp_path.iterdir())


def test_the_papers_models_have_their_sizes(cifar_info):
    from distill_core.models import count_parameters

    wrn = build_model("wrn-34-10", cifar_info)
    assert round(count_parameters(wrn) / 1e6, 1) == 46.2            # TRADES' WRN-34-10, without its sub_block1
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in wrn.modules()) == 1 + 3 * 5 * 2
    resnet56 = build_model("resnet56", cifar_info)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in resnet56.modules()) == 1 + 3 * 9 * 2
    assert resnet56.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_from_other_code_loads_with_identity_normalisation(cifar_info, tmp_path):
    """A DataParallel-saved state dict without our Normalize buffers, with TRADES' unused sub_block1."""
    torch.manual_seed(0)
    model = build_model("wrn-16-4", cifar_info).eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    state["module.sub_block1.layer.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "trades-style.pt"
    torch.save({"state_dict": state}, path)
    loaded = load_checkpoint("wrn-16-4", path, cifar_info)
    assert torch.equal(loaded.normalize.mean, torch.zeros_like(loaded.normalize.mean))
    assert torch.equal(loaded.normalize.std, torch.ones_like(loaded.normalize.std))
    x = torch.rand(2, 3, 32, 32)
    plain = replace(cifar_info, mean=(0.0,) * 3, std=(1.0,) * 3)
    reference = build_model("wrn-16-4", plain).eval()
    reference.load_state_dict({**model.state_dict(), "normalize.mean": loaded.normalize.mean,
                               "normalize.std": loaded.normalize.std})
    assert torch.allclose(loaded(x), reference(x), atol=1e-6)


def test_bad_checkpoints_are_value_errors(cifar_info, teachers, tmp_path):
    with pytest.raises(ValueError, match="does not fit 'resnet20'"):
        load_checkpoint("resnet20", teachers["resnet56"], cifar_info)
    with pytest.raises(ValueError, match="no checkpoint file"):
        load_checkpoint("resnet56", tmp_path / "missing.pt", cifar_info)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": print}, protocol=2))
    with pytest.raises(ValueError, match="not a loadable state dict"):
        load_checkpoint("resnet56", evil, cifar_info)
    with pytest.raises(ValueError, match="ARCH"):
        load_teacher(str(teachers["resnet56"]), lambda: cifar_info)


def test_teacher_reference_forms(cifar_info, teachers):
    by_arch = load_teacher(f"resnet56:{teachers['resnet56']}", lambda: cifar_info)
    by_role = load_teacher(str(teachers["resnet56"]), lambda: cifar_info, arch="resnet56")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(by_arch(x), by_role(x)) and not by_arch.training


def test_config_json_is_valid_json_after_the_preset_is_added(data_root, tmp_path):
    assert main(["train", "--preset", "papernot-mnist", "--data-root", str(data_root), "--runs-dir", str(tmp_path),
                 "--epochs", "1", "--lr", "0.05", "--quiet", "--eval-samples", "2"]) == 0
    [folder] = list(tmp_path.iterdir())
    config = json.loads((folder / "config.json").read_text())
    assert config["preset"] == "papernot-mnist"
    assert (config["train"]["lr"], config["train"]["momentum"], config["train"]["epochs"]) == (0.05, 0.5, 1)


@pytest.mark.parametrize("name", ["trades-cifar10", "pgd-at-cifar10", "ard-cifar10", "rslad-cifar10", "mtard-cifar10"])
def test_cifar_presets_keep_the_papers_full_eps_from_the_first_step(name):
    assert get_preset(name).method_config["eps_warmup"] == 0.0
