"""The recipe schema: one pydantic model per TOML section, defaults documented in place.

A recipe is a TOML file with the sections ``[run] [data] [model] [neuron] [surrogate] [noise]
[optim] [train]``. ``[data]`` and ``[model]`` are chosen by their ``name`` and ``[neuron]`` by its
``model``: each dataset family, model family and neuron model has its own section model with only the keys
it uses. Unknown keys, keys the chosen
component does not use, wrong types and out-of-range values are errors that name the key, the value
and what was expected, with a "did you mean" for typos (see :func:`format_validation_error`).
``--set a.b=value`` overrides are applied to the raw mapping before validation, so they are typed by
the schema too, and an override that fails is reported as that ``--set`` flag.

Adding a dataset or a model: its module and registry entry (asgl.data.DATASETS, asgl.models.MODELS)
and its section here, listed in DATA_SECTIONS or MODEL_SECTIONS; tests/test_registries.py checks that
every registry and the schema name the same things.

This module imports no torch: the CLI validates a recipe before any heavy import.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import tomllib
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from asgl.choices import Amplitude, Granularity, NeuronModel, NormKind, Reset, Storage, TrainingSpike, WidthGrad
from asgl.errors import RecipeError  # re-exported here
from asgl.trust import is_import_path


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated.

    ``used_only_by`` lists keys that only some values of another key use: key -> (that key, what its
    values are called, the values that use it). Setting such a key otherwise is an error; the key is
    left out of the section's dump when unused, so a dumped recipe validates again.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    used_only_by: ClassVar[dict[str, tuple[str, str, tuple[str, ...]]]] = {}

    @model_validator(mode="after")
    def _keys_in_use(self) -> Section:
        for key, (chooser, kind, values) in self.used_only_by.items():
            chosen = getattr(self, chooser)
            if key in self.model_fields_set and chosen not in values:
                raise PydanticCustomError(
                    "unused_key",
                    "{key}: not a key of {kind} {chosen} (only of {values})",
                    {"key": key, "kind": kind, "chosen": repr(chosen), "values": ", ".join(map(repr, values))},
                )
        return self

    @model_serializer(mode="wrap")
    def _dump_keys_in_use(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key, (chooser, _, values) in self.used_only_by.items():
            if getattr(self, chooser) not in values:
                data.pop(key, None)
        return data


class RunConfig(Section):
    name: str = Field(
        "run", description="Run name, a plain folder name; the run folder is <out_dir>/<name>-<timestamp>."
    )
    seed: int = Field(0, ge=0, description="Seed of every random draw (weights, data order, masks).")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = cuda if available.")
    out_dir: str = Field("runs", description="Parent folder of run folders.")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (slower on GPU).")
    threads: int | None = Field(
        None, ge=1, description="CPU threads per process (torch.set_num_threads); None = PyTorch's default."
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        """A run name names one folder inside ``out_dir``: no path separators, no ``..``, not empty."""
        if not name.strip():
            raise ValueError("a run name must not be empty")
        if re.search(r"[/\\\x00-\x1f]", name) or ".." in name:
            raise ValueError("a run name is a plain folder name: no '/', '\\', '..' or control characters")
        return name


class AudioAugmentConfig(Section):
    """torch-audiomentations transforms applied in memory to training waveforms."""

    transforms: list[Literal["gain", "colored_noise", "shift", "pitch_shift", "polarity"]] = Field(
        ["gain", "colored_noise", "shift", "polarity"], description="Enabled transforms ([] = no augmentation)."
    )
    gain_db: tuple[float, float] = Field((-12.0, 6.0), description="Gain range in dB.")
    noise_snr_db: tuple[float, float] = Field((10.0, 40.0), description="Coloured-noise SNR range in dB.")
    shift: float = Field(0.2, ge=0, le=1, description="Max time shift as a fraction of the clip.")
    pitch_semitones: tuple[float, float] = Field((-2.0, 2.0), description="Pitch shift range (slow on CPU).")
    prob: float = Field(0.5, ge=0, le=1, description="Probability of applying each transform.")


# ---------------------------------------------------------------- data: one section per dataset family


class DataSection(Section):
    """Keys of every dataset: how the loader reads it. ``name`` picks the dataset and so its section."""

    name: str
    num_workers: int = Field(0, ge=0, description="DataLoader workers (0 = main process).")
    pin_memory: bool | None = Field(None, description="None = on when training on CUDA.")
    persistent_workers: bool = True
    subset: int | None = Field(None, ge=1, description="Use only the first N samples of every split (smoke runs).")


class DigitsData(DataSection):
    """scikit-learn's 8x8 digits: embedded, no files, no augmentation."""

    name: Literal["digits"] = "digits"


class FileData(DataSection):
    """A dataset read from files under ``root``."""

    root: str = Field("data", description="Dataset folder; `asgl data check` says what must be inside.")


class ImageData(FileData):
    """Static images: CIFAR-10/100 (python version), Tiny-ImageNet (JPEG folders)."""

    name: Literal["cifar10", "cifar100", "tiny_imagenet"] = "cifar10"
    autoaugment: Literal["off", "torchvision", "reference"] = Field(
        "off",
        description="AutoAugment with the CIFAR-10 policy: torchvision's, or the published runs' own "
        "(docs/parity.md); true and false, as older recipes wrote it, mean torchvision and off.",
    )
    autoaugment_fill: int = Field(
        0, ge=0, le=255, description="Grey level AutoAugment fills uncovered pixels with (the published runs: 128)."
    )

    @field_validator("autoaugment", mode="before")
    @classmethod
    def _autoaugment_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return "torchvision" if value else "off"
        return value

    cutout: int = Field(0, ge=0, description="Cutout hole size in pixels (one hole), 0 = off.")
    random_crop: bool = True
    hflip: bool = True


class EventData(FileData):
    """Event streams of a DVS camera, framed into T frames and cached."""

    frame_size: int = Field(48, ge=4, description="Event frames are resized to frame_size x frame_size.")
    frame_resize: Literal["float", "authors_la_quirk"] = Field(
        "float",
        description="float: antialiased bilinear on float frames; authors_la_quirk: the published runs' resize of "
        "8-bit two-channel Pillow images, which masks the first polarity by the second (docs/parity.md).",
    )
    roll_pixels: int = Field(5, ge=0, description="Train augmentation: random roll of both axes by +-N px.")
    cache_dir: str | None = Field(None, description="Frame cache folder; None = <root>/cache.")


class DvsGestureData(EventData):
    name: Literal["dvs_gesture"] = "dvs_gesture"


class DvsCifar10Data(EventData):
    name: Literal["dvs_cifar10"] = "dvs_cifar10"
    split: Literal["ratio", "reference"] = Field("ratio", description="Per-class 70/30, or the reference's split.")
    format: Literal["aedat", "frame_folder"] = Field(
        "aedat",
        description="aedat: asgl frames the original recordings under root/CIFAR10DVS; frame_folder: ready-made "
        "frames root/train/<i>.pt and root/test/<i>.pt, each (frames [T, 2, 128, 128], target), as the authors read them.",
    )


class ShdData(FileData):
    """Spiking Heidelberg Digits (HDF5 files), binned into T steps."""

    name: Literal["shd"] = "shd"


class AudioFolderData(FileData):
    """WAV files in one folder per class, turned into log-mel features."""

    name: Literal["audio_folder"] = "audio_folder"
    sample_rate: int = Field(16000, ge=1000)
    n_mels: int = Field(64, ge=1)
    audio_seconds: float = Field(2.0, gt=0, description="Audio clips are cut or padded to this length.")
    audio_augment: AudioAugmentConfig = Field(default_factory=AudioAugmentConfig)


DATA_SECTIONS: tuple[type[DataSection], ...] = (
    DigitsData, ImageData, DvsGestureData, DvsCifar10Data, ShdData, AudioFolderData
)  # fmt: skip
DataConfig = Annotated[Union[DATA_SECTIONS], Field(discriminator="name")]  # noqa: UP007


# ---------------------------------------------------------------- model.layers (model.name = "sequential")
# A layer is a table with exactly one of the keys below, or a short string ("conv64", "maxpool", ...).


class ConvLayer(Section):
    conv: int = Field(ge=1, description="Output channels.")
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: int | None = Field(None, ge=0, description="None = kernel // 2.")
    norm: bool = Field(True, description="Followed by the recipe's norm (neuron.norm); the conv has no bias then.")
    lif: bool = Field(True, description="Followed by a LIF layer.")


class LinearLayer(Section):
    linear: int = Field(ge=1, description="Output features; the input must be flat (add 'flatten' first).")
    norm: bool = Field(True, description="Followed by the recipe's norm; the linear layer has no bias then.")
    lif: bool = Field(True, description="Followed by a LIF layer.")


class PoolLayer(Section):
    pool: Literal["avg", "max"]
    size: int = Field(2, ge=1, description="Window and stride.")


class FlattenLayer(Section):
    flatten: Literal[True] = True


class DropoutLayer(Section):
    dropout: float = Field(ge=0, lt=1)


class ResidualLayer(Section):
    residual: list[LayerSpec] = Field(min_length=1, description="The block; its output is added to its input.")
    lif: bool = Field(True, description="A LIF layer after the sum.")


LAYER_KINDS = ("conv", "linear", "pool", "flatten", "dropout", "residual")
SHORT_LAYERS = {  # short string -> table
    r"conv(\d+)": lambda m: {"conv": int(m[1])},
    r"linear(\d+)": lambda m: {"linear": int(m[1])},
    r"(avg|max)pool(\d*)": lambda m: {"pool": m[1], "size": int(m[2] or 2)},
    r"flatten": lambda m: {"flatten": True},
    r"dropout(0?\.\d+)": lambda m: {"dropout": float(m[1])},
}


def _expand_short_layer(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for pattern, table in SHORT_LAYERS.items():
        if m := re.fullmatch(pattern, value.strip()):
            return table(m)
    raise ValueError(
        f"unknown layer {value!r}: expected conv<channels>, linear<features>, avgpool[size], maxpool[size], "
        "flatten, dropout<p> or a table with one of the keys " + ", ".join(LAYER_KINDS)
    )


def _layer_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [k for k in LAYER_KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    return next((k for k in LAYER_KINDS if k in type(value).model_fields), None)


LayerSpec = Annotated[
    Union[
        Annotated[ConvLayer, Tag("conv")],
        Annotated[LinearLayer, Tag("linear")],
        Annotated[PoolLayer, Tag("pool")],
        Annotated[FlattenLayer, Tag("flatten")],
        Annotated[DropoutLayer, Tag("dropout")],
        Annotated[ResidualLayer, Tag("residual")],
    ],
    Discriminator(
        _layer_kind,
        custom_error_type="layer_kind",
        custom_error_message="a layer is a table with exactly one of the keys " + ", ".join(LAYER_KINDS),
    ),
    BeforeValidator(_expand_short_layer),
]
ResidualLayer.model_rebuild()


# ---------------------------------------------------------------- model: one section per model family


class ModelSection(Section):
    """Keys of every model. ``name`` picks the model and so its section."""

    name: str
    num_classes: int | None = Field(None, ge=2, description="None = taken from the dataset.")
    in_channels: int | None = Field(None, ge=1, description="None = taken from the dataset.")
    readout: Literal["mean", "last", "max"] = Field("mean", description="How per-step logits become a prediction.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier (training only).")


class ConvModel(ModelSection):
    """Convolutional models, on images or event frames."""

    channels_last: bool = Field(False, description="NHWC memory layout of the weights and inputs.")


class DigitsConvNetConfig(ConvModel):
    name: Literal["digits_convnet"] = "digits_convnet"
    hidden: int = Field(240, ge=1, description="Units of the hidden fully connected LIF layer.")


class ResNetConfig(ConvModel):
    name: Literal["resnet18", "resnet19", "resnet34"] = "resnet18"
    init: Literal["kaiming", "torch_default"] = Field(
        "kaiming", description="kaiming = He-normal conv weights; torch_default = PyTorch's own layer init."
    )


class VGGConfig(ConvModel):
    name: Literal["vggsnn2", "vgg11", "vgg13"] = "vggsnn2"
    init: Literal["kaiming", "reference", "torch_default"] = Field(
        "kaiming", description="reference = N(0, 0.5^2) VGG init; torch_default = PyTorch's own layer init."
    )


class RecurrentSNNConfig(ModelSection):
    name: Literal["recurrent_snn"] = "recurrent_snn"
    hidden: int = Field(240, ge=1, description="Hidden LIF units.")
    recurrent: bool = Field(True, description="Hidden units also receive their own previous output.")
    channels_last: ClassVar[bool] = False  # sequences [B, T, F] have no memory layout to choose


class SequentialConfig(ConvModel):
    """A network written in the recipe: ``layers``, then dropout and a linear classifier (docs/research.md)."""

    name: Literal["sequential"] = "sequential"
    layers: list[LayerSpec] = Field(min_length=1, description="The layers, in order (docs/research.md).")
    init: Literal["kaiming", "reference", "torch_default"] = Field(
        "kaiming", description="reference = N(0, 0.5^2); torch_default = PyTorch's own layer init."
    )


# user builders are named by their import path; in messages and error locations they go by this tag
CUSTOM_MODEL = "package.module:function"


class CustomModelConfig(ConvModel):
    """A user builder ``(recipe, info) -> nn.Module``, imported by its path (docs/research.md)."""

    name: str = Field(description="package.module:function")

    @field_validator("name")
    @classmethod
    def _import_path(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name):
            raise ValueError(f"expected {CUSTOM_MODEL!r}, a builder (recipe, info) -> nn.Module")
        return name


def section_names(sections: tuple[type[Section], ...]) -> dict[str, type[Section]]:
    """Every ``name`` the sections accept -> its section model."""
    return {name: cls for cls in sections for name in get_args(cls.model_fields["name"].annotation)}


def _model_tag(value: Any) -> Any:
    """The union tag of a ``[model]`` table: its name, or :data:`CUSTOM_MODEL` for an import path."""
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return CUSTOM_MODEL if isinstance(name, str) and is_import_path(name) else name


MODEL_SECTIONS: tuple[type[ModelSection], ...] = (
    DigitsConvNetConfig, ResNetConfig, VGGConfig, RecurrentSNNConfig, SequentialConfig
)  # fmt: skip
DATASET_SECTIONS = section_names(DATA_SECTIONS)
MODEL_NAME_SECTIONS = section_names(MODEL_SECTIONS) | {CUSTOM_MODEL: CustomModelConfig}
ModelConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(name)] for name, cls in MODEL_NAME_SECTIONS.items())],  # noqa: UP007
    Discriminator(_model_tag),
]


# ---------------------------------------------------------------- neuron: one section per neuron model


class NeuronSection(Section):
    """The keys of every neuron model (asgl.neuron.LIF takes the same names), and the norm before each layer.
    ``model`` picks the model and so its section: each model has only its own keys."""

    model: NeuronModel
    spike: TrainingSpike = Field("asgl", description="Spike function in training.")
    threshold: float = Field(1.0, gt=0)
    learn_threshold: bool = False
    reset: Reset = "hard"
    amplitude: Amplitude = Field("threshold", description="Spike amplitude theta (reference) or 1.")
    norm: NormKind = "tdbn"
    backend: Literal["auto", "fused", "stepwise", "cpu_kernel", "triton", "compiled"] = Field(
        "auto",
        description="auto = triton on CUDA, cpu_kernel (numba) on CPU, else fused; compiled = torch.compile (opt-in).",
    )
    width_grad: WidthGrad = Field(
        "all", description="Width gradient from every element, or analog ones only (extension)."
    )


class IFConfig(NeuronSection):
    """Integrate-and-fire: LIF without leak."""

    model: Literal["if"] = "if"


class LIFConfig(NeuronSection):
    """Leaky integrate-and-fire (the default)."""

    model: Literal["lif"] = "lif"
    decay: float = Field(0.5, gt=0, lt=1, description="Initial leak gamma = sigmoid(d); d is learned.")
    learn_decay: bool = True


class ALIFConfig(LIFConfig):
    """Adaptive-threshold LIF: threshold theta + beta*a, with a = rho*a + s after each step."""

    model: Literal["alif"] = "alif"  # type: ignore[assignment]
    beta: float = Field(0.5, ge=0, description="Threshold rise per spike (adaptation strength).")
    rho: float = Field(0.9, gt=0, lt=1, description="Initial adaptation decay rho = sigmoid(r).")
    learn_rho: bool = True


def _neuron_tag(value: Any) -> Any:
    """The union tag of a ``[neuron]`` table: its model (default lif)."""
    return value.get("model", "lif") if isinstance(value, dict) else getattr(value, "model", None)


NEURON_SECTIONS: dict[str, type[NeuronSection]] = {
    get_args(cls.model_fields["model"].annotation)[0]: cls for cls in (LIFConfig, IFConfig, ALIFConfig)
}
NeuronConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(name)] for name, cls in NEURON_SECTIONS.items())],  # noqa: UP007
    Discriminator(_neuron_tag),
]
# recipe sections whose one key picks the section model: section -> (that key, what it names,
# its value -> section model, default value)
CHOSEN_BY_NAME: dict[str, tuple[str, str, dict[str, type[Section]], str]] = {
    "data": ("name", "dataset", DATASET_SECTIONS, "digits"),
    "model": ("name", "model", MODEL_NAME_SECTIONS, "digits_convnet"),
    "neuron": ("model", "neuron model", NEURON_SECTIONS, "lif"),
}


class SurrogateConfig(Section):
    """The surrogate of every LIF layer (asgl.surrogates.SurrogateWidth takes the same names)."""

    family: Literal["sigmoid", "rectangle", "tanh", "arctan", "triangle"] = "sigmoid"
    width: float = Field(5.0, gt=0, description="alpha; slope k = 1/alpha.")
    learnable: bool = True
    granularity: Granularity = "layer"
    storage: Storage = Field("log_slope", description="raw_slope: reference sigmoid parity.")

    @model_validator(mode="after")
    def _raw_only_sigmoid(self) -> SurrogateConfig:
        if self.storage == "raw_slope" and self.family != "sigmoid":
            raise ValueError(f"storage='raw_slope' is only defined for family='sigmoid', got family='{self.family}'")
        return self


class NoiseConfig(Section):
    prob: float = Field(0.2, ge=0, le=1, description="p, probability of the analog value in training.")
    factor: float | None = Field(None, gt=0, description="zeta: p *= factor at each milestone; None = constant p.")
    milestones: list[float] = Field(
        [0.0, 0.2, 0.4, 0.6, 0.8, 0.95], description="Fractions of the run in [0, 1): epoch int(f*epochs)."
    )
    milestone_epochs: list[int] | None = Field(None, description="Explicit 0-based epochs; replaces milestones.")

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not 0 <= f < 1]
        if bad:
            raise ValueError(f"milestone fractions must be in [0, 1), got {bad}")
        return v

    @model_validator(mode="after")
    def _factor_needs_milestones(self) -> NoiseConfig:
        epochs = self.milestone_epochs if self.milestone_epochs is not None else self.milestones
        if self.factor is not None and self.factor != 1 and not epochs:
            raise ValueError("noise.factor is set but there are no milestones to apply it at")
        if self.milestone_epochs is not None and any(e < 0 for e in self.milestone_epochs):
            raise ValueError(f"milestone_epochs must be >= 0, got {self.milestone_epochs}")
        return self


class OptimConfig(Section):
    used_only_by = {
        "momentum": ("name", "optimiser", ("sgd",)),
        "nesterov": ("name", "optimiser", ("sgd",)),
        "restart_epochs": ("schedule", "schedule", ("cosine_restarts",)),
        "step_epochs": ("schedule", "schedule", ("step",)),
        "step_gamma": ("schedule", "schedule", ("step",)),
    }

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0, description="Conv/linear weights only; norms and biases get none.")
    schedule: Literal["cosine", "cosine_restarts", "step", "none"] = "cosine"
    restart_epochs: int = Field(10, ge=1, description="Period of cosine_restarts.")
    step_epochs: int = Field(30, ge=1, description="Period of the step schedule.")
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0)
    neuron_lr: float = Field(3e-4, gt=0, description="Adam lr of decay/width/threshold; no decay, no schedule.")
    grad_clip: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.nesterov and self.name == "sgd" and self.momentum == 0:
            raise ValueError("nesterov = true needs momentum > 0")
        return self


class TrainConfig(Section):
    used_only_by = {"tet_lambda": ("loss", "loss", ("tet",)), "tet_phi": ("loss", "loss", ("tet",))}

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="None = batch_size.")
    time_steps: int = Field(4, ge=1, description="T; event data is framed into T frames.")
    loss: Literal["ce", "tet"] = Field("ce", description="ce on time-averaged logits, or TET.")
    tet_lambda: float = Field(1e-3, ge=0, le=1)
    tet_phi: float = 1.0
    amp: Literal["off", "bf16", "fp16"] = "off"
    compile: bool = False
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Validation split carved from the training set; 0 = train on all of it."
    )
    select: Literal["best_val", "last"] = Field(
        "best_val",
        description="Checkpoint tested at the end: best validation accuracy, or the last epoch. Never the test set.",
    )
    checkpoint_every_steps: int = Field(0, ge=0, description="Extra mid-epoch checkpoints, 0 = end of epoch only.")
    nan_policy: Literal["stop", "skip"] = "stop"
    diagnose_every: int = Field(0, ge=0, description="Record gradient cosines every N epochs, 0 = off.")
    diagnose_batches: int = Field(2, ge=1, description="Validation minibatches K of the per-epoch diagnosis.")
    diagnose_directions: int = Field(
        16, ge=1, description="Random unit directions R per layer of the per-epoch diagnosis."
    )
    diagnose_eps: float = Field(0.1, gt=0, description="Finite-difference step of the per-epoch diagnosis.")
    log_every: int = Field(10, ge=1, description="TensorBoard step logging interval.")

    @model_validator(mode="after")
    def _validation_split_needed(self) -> TrainConfig:
        if self.select == "best_val" and self.val_fraction == 0:
            raise ValueError("select = 'best_val' needs a validation split (val_fraction > 0); use select = 'last'")
        if self.diagnose_every and self.val_fraction == 0:
            raise ValueError("diagnose_every measures on validation batches: it needs val_fraction > 0")
        return self


class Recipe(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DigitsData)
    model: ModelConfig = Field(default_factory=DigitsConvNetConfig)
    neuron: NeuronConfig = Field(default_factory=LIFConfig)
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("data", "model", "neuron", mode="before")
    @classmethod
    def _default_name(cls, value: Any, info: ValidationInfo) -> Any:
        """A ``[data]``, ``[model]`` or ``[neuron]`` table without its choosing key is the default choice."""
        key, _, _, default = CHOSEN_BY_NAME[info.field_name]
        if isinstance(value, dict) and key not in value:
            return {key: default, **value}
        return value


# ---------------------------------------------------------------- loading


def did_you_mean(word: str, choices: Sequence[str], prefix: str = "", quote: bool = False) -> str:
    """`` (did you mean <prefix><closest>?)`` when one of ``choices`` is close to ``word``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    if not close:
        return ""
    return f" (did you mean {prefix}{close[0]!r}?)" if quote else f" (did you mean {prefix}{close[0]}?)"


def _key_path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """A pydantic error location as recipe keys: the union tag is dropped (data.cifar100.cutout -> data.cutout)."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in CHOSEN_BY_NAME:
        del parts[1]
    return tuple(parts)


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The section model holding the last key of ``loc`` (a location from the Recipe down)."""
    section: type[BaseModel] = Recipe
    parts = [str(p) for p in loc[:-1]]
    while parts:
        key = parts.pop(0)
        if section is Recipe and key in CHOSEN_BY_NAME:
            section = CHOSEN_BY_NAME[key][2][parts.pop(0)]
        else:
            section = section.model_fields[key].annotation
    return section


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """The message of a key that the section at ``loc`` does not have."""
    path = _key_path(loc)
    dotted, known = ".".join(path), list(_section_at(loc).model_fields)
    if len(path) == 1:
        return f"unknown section {dotted}{did_you_mean(path[0], known)}; sections: {', '.join(known)}"
    hint = did_you_mean(path[-1], known, ".".join(path[:-1]) + ".")
    if len(loc) == 3 and path[0] in CHOSEN_BY_NAME:
        _, what, sections, _ = CHOSEN_BY_NAME[path[0]]
        owners = [name for name, section in sections.items() if path[-1] in section.model_fields]
        if owners:  # a key of no choice at all is an unknown key, below
            return f"{dotted}: not a key of {what} {loc[1]!r} (a key of {what} {', '.join(owners)})"
    return f"unknown key {dotted}{hint}"


def describe_error(e: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """One validation problem as (recipe key path, one-line message naming key, value and expectation)."""
    loc, kind, ctx = e["loc"], e["type"], e.get("ctx", {})
    path = _key_path(loc)
    dotted = ".".join(path) or "(top level)"
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return path, _unknown_key(loc)
    if kind == "unused_key":
        return (*path, ctx["key"]), f"{dotted}.{msg}"
    if kind == "union_tag_invalid":
        key, what, names, _ = CHOSEN_BY_NAME[path[0]]
        hint = did_you_mean(ctx["tag"], names, quote=True)
        return (*path, key), f"{dotted}.{key} = {ctx['tag']!r}: unknown {what}{hint}; known: {', '.join(names)}"
    if kind == "literal_error":
        hint = did_you_mean(str(e["input"]), re.findall(r"'([^']*)'", ctx["expected"]), quote=True)
        return path, f"{dotted} = {e['input']!r}: {msg}{hint}"
    if isinstance(e["input"], dict):  # a rule across the keys of a section
        return path, f"{dotted}: {msg}"
    return path, f"{dotted} = {e['input']!r}: {msg}"


def _flag_of(path: tuple[str, ...], kind: str, message: str, overrides: Sequence[str]) -> str | None:
    """The ``--set`` item a problem comes from, if any (the last one that sets its key)."""
    for item in reversed(overrides):
        keys = tuple(parse_override(item)[0])
        if path[: len(keys)] == keys:  # the key itself, or an item of the list or table it sets
            return item
        inside = keys[: len(path)] == path
        if inside and (kind == "extra_forbidden" or re.search(rf"\b{re.escape(keys[-1])}\b", message)):
            return item
    return None


def format_validation_error(err: ValidationError, source: str, overrides: Sequence[str] = ()) -> str:
    """One line per problem: ``key = value: what was expected``; a problem of an override names its flag."""
    in_file, in_flags = [], []
    for e in err.errors():
        path, message = describe_error(e)
        flag = _flag_of(path, e["type"], message, overrides)
        if flag is None:
            in_file.append(f"  {message}")
        else:
            in_flags.append(f"--set {flag}: {message}")
    head = [f"invalid recipe {source}:", *in_file] if in_file else []
    return "\n".join(head + in_flags)


def resolve_recipe_path(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a bundled recipe (``digits_quick``)."""
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            raise RecipeError(f"recipe {path} is a directory, expected a .toml file")
        return path
    bundled = recipes_folder() / f"{Path(name_or_path).stem}.toml"
    if path.suffix in ("", ".toml") and bundled.exists() and path.parent == Path("."):
        return bundled
    names = bundled_recipes()
    hint = did_you_mean(path.stem, names) if path.parent == Path(".") else ""
    raise RecipeError(
        f"recipe not found: {name_or_path!r} is neither a file nor a bundled recipe{hint}; "
        f"bundled: {', '.join(names) or 'none'}"
    )


def recipes_folder() -> Path:
    """The bundled recipes: ``asgl/recipes`` in an installed wheel, the top-level ``recipes/`` of a source tree."""
    packaged = Path(str(files("asgl") / "recipes"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "recipes"


def bundled_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_folder().glob("*.toml"))


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML mapping of a recipe file; an empty recipe (no section at all) is refused."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {path} is not a text TOML file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"TOML syntax error in {path}: {e}") from None
    if not raw:
        raise RecipeError(
            f"recipe {path} is empty: a recipe needs at least one section, e.g. [data] and [model] "
            "(`asgl recipes cp digits_quick my.toml` gives a complete one to edit)"
        )
    return raw


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value); the value is read as TOML, else kept as a string."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise RecipeError(f"override key {key!r} must be dotted, like surrogate.width")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def _choosers(section: str) -> set[str]:
    """The keys of a recipe section whose value decides which of its other keys are used."""
    if section in CHOSEN_BY_NAME:
        return {CHOSEN_BY_NAME[section][0]}
    field = Recipe.model_fields.get(section)
    return {chooser for chooser, _, _ in field.annotation.used_only_by.values()} if field else set()


def _in_use(section: str, table: dict[str, Any], key: str) -> bool:
    """Whether the component (or choice) that the raw ``table`` of ``section`` picks takes ``key``."""
    if section in CHOSEN_BY_NAME:
        chooser, _, sections, default = CHOSEN_BY_NAME[section]
        chosen = sections.get(str(table.get(chooser, default)))
        return chosen is None or key in chosen.model_fields  # an unknown name: validation reports it
    cls = Recipe.model_fields[section].annotation
    if key not in cls.used_only_by:
        return True
    chooser, _, values = cls.used_only_by[key]
    return table.get(chooser, cls.model_fields[chooser].default) in values


def _keys_in_use(raw: dict[str, Any], section: str, keep: set[str]) -> dict[str, Any]:
    """``raw[section]`` without the keys its chosen component does not take (the keys in ``keep`` stay)."""
    table = raw[section]
    return {k: v for k, v in table.items() if k in keep or _in_use(section, table, k)}


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``a.b=value`` override set; unknown keys fail later in validation.

    Overriding a key that chooses a component (``data.name``, ``model.name``, ``optim.name``,
    ``optim.schedule``, ``train.loss``) switches it: the recipe's keys of that section that the new choice
    does not take are dropped; keys set by overrides are kept, and checked.
    """
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    set_paths = [parse_override(item) for item in overrides]
    for parts, value in set_paths:
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = value
    for section in {parts[0] for parts, _ in set_paths if len(parts) == 2 and parts[1] in _choosers(parts[0])}:
        set_keys = {parts[1] for parts, _ in set_paths if parts[0] == section}
        out[section] = _keys_in_use(out, section, set_keys)
    return out


def read_stored_recipe(text: str) -> dict[str, Any]:
    """The raw mapping of a recipe that asgl stored (checkpoint, ``config.resolved.toml``).

    Recipes stored before ``[data]``, ``[model]`` and the keys of optimisers, schedules and losses were
    checked per component carry every key; the keys their components do not take had no effect and are
    dropped here, so old runs still load. User recipes are never read this way.
    """
    raw = tomllib.loads(text)
    for section in raw:
        if isinstance(raw[section], dict) and _choosers(section):
            raw[section] = _keys_in_use(raw, section, set())
    return raw


def validate_recipe(raw: dict[str, Any], source: str = "<recipe>", overrides: Sequence[str] = ()) -> Recipe:
    """The recipe of a raw mapping; ``overrides`` (already applied to it) are named in the errors they cause."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, source, overrides)) from None


def load_recipe(name_or_path: str, overrides: Sequence[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raises :class:`RecipeError` with a user-facing message."""
    path = resolve_recipe_path(name_or_path)
    overrides = list(overrides or [])
    return validate_recipe(apply_overrides(read_toml(path), overrides), str(path), overrides)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain TOML-able mapping (None values dropped, tuples as lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(recipe.model_dump(mode="json"))


def recipe_to_toml(recipe: Recipe) -> str:
    import tomli_w

    return tomli_w.dumps(recipe_to_dict(recipe))
