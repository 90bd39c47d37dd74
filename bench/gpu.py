"""Training and attack throughput on the device present: standard, PGD-AT and MTARD steps, and PGD.

    python bench/gpu.py                 # CUDA: ResNet-18 student, batch 128, fp32 / bf16 x channels-last
    python bench/gpu.py --quick         # CPU: small models and a few steps (under a minute)
    python bench/gpu.py --compile       # CUDA: also the torch.compile'd student (compiling takes minutes)
    python bench/gpu.py --presets       # also each CIFAR preset's real step (on CUDA by default)

Each training row runs the real Trainer (``TrainConfig(max_steps=...)``, crop-flip augmentation on)
on random CIFAR-shaped data and times the steps after the warm-up from its step events; the PGD row
times ``attacks.pgd`` (10 steps of 2/255 in an 8/255 ball) on the student in eval mode. FLOPs of
one step are counted with ``torch.utils.flop_counter.FlopCounterMode``; on a GPU whose name is in
:data:`PEAK_BF16_TFLOPS` the achieved FLOP/s are given as a share of its dense bf16 tensor-core
peak from the vendor's data sheet. That share is an estimate: the counter sees convolutions and
matrix products only, and an fp32 row is compared with the bf16 peak too.

The presets table times each CIFAR-10 preset's own step (its model, method, attack, batch, teachers
of the preset's architectures with random weights, the Trainer's automatic GPU settings) and
turns it into minutes per epoch of 50,000 images and hours for the preset's epochs, evaluation
not included.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from distill_core.attacks import pgd
from distill_core.data import DatasetInfo
from distill_core.device import choose_device
from distill_core.methods import TrainState, build_method
from distill_core.models import build_model
from distill_core.presets import get_preset, list_presets
from distill_core.train import TrainConfig, Trainer

# Dense bf16 tensor-core peak, TFLOP/s, from NVIDIA's data sheets; the first name found in the device name wins.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10": 125.0}
EPS, ALPHA, PGD_STEPS = 8 / 255, 2 / 255, 10
CIFAR = DatasetInfo(name="cifar10-shaped", input_shape=(3, 32, 32), num_classes=10,
                    class_names=tuple(f"class {i}" for i in range(10)), mean=(0.49, 0.48, 0.45),
                    std=(0.25, 0.24, 0.26), embedded=False, description="random CIFAR-10-shaped data",
                    default_eps=EPS)


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or None when it is not in the table (or not a GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


class _NoModules:
    """Stands in for FlopCounterMode's per-module tracker, which cannot follow ``torch.autograd.grad`` with
    respect to an input (every attack's inner loop); the total needs no per-module split."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def count_flops(fn) -> int | None:
    """FLOPs (convolutions and matrix products) of ``fn()``, counted by FlopCounterMode; None if it cannot."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModules()
    try:
        with counter:
            fn()
    except (AttributeError, RuntimeError):   # another torch's internals: report no FLOPs rather than fail
        return None
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _method(name: str, args, device: torch.device):
    teachers = {}
    if name == "mtard":
        teachers = {"clean_teacher": build_model(args.clean_teacher, CIFAR),
                    "robust_teacher": build_model(args.robust_teacher, CIFAR)}
    settings = {} if name == "standard" else {"eps": EPS, "alpha": ALPHA, "steps": PGD_STEPS}
    return build_method(name, build_model(args.student, CIFAR), settings, teachers, CIFAR).to(device)


def step_flops(name: str, args, device: torch.device) -> int | None:
    """FLOPs of one training step (the method's loss, its attack included, and the backward pass)."""
    method = _method(name, args, device)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def step():
        loss, _ = method.loss(x, y, TrainState(device=device))
        loss.backward()

    return count_flops(step)


def _time_trainer(method, config: TrainConfig, args) -> tuple[float, str]:
    """Seconds per step of the real Trainer after ``args.warmup`` steps, and its precision in words."""
    n = config.batch_size * config.max_steps
    data = TensorDataset(torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    stamps, precision = [], ""
    for event in Trainer(method, (data, None), config).run():
        if event.kind == "start":
            precision = event.data["precision"]
        elif event.kind == "step":
            stamps.append(time.perf_counter())
        elif event.kind == "error":
            raise RuntimeError(event.data["reason"])
    return (stamps[-1] - stamps[args.warmup - 1]) / (len(stamps) - args.warmup), precision


def train_rate(name: str, args, device: torch.device, amp: str, channels_last: bool, compile_: bool) -> float:
    """Seconds per training step of the real Trainer, after ``args.warmup`` steps."""
    config = TrainConfig(epochs=1, batch_size=args.batch_size, optimizer="sgd", lr=0.01, device=str(device),
                         amp=amp, channels_last=channels_last, compile=compile_, augment="crop-flip",
                         max_steps=args.warmup + args.steps)
    return _time_trainer(_method(name, args, device), config, args)[0]


def preset_rate(name: str, args, device: torch.device) -> tuple[float, str]:
    """Seconds per step of a preset's own recipe (random weights), and its precision in words."""
    preset = get_preset(name)
    teachers = {role: build_model(arch, CIFAR) for role, arch in preset.teachers.items()}
    method = build_method(preset.method, build_model(preset.model, CIFAR), preset.method_config, teachers, CIFAR)
    config = TrainConfig(**{**preset.train, "epochs": 1, "device": str(device),
                            "max_steps": args.warmup + args.steps})
    return _time_trainer(method, config, args)


def pgd_rate(args, device: torch.device, amp: str, channels_last: bool) -> tuple[float, int | None]:
    """Seconds per PGD call on a batch, and its FLOPs."""
    model = build_model(args.student, CIFAR).to(device).eval()
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext())

    def attack():
        with autocast:
            return pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=PGD_STEPS)

    n_flops = count_flops(attack)
    for _ in range(args.warmup):
        attack()
    _sync(device)
    t = time.perf_counter()
    for _ in range(args.steps):
        attack()
    _sync(device)
    return (time.perf_counter() - t) / args.steps, n_flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="fewer steps (and small models on the CPU)")
    p.add_argument("--student", default=None, help="default resnet18 on CUDA, resnet8 on the CPU")
    p.add_argument("--clean-teacher", default=None, help="MTARD's clean teacher (default resnet20 / resnet8)")
    p.add_argument("--robust-teacher", default=None, help="MTARD's robust teacher (default resnet20 / resnet8)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 on CUDA (MTARD's), 32 on the CPU")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per row")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows (CUDA, bf16, channels-last)")
    p.add_argument("--presets", action=argparse.BooleanOptionalAction, default=None,
                   help="time each CIFAR-10 preset's step (default: on CUDA only)")
    args = p.parse_args()

    choice = choose_device(args.device)
    device = choice.device
    gpu = device.type == "cuda"
    small = "resnet20" if gpu else "resnet8"
    args.student = args.student or ("resnet18" if gpu else small)
    args.clean_teacher = args.clean_teacher or small
    args.robust_teacher = args.robust_teacher or small
    args.batch_size = args.batch_size or (128 if gpu else 32)
    args.warmup = args.warmup or (3 if args.quick else 5)
    args.steps = args.steps or ((5 if gpu else 3) if args.quick else (20 if gpu else 6))
    torch.manual_seed(0)

    peak = peak_tflops(device)
    print(f"device: {choice.describe()}; torch {torch.__version__}; student {args.student}, MTARD teachers "
          f"{args.clean_teacher} + {args.robust_teacher}; batch {args.batch_size}; {args.steps} timed steps "
          f"after {args.warmup}; PGD {PGD_STEPS} steps")
    if peak:
        print(f"% of peak: achieved FLOP/s over the dense bf16 peak of {peak:g} TFLOP/s (an estimate)")
    grid = [("off", False, False), ("off", True, False), ("bf16", False, False), ("bf16", True, False)] if gpu \
        else [("off", False, False)]
    if args.compile and gpu:
        grid.append(("bf16", True, True))
    flops = {name: step_flops(name, args, device) for name in ("standard", "pgd_at", "mtard")}

    header = f"{'workload':<22} {'amp':<5} {'ch-last':<8} {'compile':<8} {'samples/s':>10} {'ms/step':>9} " \
             f"{'TFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))

    def row(label: str, amp: str, cl: bool, comp: bool, seconds: float, n_flops: int | None) -> None:
        tflops = None if n_flops is None else n_flops / seconds / 1e12
        rate = f"{'-':>8}" if tflops is None else f"{tflops:>8.2f}"
        share = f"{100 * tflops / peak:>6.1f}%" if peak and tflops is not None else f"{'-':>7}"
        print(f"{label:<22} {amp:<5} {str(cl):<8} {str(comp):<8} {args.batch_size / seconds:>10.1f} "
              f"{1e3 * seconds:>9.2f} {rate} {share}", flush=True)

    for amp, cl, comp in grid:
        for name, label in (("standard", "standard step"), ("pgd_at", "PGD-AT step"), ("mtard", "MTARD step")):
            row(label, amp, cl, comp, train_rate(name, args, device, amp, cl, comp), flops[name])
        if not comp:
            seconds, n_flops = pgd_rate(args, device, amp, cl)
            row(f"PGD-{PGD_STEPS} attack (img/s)", amp, cl, comp, seconds, n_flops)

    if args.presets if args.presets is not None else gpu:
        print(f"\n{'preset':<17} {'model':<10} {'method':<9} {'batch':>5} {'precision':<14} {'ms/step':>8} "
              f"{'min/epoch':>9} {'hours/run':>9}")
        for name in (n for n in list_presets() if n.endswith("cifar10")):
            preset = get_preset(name)
            seconds, precision = preset_rate(name, args, device)
            batch, epochs = preset.train["batch_size"], preset.train["epochs"]
            epoch_min = -(-50_000 // batch) * seconds / 60
            print(f"{name:<17} {preset.model:<10} {preset.method:<9} {batch:>5} {precision[:14]:<14} "
                  f"{1e3 * seconds:>8.1f} {epoch_min:>9.2f} {epoch_min * epochs / 60:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
