"""A small conv SNN for the 8x8 digits (and any small static-image dataset)."""

from __future__ import annotations

from torch import Tensor, nn

from asgl.config import Recipe
from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import conv_norm_lif, lif, norm


class DigitsConvNet(nn.Module):
    """conv 16 → pool → conv 32 → pool → fc hidden → fc classes, each conv/fc hidden with norm + LIF.

    Input [B, C, H, W] (H, W divisible by 4) → per-step logits [T, B, K].
    """

    def __init__(self, recipe: Recipe, info: DataInfo):
        super().__init__()
        h, w = info.input_size
        hidden = recipe.model.hidden
        self.time_steps = info.time_steps
        self.features = nn.Sequential(
            conv_norm_lif(recipe, info.in_channels, 16, (h, w)),
            TimeFold(nn.AvgPool2d(2)),
            conv_norm_lif(recipe, 16, 32, (h // 2, w // 2)),
            TimeFold(nn.AvgPool2d(2), nn.Flatten()),
        )
        flat = 32 * (h // 4) * (w // 4)
        self.hidden = nn.Sequential(
            TimeFold(nn.Linear(flat, hidden, bias=False)), norm(recipe, hidden, dims=1), lif(recipe, (hidden,))
        )
        self.head = TimeFold(nn.Dropout(recipe.model.dropout), nn.Linear(hidden, info.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hidden(self.features(to_time_major(x, self.time_steps))))


def digits_convnet(recipe: Recipe, info: DataInfo) -> nn.Module:
    return DigitsConvNet(recipe, info)
