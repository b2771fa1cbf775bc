"""The embedding stage: every tracklet crop of every camera through the re-id model in large batches."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from cctrack.cache import TrackletEmbeddings
from cctrack.errors import CctrackError
from cctrack.files import sha256_of
from cctrack.histogram import ColourHistogramEmbedder

# Crops handed to the embedder per call: large enough to fill its GPU batches, small enough for a
# progress bar that moves.
CROPS_PER_CALL = 1024


def load_embedder(
    checkpoint: str | None, device: str = "auto", half: bool | None = None, batch_size: int = 128, descriptor: str = "reid"
):
    """A CSSC checkpoint when given, else the offline ImageNet MobileNetV2 backbone (no untrained heads);
    descriptor="colour_histogram" gives the colour baseline instead of a network."""
    from reid import Embedder
    from reid.errors import ReidError

    if descriptor == "colour_histogram":
        return ColourHistogramEmbedder()
    try:
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise CctrackError(f"re-id checkpoint not found: {checkpoint}")
            return Embedder.from_checkpoint(checkpoint, device=device, half=half, batch_size=batch_size)
        return Embedder.imagenet_backbone("mobilenetv2", device=device, half=half, batch_size=batch_size)
    except ReidError as error:
        raise CctrackError(str(error)) from None


def model_identity(embedder) -> tuple[str, str]:
    """(description, sha256 of the weights file, or of the description for a descriptor without weights)."""
    if embedder.weights_path is None:
        return embedder.description, hashlib.sha256(embedder.description.encode()).hexdigest()
    return embedder.description, sha256_of(Path(embedder.weights_path))


def embed_tracklets(crops: Sequence[Sequence[np.ndarray]], embedder, show_progress: bool = True) -> TrackletEmbeddings:
    """Embed all crops (one list per tracklet) and average them into one descriptor per tracklet."""
    flat = [crop for tracklet_crops in crops for crop in tracklet_crops]
    if any(len(tracklet_crops) == 0 for tracklet_crops in crops):
        raise CctrackError("a tracklet has no crops to embed")
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in crops])]).astype(np.int64)
    parts = []
    with tqdm(total=len(flat), desc="embed", unit="crop", disable=not show_progress) as bar:
        for start in range(0, len(flat), CROPS_PER_CALL):
            chunk = flat[start : start + CROPS_PER_CALL]
            parts.append(embedder.embed(chunk))
            bar.update(len(chunk))
    crop_embeddings = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    description, sha256 = model_identity(embedder)
    return TrackletEmbeddings(
        crop_embeddings=crop_embeddings.astype(np.float32),
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
