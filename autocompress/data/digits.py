"""scikit-learn's bundled 8×8 digits (1,797 images): real data for tests that take seconds."""

from __future__ import annotations

import torch

TEST_SIZE = 360


def load(root: str) -> tuple[torch.Tensor, ...]:
    """Deterministic split: a fixed permutation, the last 360 images are the test set."""
    from sklearn.datasets import load_digits

    del root  # bundled with scikit-learn
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    train, test = order[:-TEST_SIZE], order[-TEST_SIZE:]
    return x[train], y[train], x[test], y[test]
