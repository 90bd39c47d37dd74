"""The papers' recipes as named presets, and teachers loaded from checkpoints.

    python -m distill_core train --preset mtard-cifar10 --data-root data \\
        --teacher clean_teacher=resnet56:ckpt/resnet56.pt --teacher robust_teacher=model_cifar_wrn.pt

A preset fills in a run's dataset, model, method, method settings and trainer settings; any flag
given on the command line overrides the preset's value. ``sources`` says where every number comes
from; one marked *(check)* was read from a secondary source or is this lab's choice.

Epoch milestones are 0-based epochs from which the next learning rate applies (``TrainConfig``'s
step schedule): the RSLAD / MTARD code multiplies the rate by 0.1 *after* its 1-based epochs 215,
260 and 285, i.e. from 0-based epochs 215, 260 and 285.

Teachers are never part of a preset: pass each with ``--teacher ROLE=REF``, where REF is a run
folder, a run name or a zoo name, or a bare state dict ``ARCH:PATH.pt`` (``PATH.pt`` alone takes the
architecture the preset names for that role). See :func:`load_teacher`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import checkpoints
from .data import DatasetInfo
from .models import list_models
from .spec import resolve_model

CIFAR_EPS, CIFAR_ALPHA = 8 / 255, 2 / 255
NO_WARMUP = 0.0   # the papers' CIFAR recipes train at the full eps from the first step (no eps warm-up)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pth.tar", ".tar")


@dataclass(frozen=True)
class Preset:
    """A paper's run: what to train and how; ``teachers`` maps each teacher role to its architecture."""

    name: str
    summary: str
    dataset: str
    model: str
    method: str
    method_config: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)        # TrainConfig fields
    teachers: dict[str, str] = field(default_factory=dict)     # role -> architecture of a bare checkpoint
    sources: tuple[str, ...] = ()


_CIFAR_SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, augment="crop-flip")
_RSLAD_SCHEDULE = dict(epochs=300, schedule="step", milestones=(215, 260, 285), gamma=0.1)
_RSLAD_SOURCE = ("SGD lr 0.1, momentum 0.9, weight decay 2e-4, batch 128, 300 epochs, lr x0.1 after epochs "
                 "215 / 260 / 285, RandomCrop(32, padding=4) + RandomHorizontalFlip: the RSLAD code "
                 "(resnet18_rslad_cifar10.py), which MTARD follows (METHODS.md section 3)")
_ATTACK_SOURCE = "PGD-Linf eps 8/255, 10 steps of 2/255: METHODS.md sections 3-5"

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "papernot-mnist", "Papernot et al. 2016: their MNIST CNN, trained as in the paper (the undistilled "
        "network; --set T=20 trains the distillation teacher, --method defensive the student)",
        "mnist", "papernot-cnn", "standard",
        train=dict(optimizer="sgd", lr=0.1, momentum=0.5, weight_decay=0.0, batch_size=128, epochs=50),
        sources=("architecture 32-32-64-64-200-200, dropout 0.5: METHODS.md section 1",
                 "SGD lr 0.1, momentum 0.5, batch 128, 50 epochs: the paper's table of training parameters "
                 "for MNIST (check); no augmentation")),
    Preset(
        "papernot-cifar10", "Papernot et al. 2016: their CIFAR-10 CNN (64-64-128-128-256-256) as in the paper",
        "cifar10", "papernot-cnn", "standard",
        train=dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0, batch_size=128, epochs=50),
        sources=("architecture 64-64-128-128-256-256, dropout 0.5: METHODS.md section 1",
                 "SGD lr 0.01, momentum 0.9, batch 128, 50 epochs: the paper's table of training parameters "
                 "for CIFAR-10 (check); its 'decay rate 0.95' is not modelled; no augmentation")),
    Preset(
        "bss-cifar10", "Heo et al. 2019: KD with boundary-supporting samples, ResNet-8 student on CIFAR-10",
        "cifar10", "resnet8", "bss",
        train=dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=256, epochs=80,
                   schedule="step", milestones=(40, 60), gamma=0.1, augment="crop-flip"),
        teachers={"teacher": "resnet56"},
        sources=("80 epochs, SGD lr 0.1 -> 0.01 (epoch 40) -> 0.001 (epoch 60), weight decay 1e-4, batch 256, "
                 "ResNet-8 student: METHODS.md section 2",
                 "momentum 0.9 and crop + flip augmentation: the usual CIFAR recipe (check)",
                 "the paper's teacher is a ResNet-26, not in this registry: a trained resnet56 stands in")),
    Preset(
        "trades-cifar10", "Zhang et al. 2019: TRADES WideResNet-34-10, the robust teacher of ARD / RSLAD / MTARD",
        "cifar10", "wrn-34-10", "trades",
        method_config=dict(beta=6.0, eps=0.031, alpha=0.007, steps=10, eps_warmup=NO_WARMUP),
        train=dict(_CIFAR_SGD, epochs=76, schedule="step", milestones=(74,), gamma=0.1),
        sources=("beta 6, eps 0.031, 10 steps of 0.007, SGD lr 0.1, momentum 0.9, weight decay 2e-4, batch 128, "
                 "76 epochs, lr x0.1 from epoch 75 (1-based), crop + flip: the TRADES code "
                 "(train_trades_cifar10.py)",)),
    Preset(
        "pgd-at-cifar10", "Madry et al. 2018 (SAT): PGD adversarial training of a ResNet-18 on CIFAR-10",
        "cifar10", "resnet18", "pgd_at",
        method_config=dict(eps=CIFAR_EPS, alpha=CIFAR_ALPHA, steps=7, eps_warmup=NO_WARMUP),
        train=dict(_CIFAR_SGD, epochs=205, schedule="step", milestones=(102, 154), gamma=0.1),
        sources=("eps 8/255, 7 steps of 2/255 from a uniform random start, SGD lr 0.1 -> 0.01 (40k steps) -> 0.001 "
                 "(60k steps), 80k steps of batch 128, momentum 0.9, weight decay 2e-4: Madry et al.'s "
                 "cifar10_challenge config (check); 80k steps of 128 = 205 epochs, decays at epochs 102 and 154",
                 "ResNet-18 student: the SAT row of MTARD's table (METHODS.md section 3)")),
    Preset(
        "ard-cifar10", "Goldblum et al. 2020: ARD, ResNet-18 student of the TRADES WRN-34-10 on CIFAR-10",
        "cifar10", "resnet18", "ard",
        method_config=dict(T=30.0, a=1.0, eps=CIFAR_EPS, alpha=CIFAR_ALPHA, steps=10, eps_warmup=NO_WARMUP),
        train=dict(_CIFAR_SGD, epochs=200, schedule="step", milestones=(100, 150), gamma=0.1),
        teachers={"teacher": "wrn-34-10"},
        sources=("T 30, a 1: METHODS.md section 4", _ATTACK_SOURCE,
                 "SGD lr 0.1, x0.1 at epochs 100 and 150, 200 epochs: the ARD code's defaults; momentum 0.9, "
                 "weight decay 2e-4, batch 128 (check)")),
    Preset(
        "rslad-cifar10", "Zi et al. 2021: RSLAD, ResNet-18 student of the TRADES WRN-34-10 on CIFAR-10",
        "cifar10", "resnet18", "rslad",
        method_config=dict(eps=CIFAR_EPS, alpha=CIFAR_ALPHA, steps=10, eps_warmup=NO_WARMUP),
        train=dict(_CIFAR_SGD, **_RSLAD_SCHEDULE),
        teachers={"teacher": "wrn-34-10"},
        sources=(_RSLAD_SOURCE, _ATTACK_SOURCE)),
    Preset(
        "mtard-cifar10", "Zhao et al. 2022: MTARD, ResNet-18 student of a clean ResNet-56 and the TRADES WRN-34-10",
        "cifar10", "resnet18", "mtard",
        method_config=dict(eps=CIFAR_EPS, alpha=CIFAR_ALPHA, steps=10, eps_warmup=NO_WARMUP),
        train=dict(_CIFAR_SGD, **_RSLAD_SCHEDULE),
        teachers={"clean_teacher": "resnet56", "robust_teacher": "wrn-34-10"},
        sources=("ResNet-18 student, SGD lr 0.1 momentum 0.9 wd 2e-4, batch 128, 300 epochs, lr x0.1 at "
                 "215 / 260 / 285, teachers ResNet-56 (clean) and TRADES WRN-34-10 (robust): METHODS.md section 3",
                 _ATTACK_SOURCE, "EBB / NLB defaults (lr_tau 0.001, r_w 0.025, x0.1 at each decay): the method's "
                 "own config")),
)}


def list_presets() -> list[str]:
    """Names of the presets, in the order above."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset ``name``; ``ValueError`` listing the names for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}")
    return PRESETS[name]


def method_settings(preset: Preset, config_cls: type) -> dict[str, Any]:
    """The preset's method settings that ``config_cls`` (a method's Config) accepts.

    With ``--method`` overriding the preset's, the settings the other method shares (eps, alpha,
    steps) carry over and the rest are dropped.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in preset.method_config.items() if k in names}


# ---------------------------------------------------------------------- teachers from checkpoints


def load_checkpoint(arch: str, path: str | os.PathLike, info: DatasetInfo) -> nn.Module:
    """Build ``arch`` for ``info`` and load the checkpoint at ``path`` into it, in eval mode
    (:func:`distill_core.checkpoints.load_checkpoint`, ``weights_only=True``).

    Accepted as found in the papers' released checkpoints: a state dict, or a dict holding one under
    ``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` beside numbers and numpy scalars
    (epoch, best accuracy); ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (torch.compile)
    prefixes; the TRADES WideResNet's unused ``sub_block1``. A state dict without this lab's
    ``normalize`` buffers comes from code that feeds raw [0, 1] pixels (TRADES, ARD, RSLAD, MTARD),
    so the normalisation layer is set to the identity. Anything else is a
    :class:`~distill_core.checkpoints.CheckpointError` (a ``ValueError``) with a one-line message.
    """
    return checkpoints.load_checkpoint(arch, path, info)


def load_teacher(ref: str, info: Callable[[], DatasetInfo], arch: str | None = None,
                 runs_dir: str | os.PathLike | None = None) -> nn.Module:
    """A teacher from ``--teacher ROLE=REF``: ``ARCH:PATH`` or a checkpoint file, else a run or zoo model.

    ``ARCH:PATH`` (ARCH a registered model) loads a bare state dict with :func:`load_checkpoint`; a
    path ending in .pt / .pth / .tar uses ``arch`` (the preset's architecture for the role). Anything
    else is a run folder, a run name under ``runs_dir`` or a zoo name (``spec.resolve_model``).
    ``info`` is called only for a checkpoint (it may load the dataset). Raises ``ValueError``
    (``CheckpointError`` or ``RunError``, one line) for a reference that does not load.
    """
    head, sep, tail = ref.partition(":")
    if sep and head in list_models():
        return load_checkpoint(head, tail, info())
    if ref.endswith(CHECKPOINT_SUFFIXES) and not Path(ref).is_dir():
        if arch is None:
            raise ValueError(f"say which architecture {ref} holds: ROLE=ARCH:{ref}, ARCH one of "
                             f"{', '.join(list_models())}")
        return load_checkpoint(arch, ref, info())
    return resolve_model(ref, runs_dir)
