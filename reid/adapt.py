"""Fine-tune a trained CSSC model on unlabelled tracklets of the user's own cameras.

A model trained on one dataset meets other cameras, light and people in the field. The tracker already
knows two things about them without any labels:

- the crops of one tracklet are one person (positives);
- two tracklets seen at the same time in the same camera are two people (negatives).

Tracklets that the linker joined with a high probability count as one person too (`group`). Pairs it
knows nothing about (most cross-camera pairs) are neither pulled together nor pushed apart.

The loss is the batch-hard triplet loss on the feature the app links with (f_cssc through the trained
BNNeck, L2-normalised), with the hardest negative taken among known negatives only, plus a term that keeps
each crop's feature near the base model's (`keep_weight`): labels-free training has nothing else against
collapsing every crop onto one point. Each batch is built
around a group and the groups it is known to differ from, so that most anchors have a negative. Crops get
the surveillance augmentations of training (colour, flip and shift, downscale, blur, erasing), so that
the model also learns this footage's nuisances. Batch norms keep their trained statistics: a few hundred
small batches of one scene would make noisy ones, and the calibration is fitted on the trained scale.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reid.augment import AugmentSettings, augment_batch
from reid.checkpoint import WEIGHTS_FORMAT, BNNeckFeature, bnneck_state, load_checkpoint, model_from_payload, save_payload
from reid.device import resolve_device
from reid.errors import ReidError
from reid.model import inference_state_dict
from reid.pretrained import sha256_of_file

# Augmentations of the shipped training recipe, without garment recolouring (no pose keypoints here).
ADAPT_AUGMENT = AugmentSettings(
    flip_probability=0.5, pad=6, erasing_probability=0.5, colour_probability=0.5, colour_strength=0.3,
    downscale_probability=0.5, min_downscale_height=40, blur_probability=0.3, max_blur_sigma=1.2,
)


@dataclass(frozen=True)
class AdaptSettings:
    """How `adapt_weights` fine-tunes (chosen before seeing any run: a tenth of the training lr, and about
    as many crops as a short training epoch, so that the model moves towards the scene, not away from
    what it learnt)."""

    steps: int = 200
    groups_per_batch: int = 16  # P: an anchor group and up to P - 1 groups known to differ from it
    crops_per_group: int = 4  # K
    lr: float = 3.5e-5
    weight_decay: float = 5e-4
    margin: float = 0.3  # triplet margin on L2-normalised features (Euclidean distance in [0, 2])
    # Weight of 1 - cos(new feature, base model's feature) per crop: without identity labels nothing else
    # stops the triplet loss from its trivial solution (every crop on one point), so the model may move
    # only as far as the triplet loss gains more than this costs.
    keep_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "groups_per_batch", "crops_per_group"):
            if getattr(self, name) < 1:
                raise ReidError(f"adapt {name} must be >= 1, got {getattr(self, name)}")
        if self.groups_per_batch < 2 or self.crops_per_group < 2:
            raise ReidError("adapt needs groups_per_batch >= 2 and crops_per_group >= 2 (a positive and a negative)")
        if not (self.lr > 0 and self.margin > 0 and self.weight_decay >= 0 and self.keep_weight >= 0):
            raise ReidError(f"adapt lr and margin must be > 0, weight_decay and keep_weight >= 0: {self}")


@dataclass(frozen=True)
class AdaptResult:
    path: Path  # the adapted weights file
    steps: int
    first_loss: float  # mean loss of the first and of the last 10 % of steps
    last_loss: float
    active_anchors: float  # mean share of anchors with both a positive and a known negative in their batch
    seconds: float


def known_negative_groups(group: np.ndarray, different: np.ndarray) -> list[np.ndarray]:
    """For each group, the groups it is known to differ from. `different`: (N, N) bool over tracklets."""
    groups = int(group.max()) + 1 if len(group) else 0
    pairs = np.argwhere(different)
    result = [set() for _ in range(groups)]
    for a, b in pairs:
        if group[a] != group[b]:
            result[group[a]].add(int(group[b]))
            result[group[b]].add(int(group[a]))
    return [np.array(sorted(members), np.int64) for members in result]


def sample_batch(rng: np.random.Generator, crop_rows: list[np.ndarray], negatives: list[np.ndarray],
                 groups_per_batch: int, crops_per_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(crop rows, group of each row): an anchor group (one that has known negatives, when any does), up to
    P - 1 of its known negatives, the rest random groups; K crops of each (with replacement if fewer)."""
    candidates = [g for g in range(len(crop_rows)) if len(negatives[g])] or list(range(len(crop_rows)))
    anchor = int(rng.choice(candidates))
    chosen = [anchor]
    known = negatives[anchor]
    if len(known):
        chosen += rng.choice(known, min(len(known), groups_per_batch - 1), replace=False).tolist()
    others = np.setdiff1d(np.arange(len(crop_rows)), chosen)
    if len(chosen) < groups_per_batch and len(others):
        chosen += rng.choice(others, min(len(others), groups_per_batch - len(chosen)), replace=False).tolist()
    rows, labels = [], []
    for g in chosen:
        pool = crop_rows[g]
        rows.append(rng.choice(pool, crops_per_group, replace=len(pool) < crops_per_group))
        labels.append(np.full(crops_per_group, g))
    return np.concatenate(rows), np.concatenate(labels)


def masked_triplet_loss(features: torch.Tensor, labels: torch.Tensor, known_different: torch.Tensor,
                        margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean batch-hard triplet loss over anchors that have a positive and a known negative, share of such
    anchors). known_different: (B, B) bool; unknown pairs are never used as negatives."""
    distances = torch.cdist(features, features).clamp(min=1e-12)
    same = labels[:, None] == labels[None, :]
    self_pair = torch.eye(len(labels), dtype=torch.bool, device=features.device)
    positive = same & ~self_pair
    hardest_positive = torch.where(positive, distances, 0.0).amax(dim=1)
    hardest_negative = torch.where(known_different, distances, float("inf")).amin(dim=1)
    active = positive.any(dim=1) & known_different.any(dim=1)
    if not bool(active.any()):
        return features.sum() * 0.0, active.float().mean()
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return losses[active].mean(), active.float().mean()


def crops_tensor(crops: Sequence[np.ndarray], input_size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) uint8 RGB: BGR crops resized once to the model's input (area averaging when shrinking,
    as the app's Embedder does)."""
    height, width = input_size
    out = np.empty((len(crops), height, width, 3), np.uint8)
    for index, crop in enumerate(crops):
        shrinking = crop.shape[0] > height or crop.shape[1] > width
        out[index] = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return torch.from_numpy(out[..., ::-1].copy()).permute(0, 3, 1, 2).contiguous()


def adapt_weights(
    weights: str | os.PathLike,
    crops: Sequence[Sequence[np.ndarray]],
    group: np.ndarray,
    different: np.ndarray,
    out_path: str | os.PathLike,
    settings: AdaptSettings = AdaptSettings(),
    device: str | torch.device = "auto",
    progress: bool = False,
    extra: dict | None = None,
) -> AdaptResult:
    """Fine-tune the CSSC weights file `weights` on tracklet crops and write the result to `out_path`.

    crops: one list of BGR uint8 crops per tracklet. group: (N,) which tracklets are one person (tracklets
    of one group are positives). different: (N, N) bool, tracklets known to be two people. The new file
    keeps the BNNeck statistics and records the base model's sha256 and the settings under "extra" (with
    `extra` added); it carries no link calibration (the caller fits one for its footage)."""
    started = time.perf_counter()
    group, different = np.asarray(group, np.int64), np.asarray(different, bool)
    if len(crops) != len(group) or different.shape != (len(group), len(group)):
        raise ReidError(f"adapt: {len(crops)} tracklets, {len(group)} group labels, different {different.shape}")
    if len(crops) < 2 or any(len(c) == 0 for c in crops):
        raise ReidError("adapt needs at least 2 tracklets, each with crops")
    payload = load_checkpoint(weights)
    if payload["format"] != WEIGHTS_FORMAT:
        raise ReidError(f"{weights} is a training checkpoint; adapt an inference weights file (model_final.pt)")
    bnneck = bnneck_state(payload, weights)
    if bnneck is None:
        raise ReidError(f"{weights} has no BNNeck statistics; adapt needs a model trained by `reid train`")
    device = resolve_device(device)
    model, arch = model_from_payload(payload, weights, map_location=device)
    model.eval()  # batch norms keep their statistics (module docstring); gradients still flow
    model.to(memory_format=torch.channels_last)
    feature = BNNeckFeature(model, **bnneck).to(device)
    base_feature = copy.deepcopy(feature).requires_grad_(False)

    flat = [crop for tracklet_crops in crops for crop in tracklet_crops]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in crops])])
    pixels = crops_tensor(flat, tuple(arch["input_size"]))
    groups = int(group.max()) + 1
    if group.min() < 0 or len(np.unique(group)) != groups:
        raise ReidError("adapt: group labels must be 0..G-1 with every group used")
    crop_rows = [np.concatenate([np.arange(offsets[t], offsets[t + 1]) for t in np.flatnonzero(group == g)])
                 for g in range(groups)]
    negatives = known_negative_groups(group, different)
    group_different = np.zeros((groups, groups), bool)
    for g, members in enumerate(negatives):
        group_different[g, members] = True
    group_different = torch.from_numpy(group_different).to(device)

    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)
    losses, active_shares = [], []
    for _ in tqdm(range(settings.steps), desc="adapt", unit="step", disable=not progress):
        rows, labels = sample_batch(rng, crop_rows, negatives, settings.groups_per_batch, settings.crops_per_group)
        images = augment_batch(pixels[rows].to(device), None, ADAPT_AUGMENT).contiguous(memory_format=torch.channels_last)
        labels = torch.from_numpy(labels).to(device)
        features = F.normalize(feature(images).float(), dim=1)
        loss, active = masked_triplet_loss(features, labels, group_different[labels][:, labels], settings.margin)
        if settings.keep_weight > 0:
            with torch.no_grad():
                base = F.normalize(base_feature(images).float(), dim=1)
            loss = loss + settings.keep_weight * (1 - (features * base).sum(dim=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        active_shares.append(float(active))

    tenth = max(1, len(losses) // 10)
    new_payload = {
        **payload,
        "state_dict": {key: value.detach().cpu() for key, value in inference_state_dict(model).items()},
        "extra": {
            **{key: value for key, value in (payload.get("extra") or {}).items() if key != "calibration"},
            "adapted_from": {"path": str(Path(weights).resolve()), "sha256": sha256_of_file(weights)},
            "adapt_settings": asdict(settings),
            **(extra or {}),
        },
    }
    path = save_payload(new_payload, Path(out_path))
    return AdaptResult(path, settings.steps, float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:])),
                       float(np.mean(active_shares)), time.perf_counter() - started)

