"""Evaluation protocols (spec "Evaluation"): flip-averaged features, distances, per-protocol metrics.

Feature = f(img) + f(flip(img)), L2-normalised; distance = squared Euclidean between normalised features
(2 - 2 cos: the same ranking as cosine). Protocols, each a dict of metrics from reid.metrics.evaluate:
- prcc:   gallery = camera A; "standard" (same clothes) = queries from camera B, "cloth_changing" = camera C;
- ltcc:   one distance matrix; "standard" (general) drops same pid AND camera, "cloth_changing" also drops
          same pid AND same outfit;
- folder: both, as LTCC (which images are queries: reid.datasets.folder's `protocol`);
- celeb, market, cuhk03: "standard" only.
A protocol none of whose queries has a valid gallery match (e.g. cloth-changing on a folder dataset where
everyone wears one outfit) is skipped with a reason, decided from the labels before any feature is
extracted; only when every protocol is skipped is it an error.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.checkpoint import model_from_checkpoint
from reid.datasets import DEFAULT_TRAIN_FRACTION, ReidDataset, Sample, load_dataset
from reid.datasets.folder import FIRST_PER_CAMERA
from reid.datasets.images import ImageDataset
from reid.device import resolve_device
from reid.errors import ReidError
from reid.metrics import evaluate
from reid.model import CSSC
from reid.rerank import k_reciprocal_distances
from reid.transforms import build_test_transform

# What each protocol is called in the dataset's paper, for printing.
PROTOCOL_LABELS = {
    "prcc": {"standard": "same-clothes", "cloth_changing": "cloth-changing"},
    "ltcc": {"standard": "general", "cloth_changing": "cloth-changing"},
    "folder": {"standard": "standard", "cloth_changing": "cloth-changing"},
    "celeb": {"standard": "standard"},
    "market": {"standard": "standard"},
    "cuhk03": {"standard": "standard"},
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


@dataclass(frozen=True)
class Protocol:
    name: str  # key in the results: "standard" or "cloth_changing"
    mode: str  # reid.metrics.evaluate mode
    query_rows: list[int]  # indices into dataset.query that this protocol scores, ascending


@dataclass(frozen=True)
class Evaluation(Mapping[str, dict[str, float | int]]):
    """Metrics per protocol that had valid queries (read as a mapping), and why each other protocol was skipped."""

    metrics: dict[str, dict[str, float | int]]
    skipped: dict[str, str]  # protocol -> reason

    def __getitem__(self, protocol: str) -> dict[str, float | int]:
        return self.metrics[protocol]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)


def dataset_protocols(dataset: ReidDataset) -> list[Protocol]:
    """The protocols of `dataset.name`, each with the queries it scores."""
    if dataset.name == "prcc":
        def rows_of(camera: int) -> list[int]:
            return [row for row, sample in enumerate(dataset.query) if sample.camid == camera]

        return [
            Protocol("standard", "standard", rows_of(PRCC_SAME_CLOTHES_CAMERA)),
            Protocol("cloth_changing", "standard", rows_of(PRCC_CLOTH_CHANGING_CAMERA)),
        ]
    every_query = list(range(len(dataset.query)))
    return [Protocol(name, name, every_query) for name in PROTOCOL_LABELS[dataset.name]]


def count_valid_queries(query: Sequence[Sample], gallery: Sequence[Sample], mode: str) -> int:
    """Queries that keep at least one same-pid gallery item under reid.metrics.evaluate's `mode` rules.

    From labels alone, by counting: "standard" drops same pid AND same camera, so a query is valid when its
    pid has more gallery items than its (pid, camera); "cloth_changing" also drops same pid AND same clothes,
    so by inclusion-exclusion the kept items are pid - (pid, camera) - (pid, clothes) + (pid, camera, clothes).
    """
    per_pid = Counter(s.pid for s in gallery)
    per_camera = Counter((s.pid, s.camid) for s in gallery)
    per_clothes = Counter((s.pid, s.clothes_id) for s in gallery)
    per_camera_clothes = Counter((s.pid, s.camid, s.clothes_id) for s in gallery)

    def kept(q: Sample) -> int:
        if mode == "standard":
            return per_pid[q.pid] - per_camera[(q.pid, q.camid)]
        return (per_pid[q.pid] - per_camera[(q.pid, q.camid)] - per_clothes[(q.pid, q.clothes_id)]
                + per_camera_clothes[(q.pid, q.camid, q.clothes_id)])

    return sum(kept(q) > 0 for q in query)


def _skip_reason(dataset: ReidDataset, protocol: Protocol) -> str | None:
    """Why `protocol` has no valid query, or None when it has one."""
    queries = [dataset.query[row] for row in protocol.query_rows]
    if not queries:
        return "no queries"
    if count_valid_queries(queries, dataset.gallery, protocol.mode) > 0:
        return None
    if protocol.mode == "cloth_changing":
        outfits_per_pid = Counter(pid for pid, _ in {(s.pid, s.clothes_id) for s in dataset.query + dataset.gallery})
        if max(outfits_per_pid.values()) == 1:
            return "every test identity wears one outfit, so no query has a gallery image of itself in other clothes"
        return "no query has a gallery image of itself in other clothes from another camera"
    return "no query has a gallery image of itself from another camera"


def plan_protocols(dataset: ReidDataset) -> tuple[list[Protocol], dict[str, str]]:
    """(protocols with at least one valid query, {skipped protocol: reason}), from labels only.

    Raises ReidError when nothing can be evaluated, so that a hopeless run stops before extracting features.
    """
    if not dataset.query or not dataset.gallery:
        raise ReidError(f"{dataset.name}: nothing to evaluate (query {len(dataset.query)}, gallery {len(dataset.gallery)} images)")
    runnable, skipped = [], {}
    for protocol in dataset_protocols(dataset):
        reason = _skip_reason(dataset, protocol)
        if reason is None:
            runnable.append(protocol)
        else:
            skipped[protocol.name] = reason
    if not runnable:
        labels = PROTOCOL_LABELS[dataset.name]
        reasons = "; ".join(f"{labels[name]}: {reason}" for name, reason in skipped.items())
        raise ReidError(f"{dataset.name}: no protocol has a valid query ({reasons})")
    return runnable, skipped


def _labels(samples: Sequence[Sample], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "pids": torch.tensor([s.pid for s in samples], device=device),
        "camids": torch.tensor([s.camid for s in samples], device=device),
        "clothes": torch.tensor([s.clothes_id for s in samples], device=device),
    }


def evaluate_protocols(dataset: ReidDataset, query_features: torch.Tensor, gallery_features: torch.Tensor,
                       rerank: bool = False) -> Evaluation:
    """Metrics per protocol of `dataset.name` from features of dataset.query and dataset.gallery; rerank:
    rank by k-reciprocal re-ranked distances (reid.rerank) instead of the plain ones."""
    runnable, skipped = plan_protocols(dataset)
    device = query_features.device
    if rerank:
        distances = k_reciprocal_distances(query_features, gallery_features)
    else:
        distances = squared_euclidean(query_features, gallery_features)
    query, gallery = _labels(dataset.query, device), _labels(dataset.gallery, device)

    def score(protocol: Protocol) -> dict[str, float | int]:
        # Rows are ascending and unique, so all of them is every query: a slice avoids copying the matrix.
        every_query = len(protocol.query_rows) == len(dataset.query)
        rows = slice(None) if every_query else torch.tensor(protocol.query_rows, device=device)
        return evaluate(
            distances[rows], query["pids"][rows], gallery["pids"], query["camids"][rows], gallery["camids"],
            query["clothes"][rows], gallery["clothes"], mode=protocol.mode,
        )

    return Evaluation({protocol.name: score(protocol) for protocol in runnable}, skipped)


def evaluate_model(
    model: CSSC,
    dataset: ReidDataset,
    input_size: Sequence[int],
    device: str | torch.device = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
    rerank: bool = False,
) -> Evaluation:
    """Extract query and gallery features with `model` (moved to `device`) and score every protocol."""
    plan_protocols(dataset)  # fails before the slow feature extraction when nothing can be evaluated
    device = resolve_device(device)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    extract = dict(input_size=input_size, device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    query_features = extract_features(model, dataset.query, **extract)
    gallery_features = extract_features(model, dataset.gallery, **extract)
    return evaluate_protocols(dataset, query_features, gallery_features, rerank)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset_name: str,
    data_root: str | os.PathLike,
    device: str | torch.device = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    folder_train_fraction: float = DEFAULT_TRAIN_FRACTION,
    progress: bool = False,
    folder_protocol: str = FIRST_PER_CAMERA,
    folder_query_camera: str | None = None,
    rerank: bool = False,
) -> Evaluation:
    """Load a weights file or training checkpoint and evaluate it on a dataset, at the input size it was trained at."""
    dataset = load_dataset(dataset_name, Path(data_root), folder_train_fraction, folder_protocol, folder_query_camera)
    plan_protocols(dataset)  # a hopeless dataset fails before the checkpoint is even read
    model, arch = model_from_checkpoint(checkpoint, map_location="cpu")
    return evaluate_model(model, dataset, arch["input_size"], device, batch_size, num_workers, progress, rerank)
