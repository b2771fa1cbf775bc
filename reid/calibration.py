"""How much a similarity says: the same-person log-likelihood ratio of two tracklet descriptors.

A fixed cosine threshold means nothing across models (a trained model's raw features all lie within a
few degrees of each other). So every checkpoint carries its own calibration, fitted on identities it
never trained on, the way the app will use it:

- each identity's images in one camera view form "tracklets" of a few crops (the app averages 8);
- crops are degraded like surveillance video (downscale, blur, JPEG) and each view gets its own colour
  rendering, with a fixed seed;
- crop features are the model's BNNeck-normalised features, averaged and L2-normalised per tracklet,
  then centred per camera (`center_per_camera`, as the app's linker does);
- a logistic model of cross-view pairs, with same-person and different-person pairs weighted equally,
  gives log LR(s) = slope * s + intercept: the evidence of similarity s, free of any prior. The app adds
  its own prior (how many candidates there are) and other evidence (transit time) to this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from reid.datasets.base import Sample
from reid.errors import ReidError

CENTERING_PRIOR_TRACKLETS = 5.0  # a camera with n tracklets has n / (n + 5) of its mean removed
CROPS_PER_TRACKLET = 4
CALIBRATION_SEED = 1234


@dataclass(frozen=True)
class LinkCalibration:
    slope: float  # log LR per unit of cosine similarity
    intercept: float
    positive_pairs: int
    negative_pairs: int
    roc_auc: float  # of the fitted pairs: how well similarity separates same from different people
    feature: str = "bnneck"  # the features it was fitted on
    centred: bool = True  # fitted on per-camera centred descriptors
    # Different-person similarities of the fitted pairs: median and robust spread (1.4826 x MAD). The app
    # compares them with its own scene's, where everyone may look more alike (cctrack.link.evidence).
    negative_centre: float = 0.0
    negative_spread: float = 1.0

    def log_likelihood_ratio(self, similarity: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(similarity, np.float64) + self.intercept

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LinkCalibration:
        try:
            return cls(**values)
        except TypeError as error:
            raise ReidError(f"malformed link calibration {values!r}: {error}") from None

    def summary(self) -> str:
        return (f"link calibration: log LR = {self.slope:.2f} x cos + {self.intercept:.2f} "
                f"({self.positive_pairs} same / {self.negative_pairs} different pairs, ROC AUC {self.roc_auc:.3f})")


def center_per_camera(embeddings: np.ndarray, camera_index: np.ndarray, prior_tracklets: float = CENTERING_PRIOR_TRACKLETS) -> np.ndarray:
    """Embeddings minus their camera's mean, re-normalised; (N, D) float32.

    A camera's colour look, background and viewpoint move all of its embeddings the same way, which hides
    the person. The mean of a camera with n tracklets is shrunk by n / (n + prior_tracklets), so that a
    camera with one or two tracklets is barely moved (its mean is mostly the person, not the camera)."""
    camera_index = np.asarray(camera_index)
    centered = embeddings.astype(np.float32, copy=True)
    for camera in np.unique(camera_index):
        rows = camera_index == camera
        count = int(rows.sum())
        centered[rows] -= (count / (count + prior_tracklets)) * embeddings[rows].mean(axis=0)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return centered / np.maximum(norms, 1e-12)


def fit_logistic(similarity: np.ndarray, same: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(slope, intercept) of a class-balanced 1-D logistic regression by Newton's method, with a weak
    ridge on the slope so that perfectly separated pairs give a finite, not infinite, slope."""
    x = np.stack([np.asarray(similarity, np.float64), np.ones(len(similarity))], axis=1)
    y = np.asarray(same, np.float64)
    weight = np.where(y > 0, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    ridge = np.diag([1e-3, 0.0])
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ theta)))
        gradient = x.T @ (weight * (p - y)) + ridge @ theta
        hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average ranks over ties.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration_tracklets(samples: Sequence[Sample]) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Group sample rows into tracklets of CROPS_PER_TRACKLET images of one (pid, camera); returns
    (rows per tracklet, pid per tracklet, camera per tracklet)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for row, sample in enumerate(samples):
        groups.setdefault((sample.pid, sample.camid), []).append(row)
    tracklets, pids, cameras = [], [], []
    for (pid, camera), rows in sorted(groups.items()):
        for start in range(0, len(rows), CROPS_PER_TRACKLET):
            chunk = rows[start : start + CROPS_PER_TRACKLET]
            if len(chunk) >= 2 or len(rows) < 2:
                tracklets.append(chunk)
                pids.append(pid)
                cameras.append(camera)
    return tracklets, np.array(pids), np.array(cameras)


CROP_SIZE = (128, 64)  # (height, width): calibration crops are people of surveillance size, then degraded


def degraded_crops(samples: Sequence[Sample]) -> list[np.ndarray]:
    """HxWx3 uint8 BGR crops of CROP_SIZE: each image downscaled to a random height of 40-128 px and back,
    blurred and JPEG-compressed at random, and rendered with its camera's own colour look (fixed seed)."""
    from reid.augment import blur, downscale, jpeg, shift_colour
    from reid.datasets.images import read_rgb_uint8

    state = torch.get_rng_state()
    torch.manual_seed(CALIBRATION_SEED)
    try:
        pixels = torch.stack([read_rgb_uint8(sample.path, CROP_SIZE) for sample in samples]).float() / 255
        count = len(samples)
        cameras = torch.tensor([sample.camid for sample in samples])
        for camera in cameras.unique():
            rows = cameras == camera
            camera_look = torch.get_rng_state()
            pixels[rows] = torch.stack([_with_state(camera_look, shift_colour, image[None]) for image in pixels[rows]])
            torch.rand(16)  # move on: the next camera gets another look
        pixels = downscale(pixels, torch.rand(count) < 0.7, 40)
        pixels = blur(pixels, torch.rand(count) < 0.3, 1.0)
        pixels = jpeg(pixels, torch.rand(count) < 0.5, 40)
    finally:
        torch.set_rng_state(state)
    rgb = (pixels * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(image[:, :, ::-1]) for image in rgb]


def _with_state(state: torch.Tensor, shift, image: torch.Tensor) -> torch.Tensor:
    """The same colour shift for every image of a camera: replay the camera's RNG state for each."""
    saved = torch.get_rng_state()
    torch.set_rng_state(state)
    try:
        return shift(image, torch.ones(1, dtype=torch.bool), 0.3)[0]
    finally:
        torch.set_rng_state(saved)


Embed = Callable[[list[np.ndarray]], np.ndarray]  # BGR uint8 crops -> (N, D) L2-normalised features


def fit_calibration(embed: Embed, samples: Sequence[Sample], feature: str = "bnneck") -> LinkCalibration:
    """Fit the link calibration of a descriptor (`embed`, as the app calls it) on `samples` of identities
    it never trained on, seen by at least two cameras."""
    crop_features = np.asarray(embed(degraded_crops(samples)), np.float32)
    tracklets, pids, cameras = calibration_tracklets(samples)
    descriptors = np.stack([crop_features[rows].mean(axis=0) for rows in tracklets])
    descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    descriptors = center_per_camera(descriptors, cameras)
    similarity = descriptors @ descriptors.T
    cross_camera = cameras[:, None] != cameras[None, :]
    upper = np.triu(np.ones_like(cross_camera), k=1) & cross_camera
    same = (pids[:, None] == pids[None, :])[upper]
    if same.sum() == 0 or (~same).sum() == 0:
        raise ReidError("calibration needs identities seen by two cameras, and more than one identity")
    pair_similarity = similarity[upper]
    slope, intercept = fit_logistic(pair_similarity, same)
    auc = roc_auc(pair_similarity, same)
    centre, spread = robust_centre_spread(pair_similarity[~same])
    return LinkCalibration(slope, intercept, int(same.sum()), int((~same).sum()), auc, feature=feature,
                           negative_centre=centre, negative_spread=spread)


def robust_centre_spread(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x median absolute deviation): a normal's mean and standard deviation, unmoved by
    the few same-person pairs hidden among many different-person ones."""
    values = np.asarray(values, np.float64)
    centre = float(np.median(values))
    return centre, float(1.4826 * np.median(np.abs(values - centre)))


def calibrate_weights_file(path, samples: Sequence[Sample], device: str | torch.device = "auto") -> LinkCalibration:
    """Fit the calibration of the weights file at `path` (its BNNeck feature, through the app's Embedder)
    on `samples` and store it in the file, so that the checkpoint brings its own."""
    from reid.checkpoint import set_weights_extra
    from reid.embedder import Embedder

    embedder = Embedder.from_checkpoint(path, device=device, feature="bnneck")
    calibration = fit_calibration(embedder.embed, samples, feature="bnneck")
    set_weights_extra(path, calibration=calibration.as_dict())
    return calibration
