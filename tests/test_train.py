"""The Trainer: accuracy targets, events, stop, divergence, reproducibility, schedules."""

import threading

import pytest
import torch

from distill_core.data import load_dataset
from distill_core.methods import build_method
from distill_core.models import build_model
from distill_core.runs import is_live, load_model, load_state_dict, read_metrics, read_run
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import FINAL_KINDS, TrainConfig, Trainer


def _run(trainer):
    events = list(trainer.run())
    finals = [e for e in events if e.kind in FINAL_KINDS]
    assert len(finals) == 1 and events[-1] is finals[0]
    return events, finals[0]


def test_mlp_on_moons_reaches_95_percent():
    train, info = load_dataset("moons", "train")
    test, _ = load_dataset("moons", "test")
    torch.manual_seed(0)
    model = build_model("mlp", info)
    trainer = Trainer(build_method("standard", model), (train, test), TrainConfig(epochs=30, lr=1e-2))
    events, final = _run(trainer)
    assert final.kind == "done"
    assert final.data["test_accuracy"] >= 0.95
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 30 and kinds.count("eval") == 30
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 30 * 13 and all("loss" in e.data and "eta_s" in e.data for e in steps)


def test_step_events_carry_the_loss_lr_progress_and_the_methods_logs_as_numbers():
    train, info = load_dataset("moons", "train")
    trainer = Trainer(build_method("standard", build_model("mlp", info)), (train, None), TrainConfig(epochs=1))
    steps = [e for e in trainer.run() if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, 14))
    for e in steps:
        assert list(e.data) == ["loss", "lr", "progress", "eta_s", "ce"]
        assert all(type(v) is float for v in e.data.values())
        assert e.data["ce"] == e.data["loss"]                    # "standard" logs its loss as ce
    assert steps[-1].data["progress"] == 1.0 and steps[-1].data["eta_s"] == 0.0


def test_every_epoch_leaves_its_model_and_metrics_on_disk(runs_dir):
    spec = TrainSpec(dataset="moons", model="mlp", train=TrainConfig(epochs=3, eval_every=2))
    trainer, writer = prepare_training(spec, runs_dir)
    pending, checked = None, 0
    for event in trainer.run():
        if pending is not None and event.kind != "eval":   # the epoch's end is over: its checkpoint is on disk
            epoch, weights = pending
            on_disk = load_state_dict(writer.path / "model.pt")
            assert on_disk.keys() == weights.keys() and all(torch.equal(on_disk[k], weights[k]) for k in weights)
            run = read_run(writer.path)
            assert run.summary["epochs"] == epoch == len(read_metrics(writer.path))
            assert (run.summary["test_accuracy"] is None) == (epoch == 1)      # evaluated at epochs 2 and 3
            assert is_live(run) == (event.kind not in FINAL_KINDS)
            pending, checked = None, checked + 1
        if event.kind == "epoch":
            pending = event.data["epoch"], {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert checked == 3
    assert not [p for p in writer.path.iterdir() if p.name.startswith(".")]    # no temporary file left


def test_same_seed_same_metrics_and_other_seed_differs():
    def metrics(seed):
        spec = TrainSpec(dataset="digits", model="small-cnn", train=TrainConfig(epochs=1, seed=seed))
        trainer, _ = prepare_training(spec)
        return [round(e.data["loss"], 10) for e in trainer.run() if e.kind == "step"]

    a, b, c = metrics(3), metrics(3), metrics(4)
    assert a == b
    assert a != c


def test_stop_mid_epoch_keeps_a_loadable_checkpoint(runs_dir):
    stop = threading.Event()
    spec = TrainSpec(dataset="digits", model="small-cnn", train=TrainConfig(epochs=5, batch_size=32))
    trainer, writer = prepare_training(spec, runs_dir, stop=stop)
    seen = 0
    final = None
    for event in trainer.run():
        if event.kind == "step":
            seen += 1
            if seen == 10:
                stop.set()
        final = event
    assert final.kind == "stopped" and final.step == 10 and final.data["epochs"] == 0
    run = read_run(writer.path)
    assert run.status == "stopped" and not run.broken
    model, info, _ = load_model(writer.path)
    assert info.name == "digits"
    x = load_dataset("digits", "test")[0].tensors[0][:4]
    assert torch.allclose(model(x), trainer.model.eval()(x))


def test_huge_learning_rate_ends_as_diverged_with_finite_weights(runs_dir):
    spec = TrainSpec(dataset="digits", model="small-cnn",
                     train=TrainConfig(epochs=2, optimizer="sgd", lr=1e6, momentum=0.0))
    trainer, writer = prepare_training(spec, runs_dir)
    _, final = _run(trainer)
    assert final.kind == "diverged"
    assert "lr" in final.data["reason"]
    summary = read_run(writer.path).summary
    assert summary["status"] == "diverged"
    model, _, _ = load_model(writer.path)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_method_error_ends_as_error_event(runs_dir):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    _, info = load_dataset("moons", "test")
    model = build_model("mlp", info)
    method = build_method("standard", model)
    method.loss = lambda x, y, state: (_ for _ in ()).throw(RuntimeError("boom"))
    train, _ = load_dataset("moons", "train")
    _, final = _run(Trainer(method, (train, None), TrainConfig(epochs=1)))
    assert final.kind == "error" and "boom" in final.data["reason"]


def test_step_and_cosine_schedules():
    _, info = load_dataset("moons", "test")
    method = build_method("standard", build_model("mlp", info))
    step = Trainer(method, (None, None), TrainConfig(epochs=10, lr=0.1, schedule="step", milestones=(0.5, 8)))
    assert step.lr_at(0, 0, 10) == (0.1, 0)
    assert step.lr_at(5, 0, 10)[1] == 1 and abs(step.lr_at(5, 0, 10)[0] - 0.01) < 1e-12
    assert step.lr_at(9, 0, 10)[1] == 2
    cos = Trainer(method, (None, None), TrainConfig(epochs=10, lr=0.1, schedule="cosine"))
    assert cos.lr_at(0, 0, 10)[0] == pytest.approx(0.1)
    assert cos.lr_at(5, 0, 10)[0] == pytest.approx(0.05)


def test_sgd_and_adam_both_learn_and_metrics_are_recorded(runs_dir):
    for opt, lr in (("sgd", 0.1), ("adam", 1e-3)):
        spec = TrainSpec(dataset="digits", model="mlp", train=TrainConfig(epochs=3, optimizer=opt, lr=lr))
        trainer, writer = prepare_training(spec, runs_dir)
        _, final = _run(trainer)
        assert final.data["test_accuracy"] > 0.8, opt
        records = read_metrics(writer.path)
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert records[-1]["test_accuracy"] == final.data["test_accuracy"]


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=0.0), dict(optimizer="rmsprop"), dict(schedule="poly"),
                                 dict(batch_size=0)])
def test_bad_train_config_is_a_value_error(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_evaluate_accuracy_restores_each_module_mode_and_records_no_graph():
    from torch import nn
    from torch.utils.data import TensorDataset

    from distill_core.train import evaluate_accuracy

    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[2].eval()                                        # one module deliberately in eval mode
    stats = model[1].running_mean.clone()
    data = TensorDataset(torch.rand(10, 2), torch.randint(0, 2, (10,)))
    evaluate_accuracy(model, data)
    assert [m.training for m in model] == [True, True, False, True]
    assert torch.equal(model[1].running_mean, stats)       # BatchNorm statistics untouched
    assert all(p.grad is None for p in model.parameters())
