from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.config import DataConfig
from autocompress.data import DATASETS, batches, crop_flip, data_shape, load_data
from autocompress.data.mnist import read_idx
from autocompress.errors import DataError


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)


def fake_mnist(root: Path, folder: str, gz: bool, n_train: int = 50, n_test: int = 20) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), gz)
    write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), gz)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test), gz)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_datasets_read_plain_and_gzipped(tmp_path, name, folder, gz) -> None:
    fake_mnist(tmp_path, folder, gz)
    splits = load_data(DataConfig(name=name, root=str(tmp_path), val_size=10))
    assert splits.x_train.shape == (40, 1, 28, 28) and splits.x_val.shape == (6, 1, 28, 28)
    assert splits.x_select is not None and splits.x_select.shape == (4, 1, 28, 28)
    assert splits.x_test.shape == (20, 1, 28, 28) and splits.y_test.dtype == torch.long
    info = DATASETS[name]
    # normalised with the dataset's constants
    raw = read_idx(next((tmp_path / folder / "raw").glob("t10k-images*")))
    expected = (torch.from_numpy(raw).float() / 255 - info.mean[0]) / info.std[0]
    assert torch.allclose(splits.x_test[:, 0], expected, atol=1e-6)


def test_missing_dataset_says_where_and_how(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="fashion_mnist", root=str(tmp_path / "nowhere")))
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in message
    assert "fetch-datasets" in message and "download" in message
    with pytest.raises(DataError, match="cifar-10-batches-py.*fetch-datasets"):
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))


def test_truncated_idx_is_an_error(tmp_path) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_cifar10_batches(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, 8))}
        (folder / name).write_bytes(pickle.dumps(batch))
    splits = load_data(DataConfig(name="cifar10", root=str(tmp_path), val_size=4))
    assert splits.x_train.shape == (36, 3, 32, 32) and splits.x_test.shape == (8, 3, 32, 32)
    assert splits.augment  # CIFAR-10 trains with crop + flip by default
    assert not load_data(DataConfig(name="cifar10", root=str(tmp_path), val_size=4,
                                    augment=False)).augment


def test_digits_split_is_deterministic_and_disjoint() -> None:
    a = load_data(DataConfig(name="digits", val_size=300), seed=0)
    b = load_data(DataConfig(name="digits", val_size=300), seed=0)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)
    assert a.x_select is not None and b.x_select is not None
    assert torch.equal(a.x_select, b.x_select)
    assert len(a.x_train) + len(a.x_val) + len(a.x_select) + len(a.x_test) == 1797
    rows = {tuple(r.flatten().tolist()) for r in a.x_val}
    assert not rows & {tuple(r.flatten().tolist()) for r in a.x_test[:50]} - rows
    assert data_shape(DataConfig(name="digits")) == ((1, 8, 8), 10)


def test_val_size_too_large_is_a_config_error() -> None:
    with pytest.raises(Exception, match="data.val_size"):
        load_data(DataConfig(name="digits", val_size=5000))


def test_train_size_keeps_a_fixed_subset_and_the_same_validation_and_test() -> None:
    full = load_data(DataConfig(name="digits", val_size=300), seed=0)
    small = load_data(DataConfig(name="digits", val_size=300, train_size=200), seed=0)
    assert len(small.x_train) == 200
    assert torch.equal(small.x_train, full.x_train[:200])
    assert torch.equal(small.x_val, full.x_val) and torch.equal(small.x_test, full.x_test)
    with pytest.raises(Exception, match="data.train_size.*at most the"):
        load_data(DataConfig(name="digits", val_size=300, train_size=5000))


def test_user_factory(tmp_path) -> None:
    cfg = DataConfig(factory="tests.data.test_datasets:tiny_factory", args={"n": 30}, val_size=5)
    splits = load_data(cfg)
    assert splits.input_shape == (1, 4, 4) and splits.num_classes == 3 and len(splits.x_val) == 3


def tiny_factory(n: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 3,
            torch.randn(6, 1, 4, 4, generator=g), torch.arange(6) % 3)


def test_crop_flip_takes_a_window_of_the_padded_image() -> None:
    x = torch.randn(6, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [w for dy in range(5) for dx in range(5)
                   for w in (padded[i, :, dy:dy + 8, dx:dx + 8],
                             padded[i, :, dy:dy + 8, dx:dx + 8].flip(-1))]
        assert any(torch.equal(out[i], w) for w in windows)


def test_batches_cover_every_sample_once() -> None:
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(x, y, 3, torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == list(range(10))


def test_the_config_knows_every_built_in_dataset() -> None:
    from autocompress.config import DATASET_NAMES
    from autocompress.data import DATASETS

    assert sorted(DATASETS) == list(DATASET_NAMES)
