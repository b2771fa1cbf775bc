"""Images of `Sample`s for evaluation (PIL + a transform) and for training (uint8 batches, see TrainImages)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reid.datasets.base import Sample
from reid.errors import ReidError
from reid.transforms import ImageTransform


def read_rgb(path) -> Image.Image:
    """The image as PIL RGB. Decoded by OpenCV, as the training images and the app's crops are, and
    because importing ultralytics (the pose model) patches PIL's Image.open."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ReidError(f"cannot read image {path}: not an image file or unreadable")
    return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


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


def read_bgr_uint8(path) -> np.ndarray:
    """The image at `path` as an HxWx3 uint8 BGR array (cv2), or a one-line error."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ReidError(f"cannot read image {path}: not an image file or unreadable")
    return image


def read_rgb_uint8(path, input_size: Sequence[int]) -> torch.Tensor:
    """(3, H, W) uint8 RGB image resized to input_size = (height, width) the way the app's Embedder resizes
    crops: area averaging when shrinking, bilinear when enlarging."""
    height, width = (int(side) for side in input_size)
    image = read_bgr_uint8(path)
    shrinking = image.shape[0] > height or image.shape[1] > width
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).contiguous()


class _UInt8Images(Dataset):
    """Item i = (uint8 image (3, H, W), garment masks (2, H, W) or an empty tensor, pid)."""

    def __init__(self, samples: Sequence[Sample], input_size: Sequence[int], garment_masks: torch.Tensor | None) -> None:
        self.samples, self.input_size, self.garment_masks = list(samples), tuple(input_size), garment_masks

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        masks = self.garment_masks[index] if self.garment_masks is not None else torch.empty(0)
        return read_rgb_uint8(self.samples[index].path, self.input_size), masks, self.samples[index].pid


class TrainImages:
    """Training batches as uint8 (B, 3, H, W) images, their garment masks (or None) and pids.

    cache=True decodes every image once into one uint8 tensor (N x 3 x H x W bytes: 14k CUHK03 crops at
    128x64 are 350 MB), so an epoch costs no decoding; cache=False decodes per batch in `num_workers`
    DataLoader processes (for sets too large for memory at the input size)."""

    def __init__(self, samples: Sequence[Sample], input_size: Sequence[int], garment_masks: np.ndarray | None = None,
                 cache: bool = True, num_workers: int = 0) -> None:
        self.samples = list(samples)
        self.pids = torch.tensor([sample.pid for sample in self.samples])
        self.garment_masks = torch.from_numpy(garment_masks) if garment_masks is not None else None
        self.num_workers = num_workers
        self.dataset = _UInt8Images(self.samples, input_size, self.garment_masks)
        self.images = torch.stack([read_rgb_uint8(s.path, input_size) for s in self.samples]) if cache else None

    def batches(self, batch_indices: Sequence[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        if self.images is not None:
            for indices in batch_indices:
                rows = torch.as_tensor(indices)
                masks = self.garment_masks[rows] if self.garment_masks is not None else None
                yield self.images[rows], masks, self.pids[rows]
            return
        loader = DataLoader(self.dataset, batch_sampler=list(batch_indices), num_workers=self.num_workers)
        for images, masks, pids in loader:
            yield images, (masks if self.garment_masks is not None else None), pids
