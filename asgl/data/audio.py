"""Sequence datasets: the Spiking Heidelberg Digits (SHD) and a WAV class-folder dataset.

Both give samples ``[T, F]`` (float32) with ``T = train.time_steps`` and int labels.

- ``shd``: the official HDF5 files, laid out as tonic (1.7) keeps them, read with h5py::

      <root>/SHD/shd_train.h5    8,156 samples    spikes/times (s), spikes/units (0..699), labels
      <root>/SHD/shd_test.h5     2,264 samples

  Spikes are counted in ``T`` equal bins of the first ``SHD_DURATION_S`` seconds (every SHD
  recording is shorter), one channel per unit: ``F = 700``.

- ``audio_folder`` (MedleyDB-style instrument sounds): ``<root>/<class>/*.wav``, classes in sorted
  order, read with soundfile (mono = mean of channels), resampled to ``data.sample_rate``, cut or
  zero-padded to ``data.audio_seconds``, augmented in training with torch-audiomentations
  (``data.audio_augment``, seeded per draw), and turned into log-mel features over ``T`` frames,
  standardised per clip: ``F = data.n_mels``. Per class, the first 70 % of the files (sorted by name)
  train and the rest test, so neighbouring excerpts of one recording rarely straddle the split.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from asgl.data import (
    GET_HINT,
    DataBundle,
    DataInfo,
    DataMissingError,
    DataProblem,
    DataRun,
    carve_validation,
    human_size,
    take_subset,
)
from asgl.data.events import TRAIN_RATIO, item_seed

if TYPE_CHECKING:
    from asgl.config import AudioAugmentConfig, AudioFolderData, ShdData

SHD_DIR = "SHD"
SHD_FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}
SHD_URL = "https://zenkelab.org/datasets/{name}.zip (unzip it)"
SHD_CHANNELS = 700
SHD_CLASSES = 20
SHD_DURATION_S = 1.4
N_FFT = 1024


# ---------------------------------------------------------------- SHD


def bin_spikes(times: np.ndarray, units: np.ndarray, time_steps: int, duration: float = SHD_DURATION_S) -> torch.Tensor:
    """Spike counts ``[T, 700]``: spike at ``times[i]`` seconds of unit ``units[i]`` goes to step
    ``floor(t / duration * T)``; spikes at or after ``duration`` are dropped."""
    steps = np.floor(times.astype(np.float64) / duration * time_steps).astype(np.int64)
    keep = steps < time_steps
    flat = steps[keep] * SHD_CHANNELS + units[keep].astype(np.int64)
    counts = np.bincount(flat, minlength=time_steps * SHD_CHANNELS)
    return torch.from_numpy(counts.astype(np.float32)).view(time_steps, SHD_CHANNELS)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DataMissingError('SHD needs h5py, an optional extra: pip install "asgl[audio]"') from None
    return h5py


def read_shd(path: Path, time_steps: int) -> TensorDataset:
    """All samples of one SHD file binned into ``[N, T, 700]`` counts, with labels ``[N]``."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            times, units, labels = f["spikes/times"][:], f["spikes/units"][:], f["labels"][:]
    except (OSError, KeyError) as e:
        raise DataMissingError(f"cannot read SHD file {path}: {e}") from e
    x = torch.stack([bin_spikes(t, u, time_steps) for t, u in zip(times, units)])
    return TensorDataset(x, torch.as_tensor(labels.astype(np.int64)))


def check_shd(root: Path) -> list[DataProblem]:
    problems = []
    for name in SHD_FILES.values():
        path = root / SHD_DIR / name
        if not path.is_file():
            url = SHD_URL.format(name=name)
            problems.append(DataProblem(str(path), False, f"missing: download {url} and put {name} here"))
            continue
        try:
            with _h5py().File(path, "r") as f:
                n = len(f["labels"])
                _ = f["spikes/times"], f["spikes/units"]
        except (OSError, KeyError) as e:
            problems.append(DataProblem(str(path), False, f"unreadable ({e}); download it again"))
            continue
        problems.append(DataProblem(str(path), True, f"{n} samples", human_size(path.stat().st_size)))
    return problems


def build_shd(data: ShdData, run: DataRun) -> DataBundle:
    root, T = Path(data.root), run.time_steps
    train_all = read_shd(root / SHD_DIR / SHD_FILES["train"], T)
    test = read_shd(root / SHD_DIR / SHD_FILES["test"], T)
    train, val = carve_validation(train_all, train_all, run.val_fraction, run.seed)
    limit = data.subset
    return DataBundle(take_subset(train, limit), take_subset(val, limit), take_subset(test, limit), info(data, run))


# ---------------------------------------------------------------- WAV class folders


def read_wav(path: Path, sample_rate: int, num_samples: int) -> torch.Tensor:
    """Mono waveform ``[num_samples]`` of a WAV file, resampled to ``sample_rate``, cut or zero-padded."""
    import soundfile as sf
    import torchaudio.functional as AF

    check_wav(path)
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataMissingError(f"cannot read audio file {path}: {e}") from e
    wave = torch.from_numpy(wave).mean(dim=1)
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    if len(wave) >= num_samples:
        return wave[:num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - len(wave)))


def check_wav(path: Path) -> int:
    """Number of frames of a readable, complete audio file; :class:`DataMissingError` naming it otherwise.

    A WAV cut short still opens in libsndfile; its header log then says a chunk "should be" shorter.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataMissingError(f"cannot read audio file {path}: {e}") from e
    if any(line.startswith("data :") and "should be" in line for line in info.extra_info.splitlines()):
        raise DataMissingError(f"audio file {path} is truncated (its data chunk is shorter than its header says)")
    if info.frames == 0:
        raise DataMissingError(f"audio file {path} holds no samples")
    return info.frames


def build_augment(cfg: AudioAugmentConfig, sample_rate: int):
    """A torch-audiomentations ``Compose`` of the configured in-memory transforms, or None if there are none."""
    import torch_audiomentations as ta

    common = dict(p=cfg.prob, sample_rate=sample_rate, output_type="dict")
    make = {
        "gain": lambda: ta.Gain(min_gain_in_db=cfg.gain_db[0], max_gain_in_db=cfg.gain_db[1], **common),
        "colored_noise": lambda: ta.AddColoredNoise(
            min_snr_in_db=cfg.noise_snr_db[0], max_snr_in_db=cfg.noise_snr_db[1], **common
        ),
        "shift": lambda: ta.Shift(min_shift=-cfg.shift, max_shift=cfg.shift, shift_unit="fraction", **common),
        "pitch_shift": lambda: ta.PitchShift(
            min_transpose_semitones=cfg.pitch_semitones[0], max_transpose_semitones=cfg.pitch_semitones[1], **common
        ),
        "polarity": lambda: ta.PolarityInversion(**common),
    }
    if not cfg.transforms:
        return None
    try:
        return ta.Compose([make[name]() for name in cfg.transforms], output_type="dict")
    except ValueError as e:  # PitchShift: no exact resampling ratio in the range at this rate
        raise ValueError(
            f"data.audio_augment: {e} (sample_rate {sample_rate}, pitch_semitones {cfg.pitch_semitones}); "
            "widen pitch_semitones or drop pitch_shift"
        ) from None


class LogMel(torch.nn.Module):
    """Waveform ``[N]`` -> log-mel features ``[T, n_mels]``, standardised over the clip."""

    def __init__(self, sample_rate: int, num_samples: int, time_steps: int, n_mels: int):
        super().__init__()
        import torchaudio.transforms as AT

        hop = max(1, num_samples // time_steps)  # centred frames: num_samples // hop + 1 >= T
        self.sample_rate, self.num_samples, self.time_steps = sample_rate, num_samples, time_steps
        self.mel = AT.MelSpectrogram(sample_rate, n_fft=min(N_FFT, num_samples), hop_length=hop, n_mels=n_mels)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        feats = torch.log(self.mel(wave) + 1e-6).T[: self.time_steps]
        return (feats - feats.mean()) / (feats.std() + 1e-5)


@contextlib.contextmanager
def _python_random_forked() -> Iterator[None]:
    """Python's global random state, restored on exit (as torch.random.fork_rng does for torch's)."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


class AudioClips(Dataset):
    """WAV files -> ``features`` (``[T, n_mels]``) and int labels; waveforms augmented when ``augment`` is given,
    each draw seeded by (seed, index, how many times this index was drawn)."""

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        features: LogMel,
        augment: AudioAugmentConfig | None = None,
        seed: int = 0,
    ):
        self.files, self.labels = files, labels
        self.sample_rate = features.sample_rate
        self.num_samples = features.num_samples
        self.features = features
        self.augment = build_augment(augment, self.sample_rate) if augment is not None else None
        self.seed = seed
        self._draws: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        wave = read_wav(self.files[index], self.sample_rate, self.num_samples)
        if self.augment is not None:
            with torch.random.fork_rng(devices=[]), _python_random_forked():
                seed = item_seed(self.seed, index, self._draws[index])
                torch.manual_seed(seed)
                random.seed(seed)  # torch-audiomentations' PitchShift draws its shift with Python's random
                wave = self.augment(wave[None, None], sample_rate=self.sample_rate).samples[0, 0]
            self._draws[index] += 1
        return self.features(wave), self.labels[index]


def class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its WAV files (sorted), for every sub-folder of ``root`` holding WAV files."""
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    found = {p.name: sorted(f for f in p.iterdir() if f.suffix.lower() == ".wav") for p in folders}
    return {name: files for name, files in found.items() if files}


def check_folder(root: Path) -> list[DataProblem]:
    classes = class_folders(root)
    if len(classes) < 2:
        return [DataProblem(
            str(root), False,
            f"found {len(classes)} class folder(s) with .wav files; expected <root>/<class>/*.wav for at least "
            "2 classes (e.g. the Medley-solos-DB excerpts sorted into one folder per instrument)",
        )]  # fmt: skip
    problems = []
    for name, files in classes.items():
        bad = []
        for f in files:
            try:
                check_wav(f)
            except DataMissingError as e:
                bad.append(str(e))
        size = human_size(sum(f.stat().st_size for f in files))
        message = f"{len(files)} files" + (f", {len(bad)} unreadable: " + "; ".join(bad) if bad else "")
        problems.append(DataProblem(str(root / name), not bad, message, size))
    return problems


def build_folder(data: AudioFolderData, run: DataRun) -> DataBundle:
    classes = class_folders(Path(data.root))
    train_items, test_items = [], []
    for label, files in enumerate(classes.values()):
        n_train = len(files) * TRAIN_RATIO[0] // TRAIN_RATIO[1]
        train_items += [(f, label) for f in files[:n_train]]
        test_items += [(f, label) for f in files[n_train:]]

    def clips(items: list[tuple[Path, int]], augment: bool) -> AudioClips:
        augmentation = data.audio_augment if augment else None
        return AudioClips([f for f, _ in items], [y for _, y in items], features, augmentation, run.seed)

    features = LogMel(data.sample_rate, round(data.audio_seconds * data.sample_rate), run.time_steps, data.n_mels)
    train, val = carve_validation(clips(train_items, True), clips(train_items, False), run.val_fraction, run.seed)
    limit = data.subset
    test = clips(test_items, False)
    described = DataInfo("sequence", data.n_mels, (data.n_mels,), len(classes), run.time_steps)
    return DataBundle(take_subset(train, limit), take_subset(val, limit), take_subset(test, limit), described)


# ---------------------------------------------------------------- dataset-module contract


def info(data: ShdData | AudioFolderData, run: DataRun) -> DataInfo:
    """SHD: 700 channels, 20 classes. audio_folder: ``data.n_mels`` features; its classes are the class
    folders, so without the data ``run.num_classes`` (``model.num_classes``) must say how many there are."""
    steps = run.time_steps
    if data.name == "shd":
        return DataInfo("sequence", SHD_CHANNELS, (SHD_CHANNELS,), SHD_CLASSES, steps)
    classes = run.num_classes
    if classes is None:
        classes = len(class_folders(Path(data.root)))
        if classes < 2:
            raise DataMissingError(
                f"audio_folder: no class folders in {data.root}; set model.num_classes to build the model "
                "without the data"
            )
    return DataInfo("sequence", data.n_mels, (data.n_mels,), classes, steps)


def check(data: ShdData | AudioFolderData, run: DataRun) -> list[DataProblem]:
    root = Path(data.root)
    return check_shd(root) if data.name == "shd" else check_folder(root)


def build(data: ShdData | AudioFolderData, run: DataRun) -> DataBundle:
    missing = [f"  {p.path}: {p.message}" for p in check(data, run) if not p.ok]
    if missing and data.name == "shd":
        missing.append(GET_HINT)
    if missing:
        raise DataMissingError("dataset files are missing or unreadable:\n" + "\n".join(missing))
    return build_shd(data, run) if data.name == "shd" else build_folder(data, run)
