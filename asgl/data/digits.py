"""scikit-learn's 8x8 digits: real data that ships with scikit-learn, the embedded default.

1,797 grey 8x8 images of 10 classes, used at their native size; 20 % held out as the test set
(stratified, fixed seed), the validation split carved from the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import TensorDataset

from asgl.data import DataBundle, DataInfo, DataProblem, DataRun, carve_validation, take_subset

if TYPE_CHECKING:
    from asgl.config import DigitsData

IMAGE_SIZE = 8
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # the test split is fixed whatever the run seed


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 8, 8] normalised to zero mean and unit std, and labels [N]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(d.target, dtype=torch.long)


def info(data: DigitsData, run: DataRun) -> DataInfo:
    """Grey 8x8 images of 10 classes."""
    return DataInfo("static", 1, (IMAGE_SIZE, IMAGE_SIZE), 10, run.time_steps)


def build(data: DigitsData, run: DataRun) -> DataBundle:
    from sklearn.model_selection import train_test_split

    x, y = load_digits_tensors()
    idx_train, idx_test = train_test_split(
        range(len(y)), test_size=TEST_FRACTION, stratify=y.numpy(), random_state=SPLIT_SEED
    )
    train_all = TensorDataset(x[idx_train], y[idx_train])
    train, val = carve_validation(train_all, train_all, run.val_fraction, run.seed)
    test = TensorDataset(x[idx_test], y[idx_test])
    limit = data.subset
    return DataBundle(take_subset(train, limit), take_subset(val, limit), take_subset(test, limit), info(data, run))


def check(data: DigitsData, run: DataRun) -> list[DataProblem]:
    x, _ = load_digits_tensors()
    return [DataProblem("sklearn.datasets.load_digits", True, f"embedded, {len(x)} images", "")]
