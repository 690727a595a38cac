"""CIFAR-10 from the python pickle batches (``cifar-10-batches-py``), as torchvision lays it out."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from autocompress.errors import DataError


def load(root: str) -> tuple[torch.Tensor, ...]:
    folder = Path(root) / "cifar-10-batches-py"
    train = [_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _batch(folder / "test_batch")
    x_train = torch.cat([x for x, _ in train])
    y_train = torch.cat([y for _, y in train])
    return x_train, y_train, x_test, y_test


def _batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise DataError(
            f"cifar10: {path} not found. The python batches are expected in the torchvision "
            f"layout under data.root. On this project's machines run "
            f"`../shared/data/fetch-datasets {path.parent.parent} cifar10` (or `make data`); "
            f"elsewhere download cifar-10-python.tar.gz and unpack it into {path.parent.parent}."
        )
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {exc}") from None
    return torch.from_numpy(data).float().div_(255), torch.from_numpy(labels)
