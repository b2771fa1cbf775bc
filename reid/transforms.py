"""Image pipelines for training and evaluation (CSSC recipe, spec "Augmentation").

Train: resize to the input size, horizontal flip (p 0.5), pad 10 + random crop back to the input size,
ImageNet normalisation, random erasing (p 0.5, area 0.02-0.4, aspect >= 0.3) filled with 0 AFTER
normalisation, i.e. with the mean colour. Test: resize + normalisation only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.v2 as T
from PIL import Image

from reid.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

ERASING_AREA = (0.02, 0.4)  # fraction of the image
ERASING_MIN_ASPECT = 0.3  # erased boxes have aspect ratio in [0.3, 1 / 0.3]

ImageTransform = Callable[[Image.Image], torch.Tensor]


def _to_normalised_tensor() -> list[T.Transform]:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)]


def build_train_transform(
    input_size: Sequence[int],
    flip_probability: float = 0.5,
    pad: int = 10,
    erasing_probability: float = 0.5,
) -> ImageTransform:
    """PIL RGB image -> 3 x H x W float tensor with the spec's augmentations; input_size = (height, width)."""
    height, width = (int(side) for side in input_size)
    steps: list[T.Transform] = [T.Resize((height, width)), T.RandomHorizontalFlip(flip_probability)]
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    steps += _to_normalised_tensor()
    if erasing_probability > 0:
        steps.append(
            T.RandomErasing(
                p=erasing_probability, scale=ERASING_AREA, ratio=(ERASING_MIN_ASPECT, 1 / ERASING_MIN_ASPECT), value=0.0
            )
        )
    return T.Compose(steps)


def build_test_transform(input_size: Sequence[int]) -> ImageTransform:
    """PIL RGB image -> 3 x H x W float tensor: resize and ImageNet normalisation."""
    height, width = (int(side) for side in input_size)
    return T.Compose([T.Resize((height, width)), *_to_normalised_tensor()])
