"""Model registry: every model maps pixels in [0, 1] to logits.

Normalisation (the dataset's mean / std) is a layer inside the model, so an attack's epsilon
is always in pixel units. Build a model by name, timm-style::

    from distill_core.data import load_dataset
    from distill_core.models import build_model
    _, info = load_dataset("mnist-5k", "test")
    model = build_model("papernot-cnn", info)     # (N, 1, 28, 28) in [0, 1] -> (N, 10) logits

The ResNets and wide ResNets are named, shaped and computed as the papers' own code defines them
(after the Normalize layer), so their released checkpoints load without renaming:
``resnet18`` as kuangliu/pytorch-cifar (ARD, RSLAD, MTARD's student), ``resnet20`` / ``resnet56`` as
chenyaofo/pytorch-cifar-models (MTARD's clean teacher), ``resnet8`` as BSS, ``wrn-*`` as TRADES.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import DatasetInfo

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable:
    """Decorator adding a builder ``f(info, **kwargs) -> nn.Module`` to the registry."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return deco


def list_models() -> list[str]:
    """Names of the registered models, in registration order."""
    return list(_MODELS)


def describe_model(name: str) -> str:
    """One line on what the model is."""
    return _DESCRIPTIONS[name]


def build_model(name: str, info: DatasetInfo, **kwargs) -> nn.Module:
    """Build the model ``name`` for a dataset described by ``info``.

    Raises ``ValueError`` with the list of names for an unknown model, and for a model that
    does not fit the data (a CNN on 2-D points).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(_MODELS)}")
    return _MODELS[name](info, **kwargs)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the model's first layer (buffers, saved in the state dict)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], image: bool = True):
        super().__init__()
        shape = (1, -1, 1, 1) if image else (1, -1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _normalize(info: DatasetInfo) -> Normalize:
    return Normalize(info.mean, info.std, image=info.is_image)


def _require_image(name: str, info: DatasetInfo) -> tuple[int, int, int]:
    if not info.is_image:
        raise ValueError(f"model {name!r} needs images; dataset {info.name!r} is 2-D points: use 'mlp'")
    c, h, w = info.input_shape
    return c, h, w


@register_model("mlp", "multi-layer perceptron for 2-D points or flattened images")
def mlp(info: DatasetInfo, hidden: Sequence[int] = (64, 64), activation: str = "relu") -> nn.Module:
    """Multi-layer perceptron for 2-D points or flattened images."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    d_in = 1
    for s in info.input_shape:
        d_in *= s
    layers: list[nn.Module] = [_normalize(info), nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(d_in, h), act()]
        d_in = h
    layers.append(nn.Linear(d_in, info.num_classes))
    return nn.Sequential(*layers)


def _flat_features(body: nn.Module, shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *shape)).flatten(1).shape[1])


@register_model("papernot-cnn", "Papernot et al. 2016 CNN: 32-32-64-64-200-200 (grey), 64-64-128-128-256-256 (colour)")
def papernot_cnn(info: DatasetInfo, dropout: float = 0.5) -> nn.Module:
    """The defensive-distillation paper's CNN (METHODS.md section 1).

    conv3x3(a)-conv3x3(a)-maxpool-conv3x3(b)-conv3x3(b)-maxpool-FC(h)-dropout-FC(h)-FC(classes);
    (a, b, h) = (32, 64, 200) for grey images, (64, 128, 256) for colour. Convolutions are
    unpadded as in the paper; on inputs smaller than 28 pixels they are padded so the
    network still fits (scikit-learn's 8x8 digits).
    """
    c, h, w = _require_image("papernot-cnn", info)
    a, b, fc = (32, 64, 200) if c == 1 else (64, 128, 256)
    pad = 0 if min(h, w) >= 28 else 1
    body = nn.Sequential(
        nn.Conv2d(c, a, 3, padding=pad), nn.ReLU(),
        nn.Conv2d(a, a, 3, padding=pad), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=pad), nn.ReLU(),
        nn.Conv2d(b, b, 3, padding=pad), nn.ReLU(),
        nn.MaxPool2d(2),
    )
    n = _flat_features(body, (c, h, w))
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(n, fc), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(fc, fc), nn.ReLU(),
        nn.Linear(fc, info.num_classes),
    )
    return nn.Sequential(_normalize(info), body, head)


@register_model("small-cnn", "small fast student CNN: conv16-pool-conv32-pool-FC64")
def small_cnn(info: DatasetInfo, width: int = 16) -> nn.Module:
    """A small, fast student CNN: conv(w)-pool-conv(2w)-pool-FC(64)-FC(classes)."""
    c, h, w = _require_image("small-cnn", info)
    body = nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    )
    n = _flat_features(body, (c, h, w))
    head = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, info.num_classes))
    return nn.Sequential(_normalize(info), body, head)


class ZeroPadShortcut(nn.Module):
    """He et al.'s parameter-free "option A" shortcut: keep every ``stride``-th pixel, append zero channels.

    As BSS codes it (``AvgPool2d(kernel_size=1, stride)`` then ``F.pad`` of the new channels after
    the old ones), so a BSS ResNet's checkpoint computes the same function here.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x)).

    When the shape changes the skip path is one of (identity otherwise, with no keys):

    - ``"projection"``: 1x1 conv + BN named ``shortcut.0`` / ``shortcut.1`` (kuangliu/pytorch-cifar,
      copied by ARD, RSLAD and MTARD's student);
    - ``"downsample"``: the same projection named ``downsample.0`` / ``downsample.1`` (torchvision,
      chenyaofo/pytorch-cifar-models: MTARD's clean ResNet-56 teacher);
    - ``"zero-pad"``: :class:`ZeroPadShortcut`, no parameters (BSS's ResNet-8).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "projection"):
        super().__init__()
        if shortcut not in ("projection", "downsample", "zero-pad"):
            raise ValueError(f"unknown shortcut {shortcut!r}: projection, downsample or zero-pad")
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        skip: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            skip = (ZeroPadShortcut(c_in, c_out, stride) if shortcut == "zero-pad" else
                    nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
        self.skip_name = "downsample" if shortcut == "downsample" else "shortcut"
        self.add_module(self.skip_name, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = getattr(self, self.skip_name)
        return torch.relu(out + (x if skip is None else skip(x)))


class ResNet(nn.Module):
    """CIFAR-style ResNet with our Normalize layer in front, named as the papers' code names it.

    3x3 stem ``conv1`` / ``bn1``, stages ``layer1..N`` of :class:`BasicBlock` (the first block of
    every stage after the first halves the size), global average pool, linear head named
    ``head`` (``"linear"`` in kuangliu's and BSS's code, ``"fc"`` in torchvision's and chenyaofo's).
    The pool is adaptive so 28x28 and 8x8 inputs fit too; on 32x32 inputs it is the references'
    ``F.avg_pool2d(out, 4)`` (ResNet-18) / ``avg_pool2d(out, 8)`` (BSS) / ``AdaptiveAvgPool2d``.
    """

    def __init__(self, info: DatasetInfo, widths: Sequence[int], blocks: Sequence[int],
                 shortcut: str = "projection", head: str = "linear"):
        super().__init__()
        self.normalize = _normalize(info)
        self.conv1 = nn.Conv2d(info.input_shape[0], widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c_in = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks), start=1):
            stage = [BasicBlock(c_in if j == 0 else width, width, 2 if (i > 1 and j == 0) else 1, shortcut)
                     for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
            c_in = width
        self.n_stages, self.head = len(widths), head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.add_module(head, nn.Linear(c_in, info.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(self.normalize(x))))
        for i in range(1, self.n_stages + 1):
            out = getattr(self, f"layer{i}")(out)
        return getattr(self, self.head)(self.pool(out).flatten(1))


@register_model("resnet8", "CIFAR ResNet-8 (16-32-64, 1 block per stage, zero-padding shortcuts), BSS's student")
def resnet8(info: DatasetInfo) -> nn.Module:
    """ResNet-8 as BSS trains it (``ResNet8`` in bhheo/BSS_distillation ``models/resnet.py``).

    Widths 16-32-64, one basic block per stage, parameter-free zero-padding shortcuts
    ("option A"), head ``linear``.
    """
    _require_image("resnet8", info)
    return ResNet(info, (16, 32, 64), (1, 1, 1), shortcut="zero-pad", head="linear")


@register_model("resnet20", "CIFAR ResNet-20 (16-32-64, 3 blocks per stage), chenyaofo/pytorch-cifar-models names")
def resnet20(info: DatasetInfo) -> nn.Module:
    """ResNet-20 as chenyaofo/pytorch-cifar-models defines it (``cifar10_resnet20``; its released weights load).

    Widths 16-32-64, three basic blocks per stage, 1x1 projection ``downsample`` shortcuts, head ``fc``.
    """
    _require_image("resnet20", info)
    return ResNet(info, (16, 32, 64), (3, 3, 3), shortcut="downsample", head="fc")


@register_model("resnet18", "ResNet-18 for 32x32 inputs (64-128-256-512), the ARD / RSLAD / MTARD student")
def resnet18(info: DatasetInfo) -> nn.Module:
    """ResNet-18 as kuangliu/pytorch-cifar defines it, which ARD, RSLAD and MTARD copy for their student.

    3x3 stem, widths 64-128-256-512, two basic blocks per stage, 1x1 projection ``shortcut``s, head ``linear``.
    """
    _require_image("resnet18", info)
    return ResNet(info, (64, 128, 256, 512), (2, 2, 2, 2), shortcut="projection", head="linear")


@register_model("resnet56", "CIFAR ResNet-56 (16-32-64, 9 blocks per stage), MTARD's clean teacher")
def resnet56(info: DatasetInfo) -> nn.Module:
    """ResNet-56 as MTARD's clean CIFAR-10 teacher (chenyaofo/pytorch-cifar-models ``cifar10_resnet56``).

    Widths 16-32-64, nine basic blocks per stage, 1x1 projection ``downsample`` shortcuts, head ``fc``.
    """
    _require_image("resnet56", info)
    return ResNet(info, (16, 32, 64), (9, 9, 9), shortcut="downsample", head="fc")


class WideBasicBlock(nn.Module):
    """Pre-activation wide-ResNet block (BN-ReLU-conv twice), named as in the TRADES reference code."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.convShortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        # As in the reference: the projection shortcut reads the pre-activated input, the identity the raw one.
        return out + (x if self.convShortcut is None else self.convShortcut(pre))


class WideStage(nn.Module):
    """``n`` wide blocks; the first changes width and stride (``NetworkBlock`` in the reference code)."""

    def __init__(self, n: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[WideBasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-depth-k (Zagoruyko & Komodakis 2016) as TRADES trains it, with our Normalize layer in front.

    Parameter names follow the TRADES code (``models/wideresnet.py``, copied unchanged by ARD, RSLAD and
    MTARD: ``conv1``, ``block1..3.layer.i.{bn1,conv1,bn2,conv2,convShortcut}``, ``bn1``, ``fc``), so the
    public TRADES WRN-34-10 checkpoint loads into it (its unused ``sub_block1`` dropped) and computes the
    same logits (the reference's ``avg_pool2d(out, 8)`` is this global pool on 32x32 inputs).
    """

    def __init__(self, info: DatasetInfo, depth: int = 34, widen: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a wide ResNet's depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        c = info.input_shape[0]
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.normalize = _normalize(info)
        self.conv1 = nn.Conv2d(c, widths[0], 3, 1, 1, bias=False)
        self.block1 = WideStage(n, widths[0], widths[1], 1)
        self.block2 = WideStage(n, widths[1], widths[2], 2)
        self.block3 = WideStage(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], info.num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        return self.fc(self.pool(torch.relu(self.bn1(out))).flatten(1))


@register_model("wrn-34-10", "WideResNet-34-10 (46M parameters), the TRADES robust teacher of ARD / RSLAD / MTARD")
def wrn_34_10(info: DatasetInfo) -> nn.Module:
    """WideResNet-34-10: five pre-activation blocks per stage, widths 160-320-640 (TRADES' robust CIFAR teacher)."""
    _require_image("wrn-34-10", info)
    return WideResNet(info, 34, 10)


@register_model("wrn-16-4", "WideResNet-16-4 (2.7M parameters), a small wide ResNet for quick runs and tests")
def wrn_16_4(info: DatasetInfo) -> nn.Module:
    """WideResNet-16-4: two pre-activation blocks per stage, widths 64-128-256."""
    _require_image("wrn-16-4", info)
    return WideResNet(info, 16, 4)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
