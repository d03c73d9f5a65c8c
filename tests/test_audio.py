"""SHD and WAV class-folder datasets on tiny fixtures in their real formats."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_fixture_helpers import assert_data_check_round_trip, smoke_train
from fixtures_audio import write_shd, write_shd_file, write_wav_folder

from asgl.builders import build_data, check_data
from asgl.config import AudioAugmentConfig, Recipe
from asgl.data import DataMissingError
from asgl.data.audio import bin_spikes, build_augment, read_wav


def shd_recipe(root: Path, time_steps: int = 50) -> Recipe:
    return Recipe.model_validate({"data": {"name": "shd", "root": str(root)}, "train": {"time_steps": time_steps}})


def audio_recipe(root: Path, transforms: list[str] | None = None, **data) -> Recipe:
    augment = {"transforms": transforms if transforms is not None else [], "prob": 1.0}
    return Recipe.model_validate(
        {
            "data": {"name": "audio_folder", "root": str(root), "sample_rate": 8000, "n_mels": 16,
                     "audio_seconds": 0.3, "audio_augment": augment, **data},
            "train": {"time_steps": 20, "val_fraction": 0.25},
        }
    )  # fmt: skip


# ---------------------------------------------------------------- SHD


def test_spike_binning_matches_hand_computed_counts():
    # T = 4 bins of 1.4 s / 4 = 0.35 s; a spike at 1.4 s or later is outside the window
    times = np.array([0.0, 0.1, 0.34, 0.35, 1.0, 1.39, 1.4], dtype=np.float64)
    units = np.array([3, 3, 699, 0, 5, 5, 5])
    counts = bin_spikes(times, units, 4)
    assert counts.shape == (4, 700)
    expected = torch.zeros(4, 700)
    expected[0, 3], expected[0, 699], expected[1, 0], expected[2, 5], expected[3, 5] = 2, 1, 1, 1, 1
    assert torch.equal(counts, expected)


def test_shd_loader_shapes_labels_and_official_split(tmp_path):
    write_shd(tmp_path, n_train=40, n_test=12)
    bundle = build_data(shd_recipe(tmp_path))
    assert bundle.info.kind == "sequence" and bundle.info.input_size == (700,) and bundle.info.num_classes == 20
    assert len(bundle.train) + len(bundle.val) == 40 and len(bundle.test) == 12  # the files' own split
    x, y = bundle.test[3]
    assert x.shape == (50, 700) and x.dtype == torch.float32
    assert x.sum() == 400 and x.min() >= 0  # every spike (all < 1.2 s) counted once
    assert [int(bundle.test[i][1]) for i in range(12)] == [i % 20 for i in range(12)]
    assert x.nonzero()[:, 1].min() >= 105 and x.nonzero()[:, 1].max() < 140  # label 3 uses units 105..139


def test_shd_time_steps_follow_the_recipe(tmp_path):
    write_shd(tmp_path, n_train=8, n_test=4)
    assert build_data(shd_recipe(tmp_path, time_steps=250)).test[0][0].shape == (250, 700)


def test_shd_check_names_each_missing_file_and_where_to_get_it(tmp_path):
    write_shd_file(tmp_path / "SHD" / "shd_train.h5", [np.zeros(1, np.float16)], [np.zeros(1, np.uint16)], [0])
    problems = check_data(shd_recipe(tmp_path))
    assert [p.ok for p in problems] == [True, False]
    assert problems[1].path == str(tmp_path / "SHD" / "shd_test.h5")
    assert "shd_test.h5.zip" in problems[1].message and "zenkelab.org" in problems[1].message
    with pytest.raises(DataMissingError, match="shd_test.h5"):
        build_data(shd_recipe(tmp_path))


def test_broken_shd_file_is_reported(tmp_path):
    write_shd(tmp_path, 4, 4)
    (tmp_path / "SHD" / "shd_test.h5").write_bytes(b"not hdf5")
    problems = check_data(shd_recipe(tmp_path))
    assert not problems[1].ok and "unreadable" in problems[1].message


# ---------------------------------------------------------------- WAV class folders


def test_audio_folder_loader_shapes_labels_and_split(tmp_path):
    write_wav_folder(tmp_path, ["cello", "flute", "piano"], per_class=10)
    bundle = build_data(audio_recipe(tmp_path))
    assert bundle.info.num_classes == 3 and bundle.info.input_size == (16,)
    assert len(bundle.train) + len(bundle.val) == 21 and len(bundle.test) == 9  # 7 / 3 per class
    assert [bundle.test[i][1] for i in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    feats, _ = bundle.test[0]
    assert feats.shape == (20, 16) and torch.isfinite(feats).all()
    assert abs(float(feats.mean())) < 1e-4 and abs(float(feats.std()) - 1) < 1e-3  # standardised per clip
    # different tones give different spectra
    assert not torch.allclose(bundle.test[0][0], bundle.test[3][0], atol=0.1)


def test_wav_is_resampled_and_cut_or_padded(tmp_path):
    (path,) = write_wav_folder(tmp_path, ["a"], per_class=1, sample_rate=16000, seconds=0.25)
    wave = read_wav(path, 8000, 3000)  # 0.25 s at 8 kHz = 2000 samples, padded to 3000
    assert wave.shape == (3000,) and wave[2010:].abs().max() == 0 and wave[:1990].abs().max() > 0.3
    assert read_wav(path, 8000, 500).shape == (500,)
    # a 220 Hz tone keeps its frequency after resampling
    spectrum = torch.fft.rfft(read_wav(path, 8000, 2000)).abs()
    assert abs(int(spectrum.argmax()) * 8000 / 2000 - 220) <= 4


def test_augmentation_is_seeded_and_changes_between_draws(tmp_path):
    write_wav_folder(tmp_path, ["a", "b"], per_class=6)
    recipe = audio_recipe(tmp_path, ["gain", "colored_noise", "shift", "polarity"])
    train = build_data(recipe).train
    plain = build_data(audio_recipe(tmp_path)).train
    draws = [train[0][0] for _ in range(3)]
    assert not torch.allclose(draws[0], draws[1])  # a new draw each time the sample is read
    assert not torch.allclose(draws[0], plain[0][0])  # augmentation is applied
    again = build_data(recipe).train
    assert all(torch.allclose(d, again[0][0]) for d in draws)  # same seed, same draws


def test_pitch_shift_runs_in_memory(tmp_path):
    write_wav_folder(tmp_path, ["a", "b"], per_class=4, sample_rate=16000)
    recipe = audio_recipe(
        tmp_path,
        ["pitch_shift"],
        sample_rate=16000,
        audio_augment={"transforms": ["pitch_shift"], "prob": 1.0, "pitch_semitones": [-2.0, 2.0]},
    )
    feats, _ = build_data(recipe).train[0]
    assert feats.shape == (20, 16) and torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="pitch_semitones"):  # no exact ratio at 8 kHz within ±2 semitones
        build_data(audio_recipe(tmp_path, ["pitch_shift"])).train[0]


@pytest.mark.parametrize("semitones, ratio", [((3.5, 4.0), 5 / 4), ((-4.0, -3.5), 4 / 5)])
def test_pitch_shift_moves_the_frequency(semitones, ratio):
    """A 400 Hz sine comes out at 400 Hz · 2^(s/12), s in the configured range. At 16 kHz the one exact shift in
    each range is 5/4 (12·log2(5/4) = +3.86 semitones), or 4/5 (−3.86)."""
    rate, seconds, tone = 16000, 0.5, 400.0  # 200 whole periods; FFT bins of 1 / 0.5 s = 2 Hz
    wave = torch.sin(2 * math.pi * tone * torch.arange(int(rate * seconds)) / rate)
    augment = build_augment(AudioAugmentConfig(transforms=["pitch_shift"], prob=1.0, pitch_semitones=semitones), rate)
    shifted = augment(wave[None, None].clone(), sample_rate=rate).samples[0, 0]
    assert shifted.shape == wave.shape
    bin_hz = 1 / seconds
    peak = int(torch.fft.rfft(shifted).abs().argmax()) * bin_hz
    low, high = sorted(tone * 2 ** (s / 12) for s in semitones)
    assert low - bin_hz <= peak <= high + bin_hz, peak
    assert abs(peak - tone * ratio) <= bin_hz, peak


def test_pitch_shift_draws_follow_the_run_seed(tmp_path):
    """torch-audiomentations draws the pitch with Python's random: each read is seeded by (seed, item, draw) all
    the same, whatever the process's own random state, and leaves that state as it was."""
    write_wav_folder(tmp_path, ["a", "b"], per_class=2, sample_rate=16000)
    augment = {"transforms": ["pitch_shift"], "prob": 1.0, "pitch_semitones": [-4.0, 4.0]}
    recipe = audio_recipe(tmp_path, ["pitch_shift"], sample_rate=16000, audio_augment=augment)
    reads = []
    for outside in range(4):
        random.seed(outside)  # some other code's use of Python's random
        train = build_data(recipe).train
        state = random.getstate()
        reads.append([train[0][0] for _ in range(3)])
        assert random.getstate() == state
    assert all(torch.equal(a, b) for other in reads[1:] for a, b in zip(reads[0], other))
    assert not torch.equal(reads[0][0], reads[0][1]) or not torch.equal(reads[0][1], reads[0][2])  # drawn anew


def test_truncated_wav_is_an_error_naming_the_file(tmp_path):
    files = write_wav_folder(tmp_path, ["a", "b"], per_class=3)
    broken = files[1]
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    problems = check_data(audio_recipe(tmp_path))
    assert [p.ok for p in problems] == [False, True] and str(broken) in problems[0].message
    with pytest.raises(DataMissingError, match=str(broken)):
        read_wav(broken, 8000, 2400)
    with pytest.raises(DataMissingError, match=str(broken)):
        build_data(audio_recipe(tmp_path))


def test_audio_check_explains_the_expected_layout(tmp_path):
    problems = check_data(audio_recipe(tmp_path / "missing"))
    assert len(problems) == 1 and not problems[0].ok
    assert problems[0].path == str(tmp_path / "missing") and "<root>/<class>/*.wav" in problems[0].message


# ---------------------------------------------------------------- CLI: data check and smoke train on fixtures

AUDIO_RECIPES = {
    "shd_rnn": (lambda root: write_shd(root, n_train=12, n_test=4), []),
    "medleydb_audio": (
        lambda root: write_wav_folder(root, ["cello", "flute"], per_class=6),
        ["data.sample_rate=8000", "data.audio_seconds=0.25", "data.n_mels=16"],
    ),
}


@pytest.mark.parametrize("name", AUDIO_RECIPES)
def test_bundled_recipe_passes_data_check_on_fixtures(tmp_path, name):
    assert_data_check_round_trip(tmp_path, name, AUDIO_RECIPES[name][0])


@pytest.mark.parametrize("name", AUDIO_RECIPES)
def test_cli_smoke_train_on_audio_fixture(tmp_path, name):

    write, extra = AUDIO_RECIPES[name]
    write(tmp_path / "data")
    epoch, summary = smoke_train(tmp_path, name, ["train.time_steps=10", *extra])
    assert np.isfinite(epoch["train_loss"]) and epoch["skipped_steps"] == 0
    assert summary["test_samples"] == 4
    if name == "shd_rnn":
        assert summary["parameters"] == 230_400  # the recipe's 700 -> 240 -> 20 network, unchanged
