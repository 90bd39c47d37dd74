"""Importing a model trained elsewhere (``runs import`` / ``model_import.import_checkpoint``) on tiny files in the
real formats: every accepted checkpoint layout loads and evaluates; every refused kind gives its one line and
writes nothing."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from distill_core.__main__ import main
from distill_core.data import registered_info
from distill_core.model_import import ModelImportError, import_checkpoint, run_folder_name
from distill_core.models import build_model
from distill_core.runs import list_runs, load_model, read_run
from distill_core.spec import resolve_model
from tests._data_files import write_cifar, write_mnist

CIFAR = registered_info("cifar10")


def external_resnet8(seed: int = 0) -> dict[str, torch.Tensor]:
    """A resnet8 state dict as code that feeds raw [0, 1] pixels saves it: no normalisation buffers."""
    torch.manual_seed(seed)
    model = build_model("resnet8", CIFAR)
    return {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    write_cifar(root, n=10, n_test=20)
    write_mnist(root, "MNIST")
    return root


WRAPPERS = {
    "plain state dict": lambda s: s,
    "state_dict wrapper": lambda s: {"state_dict": s, "epoch": 3},
    "model wrapper": lambda s: {"model": s, "optimizer": {"lr": 0.1}},
    "DataParallel prefixes": lambda s: {f"module.{k}": v for k, v in s.items()},
    "numpy scalars beside": lambda s: {"net": s, "epoch": np.int64(99), "best_acc": np.float64(0.87)},
}


@pytest.mark.parametrize("wrap", WRAPPERS, ids=list(WRAPPERS))
def test_accepted_layouts_import_load_and_evaluate(wrap, data_root, runs_dir):
    state = external_resnet8()
    path = import_checkpoint(saved(WRAPPERS[wrap](state)), "resnet8", "cifar10", runs_dir, name="my resnet8!",
                             source_name="rn8.pth", n_eval=20, data_root=data_root)
    assert path.name == "my-resnet8"
    run = read_run(path)
    assert run.status == "done" and run.config["method"] == "imported"
    imp = run.config["imported"]
    assert imp["name"] == "my resnet8!" and imp["source"] == "rn8.pth" and imp["normalization"] == "identity"
    assert len(imp["sha256"]) == 64 and run.summary["eval_samples"] == 20
    model, info, _ = load_model(path)
    x = torch.rand(4, 3, 32, 32)
    reference = build_model("resnet8", CIFAR)            # CIFAR's registered info: the identity normalisation
    reference.load_state_dict({**state, "normalize.mean": reference.normalize.mean,
                               "normalize.std": reference.normalize.std})
    assert torch.allclose(model(x), reference.eval()(x), atol=1e-6)     # the same function as the source
    test = torch.load(path / "model.pt", weights_only=True)             # re-saved plainly: tensors only
    assert all(isinstance(v, torch.Tensor) for v in test.values())
    # the accuracy the summary holds is the model's on the first 20 test images
    from distill_core.data import load_dataset

    data, _ = load_dataset("cifar10", "test", data_root)
    expected = float((model(data.tensors[0]).argmax(1) == data.tensors[1]).float().mean())
    assert run.summary["test_accuracy"] == pytest.approx(expected)
    assert [r.name for r in list_runs(runs_dir)] == ["my-resnet8"]
    assert isinstance(resolve_model("my-resnet8", runs_dir), torch.nn.Module)   # usable as a teacher


def test_a_lab_checkpoint_keeps_its_own_normalisation(runs_dir):
    from distill_core.data import dataset_info

    info = dataset_info("mnist-5k")
    model = build_model("small-cnn", info)
    path = import_checkpoint(saved(model.state_dict()), "small-cnn", "mnist-5k", runs_dir)
    run = read_run(path)
    assert run.config["imported"]["normalization"] == "from the checkpoint"
    assert run.summary["test_accuracy"] is None                      # n_eval 0: not measured
    loaded = load_model(path)[0]
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


REFUSED = {
    "pickled code": (lambda: pickle.dumps(Evil()), "resnet8", "cifar10", "not a loadable state dict"),
    "a torch file of code": (lambda: saved({"state_dict": Evil()}), "resnet8", "cifar10", "pickled Python object"),
    "not a checkpoint": (lambda: b"PNG this is a picture", "resnet8", "cifar10", "not a loadable state dict"),
    "weights of another architecture": (lambda: saved(external_resnet8()), "resnet20", "cifar10", "does not fit"),
    "another input shape": (lambda: saved(external_resnet8()), "resnet8", "mnist", r"3 channel\(s\), but mnist"),
    "another class count": (lambda: saved({**external_resnet8(), "linear.weight": torch.zeros(100, 64),
                                           "linear.bias": torch.zeros(100)}), "resnet8", "cifar10", "100 classes"),
    "unknown architecture": (lambda: saved(external_resnet8()), "resnet9000", "cifar10", "unknown architecture"),
}


@pytest.mark.parametrize("kind", REFUSED, ids=list(REFUSED))
def test_refused_kinds_give_one_line_and_write_nothing(kind, runs_dir):
    make, arch, dataset, expected = REFUSED[kind]
    with pytest.raises(ModelImportError, match=expected) as e:
        import_checkpoint(make(), arch, dataset, runs_dir, source_name="ckpt.pt")
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
    assert list(runs_dir.iterdir()) == []


def test_a_taken_name_is_refused(runs_dir):
    import_checkpoint(saved(external_resnet8()), "resnet8", "cifar10", runs_dir, name="mine")
    with pytest.raises(ModelImportError, match="already exists"):
        import_checkpoint(saved(external_resnet8()), "resnet8", "cifar10", runs_dir, name="mine")
    with pytest.raises(ModelImportError, match="no letters"):
        run_folder_name(" /// ")


def test_cli_imports_and_evaluates(tmp_path, data_root, runs_dir, capsys):
    ckpt = tmp_path / "rn8.pt"
    ckpt.write_bytes(saved({"state_dict": external_resnet8()}))
    assert main(["runs", "import", str(ckpt), "--model", "resnet8", "--dataset", "cifar10", "--name", "rn8",
                 "--runs-dir", str(runs_dir), "--data-root", str(data_root), "--n", "20"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "imported" in out and "clean accuracy" in out and "eval" in out
    assert "chance level" in captured.err                     # random weights: said, not passed off as a model
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert "imported" in capsys.readouterr().out


@pytest.mark.parametrize("args,expected", [
    (["--model", "resnet8", "--dataset", "mnist"], "3 channel(s), but mnist"),
    (["--model", "resnet20", "--dataset", "cifar10"], "does not fit 'resnet20'"),
    (["--model", "resnet8", "--dataset", "imagenet"], "unknown dataset"),
])
def test_cli_refusals_are_one_error_line_and_exit_2(tmp_path, runs_dir, capsys, args, expected):
    ckpt = tmp_path / "rn8.pt"
    ckpt.write_bytes(saved(external_resnet8()))
    assert main(["runs", "import", str(ckpt), *args, "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expected in err[0]
    assert list(runs_dir.iterdir()) == []


def test_cli_eval_runs_on_an_imported_model(data_root, runs_dir, monkeypatch, capsys):
    """``eval`` reads the imported run, and the dataset from the data root ``$DISTILL_DATA`` names."""
    monkeypatch.setenv("DISTILL_DATA", str(data_root))
    path = import_checkpoint(saved(external_resnet8()), "resnet8", "cifar10", runs_dir, name="rn8")
    assert main(["eval", str(path)]) == 0
    assert "clean test accuracy" in capsys.readouterr().out


def test_unreadable_data_does_not_stop_the_import_and_robustness_fills_the_clean_accuracy(tmp_path, runs_dir):
    """Data files that exist but cannot be read: the model is imported, unmeasured, saying why (nothing half-written).
    Measured later with AutoAttack where the data is readable, the run gets the report's clean accuracy, so it
    reaches the trade-off chart."""
    from distill_core.lab.tradeoff import evaluate_run_robustness, tradeoff_rows

    broken = tmp_path / "broken"
    write_cifar(broken, n=10, n_test=20)
    (broken / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    path = import_checkpoint(saved(external_resnet8()), "resnet8", "cifar10", runs_dir, name="rn8", n_eval=20,
                             data_root=broken)
    run = read_run(path)
    assert run.status == "done" and run.summary["test_accuracy"] is None
    assert "cannot be read" in run.summary["not_measured"]
    good = tmp_path / "good"
    write_cifar(good, n=10, n_test=20)
    report = evaluate_run_robustness(path, "autoattack-fast", n=10, data_root=good)
    summary = read_run(path).summary
    assert summary["test_accuracy"] == report.clean_accuracy and summary["eval_samples"] == 10
    [row] = tradeoff_rows([], list_runs(runs_dir))
    assert row["clean"] == report.clean_accuracy and row["robust"] == report.robust_accuracy


def test_cli_runs_dir_before_or_after_import(tmp_path, capsys):
    ckpt = tmp_path / "rn8.pt"
    ckpt.write_bytes(saved(external_resnet8()))
    before, after = tmp_path / "before", tmp_path / "after"
    assert main(["runs", "--runs-dir", str(before), "import", str(ckpt), "--model", "resnet8", "--dataset",
                 "cifar10", "--name", "a"]) == 0
    assert main(["runs", "import", str(ckpt), "--model", "resnet8", "--dataset", "cifar10", "--name", "b",
                 "--runs-dir", str(after)]) == 0
    assert (before / "a").is_dir() and (after / "b").is_dir()
