"""Training augmentation on whole batches of uint8 images, on the training device.

The paper recipe (spec "Augmentation"): horizontal flip, pad + random crop, ImageNet normalisation, random
erasing filled with 0 after normalisation. On top of it, optional (probability 0 in the paper configs),
what surveillance footage does to a person that re-id sets like CUHK03 rarely show:

- garment recolouring: the upper and lower garment regions (from pose keypoints, reid.garments) get
  their own random hue rotation, saturation and value, so the same person appears in new outfit colours;
- colour: per-image white balance (per-channel gains), gamma, brightness and contrast, as every camera
  renders colour its own way;
- downscale then upscale: people 40-150 px tall in the video are enlarged to the input size;
- blur and JPEG artefacts: focus, motion and compression.

Every random number is drawn on the CPU from torch's global generator, which train() reseeds per epoch,
so a resumed run sees exactly the same augmented batches.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.io import decode_jpeg, encode_jpeg

from reid.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

ERASING_AREA = (0.02, 0.4)  # fraction of the image (spec)
ERASING_MIN_ASPECT = 0.3  # erased boxes have aspect ratio in [0.3, 1 / 0.3] (spec)

# RGB <-> YIQ: hue is the angle in the IQ plane, saturation its length, so a hue rotation with a
# saturation and value change is one 3x3 matrix per garment.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
# The AugmentSettings fields of the surveillance-footage degradations (not garment recolouring, which
# changes the outfit, not the picture): what a curriculum switches on late (reid.train).
DEGRADATION_PROBABILITIES = ("colour_probability", "downscale_probability", "blur_probability", "jpeg_probability")


@dataclass(frozen=True)
class AugmentSettings:
    flip_probability: float = 0.5
    pad: int = 10  # pixels of padding before the random crop
    erasing_probability: float = 0.5
    garment_recolour_probability: float = 0.0  # per image: recolour both garment regions
    colour_probability: float = 0.0  # per image: white balance, gamma, brightness, contrast
    colour_strength: float = 0.3  # gains in [1 - s, 1 + s], gamma in [1 / (1 + 2s), 1 + 2s]
    downscale_probability: float = 0.0  # per image: shrink to a random height, then enlarge back
    min_downscale_height: int = 40  # pixels: the smallest person the app tracks well
    blur_probability: float = 0.0
    max_blur_sigma: float = 1.5  # pixels at the input size
    jpeg_probability: float = 0.0
    min_jpeg_quality: int = 30


def _chosen(probability: float, count: int) -> torch.Tensor:
    """(count,) bool: which images an augmentation applies to."""
    return torch.rand(count) < probability


def _uniform(low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape)


def recolour_matrices(hue_radians: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) RGB -> RGB matrices rotating hue by `hue_radians` and scaling saturation and value."""
    cos, sin = torch.cos(hue_radians) * saturation, torch.sin(hue_radians) * saturation
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1).unflatten(-1, (3, 3))
    return value[..., None, None] * (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ)


def recolour_garments(images: torch.Tensor, garment_masks: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) float in [0, 1]; garment_masks (B, G, H, W) uint8 (255 = garment). The chosen
    images get one random hue / saturation / value per garment, blended in by the soft mask."""
    rows = chosen.nonzero().flatten()
    if len(rows) == 0:
        return images
    count, garments = len(rows), garment_masks.shape[1]
    matrices = recolour_matrices(
        _uniform(0, 2 * math.pi, count, garments), _uniform(0.4, 1.6, count, garments), _uniform(0.6, 1.4, count, garments)
    ).to(images.device)
    out = images.clone()
    for garment in range(garments):
        recoloured = torch.einsum("bij,bjhw->bihw", matrices[:, garment], images[rows]).clamp_(0, 1)
        weight = garment_masks[rows, garment : garment + 1].float() / 255
        out[rows] = out[rows] + weight * (recoloured - out[rows])
    return out


def shift_colour(images: torch.Tensor, chosen: torch.Tensor, strength: float) -> torch.Tensor:
    """A camera's colour rendering: per-channel gains (white balance), gamma, brightness and contrast."""
    rows = chosen.nonzero().flatten()
    if len(rows) == 0:
        return images
    count = len(rows)
    gains = _uniform(1 - strength, 1 + strength, count, 3, 1, 1)
    gamma = torch.exp(_uniform(-math.log(1 + 2 * strength), math.log(1 + 2 * strength), count, 1, 1, 1))
    contrast = _uniform(1 - strength, 1 + strength, count, 1, 1, 1)
    brightness = _uniform(-strength / 3, strength / 3, count, 1, 1, 1)
    shifted = (images[rows] * gains.to(images.device)).clamp_(0, 1).pow_(gamma.to(images.device))
    mean = shifted.mean(dim=(1, 2, 3), keepdim=True)
    shifted = (mean + (shifted - mean) * contrast.to(images.device) + brightness.to(images.device)).clamp_(0, 1)
    out = images.clone()
    out[rows] = shifted
    return out


def flip_and_shift(images: torch.Tensor, flip_probability: float, pad: int) -> torch.Tensor:
    """Horizontal flip, then pad by `pad` pixels (zeros) and crop back at a random offset."""
    count, _, height, width = images.shape
    flipped = _chosen(flip_probability, count).to(images.device)
    images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (count, 2)).tolist()
    return torch.stack([padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets)])


def downscale(images: torch.Tensor, chosen: torch.Tensor, min_height: int) -> torch.Tensor:
    """Shrink the chosen images to a random height in [min_height, H] (area), then enlarge back (bilinear)."""
    rows = chosen.nonzero().flatten().tolist()
    _, _, height, width = images.shape
    if not rows or min_height >= height:
        return images
    heights = torch.randint(min_height, height + 1, (len(rows),)).tolist()
    out = images.clone()
    for row, small_height in zip(rows, heights):
        small_width = max(1, round(width * small_height / height))
        small = F.interpolate(images[row : row + 1], size=(small_height, small_width), mode="area")
        out[row] = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0]
    return out


def blur(images: torch.Tensor, chosen: torch.Tensor, max_sigma: float) -> torch.Tensor:
    rows = chosen.nonzero().flatten().tolist()
    sigmas = _uniform(0.3, max_sigma, len(rows)).tolist()
    out = images.clone() if rows else images
    for row, sigma in zip(rows, sigmas):
        kernel = 2 * math.ceil(2 * sigma) + 1
        out[row] = TF.gaussian_blur(images[row], [kernel, kernel], [sigma, sigma])
    return out


def jpeg(images: torch.Tensor, chosen: torch.Tensor, min_quality: int) -> torch.Tensor:
    """Encode and decode the chosen images as JPEG at a random quality in [min_quality, 95] (on the CPU)."""
    rows = chosen.nonzero().flatten().tolist()
    if not rows:
        return images
    qualities = torch.randint(min_quality, 96, (len(rows),)).tolist()
    out = images.clone()
    for row, quality in zip(rows, qualities):
        pixels = (images[row] * 255).round_().to(torch.uint8).cpu()
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its JPEG codec; the shipped model used it
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = decode_jpeg(encode_jpeg(pixels, quality=quality))
        out[row] = decoded.to(images.device, torch.float32) / 255
    return out


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN_RGB, device=images.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD_RGB, device=images.device)[None, :, None, None]
    return (images - mean) / std


def random_erasing(images: torch.Tensor, probability: float) -> torch.Tensor:
    """Spec random erasing: a box of 2-40 % of the area, aspect in [0.3, 3.3], set to 0 (the mean colour
    after normalisation). Up to 10 tries per image to fit the box, as torchvision does."""
    count, _, height, width = images.shape
    chosen = _chosen(probability, count).tolist()
    areas = _uniform(*ERASING_AREA, count, 10) * height * width
    log_aspect = _uniform(math.log(ERASING_MIN_ASPECT), -math.log(ERASING_MIN_ASPECT), count, 10)
    corners = torch.rand(count, 10, 2)
    out = images.clone()
    for row in range(count):
        if not chosen[row]:
            continue
        for attempt in range(10):
            aspect = math.exp(float(log_aspect[row, attempt]))
            box_height = int(round(math.sqrt(float(areas[row, attempt]) * aspect)))
            box_width = int(round(math.sqrt(float(areas[row, attempt]) / aspect)))
            if box_height < height and box_width < width:
                top = int(float(corners[row, attempt, 0]) * (height - box_height + 1))
                left = int(float(corners[row, attempt, 1]) * (width - box_width + 1))
                out[row, :, top : top + box_height, left : left + box_width] = 0
                break
    return out


def augment_batch(images: torch.Tensor, garment_masks: torch.Tensor | None, settings: AugmentSettings) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB images (and their (B, 2, H, W) garment masks, or None) -> normalised float."""
    count = images.shape[0]
    pixels = images.float() / 255
    if garment_masks is not None and settings.garment_recolour_probability > 0:
        pixels = recolour_garments(pixels, garment_masks, _chosen(settings.garment_recolour_probability, count))
    if settings.colour_probability > 0:
        pixels = shift_colour(pixels, _chosen(settings.colour_probability, count), settings.colour_strength)
    pixels = flip_and_shift(pixels, settings.flip_probability, settings.pad)
    if settings.downscale_probability > 0:
        pixels = downscale(pixels, _chosen(settings.downscale_probability, count), settings.min_downscale_height)
    if settings.blur_probability > 0:
        pixels = blur(pixels, _chosen(settings.blur_probability, count), settings.max_blur_sigma)
    if settings.jpeg_probability > 0:
        pixels = jpeg(pixels, _chosen(settings.jpeg_probability, count), settings.min_jpeg_quality)
    return random_erasing(normalise(pixels), settings.erasing_probability)
