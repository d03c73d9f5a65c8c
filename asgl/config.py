"""The recipe schema: one pydantic model per TOML section, defaults documented in place.

A recipe is a TOML file with the sections ``[run] [data] [model] [neuron] [surrogate] [noise]
[optim] [train]``. Unknown keys, wrong types and out-of-range values are errors that name the key,
the value and what was expected (see :func:`format_validation_error`). ``--set a.b=value``
overrides are applied to the raw mapping before validation, so they are typed by the schema too.

This module imports no torch: the CLI validates a recipe before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asgl.errors import RecipeError  # re-exported here

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = Field("run", description="Run name; the run folder is <out_dir>/<name>-<timestamp>.")
    seed: int = Field(0, ge=0, description="Seed of every random draw (weights, data order, masks).")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = cuda if available.")
    out_dir: str = Field("runs", description="Parent folder of run folders.")
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms; LIF backend auto runs fused (slower on GPU)."
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads per process (torch.set_num_threads); None = PyTorch's default."
    )


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


class DataConfig(Section):
    name: Literal[
        "digits", "cifar10", "cifar100", "tiny_imagenet", "dvs_cifar10", "dvs_gesture", "shd", "audio_folder"
    ] = "digits"
    root: str = Field("data", description="Dataset folder; `asgl data check` says what must be inside.")
    num_workers: int = Field(0, ge=0, description="DataLoader workers (0 = main process).")
    pin_memory: bool | None = Field(None, description="None = on when training on CUDA.")
    persistent_workers: bool = True
    subset: int | None = Field(None, ge=1, description="Use only the first N samples of every split (smoke runs).")
    # static images
    autoaugment: bool = Field(False, description="torchvision AutoAugment, CIFAR-10 policy.")
    cutout: int = Field(0, ge=0, description="Cutout hole size in pixels (one hole), 0 = off.")
    random_crop: bool = True
    hflip: bool = True
    # event streams
    frame_size: int = Field(48, ge=4, description="Event frames are resized to frame_size x frame_size.")
    roll_pixels: int = Field(5, ge=0, description="DVS train augmentation: random roll of both axes by +-N px.")
    split: Literal["ratio", "reference"] = Field(
        "ratio", description="DVS-CIFAR10 split: per-class 70/30 or the reference's."
    )
    cache_dir: str | None = Field(None, description="Frame cache folder; None = <root>/cache.")
    # audio / SHD
    sample_rate: int = Field(16000, ge=1000)
    n_mels: int = Field(64, ge=1)
    audio_seconds: float = Field(2.0, gt=0, description="Audio clips are cut or padded to this length.")
    audio_augment: AudioAugmentConfig = Field(default_factory=AudioAugmentConfig)


class ModelConfig(Section):
    name: str = Field("digits_convnet", description="A name of asgl.models.MODELS.")
    num_classes: int | None = Field(None, ge=2, description="None = taken from the dataset.")
    in_channels: int | None = Field(None, ge=1, description="None = taken from the dataset.")
    hidden: int = Field(240, ge=1, description="Hidden units of recurrent/MLP models.")
    recurrent: bool = Field(True, description="Recurrent hidden layer (SHD net).")
    readout: Literal["mean", "last", "max"] = Field("mean", description="How per-step logits become a prediction.")
    init: Literal["kaiming", "reference"] = Field("kaiming", description="reference = N(0, 0.5^2) VGG init.")
    dropout: float = Field(0.0, ge=0, lt=1)
    channels_last: bool = False


class NeuronConfig(Section):
    spike: Literal["asgl", "sg", "heaviside"] = Field("asgl", description="Spike function in training.")
    decay: float = Field(0.5, gt=0, lt=1, description="Initial leak gamma = sigmoid(d); d is learned.")
    learn_decay: bool = True
    threshold: float = Field(1.0, gt=0)
    learn_threshold: bool = False
    reset: Literal["hard", "soft"] = "hard"
    amplitude: Literal["threshold", "unit"] = Field("threshold", description="Spike amplitude theta (reference) or 1.")
    norm: Literal["tdbn", "bntt", "step", "threshold_bn", "none"] = "tdbn"
    backend: Literal["auto", "fused", "stepwise", "cpu_kernel", "triton", "compiled"] = Field(
        "auto",
        description="auto = triton on CUDA, cpu_kernel (numba) on CPU, else fused; compiled = torch.compile (opt-in).",
    )
    width_grad: Literal["all", "analog"] = Field(
        "all", description="Width gradient from every element, or analog ones only (extension)."
    )


class SurrogateConfig(Section):
    family: Literal["sigmoid", "rectangle", "tanh", "arctan", "triangle"] = "sigmoid"
    width: float = Field(5.0, gt=0, description="alpha; slope k = 1/alpha.")
    learnable: bool = True
    granularity: Literal["layer", "channel", "neuron"] = "layer"
    storage: Literal["log_slope", "raw_slope"] = Field("log_slope", description="raw_slope: reference sigmoid parity.")

    @model_validator(mode="after")
    def _raw_only_sigmoid(self) -> SurrogateConfig:
        if self.storage == "raw_slope" and self.family != "sigmoid":
            raise ValueError(f"storage='raw_slope' is only defined for family='sigmoid', got family='{self.family}'")
        return self


class NoiseConfig(Section):
    prob: float = Field(0.2, ge=0, le=1, description="p, probability of the analog mode in training.")
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
    def _nesterov_needs_sgd_momentum(self) -> OptimConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError(
                f"nesterov = true needs name = 'sgd' and momentum > 0 (got {self.name!r}, {self.momentum})"
            )
        return self


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="None = batch_size.")
    time_steps: int = Field(4, ge=1, description="T; event data is framed into T frames.")
    loss: Literal["ce", "tet"] = Field("ce", description="ce on time-averaged logits, or TET.")
    tet_lambda: float = Field(1e-3, ge=0, le=1)
    tet_phi: float = 1.0
    amp: Literal["off", "bf16", "fp16"] = "off"
    compile: bool = False
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Validation split carved from the training set.")
    checkpoint_every_steps: int = Field(0, ge=0, description="Extra mid-epoch checkpoints, 0 = end of epoch only.")
    nan_policy: Literal["stop", "skip"] = "stop"
    diagnose_every: int = Field(0, ge=0, description="Record gradient cosines every N epochs, 0 = off.")
    diagnose_batches: int = Field(2, ge=1, description="Validation minibatches K of the per-epoch diagnosis.")
    diagnose_directions: int = Field(
        16, ge=1, description="Random unit directions R per layer of the per-epoch diagnosis."
    )
    diagnose_eps: float = Field(0.1, gt=0, description="Finite-difference step of the per-epoch diagnosis.")
    log_every: int = Field(10, ge=1, description="TensorBoard step logging interval.")


class Recipe(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    neuron: NeuronConfig = Field(default_factory=NeuronConfig)
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


# ---------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``key = value: what was expected``."""
    lines = [f"invalid recipe {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r})")
        else:
            lines.append(f"  {key} = {e['input']!r}: {e['msg']}")
    return "\n".join(lines)


def resolve_recipe_path(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a bundled recipe (``digits_quick``)."""
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            raise RecipeError(f"recipe {path} is a directory, expected a .toml file")
        return path
    bundled = RECIPES_DIR / f"{Path(name_or_path).stem}.toml"
    if path.suffix in ("", ".toml") and bundled.exists() and path.parent == Path("."):
        return bundled
    names = ", ".join(bundled_recipes()) or "none"
    raise RecipeError(f"recipe not found: {name_or_path!r} is neither a file nor a bundled recipe ({names})")


def bundled_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {path} is not a text TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"TOML syntax error in {path}: {e}") from None


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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``a.b=value`` override set; unknown keys fail later in validation."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return out


def validate_recipe(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, source)) from None


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raises :class:`RecipeError` with a user-facing message."""
    path = resolve_recipe_path(name_or_path)
    raw = apply_overrides(read_toml(path), overrides or [])
    return validate_recipe(raw, str(path))


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
