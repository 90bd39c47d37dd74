"""distill_core.checkpoints, the one loader of weights: what loads (state dicts, wrappers, prefixes, numpy
scalars, foreign normalisation), what is refused (garbage, pickled code, no state dict, another
architecture), and that every refusal is one plain line - from the module and from its three users
(runs, the zoo, teachers from the command line)."""

from __future__ import annotations

import ast
import io
import json
import marshal
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_core import checkpoints, presets, zoo
from distill_core.checkpoints import (
    CheckpointError,
    fit_state_dict,
    load_checkpoint,
    load_object,
    read_state_dict,
)
from distill_core.data import load_dataset
from distill_core.models import build_model
from distill_core.runs import RunError, create_run, load_model, load_state_dict, load_weights


@pytest.fixture(scope="module")
def info():
    return load_dataset("mnist-5k", "test")[1]


@pytest.fixture(scope="module")
def state(info):
    torch.manual_seed(0)
    return build_model("small-cnn", info).state_dict()


def saved(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def assert_one_plain_line(message: str) -> None:
    """What the CLI and the app promise: one line, no terminal colour codes, no advice to load unsafely."""
    assert message and "\n" not in message and "\r" not in message, message
    assert "\x1b" not in message, repr(message)
    assert "weights_only" not in message and "trusted source" not in message, message


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- what loads


def test_a_plain_state_dict_loads_from_a_path_bytes_or_a_file_object(state, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    assert same(read_state_dict(path), state)
    assert same(read_state_dict(str(path)), state)
    assert same(read_state_dict(path.read_bytes()), state)
    with open(path, "rb") as f:
        assert same(read_state_dict(f), state)


def test_numpy_scalars_beside_the_weights_load_safely(state):
    """As many public checkpoints store them: the epoch and the best accuracy as numpy scalars."""
    data = saved({"state_dict": state, "epoch": np.int64(3), "best_acc": np.float64(0.9), "lr": np.float32(0.1),
                  "flag": np.bool_(True), "arch": "small-cnn", "history": [1.0, 2.0]})
    loaded = load_object(data)
    assert loaded["epoch"] == 3 and isinstance(loaded["epoch"], np.int64)
    assert loaded["best_acc"] == 0.9 and loaded["flag"]
    assert same(read_state_dict(data), state)


def test_numpy_scalars_under_their_numpy_1_name_load(state):
    """Checkpoints written under numpy 1 name the reconstructor numpy.core.multiarray.scalar."""
    data = saved({"state_dict": state, "epoch": np.int64(7)}, _use_new_zipfile_serialization=False)
    assert b"numpy._core.multiarray" in data or b"numpy.core.multiarray" in data
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert load_object(old)["epoch"] == 7
    assert same(read_state_dict(old), state)


def test_the_numpy_allowlist_does_not_outlive_the_load(state):
    before = set(map(repr, torch.serialization.get_safe_globals()))
    read_state_dict(saved({"state_dict": state, "epoch": np.int64(3)}))
    assert set(map(repr, torch.serialization.get_safe_globals())) == before
    with pytest.raises(pickle.UnpicklingError):    # numpy scalars are refused again by a plain weights-only load
        torch.load(io.BytesIO(saved({"epoch": np.int64(3)})), weights_only=True)


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"state_dict": s, "epoch": 3},
    lambda s: {"model_state_dict": s, "optimizer": {"lr": 0.1}},
    lambda s: {"model": s},
    lambda s: {"net": s, "acc": 0.5},
    lambda s: {"model": {"state_dict": s}, "epoch": 3},
], ids=["plain", "state_dict", "model_state_dict", "model", "net", "nested"])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_wrappers_and_prefixes_are_undone(state, wrap, prefix):
    data = saved(wrap({prefix + k: v for k, v in state.items()}))
    assert same(read_state_dict(data), state)


def test_concurrent_loads_all_succeed(state):
    """safe_globals edits a process-wide allowlist; loads from several threads (two app sessions) still work."""
    data = saved({"state_dict": state, "epoch": np.int64(3)})
    errors: list[BaseException] = []

    def load():
        try:
            for _ in range(5):
                assert same(read_state_dict(data), state)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_a_foreign_checkpoint_gets_identity_normalisation(info, state):
    """Code that feeds raw [0, 1] pixels saves no normalize buffers: the layer becomes the identity."""
    foreign = {k: v for k, v in state.items() if k not in ("0.mean", "0.std")}
    model = load_checkpoint("small-cnn", saved({"state_dict": foreign, "epoch": np.int64(1)}), info)
    assert not model.training
    assert torch.equal(model[0].mean, torch.zeros_like(model[0].mean))
    assert torch.equal(model[0].std, torch.ones_like(model[0].std))
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), model[1:](x))                  # the first layer is the identity
    with pytest.raises(CheckpointError, match=r"2 missing \(0.mean, 0.std\)"):
        fit_state_dict(build_model("small-cnn", info), foreign, identity_normalize=False)
    with pytest.raises(CheckpointError, match=r"1 missing \(0.std\)"):     # half of it is damage, not foreign
        fit_state_dict(build_model("small-cnn", info), {**foreign, "0.mean": state["0.mean"]})


# ---------------------------------------------------------------- what is refused, in one line


class Runs:
    """A pickled object whose unpickling would create a file: proof that nothing ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class Plain:
    """A custom class with data only."""

    def __init__(self):
        self.weights = torch.zeros(2)


def _code_object() -> object:
    class Code:
        def __reduce__(self):
            return (marshal.loads, (marshal.dumps(compile("print('pwned')", "<ckpt>", "exec")),))

    return Code()


BAD = {
    "garbage bytes": (lambda tmp: b"\x00garbage bytes, not a checkpoint\xff" * 8, "not a file torch.save wrote"),
    "empty": (lambda tmp: b"", "empty"),
    "truncated": (lambda tmp: saved({"w": torch.ones(100)})[:300], "damaged or truncated"),
    "code object": (lambda tmp: saved({"w": _code_object()}), "marshal.loads"),
    "reduce to a call": (lambda tmp: saved({"w": Runs(tmp / "ran")}), "pickled Python object"),
    "custom class": (lambda tmp: saved({"state_dict": {"w": Plain()}}), "Plain"),
    "raw pickle": (lambda tmp: pickle.dumps({"x": print}, protocol=2), "pickled Python object"),
    "whole model": (lambda tmp: saved(torch.nn.Linear(2, 2)), "state_dict"),
    "numpy array": (lambda tmp: saved({"state_dict": {"w": torch.ones(1)}, "hist": np.zeros(3)}), "numpy"),
    "a list": (lambda tmp: saved([torch.zeros(1)]), "not a state dict .*a list"),
    "numbers only": (lambda tmp: saved({"epoch": 3, "acc": 0.5}), "'epoch' is of type int"),
    "unknown wrapper": (lambda tmp: saved({"weights": {"w": torch.ones(1)}, "epoch": 3}), "no state dict under"),
    "empty dict": (lambda tmp: saved({}), "an empty dict"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_is_refused_in_one_plain_line(kind, tmp_path):
    make, words = BAD[kind]
    data = make(tmp_path)
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(CheckpointError, match=words) as err:
            read_state_dict(source)
        assert_one_plain_line(str(err.value))
    assert str(path) in str(pytest.raises(CheckpointError, read_state_dict, path).value)   # names the file
    assert not (tmp_path / "ran").exists()     # the pickled call never ran


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file at"):
        read_state_dict(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        read_state_dict(tmp_path)


def test_wrong_shapes_name_the_key_and_both_shapes(info, state):
    bad = dict(state)
    key = next(k for k, v in state.items() if v.dim() == 2)           # the classifier's weight
    bad[key] = torch.zeros(v := state[key].shape[0] + 1, state[key].shape[1])
    with pytest.raises(CheckpointError) as err:
        fit_state_dict(build_model("small-cnn", info), bad, name="ckpt.pt", arch="small-cnn")
    message = str(err.value)
    assert_one_plain_line(message)
    assert message.startswith("ckpt.pt does not fit 'small-cnn'")
    assert key in message and f"checkpoint ({v}, {state[key].shape[1]})" in message
    assert f"model {tuple(state[key].shape)}" in message


def test_missing_and_unexpected_keys_are_named(info, state):
    bad = {k: v for k, v in state.items() if not k.endswith(".bias")}
    bad["head.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        fit_state_dict(build_model("small-cnn", info), bad)
    message = str(err.value)
    assert_one_plain_line(message)
    assert "missing" in message and ".bias" in message and "1 unexpected (head.extra)" in message


def test_another_architecture_is_refused(info):
    with pytest.raises(CheckpointError, match="does not fit 'papernot-cnn'"):
        load_checkpoint("papernot-cnn", saved(build_model("small-cnn", info).state_dict()), info)


# ---------------------------------------------------------------- one loader for runs, the zoo and teachers


def test_runs_zoo_and_teachers_give_the_same_one_line_refusal(info, state, tmp_path):
    garbage = b"garbage bytes, not a checkpoint" * 4
    expected = "is not a loadable state dict: not a file torch.save wrote"

    # a run whose model.pt is damaged
    writer = create_run(tmp_path / "runs", {"dataset": "mnist-5k", "model": "small-cnn", "method": "standard",
                                            "info": info.to_dict(), "train": {"seed": 0}})
    (writer.path / "model.pt").write_bytes(garbage)
    writer.finish({"status": "done"})
    with pytest.raises(RunError, match=expected) as run_err:
        load_model(writer.path)

    # a zoo whose file is damaged (the hash is skipped, so the loader itself must refuse)
    entry = zoo.list_zoo()[0]
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    (zoo_dir / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
    (zoo_dir / entry["file"]).write_bytes(garbage)
    (zoo_dir / "manifest.json").write_text(json.dumps({"models": [entry]}))
    with pytest.raises(RunError, match=expected) as zoo_err:
        zoo.load_zoo_model(entry["name"], zoo_dir, verify=False)

    # a teacher given as ARCH:PATH
    path = tmp_path / "teacher.pt"
    path.write_bytes(garbage)
    with pytest.raises(CheckpointError, match=expected) as teacher_err:
        presets.load_teacher(f"small-cnn:{path}", lambda: info)

    for err in (run_err, zoo_err, teacher_err):
        assert_one_plain_line(str(err.value))


def test_the_old_names_still_load(info, state, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": np.int64(2)}, path)
    assert same(load_state_dict(path), state)
    assert same(load_weights(build_model("small-cnn", info), load_state_dict(path)).state_dict(), state)
    assert same(presets.load_checkpoint("small-cnn", path, info).state_dict(), state)
    with pytest.raises(RunError, match="does not fit"):
        load_weights(build_model("papernot-cnn", info), state)


def test_a_zoo_model_still_loads_and_matches_its_file():
    entry = zoo.list_zoo()[0]
    model, _, _ = zoo.load_zoo_model(entry["name"])
    assert not model.training
    assert same(model.state_dict(), torch.load(zoo.ZOO_DIR / entry["file"], weights_only=True))


def _calls_torch_load(path: Path) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
               and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
               for node in ast.walk(ast.parse(path.read_text())))


def test_the_module_is_the_only_caller_of_torch_load():
    """One loader: no other core module reads weights with torch.load."""
    root = Path(checkpoints.__file__).resolve().parent
    callers = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py") if _calls_torch_load(p))
    assert callers == ["checkpoints.py"]
