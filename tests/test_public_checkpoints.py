"""The papers' released checkpoints load into the registry's ResNets and wide ResNets without renaming,
and compute the same logits.

Each reference below is a minimal re-implementation of the authors' model definition (same module
names, shapes and forward), written from the file cited above it. Its state dict is saved the way
that repository saves it (bare, DataParallel ``module.`` prefixes, ``{"net": ...}``) and loaded
through :func:`distill_core.checkpoints.load_checkpoint`; the reference fed raw [0, 1] pixels, so
the loaded model's normalisation is the identity. Also: the lab's own earlier ResNet names still load.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_core.checkpoints import CheckpointError, load_checkpoint
from distill_core.data import DatasetInfo
from distill_core.models import Normalize, build_model

CIFAR = DatasetInfo(name="cifar10-like", input_shape=(3, 32, 32), num_classes=10,
                    class_names=tuple(str(i) for i in range(10)), mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2471, 0.2435, 0.2616), embedded=False, default_eps=8 / 255)


# ---------------------------------------------------------------- the references

class KuangliuBlock(nn.Module):
    """kuangliu/pytorch-cifar ``models/resnet.py`` ``BasicBlock``, as copied by ARD
    (goldblum/AdversariallyRobustDistillation ``models/resnet.py`` @ 8860f70a), RSLAD
    (zibojia/RSLAD ``cifar10_models/resnet.py`` @ 53afab34) and MTARD's student
    (zhaoshiji123/MTARD ``mtard/cifar10_models/resnet.py`` @ a46fbc24, identical to RSLAD's)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class KuangliuResNet18(nn.Module):
    """The same files' ``ResNet(BasicBlock, [2, 2, 2, 2])``: head ``linear`` after ``F.avg_pool2d(out, 4)``."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        for i, (width, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            blocks = [KuangliuBlock(c_in, width, stride), KuangliuBlock(width, width, 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = width
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).view(out.size(0), -1))


class ChenyaofoBlock(nn.Module):
    """chenyaofo/pytorch-cifar-models ``pytorch_cifar_models/resnet.py`` @ faf215d8 ``BasicBlock``
    (torchvision names: the projection is ``downsample``); MTARD's clean teacher uses this file
    (zhaoshiji123/MTARD ``cifar10_nat_teacher_models/resnet.py`` @ bd4a912c, ``cifar10_resnet56``)."""

    def __init__(self, c_in, c_out, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ChenyaofoCifarResNet(nn.Module):
    """The same file's ``CifarResNet(BasicBlock, [n] * 3)``: ``conv1`` / ``bn1``, ``layer1..3``,
    ``AdaptiveAvgPool2d``, head ``fc``; n = 3 is ``cifar10_resnet20``, n = 9 ``cifar10_resnet56``."""

    def __init__(self, n, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        c_in = 16
        for i, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2)), start=1):
            down = None
            if stride != 1 or c_in != width:
                down = nn.Sequential(nn.Conv2d(c_in, width, 1, stride, bias=False), nn.BatchNorm2d(width))
            blocks = [ChenyaofoBlock(c_in, width, stride, down)] + [ChenyaofoBlock(width, width) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).view(x.size(0), -1))


class BssZeroPadBlock(nn.Module):
    """bhheo/BSS_distillation ``models/resnet.py`` @ 6a318cb6 ``ZeroPadBlock``: the shortcut is
    ``AvgPool2d(kernel_size=1, stride)`` and the new channels are zeros padded after the old ones."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.AvgPool2d(kernel_size=1, stride=stride))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += F.pad(self.shortcut(x), (0, 0, 0, 0, 0, out.size()[1] - x.size()[1]), "constant", 0)
        return F.relu(out)


class BssResNet8(nn.Module):
    """The same file's ``ResNet8()`` = ``ResNet(ZeroPadBlock, [1, 1, 1])``: head ``linear`` after
    ``avg_pool2d(out, 8)``."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BssZeroPadBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BssZeroPadBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BssZeroPadBlock(32, 64, 2))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.avg_pool2d(out, 8).view(out.size(0), -1))


class TradesWideBlock(nn.Module):
    """yaodongyu/TRADES ``models/wideresnet.py`` @ 9ee26f49 ``BasicBlock`` (copied unchanged by ARD's,
    RSLAD's and MTARD's ``wideresnet.py``): pre-activation; the projection reads the activated input."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.equalInOut = c_in == c_out
        self.convShortcut = None if self.equalInOut else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class TradesNetworkBlock(nn.Module):
    def __init__(self, n, c_in, c_out, stride):
        super().__init__()
        self.layer = nn.Sequential(*[TradesWideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class TradesWideResNet(nn.Module):
    """The same file's ``WideResNet``, with its ``sub_block1`` that ``forward`` never uses."""

    def __init__(self, depth=34, widen_factor=10, num_classes=10):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = TradesNetworkBlock(n, ch[0], ch[1], 1)
        self.sub_block1 = TradesNetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = TradesNetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = TradesNetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.avg_pool2d(self.relu(self.bn1(out)), 8)
        return self.fc(out.view(-1, self.nChannels))


# ---------------------------------------------------------------- helpers

def trained_looking(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine terms, so an identity-looking BN cannot hide a misplaced key."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model.eval()


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def as_released(state: dict, how: str) -> bytes:
    """The bytes of a checkpoint saved as the papers' code saves it."""
    if how == "bare":              # TRADES, MTARD's student, chenyaofo's releases
        return saved(state)
    if how == "module.":           # RSLAD (a DataParallel student), MTARD's clean teacher
        return saved({f"module.{k}": v for k, v in state.items()})
    if how == "net":               # ARD: {'net': state_dict, 'optimizer': ...}; BSS's 'net', re-saved as a state dict
        opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
        return saved({"net": state, "optimizer": opt.state_dict()})
    return saved({"state_dict": state, "epoch": 3})


def assert_same_keys_and_shapes(ours: nn.Module, ref: nn.Module) -> None:
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items() if not k.startswith("normalize.")}
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items() if not k.startswith("sub_block1.")}
    assert mine == theirs


# ---------------------------------------------------------------- the papers' checkpoints

CASES = {
    "resnet18": (KuangliuResNet18, ("net",)),          # as ARD saves it (one save: 45 MB)
    "resnet20": (lambda: ChenyaofoCifarResNet(3), ("bare", "module.", "state_dict")),
    "resnet56": (lambda: ChenyaofoCifarResNet(9), ("module.",)),
    "resnet8": (BssResNet8, ("net",)),
    "wrn-16-4": (lambda: TradesWideResNet(16, 4), ("bare", "module.")),
}


@pytest.mark.parametrize("arch", CASES)
def test_a_released_checkpoint_loads_and_computes_the_same_logits(arch):
    make_ref, saves = CASES[arch]
    torch.manual_seed(0)
    ref = trained_looking(make_ref())
    assert_same_keys_and_shapes(build_model(arch, CIFAR), ref)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = ref(x)
        for how in saves:
            model = load_checkpoint(arch, as_released(ref.state_dict(), how), CIFAR, name=f"{arch}-{how}.pt")
            assert torch.equal(model.normalize.mean, torch.zeros_like(model.normalize.mean))
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_the_trades_wrn_34_10_has_the_released_keys_and_shapes():
    """The 46M-parameter teacher itself, compared on the meta device (no memory, no time)."""
    with torch.device("meta"):
        assert_same_keys_and_shapes(build_model("wrn-34-10", CIFAR), TradesWideResNet(34, 10))


def test_a_released_checkpoint_for_another_depth_is_refused():
    state = ChenyaofoCifarResNet(9).state_dict()
    with pytest.raises(CheckpointError, match="does not fit 'resnet20'.*unexpected .*layer1.3"):
        load_checkpoint("resnet20", saved(state), CIFAR, name="cifar10_resnet56.pt")


# ---------------------------------------------------------------- the lab's earlier names

# The lab's ResNet block before the papers' names: the same block as kuangliu's (1x1 projection when shapes change);
# what differed were the module names around it (below).
OldLabBlock = KuangliuBlock


class OldLabResNet(nn.Module):
    """The lab's ResNet before the papers' names: ``normalize``, ``stem.{0,1}``, flat ``stages.k``, ``fc``."""

    def __init__(self, info, widths, blocks):
        super().__init__()
        self.normalize = Normalize(info.mean, info.std)
        self.stem = nn.Sequential(nn.Conv2d(info.input_shape[0], widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, c_in = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stages.append(OldLabBlock(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, info.num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(self.normalize(x)))).flatten(1))


@pytest.mark.parametrize("arch, widths, blocks", [("resnet20", (16, 32, 64), (3, 3, 3)),
                                                  ("resnet18", (64, 128, 256, 512), (2, 2, 2, 2))])
def test_the_labs_earlier_resnet_names_still_load(arch, widths, blocks):
    torch.manual_seed(0)
    old = trained_looking(OldLabResNet(CIFAR, widths, blocks))
    assert any(k.startswith("stem.0.") for k in old.state_dict()) and "fc.weight" in old.state_dict()
    model = load_checkpoint(arch, saved({"state_dict": old.state_dict()}), CIFAR)
    assert torch.equal(model.normalize.std, old.normalize.std)        # its own normalisation, kept
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), old(x), rtol=1e-5, atol=1e-5)


def test_the_labs_earlier_resnet8_is_refused_in_one_line():
    """Its shortcuts were projections; BSS's ResNet-8 has none to put them in."""
    old = OldLabResNet(CIFAR, (16, 32, 64), (1, 1, 1))
    with pytest.raises(CheckpointError, match="earlier resnet8.*projection shortcuts") as err:
        load_checkpoint("resnet8", saved(old.state_dict()), CIFAR, name="model.pt")
    assert "\n" not in str(err.value)
