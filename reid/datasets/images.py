"""A torch Dataset over `Sample`s: decode the image, apply a transform, return it with its labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from reid.datasets.base import Sample
from reid.errors import ReidError
from reid.transforms import ImageTransform


def read_rgb(path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise ReidError(f"cannot read image {path}: {error}") from error


class ImageDataset(Dataset):
    """Item i = (image tensor 3 x H x W, pid, camid, clothes_id) of samples[i]."""

    def __init__(self, samples: Sequence[Sample], transform: ImageTransform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        sample = self.samples[index]
        return self.transform(read_rgb(sample.path)), sample.pid, sample.camid, sample.clothes_id
