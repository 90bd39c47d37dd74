"""The GPU path: bf16 autocast (attacks included), channels-last, compile, batched augmentation, device fallback.

Most checks run on the CPU (CPU bf16 autocast stands in for CUDA's); the CUDA ones are skipped
without a GPU. conftest.py hides GPUs unless CUDA_VISIBLE_DEVICES is set: run them with
``CUDA_VISIBLE_DEVICES=0 python -m pytest tests/test_gpu_path.py``.
"""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from distill_core import train as train_mod
from distill_core.__main__ import main
from distill_core.attacks import pgd
from distill_core.data import load_dataset
from distill_core.methods import build_method
from distill_core.models import build_model
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import (
    FINAL_KINDS,
    TrainConfig,
    Trainer,
    crop_flip,
    iterate_batches,
    resolve_amp,
    uses_channels_last,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cifar_info():
    _, info = load_dataset("digits", "test")
    return replace(info, name="cifar-like", input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3,
                   default_eps=8 / 255)


def _events(trainer):
    events = list(trainer.run())
    assert events[-1].kind in FINAL_KINDS
    return events


# ---------------------------------------------------------------- augmentation


def _crop_flip_loop(x, offsets, flips, padding=4):
    """The per-image reference: pad, crop at the offset, mirror."""
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[2:]
    out = []
    for img, (r, c), f in zip(padded, offsets.tolist(), flips.tolist()):
        crop = img[:, r: r + h, c: c + w]
        out.append(crop.flip(2) if f else crop)
    return torch.stack(out)


def test_crop_flip_matches_a_per_image_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=g)
    offsets = torch.randint(0, 9, (16, 2), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert torch.equal(crop_flip(x, offsets, flips), _crop_flip_loop(x, offsets, flips))


def test_crop_flip_identity_mirror_and_zero_border():
    x = torch.rand(2, 3, 8, 8)
    centre = torch.full((2, 2), 4)
    assert torch.equal(crop_flip(x, centre, torch.tensor([False, False])), x)
    assert torch.equal(crop_flip(x, centre, torch.tensor([True, True])), x.flip(3))
    corner = crop_flip(x, torch.zeros(2, 2, dtype=torch.long), torch.tensor([False, False]))
    assert (corner[:, :, :4] == 0).all() and (corner[:, :, :, :4] == 0).all()
    assert torch.equal(corner[:, :, 4:, 4:], x[:, :, :4, :4])


def test_augmented_batches_are_seeded_and_none_is_unchanged():
    data = TensorDataset(torch.rand(20, 3, 8, 8), torch.arange(20))

    def batches(augment, seed):
        return list(iterate_batches(data, 6, True, torch.Generator().manual_seed(seed), augment=augment))

    a, b, c = batches("crop-flip", 1), batches("crop-flip", 1), batches("crop-flip", 2)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))
    order = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    plain = batches("none", 1)
    assert [y.tolist() for _, y in plain] == [order[i: i + 6].tolist() for i in range(0, 20, 6)]
    assert all(torch.equal(x, data.tensors[0][y]) for x, y in plain)
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in plain]  # same order, augmentation drawn after


def test_augment_needs_images():
    train, info = load_dataset("moons", "train")
    method = build_method("standard", build_model("mlp", info))
    with pytest.raises(ValueError, match="needs images"):
        Trainer(method, (train, None), TrainConfig(augment="crop-flip"))
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mixup")


# ---------------------------------------------------------------- precision and memory format


def test_auto_settings_change_nothing_on_the_cpu(cifar_info):
    cnn = build_model("small-cnn", cifar_info)
    assert resolve_amp("auto", torch.device("cpu"), "trades") == (None, "fp32")
    assert resolve_amp("bf16", torch.device("cpu"))[0] is torch.bfloat16
    assert resolve_amp("off", torch.device("cuda"))[0] is None
    assert not uses_channels_last("auto", torch.device("cpu"), cnn)
    assert uses_channels_last("auto", torch.device("cuda"), cnn)
    assert not uses_channels_last("auto", torch.device("cuda"), build_model("mlp", cifar_info))
    assert uses_channels_last(True, torch.device("cpu"), cnn)


def test_auto_amp_on_a_gpu_keeps_the_fp32_methods(monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_supported", lambda device: True)
    gpu = torch.device("cuda")
    assert resolve_amp("auto", gpu, "mtard")[0] is torch.bfloat16
    for name in ("defensive", "bss"):
        dtype, words = resolve_amp("auto", gpu, name)
        assert dtype is None and words.startswith("fp32 (")
    assert resolve_amp("bf16", gpu, "bss")[0] is torch.bfloat16   # asked for explicitly


def test_default_config_is_the_plain_fp32_path():
    def losses(**kw):
        spec = TrainSpec(dataset="digits", model="small-cnn", train=TrainConfig(epochs=1, max_steps=6, device="cpu",
                                                                               **kw))
        trainer, _ = prepare_training(spec)
        events = _events(trainer)
        start = events[0].data
        return start, [e.data["loss"] for e in events if e.kind == "step"]

    start, default = losses()
    assert (start["precision"], start["channels_last"], start["compiled"], start["world_size"]) == \
        ("fp32", False, False, 1)
    assert losses(amp="off", channels_last=False)[1] == default


def test_bf16_and_channels_last_train_on_the_cpu():
    spec = TrainSpec(dataset="digits", model="small-cnn", method="pgd_at", method_config={"steps": 2},
                     train=TrainConfig(epochs=1, max_steps=5, amp="bf16", channels_last=True, eval_samples=64,
                                       device="cpu"))
    trainer, _ = prepare_training(spec)
    events = _events(trainer)
    assert events[0].data["precision"] == "bf16 autocast" and events[0].data["channels_last"]
    assert events[-1].kind == "done"
    assert all(torch.isfinite(torch.tensor(e.data["loss"])) for e in events if e.kind == "step")
    # afterwards the student is the plain module again, in the default memory format
    assert trainer.method.model is trainer.model
    assert all(p.is_contiguous() for p in trainer.model.parameters())


def _input_grad(model, x, y, autocast):
    x = x.clone().requires_grad_(True)
    with autocast:
        loss = F.cross_entropy(model(x), y, reduction="sum")
    return torch.autograd.grad(loss, x)[0]


@pytest.mark.parametrize("name", ["small-cnn", "resnet20"])
def test_attack_gradients_under_bf16_agree_in_sign_with_fp32(cifar_info, name):
    torch.manual_seed(0)
    model = build_model(name, cifar_info).eval()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    g32 = _input_grad(model, x, y, torch.autocast("cpu", enabled=False))
    g16 = _input_grad(model, x, y, torch.autocast("cpu", dtype=torch.bfloat16))
    assert g16.dtype == torch.float32
    assert (g32.sign() == g16.sign()).float().mean() > 0.9
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=3)
    assert x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


# ---------------------------------------------------------------- the CLI's device line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_cli_falls_back_to_the_cpu_and_says_why(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--model", "mlp", "--device", "cuda", "--epochs", "1",
                 "--max-steps", "2", "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "on cpu - cuda requested: CUDA is not available [fp32]" in err


# ---------------------------------------------------------------- CUDA only


@cuda
def test_cuda_auto_path_uses_bf16_and_channels_last():
    spec = TrainSpec(dataset="digits", model="small-cnn", method="pgd_at", method_config={"steps": 3},
                     train=TrainConfig(epochs=1, max_steps=8, device="cuda", eval_samples=128))
    trainer, _ = prepare_training(spec)
    events = _events(trainer)
    assert events[0].data["precision"] == "bf16 autocast" and events[0].data["channels_last"]
    assert events[-1].kind == "done" and events[-1].data["test_accuracy"] is not None


@cuda
def test_cuda_attack_gradients_under_bf16_agree_in_sign_with_fp32(cifar_info):
    torch.manual_seed(0)
    model = build_model("resnet20", cifar_info).cuda().eval().to(memory_format=torch.channels_last)
    x, y = torch.rand(32, 3, 32, 32, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    g32 = _input_grad(model, x, y, torch.autocast("cuda", enabled=False))
    g16 = _input_grad(model, x, y, torch.autocast("cuda", dtype=torch.bfloat16))
    assert (g32.sign() == g16.sign()).float().mean() > 0.9


@cuda
def test_cuda_compiled_student_trains():
    spec = TrainSpec(dataset="digits", model="small-cnn", train=TrainConfig(epochs=1, max_steps=4, device="cuda",
                                                                           compile=True, eval_samples=128))
    trainer, _ = prepare_training(spec)
    events = _events(trainer)
    assert events[0].data["compiled"] and events[-1].kind == "done"
