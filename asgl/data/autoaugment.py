"""The published runs' AutoAugment: the CIFAR-10 policy of AutoAugment as the authors' training code applies it.

``data.autoaugment = "reference"`` (docs/parity.md). Every op is one of torchvision's functional ops on a
PIL image; what is ours is the table below and the places where the published code departs from
``torchvision.transforms.AutoAugment``:

- sub-policy 17 applies its second Equalize with probability 0.8 (torchvision: 0.6);
- rotations always turn counter-clockwise by the magnitude (torchvision draws a random sign);
- shears resample bicubically (torchvision: nearest neighbour);
- translations move by the exact fractional offset ``magnitude * side`` with nearest-neighbour
  resampling, so Pillow rounds it (torchvision truncates it to whole pixels first);
- magnitude bin ``i`` of an op is ``np.linspace(low, high, 10)[i]``, with the ranges of ``MAGNITUDE_RANGES``.

Pixels that a geometric op uncovers take the grey level ``fill`` (the published runs: 128).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

MAGNITUDE_BINS = 10

# op -> (magnitude of bin 0, magnitude of bin 9); ops missing here take no magnitude
MAGNITUDE_RANGES: dict[str, tuple[float, float]] = {
    "shear_x": (0.0, 0.3),
    "shear_y": (0.0, 0.3),
    "translate_x": (0.0, 150 / 331),  # fraction of the image width
    "translate_y": (0.0, 150 / 331),  # fraction of the image height
    "rotate": (0.0, 30.0),  # degrees
    "color": (0.0, 0.9),
    "posterize": (8, 4),  # bits kept, rounded to an integer
    "solarize": (256.0, 0.0),  # threshold
    "contrast": (0.0, 0.9),
    "sharpness": (0.0, 0.9),
    "brightness": (0.0, 0.9),
}

Step = tuple[str, float, int]  # (op, probability, magnitude bin)

# The 25 sub-policies of the published CIFAR-10 policy, in the published order: two steps each.
CIFAR10_POLICY: tuple[tuple[Step, Step], ...] = (
    (("invert", 0.1, 7), ("contrast", 0.2, 6)),
    (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
    (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.5, 8), ("equalize", 0.9, 2)),
    (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)),
    (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, 5), ("equalize", 0.5, 1)),
    (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)),
    (("equalize", 0.3, 7), ("autocontrast", 0.4, 8)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
    (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, 3)),
    (("equalize", 0.2, 0), ("autocontrast", 0.6, 0)),
    (("equalize", 0.2, 8), ("equalize", 0.8, 4)),
    (("color", 0.9, 9), ("equalize", 0.6, 6)),
    (("autocontrast", 0.8, 4), ("solarize", 0.2, 8)),
    (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("autocontrast", 0.9, 3)),
    (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.9, 2), ("solarize", 0.8, 3)),
    (("equalize", 0.8, 8), ("invert", 0.1, 3)),
    (("translate_y", 0.7, 9), ("autocontrast", 0.9, 1)),
)


def magnitude(op: str, bin_index: int) -> float:
    """The magnitude of bin ``bin_index`` (0..9) of ``op``; 0 for ops that take none."""
    if op not in MAGNITUDE_RANGES:
        return 0.0
    low, high = MAGNITUDE_RANGES[op]
    value = float(np.linspace(low, high, MAGNITUDE_BINS)[bin_index])
    return float(round(value)) if op == "posterize" else value


def _shear(img: Image.Image, factor: float, axis: int, fill: int) -> Image.Image:
    """Output pixel (x, y) samples input (x + factor * y, y) (axis 0) or (x, y + factor * x) (axis 1)."""
    shear = [0.0, 0.0]
    shear[axis] = math.degrees(math.atan(factor))
    return F.affine(img, 0.0, [0, 0], 1.0, shear, InterpolationMode.BICUBIC, fill, center=[0, 0])


def _translate(img: Image.Image, fraction: float, axis: int, fill: int) -> Image.Image:
    """Output pixel (x, y) samples input (x + fraction * width, y) (axis 0, y likewise for axis 1), nearest."""
    offset = [0.0, 0.0]
    offset[axis] = -fraction * img.size[axis]
    return F.affine(img, 0.0, offset, 1.0, [0.0, 0.0], InterpolationMode.NEAREST, fill, center=[0, 0])


# op -> f(image, magnitude, sign in {-1, 1}, fill); ops that ignore the sign ignore it here too
OPS: dict[str, Callable[[Image.Image, float, int, int], Image.Image]] = {
    "shear_x": lambda img, m, s, fill: _shear(img, m * s, 0, fill),
    "shear_y": lambda img, m, s, fill: _shear(img, m * s, 1, fill),
    "translate_x": lambda img, m, s, fill: _translate(img, m * s, 0, fill),
    "translate_y": lambda img, m, s, fill: _translate(img, m * s, 1, fill),
    "rotate": lambda img, m, s, fill: F.rotate(img, m, InterpolationMode.NEAREST, fill=fill),
    "color": lambda img, m, s, fill: F.adjust_saturation(img, 1 + m * s),
    "posterize": lambda img, m, s, fill: F.posterize(img, int(m)),
    "solarize": lambda img, m, s, fill: F.solarize(img, m),
    "contrast": lambda img, m, s, fill: F.adjust_contrast(img, 1 + m * s),
    "sharpness": lambda img, m, s, fill: F.adjust_sharpness(img, 1 + m * s),
    "brightness": lambda img, m, s, fill: F.adjust_brightness(img, 1 + m * s),
    "autocontrast": lambda img, m, s, fill: F.autocontrast(img),
    "equalize": lambda img, m, s, fill: F.equalize(img),
    "invert": lambda img, m, s, fill: F.invert(img),
}


def apply_subpolicy(
    img: Image.Image,
    subpolicy: tuple[Step, Step],
    uniforms: tuple[float, float],
    signs: tuple[int, int],
    fill: int,
) -> Image.Image:
    """Run both steps of a sub-policy in order; step ``k`` runs when ``uniforms[k]`` < its probability,
    with sign ``signs[k]`` (-1 or 1) for the ops that take one."""
    for (op, prob, bin_index), u, sign in zip(subpolicy, uniforms, signs):
        if u < prob:
            img = OPS[op](img, magnitude(op, bin_index), sign, fill)
    return img


class ReferenceAutoAugment:
    """PIL image -> PIL image: one sub-policy of :data:`CIFAR10_POLICY`, drawn uniformly, applied with
    :func:`apply_subpolicy`. Draws use torch's RNG (seeded per DataLoader worker by torch)."""

    def __init__(self, fill: int = 128) -> None:
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        index = int(torch.randint(len(CIFAR10_POLICY), ()))
        uniforms = torch.rand(2).tolist()
        signs = (torch.randint(2, (2,)) * 2 - 1).tolist()
        return apply_subpolicy(img, CIFAR10_POLICY[index], (uniforms[0], uniforms[1]), (signs[0], signs[1]), self.fill)

    def __repr__(self) -> str:
        return f"ReferenceAutoAugment(policy=CIFAR10, fill={self.fill})"
