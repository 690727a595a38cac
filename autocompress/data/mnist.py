"""MNIST and Fashion-MNIST from IDX files (gzipped or not) in the torchvision layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from autocompress.errors import DataError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist(root: str) -> tuple[torch.Tensor, ...]:
    return _load(Path(root) / "MNIST" / "raw", "mnist")


def load_fashion_mnist(root: str) -> tuple[torch.Tensor, ...]:
    return _load(Path(root) / "FashionMNIST" / "raw", "fashion-mnist")


def _load(folder: Path, name: str) -> tuple[torch.Tensor, ...]:
    x_train, y_train, x_test, y_test = (read_idx(_find(folder, f, name)) for f in FILES)
    return (_images(x_train), torch.from_numpy(y_train).long(),
            _images(x_test), torch.from_numpy(y_test).long())


def _images(raw: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(raw).float().div_(255).unsqueeze(1)  # N, 1, 28, 28 in [0, 1]


def _find(folder: Path, stem: str, name: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{name}: {folder / stem}[.gz] not found. The files are expected in the torchvision "
        f"layout under data.root. On this project's machines run "
        f"`../shared/data/fetch-datasets {folder.parent.parent} {name}` (or `make data`); "
        f"elsewhere download the four IDX files of {name} into {folder}."
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {dims}, found {body.size} values")
    return body.reshape(dims).copy()
