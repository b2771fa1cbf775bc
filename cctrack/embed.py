"""The embedding stage: every tracklet crop of every camera through the re-id model, one tracklet per call."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from cctrack.errors import CctrackError
from cctrack.files import sha256_of
from cctrack.histogram import ColourHistogramEmbedder
from cctrack.progress import progress_bar

@dataclass(frozen=True)
class TrackletEmbeddings:
    crop_embeddings: np.ndarray  # (C, D) float32 L2-normalised, all crops of all tracklets in tracklet order
    crop_offsets: np.ndarray  # (N + 1,) int64: tracklet i owns rows crop_offsets[i]:crop_offsets[i + 1]
    descriptors: np.ndarray  # (N, D) float32: L2-normalised mean of each tracklet's crop embeddings
    model: str  # what produced them, in words
    model_sha256: str  # hash of the weights file that produced them

    @property
    def dim(self) -> int:
        return int(self.descriptors.shape[1])


IMAGENET_BASELINE = "imagenet"  # reid.checkpoint value that selects the untrained ImageNet backbone
# Link calibrations of the two baselines, fitted like a trained model's (reid.calibration) on the 60
# CUHK03 train identities the shipped model never saw: `python tools/calibrate_baselines.py`.
BASELINE_CALIBRATIONS_PATH = Path(__file__).resolve().parent / "baseline_calibrations.json"


def load_embedder(
    checkpoint: str | None, device: str | torch.device = "auto", half: bool | None = None, batch_size: int = 128, descriptor: str = "reid",
    runtime: str = "torch",
):
    """The descriptor the app embeds crops with, with its link calibration (`.calibration`):
    checkpoint None -> the shipped CSSC model (reid.pretrained); "imagenet" -> the offline ImageNet
    MobileNetV2 backbone, untrained for re-id (a baseline); a path -> that CSSC checkpoint.
    descriptor="colour_histogram" gives the colour baseline instead of a network. `runtime` runs the
    network in PyTorch or an export of it (cctrack.reid_runtime; `reid.runtime`)."""
    embedder = _load_descriptor(checkpoint, device, half, batch_size, descriptor)
    if descriptor != "colour_histogram":
        from cctrack.reid_runtime import resolve_runtime, use_exported_network

        embedder.runtime = resolve_runtime(runtime, embedder.device, half)
        use_exported_network(embedder, embedder.runtime)
    return embedder


def _load_descriptor(checkpoint: str | None, device: str | torch.device, half: bool | None, batch_size: int, descriptor: str):
    from reid import Embedder
    from reid.errors import ReidError
    from reid.pretrained import default_weights_path

    if descriptor == "colour_histogram":
        embedder = ColourHistogramEmbedder()
        embedder.calibration = baseline_calibration("colour_histogram")
        return embedder
    try:
        if checkpoint == IMAGENET_BASELINE:
            embedder = Embedder.imagenet_backbone("mobilenetv2", device=device, half=half, batch_size=batch_size)
            embedder.calibration = baseline_calibration("imagenet_mobilenetv2")
            return embedder
        if checkpoint and not Path(checkpoint).is_file():
            raise CctrackError(f"re-id checkpoint not found: {checkpoint}")
        path = checkpoint or default_weights_path()
        return Embedder.from_checkpoint(path, device=device, half=half, batch_size=batch_size)
    except ReidError as error:
        raise CctrackError(str(error)) from None


def baseline_calibration(name: str):
    from reid.calibration import LinkCalibration

    calibrations = json.loads(BASELINE_CALIBRATIONS_PATH.read_text())
    return LinkCalibration.from_dict(calibrations[name])


def model_identity(embedder) -> tuple[str, str]:
    """(description, sha256 of the weights file, or of the description for a descriptor without weights)."""
    if embedder.weights_path is None:
        return embedder.description, hashlib.sha256(embedder.description.encode()).hexdigest()
    return embedder.description, sha256_of(Path(embedder.weights_path))


def embed_tracklets(crops: Sequence[Sequence[np.ndarray]], embedder, show_progress: bool = True,
                    known: Mapping[int, np.ndarray] | None = None) -> TrackletEmbeddings:
    """Embed all crops (one list per tracklet) and average them into one descriptor per tracklet.

    Each tracklet is one embedder call of its own crops: a batch's other crops move a crop's embedding by
    float rounding (about 1e-6), so this way a tracklet gets the same bits wherever it is embedded (in the
    background as it ended, cctrack.embed_worker; in a Ray task; in a resumed run; by a re-link). Tracklets
    are read from `crops` one at a time, so a lazy sequence (cctrack.cache.StoredCrops, which reads each
    tracklet's crops from disk when asked) keeps one tracklet's crops in memory however long the footage.
    `known`: tracklet index -> its crop embeddings, made already; those tracklets' crops are not read.
    """
    known = known or {}
    counts = getattr(crops, "crop_counts", None) or [len(tracklet_crops) for tracklet_crops in crops]
    if any(count == 0 for count in counts):
        raise CctrackError("a tracklet has no crops to embed")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    parts = []
    with progress_bar(int(offsets[-1]), "embed", "crop", show_progress) as bar:
        for index, count in enumerate(counts):
            part = known[index] if index in known else embedder.embed(list(crops[index]))
            if len(part) != count:
                raise CctrackError(f"tracklet {index} has {count} crops but {len(part)} embeddings")
            parts.append(np.asarray(part, np.float32))
            bar.update(count)
    crop_embeddings = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    description, sha256 = model_identity(embedder)
    return TrackletEmbeddings(
        crop_embeddings=crop_embeddings,
        crop_offsets=offsets,
        descriptors=tracklet_descriptors(crop_embeddings, offsets),
        model=description,
        model_sha256=sha256,
    )


def tracklet_descriptors(crop_embeddings: np.ndarray, crop_offsets: np.ndarray) -> np.ndarray:
    """L2-normalised mean of each tracklet's crop embeddings; (N, D) float32."""
    counts = np.diff(crop_offsets)
    if len(counts) == 0:
        return np.zeros((0, crop_embeddings.shape[1]), np.float32)
    sums = np.add.reduceat(crop_embeddings.astype(np.float64), crop_offsets[:-1], axis=0)
    means = sums / counts[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32)
