"""CIFAR-10/100 and Tiny-ImageNet loaders on tiny fixtures written in the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_fixture_helpers import assert_data_check_round_trip, smoke_train
from fixtures_images import write_cifar10, write_cifar100, write_tiny_imagenet
from torchvision import transforms as T

from asgl.builders import build_data, check_data
from asgl.config import validate_recipe
from asgl.data import DataMissingError
from asgl.data.images import IMAGE_SETS, Cutout, train_transform


def recipe(name: str, root: Path, **data):
    return validate_recipe({"data": {"name": name, "root": str(root), **data}, "train": {"time_steps": 2}})


def normalised(hwc: np.ndarray, name: str) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in IMAGE_SETS[name].mean_std)
    return (torch.from_numpy(hwc).permute(2, 0, 1).float() / 255 - mean) / std


def test_cifar10_splits_labels_and_normalisation(tmp_path):
    truth = write_cifar10(tmp_path)
    bundle = build_data(recipe("cifar10", tmp_path))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (18, 2, 6)
    assert bundle.info.num_classes == 10 and bundle.info.input_size == (32, 32) and bundle.info.time_steps == 2
    assert not set(bundle.train.indices) & set(bundle.val.indices)
    images, labels = truth["train"]
    for pos, idx in enumerate(bundle.val.indices):  # val: ToTensor + Normalize only
        x, y = bundle.val[pos]
        assert y == labels[idx]
        torch.testing.assert_close(x, normalised(images[idx], "cifar10"))
    x, y = bundle.test[3]
    assert y == truth["test"][1][3]
    torch.testing.assert_close(x, normalised(truth["test"][0][3], "cifar10"))


def test_cifar100_fine_labels_and_training_views(tmp_path):
    truth = write_cifar100(tmp_path)
    bundle = build_data(recipe("cifar100", tmp_path, autoaugment=True, cutout=16))
    assert bundle.info.num_classes == 100
    images, labels = truth["train"]
    extremes = normalised(np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8), "cifar100")
    for pos, idx in enumerate(bundle.train.indices[:5]):
        x, y = bundle.train[pos]
        assert y == labels[idx] and x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert extremes.min() - 1e-5 <= x.min() and x.max() <= extremes.max() + 1e-5
    torch.testing.assert_close(bundle.test[0][0], normalised(truth["test"][0][0], "cifar100"))


def test_subset_limits_every_split(tmp_path):
    write_cifar10(tmp_path)
    bundle = build_data(recipe("cifar10", tmp_path, subset=4))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (4, 2, 4)


def test_train_pipeline_order_and_autoaugment(tmp_path):
    r = recipe("cifar10", tmp_path, autoaugment=True, cutout=16)
    steps = [type(s) for s in train_transform(r.data, IMAGE_SETS["cifar10"]).transforms]
    assert steps == [T.RandomCrop, T.RandomHorizontalFlip, T.AutoAugment, T.ToTensor, Cutout, T.Normalize]
    aa = train_transform(r.data, IMAGE_SETS["cifar10"]).transforms[2]
    assert aa.policy == T.AutoAugmentPolicy.CIFAR10
    plain = [type(s) for s in train_transform(recipe("cifar10", tmp_path).data, IMAGE_SETS["cifar10"]).transforms]
    assert plain == [T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    # AutoAugment really runs: over a few draws some output differs from the un-augmented image
    write_cifar10(tmp_path)
    no_geo = recipe("cifar10", tmp_path, autoaugment=True, random_crop=False, hflip=False)
    bundle = build_data(no_geo)
    x0 = normalised(np.asarray(bundle.train.dataset.images[bundle.train.indices[0]]), "cifar10")
    torch.manual_seed(0)
    assert any(not torch.allclose(bundle.train[0][0], x0) for _ in range(10))


def test_cutout_zeroes_one_clipped_square_before_normalize(tmp_path):
    write_cifar10(tmp_path)
    bundle = build_data(recipe("cifar10", tmp_path, cutout=16, random_crop=False, hflip=False))
    idx = bundle.train.indices[0]
    clean = normalised(bundle.train.dataset.images[idx], "cifar10")
    mean, std = (torch.tensor(v) for v in IMAGE_SETS["cifar10"].mean_std)
    torch.manual_seed(1)
    areas = set()
    for _ in range(40):
        x = bundle.train[0][0]
        hole = (x != clean).any(0)
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 8 <= h <= 16 and 8 <= w <= 16
        assert hole.sum() == h * w and rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w  # one solid square
        # zeroed before Normalize: the hole holds (0 - mean) / std
        torch.testing.assert_close(x[:, hole], (-mean / std).view(3, 1).expand(3, h * w))
        areas.add(h * w)
    assert 256 in areas and min(areas) < 256  # full holes inside, clipped ones at the borders


def test_cutout_is_seeded_by_torch():
    img = torch.ones(3, 32, 32)
    torch.manual_seed(5)
    a = Cutout(16)(img)
    torch.manual_seed(5)
    torch.testing.assert_close(Cutout(16)(img), a)
    assert img.min() == 1  # the input is left alone


def test_tiny_imagenet_folder_layout(tmp_path):
    wnids = write_tiny_imagenet(tmp_path, classes=3, per_class=4)
    bundle = build_data(recipe("tiny_imagenet", tmp_path))
    assert bundle.info.num_classes == 200 and bundle.info.input_size == (64, 64)
    assert len(bundle.train) + len(bundle.val) == 12 and len(bundle.test) == 6
    index = {w: i for i, w in enumerate(sorted(wnids))}
    train_samples = bundle.train.dataset.samples
    for path, label in train_samples:
        assert index[Path(path).parent.parent.name] == label
    x, y = bundle.test[0]  # greyscale JPEG -> 3 channels
    assert x.shape == (3, 64, 64) and y == index[wnids[0]]
    assert [y for _, y in (bundle.test[i] for i in range(6))] == [index[wnids[j % 3]] for j in range(6)]
    assert bundle.train[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize(
    "name, write, folder, url",
    [
        ("cifar10", write_cifar10, "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("cifar100", write_cifar100, "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
        ("tiny_imagenet", write_tiny_imagenet, "tiny-imagenet-200", "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
    ],
)
def test_check_and_missing_data(tmp_path, name, write, folder, url):
    r = recipe(name, tmp_path / "data")
    with pytest.raises(DataMissingError) as err:
        build_data(r)
    assert str((tmp_path / "data" / folder).resolve()) in str(err.value) and url in str(err.value)
    rows = check_data(r)
    assert len(rows) == 1 and not rows[0].ok and url in rows[0].message
    assert rows[0].path == str((tmp_path / "data" / folder).resolve())

    write(tmp_path / "data")
    rows = check_data(r)
    assert rows and all(row.ok for row in rows), [(row.path, row.message) for row in rows]
    assert all(row.size for row in rows)
    assert any("images" in row.message for row in rows)


def test_check_flags_a_wrong_class_count(tmp_path):
    write_tiny_imagenet(tmp_path, classes=3)
    rows = check_data(recipe("tiny_imagenet", tmp_path))
    assert not rows[0].ok and "3 classes (expected 200)" in rows[0].message


def test_check_names_the_broken_cifar_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3]))
    rows = {Path(row.path).name: row for row in check_data(recipe("cifar10", tmp_path))}
    assert not rows["data_batch_3"].ok and "unreadable" in rows["data_batch_3"].message
    assert not rows["test_batch"].ok and "missing" in rows["test_batch"].message
    assert not rows["data_batch_5"].ok and "expected the dict" in rows["data_batch_5"].message
    assert rows["data_batch_1"].ok and "4 images" in rows["data_batch_1"].message
    assert rows["batches.meta"].ok and "10 class names" in rows["batches.meta"].message
    with pytest.raises(DataMissingError, match="data_batch_3"):
        build_data(recipe("cifar10", tmp_path))


IMAGE_RECIPES = {
    "cifar10_resnet18": write_cifar10,
    "cifar100_resnet18": write_cifar100,
    "cifar100_resnet18_sg": write_cifar100,
    "cifar100_resnet19": write_cifar100,
    "tiny_imagenet_vgg13": write_tiny_imagenet,
}


@pytest.mark.parametrize("name", IMAGE_RECIPES)
def test_bundled_recipe_passes_data_check_on_fixtures(tmp_path, name):
    assert_data_check_round_trip(tmp_path, name, IMAGE_RECIPES[name])


def test_cli_smoke_train_resnet18_two_steps_on_cifar_fixture(tmp_path):
    write_cifar10(tmp_path / "data")
    epoch, summary = smoke_train(tmp_path, "cifar10_resnet18", [])
    assert np.isfinite(epoch["train_loss"]) and epoch["skipped_steps"] == 0
    assert any(w != pytest.approx(5.0, abs=1e-9) for w in epoch["widths"].values())  # the widths learned
    assert summary["parameters"] == 11_173_962 and summary["test_samples"] == 4
