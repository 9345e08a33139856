"""Tests of gmgraph.data: seeded splits and loaders, options, and clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmgraph import data
from gmgraph.errors import DataError, GmGraphError

DIGITS_SIZES = (1077, 360, 360)


def _tensors(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.flatten(1).tolist()}


# --- digits ----------------------------------------------------------------------


def test_digits_shapes_sizes_and_info():
    loaders = data.load("digits", batch_size=32)
    train, _, test = loaders
    assert isinstance(loaders, data.Loaders)
    assert data.info(loaders) == data.DataInfo("digits", (1, 8, 8), 10, DIGITS_SIZES)
    assert data.info(test) == data.info(loaders)  # any one loader describes the dataset
    assert train.dataset.num_classes == 10
    x, y = next(iter(train))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) <= 9
    assert tuple(len(loader.dataset) for loader in loaders) == DIGITS_SIZES
    assert len(train) == -(-DIGITS_SIZES[0] // 32)  # drop_last=False keeps the partial batch


def test_digits_split_is_fixed_across_loader_seeds_and_disjoint():
    a = data.load("digits", seed=0)
    b = data.load("digits", seed=123)
    for la, lb in zip(a, b):
        assert torch.equal(la.dataset.tensors[0], lb.dataset.tensors[0])
        assert torch.equal(la.dataset.tensors[1], lb.dataset.tensors[1])
    train, val, test = (_rows(loader.dataset.tensors[0]) for loader in a)
    assert len(train) + len(val) + len(test) == sum(DIGITS_SIZES)  # no image in two splits
    assert not (train & val or train & test or val & test)


def test_digits_split_seed_moves_the_split_and_is_stratified():
    base = data.load("digits").test.dataset.tensors
    moved = data.load("digits", split_seed=1).test.dataset.tensors
    assert not torch.equal(base[0], moved[0])
    counts = torch.bincount(base[1], minlength=10).numpy()
    expected = 0.2 * np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert np.all(np.abs(counts - expected) <= 1)


def test_digits_normalised_with_train_stats():
    train, val, _ = data.load("digits")
    x = train.dataset.tensors[0]
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-5
    assert abs(float(val.dataset.tensors[0].mean())) < 0.1  # same transform, not refitted


def test_train_order_reproducible_from_seed():
    first = next(iter(data.load("digits", seed=7).train))
    again_loader = data.load("digits", seed=7).train
    again = next(iter(again_loader))
    other = next(iter(data.load("digits", seed=8).train))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    # a second pass reshuffles, reproducibly
    second = next(iter(again_loader))
    assert not torch.equal(first[0], second[0])
    fresh = data.load("digits", seed=7).train
    next(iter(fresh))
    assert torch.equal(next(iter(fresh))[0], second[0])


def test_val_and_test_are_not_shuffled():
    _, val, test = data.load("digits", batch_size=1000)
    assert torch.equal(next(iter(val))[0], val.dataset.tensors[0][:1000])
    assert torch.equal(next(iter(test))[0], test.dataset.tensors[0][:1000])


@pytest.mark.parametrize(
    ("image_size", "channels", "shape"),
    [(32, 3, (3, 32, 32)), (16, None, (1, 16, 16)), (None, 3, (3, 8, 8)), (4, 1, (1, 4, 4))],
)
def test_digits_image_size_and_channels(image_size, channels, shape):
    loaders = data.load("digits", image_size=image_size, channels=channels, batch_size=16)
    assert data.info(loaders).shape == shape
    x = loaders.train.dataset.tensors[0]
    assert x.shape[1:] == shape
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4
    if shape[0] == 3:  # grey repeated, not invented colour
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


# --- synthetic ---------------------------------------------------------------------


def test_synthetic_shapes_and_determinism():
    kw = {"shape": (3, 6, 5), "num_classes": 4, "size": (40, 12, 8), "batch_size": 16}
    loaders = data.load("synthetic", **kw)
    assert data.info(loaders) == data.DataInfo("synthetic", (3, 6, 5), 4, (40, 12, 8))
    x, y = next(iter(loaders.train))
    assert x.shape == (16, 3, 6, 5) and y.dtype == torch.int64
    assert torch.bincount(loaders.train.dataset.tensors[1]).tolist() == [10, 10, 10, 10]
    again = data.load("synthetic", **kw, seed=3)
    for la, lb in zip(loaders, again):
        assert torch.equal(la.dataset.tensors[0], lb.dataset.tensors[0])
    other = data.load("synthetic", **kw, split_seed=1)
    assert not torch.equal(loaders.test.dataset.tensors[0], other.test.dataset.tensors[0])


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    train, val, _ = data.load("synthetic", shape=(3, 8, 8), size=(256, 64, 64), batch_size=32)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_val, y_val = _tensors(val)
    with torch.no_grad():
        before = float(loss_fn(model(x_val), y_val))
    for _ in range(3):
        for x, y in train:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    with torch.no_grad():
        after = float(loss_fn(model(x_val), y_val))
    assert after < 0.5 * before


@pytest.mark.parametrize(
    "kw",
    [
        {"shape": (8, 8)},
        {"shape": (3, 0, 8)},
        {"num_classes": 0},
        {"size": (10, 0, 5)},
        {"size": (10, 5)},
        {"image_size": 16},
        {"channels": 3},
    ],
)
def test_synthetic_bad_options(kw):
    with pytest.raises(DataError):
        data.load("synthetic", **kw)


# --- argument errors -----------------------------------------------------------------


def test_names_and_unknown_name():
    assert tuple(data.DATASETS) == (
        "digits",
        "digits16",
        "clutter16",
        "digits16-seg",
        "synthetic",
        "cifar10",
        "cifar100",
        "mnist",
        "fashion-mnist",
        "imagefolder",
    )
    with pytest.raises(DataError) as err:
        data.load("imagenet")
    assert all(name in str(err.value) for name in data.DATASETS)
    with pytest.raises(GmGraphError):
        data.load(None)


@pytest.mark.parametrize(
    "kw",
    [
        {"batch_size": 0},
        {"batch_size": -4},
        {"batch_size": 2.5},
        {"batch_size": True},
        {"num_workers": -1},
        {"image_size": 0},
        {"channels": 2},
        {"augment": True},
    ],
)
def test_bad_options(kw):
    with pytest.raises(DataError):
        data.load("digits", **kw)


def test_info_rejects_foreign_loader():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 1, 2, 2)))
    with pytest.raises(DataError):
        data.info(loader)


def test_infinite_cycles_and_rejects_empty():
    train = data.load("digits", batch_size=500).train  # 500 + 500 + 77
    batches = data.infinite(train)
    assert [len(next(batches)[1]) for _ in range(7)] == [500, 500, 77] * 2 + [500]
    with pytest.raises(DataError):
        next(data.infinite([]))


# --- file-backed datasets: missing files ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "a_file"),
    [
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
        ("cifar100", "cifar-100-python", "meta"),
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
        ("FASHION_MNIST", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
    ],
)
def test_missing_files_say_where(tmp_path, name, folder, a_file):
    with pytest.raises(DataError) as err:
        data.load(name, root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / folder) in message and a_file in message and "http" in message
    with pytest.raises(DataError, match="root=DIR"):
        data.load(name)


def test_missing_imagefolder_says_where(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError) as err:
        data.load("imagefolder", root=tmp_path)
    assert f"{tmp_path}/val/<class>" in str(err.value)
    with pytest.raises(DataError, match="root=DIR"):
        data.load("imagefolder")


# --- file-backed datasets: tiny fakes in the real formats ---------------------------


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 10) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)


def test_fake_mnist_loads_with_holdout(tmp_path):
    _fake_mnist(tmp_path)
    loaders = data.load("mnist", root=tmp_path, batch_size=8)
    assert data.info(loaders) == data.DataInfo("mnist", (1, 28, 28), 10, (27, 3, 10))
    x, y = next(iter(loaders.train))
    assert x.shape == (8, 1, 28, 28) and y.dtype == torch.int64
    train_idx = set(loaders.train.dataset.indices)
    assert not train_idx & set(loaders.val.dataset.indices)
    assert (
        loaders.val.dataset.indices == data.load("mnist", root=tmp_path, seed=5).val.dataset.indices
    )


def test_fake_mnist_resized_to_three_channels(tmp_path):
    _fake_mnist(tmp_path, folder="FashionMNIST")
    loaders = data.load("fashion-mnist", root=tmp_path, image_size=32, channels=3)
    assert data.info(loaders).shape == (3, 32, 32)
    transform = loaders.test.dataset.transform
    pickle.loads(pickle.dumps(transform))  # picklable, so worker processes can use it


def test_partial_mnist_lists_missing_file(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing: t10k-labels-idx1-ubyte\)"):
        data.load("mnist", root=tmp_path)


def _fake_cifar(root: Path, name: str, per_file: int = 10) -> None:
    rng = np.random.default_rng(0)

    def batch(label_key: str, k: int) -> dict:
        images = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        return {"data": images, label_key: [i % k for i in range(per_file)]}

    if name == "cifar10":
        folder, key, k = root / "cifar-10-batches-py", "labels", 10
        files = {f"data_batch_{i}": batch(key, k) for i in range(1, 6)}
        files |= {"test_batch": batch(key, k), "batches.meta": {"label_names": list("abcdefghij")}}
    else:
        folder, key, k = root / "cifar-100-python", "fine_labels", 100
        files = {"train": batch(key, k), "test": batch(key, k)}
        files["meta"] = {"fine_label_names": [str(i) for i in range(k)]}
    folder.mkdir()
    for file, content in files.items():
        (folder / file).write_bytes(pickle.dumps(content))


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks CIFAR files' md5; the fakes only need to exist."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())


@pytest.mark.parametrize(
    ("name", "sizes", "k"), [("cifar10", (45, 5, 10), 10), ("cifar100", (9, 1, 10), 100)]
)
def test_fake_cifar_loads(tmp_path, no_md5, name, sizes, k):
    _fake_cifar(tmp_path, name)
    loaders = data.load(name, root=tmp_path, batch_size=4)
    assert data.info(loaders) == data.DataInfo(name, (3, 32, 32), k, sizes)
    x, _ = next(iter(loaders.train))
    assert x.shape == (4, 3, 32, 32)
    assert abs(float(x.mean())) < 1  # normalised, not raw 0..1


def test_fake_cifar_augment_only_touches_train(tmp_path, no_md5):
    _fake_cifar(tmp_path, "cifar10")
    plain = data.load("cifar10", root=tmp_path)
    aug = data.load("cifar10", root=tmp_path, augment=True)
    torch.manual_seed(0)
    assert torch.equal(aug.val.dataset[0][0], plain.val.dataset[0][0])
    views = [aug.train.dataset[0][0] for _ in range(8)]
    assert views[0].shape == (3, 32, 32)
    assert any(not torch.equal(v, plain.train.dataset[0][0]) for v in views)


def test_corrupt_cifar_is_a_data_error(tmp_path):
    _fake_cifar(tmp_path, "cifar10")  # real torchvision md5 check fails on the fakes
    with pytest.raises(DataError, match="corrupt"):
        data.load("cifar10", root=tmp_path)


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _fake_folder(root: Path, parts: tuple[str, ...] = ("train", "val")) -> None:
    for part in parts:
        for i in range(3):
            _png(root / part / "cat" / f"{i}.png", (200, 10 * i, 0))
            _png(root / part / "dog" / f"{i}.png", (0, 10 * i, 200))


def test_imagefolder_without_test_reuses_val(tmp_path):
    _fake_folder(tmp_path)
    loaders = data.load("imagefolder", root=tmp_path, batch_size=4)
    assert data.info(loaders) == data.DataInfo("imagefolder", (3, 8, 8), 2, (6, 6, 6))
    assert loaders.test.dataset is loaders.val.dataset
    x, y = next(iter(loaders.val))
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 0, 1]


def test_imagefolder_with_test_and_resize(tmp_path):
    _fake_folder(tmp_path, ("train", "val", "test"))
    _png(tmp_path / "test" / "dog" / "big.png", (0, 0, 200), size=(20, 12))
    loaders = data.load("imagefolder", root=tmp_path, image_size=16, channels=1)
    assert data.info(loaders).shape == (1, 16, 16) and data.info(loaders).sizes == (6, 6, 7)
    assert next(iter(loaders.test))[0].shape == (7, 1, 16, 16)


def test_imagefolder_class_mismatch(tmp_path):
    _fake_folder(tmp_path)
    _png(tmp_path / "train" / "emu" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match="class folders"):
        data.load("imagefolder", root=tmp_path)
