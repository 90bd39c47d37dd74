"""Tiny data roots in the real on-disk formats (no download): MNIST's IDX files and CIFAR-10's python batches."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file as MNIST ships it: magic (0, 0, 0x08 = unsigned byte, ndim), big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 6, gz: bool = False) -> dict:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``, random pixels, labels 0..9 in turn."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, gz)
        arrays[prefix] = (x, y)
    return arrays


def write_cifar(root: Path, n: int = 4, n_test: int | None = None) -> dict:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` as python-2 pickles (protocol 2), random
    pixels; labels 0..9 in turn (so every class is present when ``n`` >= 10)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        size = n_test if (name == "test_batch" and n_test) else n
        data = rng.integers(0, 256, (size, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(size)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name.encode(), "labels": labels, "data": data,
                         "filenames": [b"x.png"] * size}, f, protocol=2)
        batches[name] = (data, labels)
    return batches
