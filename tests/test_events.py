"""Event datasets on tiny fixtures in tonic's on-disk formats: framing by hand, loaders, splits, cache, check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_fixture_helpers import assert_data_check_round_trip, smoke_train
from fixtures_events import write_aedat2, write_cifar10dvs, write_frame_folder, write_gesture
from torchvision import transforms as T

from asgl.builders import build_data, check_data
from asgl.config import Recipe
from asgl.data import DataMissingError
from asgl.data.events import (
    CIFAR10DVS_CLASSES,
    accumulate_frames,
    cifar10dvs_frames,
    event_count_bins,
    flip_and_roll,
    normalise_and_resize,
    split_cifar10dvs,
    time_bins,
)


def dvs_recipe(root: Path, **data) -> Recipe:
    train = {"time_steps": data.pop("time_steps", 5), "val_fraction": 0.25}
    return Recipe.model_validate(
        {"data": {"name": "dvs_cifar10", "root": str(root), "frame_size": 16, **data}, "train": train}
    )


# ---------------------------------------------------------------- framing against hand-computed frames


def test_event_count_framing_matches_hand_computed_frames():
    # 7 events, T = 3: 7 // 3 = 2 events per frame, the last frame takes the remainder (3 events)
    x = np.array([0, 1, 1, 3, 0, 2, 2])
    y = np.array([0, 0, 0, 2, 1, 3, 3])
    p = np.array([0, 1, 1, 0, 0, 1, 0])
    assert event_count_bins(7, 3).tolist() == [0, 0, 1, 1, 2, 2, 2]
    frames = normalise_and_resize(accumulate_frames(x, y, p, event_count_bins(7, 3), 3, size=4), 4)
    z = [0.0] * 4
    expected = torch.tensor([
        # frame 0: (x0,y0,p0) and (x1,y0,p1): max 1
        [[[1, 0, 0, 0], z, z, z], [[0, 1, 0, 0], z, z, z]],
        # frame 1: (x1,y0,p1) and (x3,y2,p0): max 1
        [[z, z, [0, 0, 0, 1], z], [[0, 1, 0, 0], z, z, z]],
        # frame 2: (x0,y1,p0), (x2,y3,p1), (x2,y3,p0): max 1
        [[z, [1, 0, 0, 0], z, [0, 0, 1, 0]], [z, z, z, [0, 0, 1, 0]]],
    ], dtype=torch.float32)  # fmt: skip
    assert torch.equal(frames, expected)


def test_each_frame_is_divided_by_its_own_maximum_and_empty_frames_stay_zero():
    # 2 events < T = 3: both land in the last frame (the reference's rule), frames 0 and 1 stay empty
    x, y, p = np.array([1, 1]), np.array([2, 2]), np.array([1, 1])
    assert event_count_bins(2, 3).tolist() == [2, 2]
    counts = accumulate_frames(x, y, p, event_count_bins(2, 3), 3, size=4)
    assert counts[2, 1, 2, 1] == 2
    frames = normalise_and_resize(counts, 4)
    assert torch.equal(frames[:2], torch.zeros(2, 2, 4, 4))
    assert frames[2, 1, 2, 1] == 1 and frames.sum() == 1
    # two frames with different peaks are scaled separately
    x, y, p = np.array([0, 0, 0, 3]), np.zeros(4, int), np.zeros(4, int)
    frames = normalise_and_resize(accumulate_frames(x, y, p, np.array([0, 0, 1, 1]), 2, size=4), 4)
    assert frames[0, 0, 0, 0] == 1 and frames[1, 0, 0, 0] == 1 and frames[1, 0, 0, 3] == 1


def test_time_bins_match_hand_computed_indices():
    assert time_bins(np.array([0, 10, 20, 30, 40]), 2).tolist() == [0, 0, 1, 1, 1]
    assert time_bins(np.array([100, 125, 150, 199]), 4).tolist() == [0, 1, 2, 3]
    assert time_bins(np.array([5, 5]), 3).tolist() == [0, 0]


def test_aedat_recording_is_decoded_at_the_right_pixels(tmp_path):
    path = tmp_path / "rec.aedat"
    x, y, p = np.array([5, 5, 120, 7]), np.array([9, 9, 3, 64]), np.array([1, 1, 0, 0])
    write_aedat2(path, x, y, p, np.array([10, 20, 30, 40]))
    frames = cifar10dvs_frames(path, time_steps=2, frame_size=128)  # no resize at 128
    assert frames.shape == (2, 2, 128, 128)
    assert frames[0, 1, 9, 5] == 1 and frames[0].sum() == 1  # two events at one pixel, normalised
    assert frames[1, 0, 3, 120] == 1 and frames[1, 0, 64, 7] == 1 and frames[1].sum() == 2


def test_resize_is_float_interpolation_without_quantisation():
    frames = torch.rand(3, 2, 128, 128)
    out = normalise_and_resize(frames, 48)
    assert out.shape == (3, 2, 48, 48) and out.dtype == torch.float32
    assert len(out.unique()) > 256  # no 8-bit round trip
    # channels are resized independently: a channel of zeros stays zero beside a full one
    frames[:, 0] = 0
    assert normalise_and_resize(frames, 48)[:, 0].abs().max() == 0


# ---------------------------------------------------------------- DVS-CIFAR10 loader and splits


def test_dvs_cifar10_loader_shapes_values_labels(tmp_path):
    write_cifar10dvs(tmp_path, per_class=4)
    bundle = build_data(dvs_recipe(tmp_path))
    assert bundle.info.kind == "event" and bundle.info.input_size == (16, 16) and bundle.info.num_classes == 10
    assert len(bundle.train) + len(bundle.val) == 20 and len(bundle.test) == 20  # 4 per class: 2 train, 2 test
    for ds in (bundle.train, bundle.val, bundle.test):
        frames, label = ds[0]
        assert frames.shape == (5, 2, 16, 16) and frames.dtype == torch.float32
        assert frames.min() >= 0 and frames.max() <= 1 and frames.sum() > 0
    assert [bundle.test[i][1] for i in range(20)] == [c for c in range(10) for _ in range(2)]


def test_ratio_and_reference_splits():
    names = lambda idx: {c: [Path(f"{c}/cifar10_{c}_{i}.aedat") for i in idx] for c in CIFAR10DVS_CLASSES}  # noqa: E731
    index = lambda items: sorted({int(p.stem.rsplit("_", 1)[1]) for p, _ in items})  # noqa: E731
    # full data: both rules give files 0-699 train, 700-999 test, per class
    for mode in ("ratio", "reference"):
        train, test = split_cifar10dvs(names(range(1000)), mode)
        assert len(train) == 7000 and len(test) == 3000
        assert index(train) == list(range(700)) and index(test) == list(range(700, 1000))
    # partial data: ratio keeps 70/30 of what is there, reference keeps the numbering rule
    partial = names([0, 1, 700, 701, 702, 703, 704, 705, 706, 707])
    train, test = split_cifar10dvs(partial, "ratio")
    assert index(train) == [0, 1, 700, 701, 702, 703, 704] and index(test) == [705, 706, 707]
    train, test = split_cifar10dvs(partial, "reference")
    assert index(train) == [0, 1] and index(test) == list(range(700, 708))
    assert [y for _, y in train] == [c for c in range(10) for _ in range(2)]


def test_training_augmentation_flips_and_rolls_reproducibly(tmp_path):
    write_cifar10dvs(tmp_path, per_class=4)
    recipe = dvs_recipe(tmp_path, roll_pixels=3)
    train = build_data(recipe).train
    plain, _ = train.dataset.source(train.indices[0])  # the cached frames, before augmentation
    draws = [train[0][0] for _ in range(12)]
    candidates = [
        (f.flip(-1) if flip else f).roll((dy, dx), (-2, -1))
        for f in [plain] for flip in (False, True) for dy in range(-3, 4) for dx in range(-3, 4)
    ]  # fmt: skip
    for d in draws:
        assert any(torch.equal(d, c) for c in candidates)
    assert len({tuple(d.flatten().nonzero().flatten().tolist()) for d in draws}) > 1  # draws differ
    again = build_data(recipe).train
    assert all(torch.equal(d, again[0][0]) for d in draws)  # same seed -> same sequence of draws


# ---------------------------------------------------------------- cache


def test_frames_are_cached_once_and_a_parameter_change_never_reuses_them(tmp_path, monkeypatch):
    import asgl.data.events as events

    write_cifar10dvs(tmp_path / "data", per_class=4)
    reads = []
    real = events.read_cifar10dvs
    monkeypatch.setattr(events, "read_cifar10dvs", lambda path: reads.append(path) or real(path))
    cache = tmp_path / "cache"

    def first_test_sample(**data):
        return build_data(dvs_recipe(tmp_path / "data", cache_dir=str(cache), **data)).test[0][0]

    a = first_test_sample()
    assert len(reads) == 1 and len(list(cache.rglob("*.pt"))) == 1
    assert torch.equal(first_test_sample(), a) and len(reads) == 1  # served from the cache
    c = first_test_sample(time_steps=3)
    assert len(reads) == 2 and c.shape[0] == 3  # T changed: recomputed, not the stale 5-frame entry
    d = first_test_sample(frame_size=8)
    assert len(reads) == 3 and d.shape[-1] == 8  # size changed: recomputed
    source = reads[0]
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the recording changed on disk
    first_test_sample()
    assert reads[3:] == [source]
    assert len(list(cache.rglob("*.pt"))) == 4


# ---------------------------------------------------------------- missing and broken files


def test_check_names_each_missing_class_folder_and_where_to_get_it(tmp_path):
    problems = check_data(dvs_recipe(tmp_path))
    assert len(problems) == 10 and not any(p.ok for p in problems)
    for cls, problem in zip(CIFAR10DVS_CLASSES, problems):
        assert problem.path == str(tmp_path / "CIFAR10DVS" / cls)
        assert "figshare.com" in problem.message and f"cifar10_{cls}_" in problem.message
    with pytest.raises(DataMissingError) as err:
        build_data(dvs_recipe(tmp_path))
    for cls in CIFAR10DVS_CLASSES:
        assert str(tmp_path / "CIFAR10DVS" / cls) in str(err.value)


def test_check_reports_the_fixture_and_its_split(tmp_path):
    write_cifar10dvs(tmp_path, per_class=4)
    problems = check_data(dvs_recipe(tmp_path))
    assert all(p.ok for p in problems) and "4 recordings" in problems[0].message
    assert problems[-1].message == "split 'ratio': 20 train / 20 test recordings"
    # recordings 0-3 only: the reference split (0-699 train) has no test recording, and says so
    problems = check_data(dvs_recipe(tmp_path, split="reference"))
    assert not problems[-1].ok and "40 train / 0 test" in problems[-1].message


def test_truncated_recording_is_an_error_naming_the_file(tmp_path):
    files = write_cifar10dvs(tmp_path, per_class=1)
    broken = files[0]
    broken.write_bytes(broken.read_bytes()[:-3])
    with pytest.raises(DataMissingError, match=str(broken)):
        cifar10dvs_frames(broken, 5, 16)


def test_tonic_is_imported_lazily_with_a_clear_error_when_missing(monkeypatch, tmp_path):
    code = "import sys, asgl.data.events, asgl.data.audio; assert 'tonic' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
    files = write_cifar10dvs(tmp_path, per_class=1)
    monkeypatch.setitem(sys.modules, "tonic", None)
    monkeypatch.setitem(sys.modules, "tonic.io", None)
    with pytest.raises(DataMissingError, match=r'pip install "asgl\[events\]"'):
        cifar10dvs_frames(files[0], 5, 16)


# ---------------------------------------------------------------- ready-made frames (data.format = "frame_folder")


def frame_folder_recipe(root: Path, time_steps: int = 2, **data) -> Recipe:
    data = {"name": "dvs_cifar10", "format": "frame_folder", "root": str(root), "frame_size": 48,
            "frame_resize": "authors_la_quirk", "roll_pixels": 5, **data}  # fmt: skip
    return Recipe.model_validate(
        {"data": data, "train": {"time_steps": time_steps, "val_fraction": 0.0, "select": "last"}}
    )


def authors_transform(frames: torch.Tensor, flip: bool = False, shifts: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The published loader's steps, written with torchvision's transforms: every frame to a PIL image
    (8 bits, two channels, so mode "LA"), resized to 48x48, back to a tensor; then flip columns, roll."""
    to_pil, resize, to_tensor = T.ToPILImage(), T.Resize((48, 48)), T.ToTensor()
    assert to_pil(frames[0]).mode == "LA"
    out = torch.stack([to_tensor(resize(to_pil(frame))) for frame in frames])
    if flip:
        out = torch.flip(out, dims=(3,))
    return torch.roll(out, shifts=shifts, dims=(2, 3))


def test_frame_folder_test_split_is_the_authors_resize_of_each_file(tmp_path):
    written = write_frame_folder(tmp_path, {"train": 4, "test": 3})
    bundle = build_data(frame_folder_recipe(tmp_path))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (4, 0, 3)
    assert bundle.info.input_size == (48, 48) and bundle.info.time_steps == 2
    for i, (frames, label) in enumerate(written["test"]):
        got, got_label = bundle.test[i]
        assert got_label == label and got.dtype == torch.float32
        assert torch.equal(got, authors_transform(frames))
    assert not (tmp_path / "cache").exists()  # read as stored, never cached


def test_frame_folder_training_flip_and_roll_match_the_authors_on_fixed_draws(tmp_path):
    written = write_frame_folder(tmp_path, {"train": 2, "test": 1})
    train = build_data(frame_folder_recipe(tmp_path)).train
    frames = written["train"][1][0]
    resized, label = train.dataset.source(1)
    assert label == 1
    for flip, shifts in [(False, (0, 0)), (True, (0, 0)), (False, (5, -5)), (True, (-3, 4)), (True, (-5, 5))]:
        assert torch.equal(flip_and_roll(resized, flip, shifts), authors_transform(frames, flip, shifts))
    # the dataset's own draws: each is one flip/roll of the authors' transform, over the whole +-5 range
    candidates = {
        (flip, dy, dx): authors_transform(frames, flip, (dy, dx))
        for flip in (False, True) for dy in range(-5, 6) for dx in range(-5, 6)
    }  # fmt: skip
    seen = set()
    for _ in range(80):
        sample = train[1][0]
        (match,) = [key for key, c in candidates.items() if torch.equal(sample, c)]
        seen.add(match)
    assert {f for f, _, _ in seen} == {False, True}
    assert {dy for _, dy, _ in seen} >= {-5, 5} and {dx for _, _, dx in seen} >= {-5, 5}


def test_frame_folder_check_and_refusals(tmp_path):
    rows = check_data(frame_folder_recipe(tmp_path))
    assert [r.path for r in rows] == [str(tmp_path / "train"), str(tmp_path / "test")]
    assert not any(r.ok for r in rows) and all("missing" in r.message and "<i>.pt" in r.message for r in rows)
    write_frame_folder(tmp_path, {"train": 3, "test": 2})
    rows = check_data(frame_folder_recipe(tmp_path))
    assert all(r.ok for r in rows) and rows[0].message.startswith("3 frame files; 0.pt: [2x2x128x128], label 0")
    with pytest.raises(DataMissingError, match=r"holds 2 frames, but train.time_steps = 3"):
        build_data(frame_folder_recipe(tmp_path, time_steps=3))
    (tmp_path / "test" / "1.pt").rename(tmp_path / "test" / "7.pt")  # numbering with a gap
    with pytest.raises(DataMissingError, match=r"0.pt ... <n-1>.pt and nothing else; unexpected: 7.pt"):
        build_data(frame_folder_recipe(tmp_path))


class LeavesAMarker:
    """Unpickling this would create a file: a stand-in for a frame file that carries code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize(
    "content, message",
    [
        ("code", "cannot read frame file"),
        ("ints", "expected floats in"),
        ("labels", "expected one class index"),
        ("shape", "is not a (frames [T, 2, H, W], target) pair"),
    ],
)
def test_frame_files_that_are_not_frames_are_refused(tmp_path, content, message):
    write_frame_folder(tmp_path, {"train": 1, "test": 1})
    frames = torch.zeros(2, 2, 128, 128)
    marker = tmp_path / "marker"
    item = {
        "code": (frames, LeavesAMarker(marker)),
        "ints": (frames.long(), torch.tensor([1])),
        "labels": (frames, torch.tensor([1, 2])),
        "shape": (frames[:, :1], torch.tensor([1])),
    }[content]
    torch.save(item, tmp_path / "test" / "0.pt")
    problems = check_data(frame_folder_recipe(tmp_path))
    assert problems[0].ok and not problems[1].ok and message in problems[1].message
    assert not marker.exists()


# ---------------------------------------------------------------- DVS Gesture


def gesture_recipe(root: Path) -> Recipe:
    return Recipe.model_validate(
        {
            "data": {"name": "dvs_gesture", "root": str(root), "frame_size": 32},
            "train": {"time_steps": 4, "val_fraction": 0.2},
        }
    )


def test_dvs_gesture_loader_shapes_and_labels(tmp_path):
    write_gesture(tmp_path, {"train": [1, 2], "test": [3]})
    bundle = build_data(gesture_recipe(tmp_path))
    assert bundle.info.num_classes == 11 and bundle.info.input_size == (32, 32)
    assert len(bundle.train) + len(bundle.val) == 22 and len(bundle.test) == 11
    assert sorted(bundle.test[i][1] for i in range(11)) == list(range(11))
    frames, _ = bundle.train[0]
    assert frames.shape == (4, 2, 32, 32) and 0 <= frames.min() and frames.max() <= 1
    assert (frames.flatten(1).sum(1) > 0).all()  # events spread over the whole recording: no empty bin


def test_dvs_gesture_check_names_missing_split_folders(tmp_path):
    write_gesture(tmp_path, {"train": [1]})
    problems = check_data(gesture_recipe(tmp_path))
    assert [p.ok for p in problems] == [True, False]
    assert (
        problems[1].path == str(tmp_path / "DVSGesture" / "ibmGestureTest")
        and "ibmGestureTest.tar.gz" in problems[1].message
    )


# ---------------------------------------------------------------- CLI: data check and smoke train on fixtures

EVENT_RECIPES = {
    "dvs_cifar10_vggsnn": lambda root: write_cifar10dvs(root, indices=[0, 1, 700, 701]),  # reference split
    "dvs_gesture": lambda root: write_gesture(root, {"train": [1], "test": [2]}),
}


@pytest.mark.parametrize("name", EVENT_RECIPES)
def test_bundled_recipe_passes_data_check_on_fixtures(tmp_path, name):
    assert_data_check_round_trip(tmp_path, name, EVENT_RECIPES[name])


@pytest.mark.parametrize("name", EVENT_RECIPES)
def test_cli_smoke_train_on_event_fixture(tmp_path, name):

    EVENT_RECIPES[name](tmp_path / "data")
    epoch, summary = smoke_train(tmp_path, name, ["data.frame_size=16", "train.time_steps=2"])
    assert np.isfinite(epoch["train_loss"]) and epoch["skipped_steps"] == 0
    assert summary["test_samples"] == 4
    assert len(list((tmp_path / "data" / "cache").rglob("*.pt"))) >= 4  # frames went through the disk cache


def test_cli_smoke_train_on_a_frame_folder(tmp_path):
    write_frame_folder(tmp_path / "data", {"train": 4, "test": 3})
    sets = ["data.format=frame_folder", "data.frame_size=16", "train.time_steps=2"]
    epoch, summary = smoke_train(tmp_path, "dvs_cifar10_vggsnn", sets)
    assert np.isfinite(epoch["train_loss"]) and epoch["skipped_steps"] == 0
    assert summary["test_samples"] == 3
