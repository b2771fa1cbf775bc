"""Evaluation protocols (spec "Evaluation"): flip-averaged features, distances, per-protocol metrics.

Feature = f(img) + f(flip(img)), L2-normalised; distance = squared Euclidean between normalised features
(2 - 2 cos: the same ranking as cosine). Protocols, each a dict of metrics from reid.metrics.evaluate:
- prcc:   gallery = camera A; "standard" (same clothes) = queries from camera B, "cloth_changing" = camera C;
- ltcc:   one distance matrix; "standard" (general) drops same pid AND camera, "cloth_changing" also drops
          same pid AND same outfit;
- folder: both, as LTCC;
- celeb, market: "standard" only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.checkpoint import model_from_checkpoint
from reid.datasets import DEFAULT_TRAIN_FRACTION, ReidDataset, Sample, load_dataset
from reid.datasets.images import ImageDataset
from reid.embedder import resolve_device
from reid.errors import ReidError
from reid.metrics import evaluate
from reid.model import CSSC
from reid.transforms import build_test_transform

# What each protocol is called in the dataset's paper, for printing.
PROTOCOL_LABELS = {
    "prcc": {"standard": "same-clothes", "cloth_changing": "cloth-changing"},
    "ltcc": {"standard": "general", "cloth_changing": "cloth-changing"},
    "folder": {"standard": "standard", "cloth_changing": "cloth-changing"},
    "celeb": {"standard": "standard"},
    "market": {"standard": "standard"},
}
PRCC_SAME_CLOTHES_CAMERA = 1  # camera B
PRCC_CLOTH_CHANGING_CAMERA = 2  # camera C


def extract_features(
    model: CSSC,
    samples: Sequence[Sample],
    input_size: Sequence[int],
    device: torch.device,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """(N, D) float32 L2-normalised flip-averaged features of `samples`, on `device`; model is put in eval mode."""
    model.eval()
    loader = DataLoader(
        ImageDataset(samples, build_test_transform(input_size)),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    on_cuda = device.type == "cuda"
    half = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
    features = torch.empty((len(samples), model.feature_dim), dtype=torch.float32, device=device)
    start = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=half, enabled=on_cuda):
        for images, _, _, _ in tqdm(loader, desc="features", disable=not progress, leave=False):
            images = images.to(device, non_blocking=True)
            if on_cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            features[start : start + len(images)] = model(images).float() + model(images.flip(3)).float()
            start += len(images)
    return F.normalize(features, dim=1)


def squared_euclidean(query_features: torch.Tensor, gallery_features: torch.Tensor) -> torch.Tensor:
    """(Q, G) squared distances between L2-normalised rows: 2 - 2 q.g, clamped at 0 against rounding."""
    return (2 - 2 * query_features @ gallery_features.T).clamp_(min=0)


def _labels(samples: Sequence[Sample], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "pids": torch.tensor([s.pid for s in samples], device=device),
        "camids": torch.tensor([s.camid for s in samples], device=device),
        "clothes": torch.tensor([s.clothes_id for s in samples], device=device),
    }


def evaluate_protocols(
    dataset: ReidDataset, query_features: torch.Tensor, gallery_features: torch.Tensor
) -> dict[str, dict[str, float | int]]:
    """Metrics per protocol of `dataset.name` from features of dataset.query and dataset.gallery."""
    if not dataset.query or not dataset.gallery:
        raise ReidError(f"{dataset.name}: nothing to evaluate (query {len(dataset.query)}, gallery {len(dataset.gallery)} images)")
    device = query_features.device
    distances = squared_euclidean(query_features, gallery_features)
    query, gallery = _labels(dataset.query, device), _labels(dataset.gallery, device)

    def score(rows: torch.Tensor | slice, mode: str) -> dict[str, float | int]:
        return evaluate(
            distances[rows], query["pids"][rows], gallery["pids"], query["camids"][rows], gallery["camids"],
            query["clothes"][rows], gallery["clothes"], mode=mode,
        )

    if dataset.name == "prcc":
        return {
            "standard": score(query["camids"] == PRCC_SAME_CLOTHES_CAMERA, "standard"),
            "cloth_changing": score(query["camids"] == PRCC_CLOTH_CHANGING_CAMERA, "standard"),
        }
    everything = slice(None)
    results = {"standard": score(everything, "standard")}
    if "cloth_changing" in PROTOCOL_LABELS[dataset.name]:
        results["cloth_changing"] = score(everything, "cloth_changing")
    return results


def evaluate_model(
    model: CSSC,
    dataset: ReidDataset,
    input_size: Sequence[int],
    device: str | torch.device = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float | int]]:
    """Extract query and gallery features with `model` (moved to `device`) and score every protocol."""
    device = resolve_device(device)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    extract = dict(input_size=input_size, device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    query_features = extract_features(model, dataset.query, **extract)
    gallery_features = extract_features(model, dataset.gallery, **extract)
    return evaluate_protocols(dataset, query_features, gallery_features)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset_name: str,
    data_root: str | os.PathLike,
    device: str | torch.device = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    folder_train_fraction: float = DEFAULT_TRAIN_FRACTION,
    progress: bool = False,
) -> dict[str, dict[str, float | int]]:
    """Load a weights file or training checkpoint and evaluate it on a dataset, at the input size it was trained at."""
    dataset = load_dataset(dataset_name, Path(data_root), folder_train_fraction)
    model, arch = model_from_checkpoint(checkpoint, map_location="cpu")
    return evaluate_model(model, dataset, arch["input_size"], device, batch_size, num_workers, progress)
