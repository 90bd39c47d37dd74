"""Checkpoints: a state dict read safely from a file or bytes, and fitted to one of the lab's architectures.

The one loader of model weights: runs (``model.pt``), the zoo, teachers given on the command
line, and uploads all come through here::

    model = load_checkpoint("resnet56", "ckpt/resnet56.pt", info)           # build, read, fit; eval mode
    state = read_state_dict(uploaded_bytes, name="upload.pt")                # dict name -> tensor
    fit_state_dict(build_model("resnet56", info), state, name="upload.pt", arch="resnet56")

What loads, always with ``torch.load(weights_only=True)`` (never ``weights_only=False``):

- a state dict (names -> tensors), or a dict holding one under ``state_dict``,
  ``model_state_dict``, ``model`` or ``net`` (nested up to three deep), beside anything else a
  weights-only load accepts: numbers, strings, lists, and numpy scalars (``np.int64(3)``,
  ``np.float64(0.9)``: many public checkpoints store their epoch and best accuracy so). Numpy
  scalars are allowed through ``torch.serialization.safe_globals`` for the duration of the load;
  numpy arrays and every other Python object are refused;
- keys with ``module.`` (DataParallel / DDP) or ``_orig_mod.`` (torch.compile) prefixes;
- TRADES' WideResNet's unused ``sub_block1`` (dropped when the architecture has no such keys);
- the ResNets' and wide ResNets' checkpoints from the papers' code as they are (the models carry
  its names: kuangliu's ResNet-18 of ARD / RSLAD / MTARD, chenyaofo's ResNet-20 / 56, BSS's
  ResNet-8, TRADES' WideResNet), and the lab's own earlier ResNet names (``stem.0`` / ``stem.1`` /
  ``stages.k`` / ``fc``), renamed to those when a state dict has that layout;
- a state dict without this lab's normalisation buffers (``normalize.mean`` / ``normalize.std``;
  ``0.mean`` / ``0.std`` in the Sequential models) comes from code that feeds raw [0, 1] pixels
  (TRADES, ARD, RSLAD, MTARD): with ``identity_normalize`` the normalisation layer is set to the
  identity (mean 0, std 1).

Anything else raises :class:`CheckpointError` (a ``ValueError``) with a one-line message that
says what was found: not a PyTorch file, a pickled object (code a weights-only load never runs),
no state dict in it, or which keys are missing or unexpected and which have another shape.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from .data import DatasetInfo
from .models import BasicBlock, Normalize, ZeroPadShortcut, build_model

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.")
UNUSED_PREFIXES = ("sub_block1.",)          # TRADES' WideResNet keeps a block its forward never uses
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOAD_LOCK = threading.Lock()               # safe_globals edits torch's process-wide allowlist


class CheckpointError(ValueError):
    """A file or byte string that is not a usable checkpoint; the message is one line saying why."""


@functools.cache
def _numpy_scalar_globals() -> list:
    """What unpickling a numpy scalar needs: ``numpy.core.multiarray.scalar`` (under its numpy 1 and
    numpy 2 names), ``numpy.dtype`` and the numeric dtype classes. Object dtypes are not among them."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    kinds = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
             np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128)
    dtype_classes = list(dict.fromkeys(type(np.dtype(k)) for k in kinds))
    names = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    return [scalar, np.dtype, *names, *dtype_classes]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one plain line: terminal colour codes removed, whitespace runs collapsed, cut at ``limit``."""
    flat = " ".join(_ANSI.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _why_unreadable(e: Exception) -> str:
    """What a failed weights-only ``torch.load`` means, in a few words (never torch's advice to drop
    ``weights_only``)."""
    text = _ANSI.sub("", str(e))
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"but got <class '([\w.]+)'>", text)
    if found:
        obj = found.group(1)
        hint = ("; save model.state_dict() rather than the model" if obj.startswith("torch.nn.") or ".models." in obj
                else "")
        return (f"it holds a pickled Python object ({obj}), which a weights-only load refuses to build (it could "
                f"run code): only tensors, numbers, strings, numpy scalars and containers of them load{hint}")
    if isinstance(e, EOFError) or "Ran out of input" in text:
        return "the file is empty or cut short"
    if "zip archive" in text or "central directory" in text:
        return "a damaged or truncated torch.save file"
    if "invalid load key" in text or "Unsupported operand" in text or "magic number" in text:
        return "not a file torch.save wrote"
    refused = re.search(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", text, re.S)
    if refused and "weights_only" not in refused.group(1):
        return f"a weights-only load refused it ({one_line(refused.group(1), 160)})"
    if isinstance(e, pickle.UnpicklingError):
        return "not a file torch.save wrote"
    return f"{type(e).__name__}: {one_line(text.split('weights_only')[0], 160)}"


def _open(source: Source, name: str) -> Any:
    """``source`` as ``torch.load`` takes it: a path (checked to be a file), or bytes (a binary file
    object is read from its current position) wrapped in a buffer."""
    if hasattr(source, "read"):
        source = source.read()
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise CheckpointError(f"{name} is empty (0 bytes), not a checkpoint")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder, not a checkpoint file")
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}")
        return path
    raise TypeError(f"a checkpoint is a path, bytes or a binary file object, not {type(source).__name__}")


def load_object(source: Source, *, name: str | None = None) -> Any:
    """Whatever the checkpoint holds, loaded with ``torch.load(weights_only=True)`` on the CPU, numpy
    scalars allowed; :class:`CheckpointError` (one line) for anything a weights-only load refuses."""
    name = name or _default_name(source)
    src = _open(source, name)
    try:
        with _LOAD_LOCK, torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(src, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot read {name}: {one_line(e.strerror or str(e), 160)}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{name} is not a loadable state dict: {_why_unreadable(e)}") from None


def _default_name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "") or "the checkpoint")


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _describe(obj: Any) -> str:
    """What a checkpoint holds instead of a state dict, in a few words."""
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty dict"
        keys = list(obj)
        shown = ", ".join(repr(k) for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        odd = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
        what = f"a dict with keys {shown}"
        if odd is not None and all(not isinstance(v, Mapping) for v in obj.values()):
            what += f" ({odd!r} is of type {type(obj[odd]).__name__}, not a tensor)"
        else:
            what += f" and no state dict under {', '.join(repr(k) for k in WRAPPER_KEYS)}"
        return what
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def unwrap(obj: Any, *, name: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The state dict in ``obj``: ``obj`` itself, or the dict under a wrapper key (``state_dict``,
    ``model_state_dict``, ``model``, ``net``; up to three levels). :class:`CheckpointError` if none."""
    for _ in range(4):
        if _is_state_dict(obj):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, Mapping) and isinstance(obj.get(k), Mapping)),
                     None)
        if inner is None:
            break
        obj = inner
    raise CheckpointError(f"{name} is not a state dict (a mapping of parameter names to tensors): "
                          f"it holds {_describe(obj)}")


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without their ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key[len(next(p for p in PREFIXES if key.startswith(p))):]
        out[key] = value
    return out


def read_state_dict(source: Source, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict (names -> CPU tensors) from a checkpoint path, its bytes or a binary file object.

    Loaded with ``weights_only=True`` (numpy scalars allowed), unwrapped (:func:`unwrap`) and
    with DataParallel / torch.compile prefixes stripped. ``name`` says what the file is in
    messages (default: the path). Raises :class:`CheckpointError` with a one-line message.
    """
    name = name or _default_name(source)
    return strip_prefixes(unwrap(load_object(source, name=name), name=name))


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _is_legacy_resnet(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` has the lab's earlier ResNet layout (``stem.0`` / ``stages.k`` / ``fc``) and the
    model the papers' (``conv1`` / ``layer{i}.{j}``)."""
    return ("stem.0.weight" in state and any(k.startswith("stages.") for k in state)
            and "conv1.weight" in own and "stem.0.weight" not in own)


def _from_legacy_resnet(model: nn.Module, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                        name: str, target: str) -> dict[str, torch.Tensor]:
    """A state dict in the lab's earlier ResNet layout, under the papers' names the ResNets now use.

    Runs saved before the ResNets took their references' names (:mod:`distill_core.models`) hold
    ``stem.0`` (conv), ``stem.1`` (BN), ``stages.k`` (the k-th basic block, counted across stages),
    its projection ``stages.k.shortcut.{0,1}``, and ``fc``. They become ``conv1``, ``bn1``,
    ``layer{i}.{j}`` (the model's k-th block), ``shortcut.*`` or ``downsample.*`` (the block's name
    for its projection) and ``linear`` or ``fc`` (the model's head). Those models computed the same
    function, except ``resnet8``: its shortcuts were 1x1 projections where BSS's ResNet-8 pads with
    zeros, so such a checkpoint is refused with a :class:`CheckpointError` saying so. A block index
    past the model's blocks is left as it is (reported as unexpected).
    """
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, BasicBlock)]
    head = "linear" if "linear.weight" in own else "fc"
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        if key.startswith("stem.0."):
            new = "conv1." + key[len("stem.0."):]
        elif key.startswith("stem.1."):
            new = "bn1." + key[len("stem.1."):]
        elif key.startswith("fc."):
            new = f"{head}." + key[len("fc."):]
        elif (found := re.match(r"stages\.(\d+)\.(.*)", key)) and int(found.group(1)) < len(blocks):
            block, rest = blocks[int(found.group(1))], found.group(2)
            if rest.startswith("shortcut."):
                rest = f"{block[1].skip_name}.{rest[len('shortcut.'):]}"
                if isinstance(getattr(block[1], block[1].skip_name), ZeroPadShortcut):
                    raise CheckpointError(f"{name} was saved by the lab's earlier {target}, whose 1x1 projection "
                                          f"shortcuts this architecture no longer has (it pads with zeros, as its "
                                          f"reference does): retrain it")
            new = f"{block[0]}.{rest}"
        out[new] = value
    return out


def normalize_keys(model: nn.Module) -> list[tuple[str, str]]:
    """The state-dict keys of the model's :class:`~distill_core.models.Normalize` buffers, per layer:
    ``("normalize.mean", "normalize.std")`` in the ResNets, ``("0.mean", "0.std")`` in the Sequential models."""
    return [(f"{name}.mean", f"{name}.std") for name, m in model.named_modules() if isinstance(m, Normalize) and name]


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, name: str = "the checkpoint",
                   arch: str | None = None, identity_normalize: bool = True) -> nn.Module:
    """Load ``state`` into ``model`` strictly (its train/eval mode untouched) and return ``model``.

    Before comparing keys, a state dict in the lab's earlier ResNet layout (``stem.*``, ``stages.*``,
    ``fc.*``) is renamed to the papers' names (:func:`_from_legacy_resnet`), unexpected TRADES
    ``sub_block1.*`` keys are dropped and, with
    ``identity_normalize``, a state dict holding neither buffer of the model's normalisation layer
    (``normalize.mean`` / ``normalize.std``, ``0.mean`` / ``0.std`` in the Sequential models) gets
    the identity there (mean 0, std 1: the checkpoint's code fed raw pixels). Raises
    :class:`CheckpointError` naming the missing and unexpected keys and the keys of another
    shape, e.g. ``ckpt.pt does not fit 'resnet20': 1 of another shape (fc.weight: checkpoint
    (10, 64), model (10, 32))``.
    """
    own = model.state_dict()
    state = dict(state)
    if _is_legacy_resnet(state, own):
        state = _from_legacy_resnet(model, state, own, name, arch or "ResNet")
    for key in [k for k in state if k.startswith(UNUSED_PREFIXES) and k not in own]:
        del state[key]
    if identity_normalize:
        for mean, std in normalize_keys(model):
            if mean not in state and std not in state:
                state[mean], state[std] = torch.zeros_like(own[mean]), torch.ones_like(own[std])
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    target = repr(arch) if arch else "this architecture"
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"{len(missing)} missing ({_few(missing)})" if missing else "",
            f"{len(unexpected)} unexpected ({_few(unexpected)})" if unexpected else "",
            f"{len(wrong)} of another shape ({_few(wrong, 2)})" if wrong else ""]))
        raise CheckpointError(f"{name} does not fit {target}: {details}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:   # e.g. a tensor that cannot be cast
        raise CheckpointError(f"{name} does not fit {target}: {one_line(str(e), 200)}") from None
    return model


def load_into(model: nn.Module, source: Source, *, name: str | None = None, arch: str | None = None,
              identity_normalize: bool = True) -> nn.Module:
    """:func:`read_state_dict` then :func:`fit_state_dict`: ``model`` with the checkpoint's weights."""
    name = name or _default_name(source)
    return fit_state_dict(model, read_state_dict(source, name=name), name=name, arch=arch,
                          identity_normalize=identity_normalize)


def load_checkpoint(arch: str, source: Source, info: DatasetInfo, *, name: str | None = None,
                    identity_normalize: bool = True, **model_options: Any) -> nn.Module:
    """Build registry model ``arch`` for ``info`` (with ``model_options``) and load the checkpoint at
    ``source`` (a path, bytes or a binary file object) into it; returns it in eval mode on the CPU.

    Raises :class:`CheckpointError` (one line) for a file that is not a usable checkpoint or does
    not fit, and ``ValueError`` for an unknown ``arch``.
    """
    model = build_model(arch, info, **model_options)
    return load_into(model, source, name=name, arch=arch, identity_normalize=identity_normalize).eval()
