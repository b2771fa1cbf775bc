"""How much a similarity says: the same-person log-likelihood ratio of two tracklet descriptors.

A fixed cosine threshold means nothing across models (a trained model's raw features all lie within a
few degrees of each other). So every checkpoint carries its own calibration, fitted on identities it
never trained on, the way the app will use it:

- each identity's images in one camera view form "tracklets" of a few crops (the app averages 8);
- crops are degraded like surveillance video (downscale, blur, JPEG) and each view gets its own colour
  rendering, with a fixed seed;
- crop features are the model's BNNeck-normalised features, averaged and L2-normalised per tracklet,
  then centred per camera (`center_per_camera`, as the app's linker does);
- the log-likelihood ratio of same vs different person as a function of similarity s is a monotone
  curve fitted on cross-view pairs: same- and different-person counts in bins of s (bins hold equal
  numbers of same-person pairs, plus a pseudo-count against empty bins), made non-decreasing by pooling
  adjacent violators, and interpolated between bin centres. A straight logistic line (also stored) is
  pulled down by the few look-alike strangers and under-states the evidence where links are decided.
  The curve is the evidence of s, free of any prior: the app adds its own prior (how many candidates
  there are) and other evidence (transit time) to it.
- re-entry (two tracklets of one camera) has its own curve (`LinkCalibration.reentry`), fitted the same
  way on same-camera pairs: each identity's images of one view split into an earlier and a later half
  (`reentry_tracklets`), against strangers of that view. One camera renders a person alike each time,
  so the same person's halves lie far closer than their two views do, and a similarity that is strong
  evidence across cameras is weak inside one: look-alike strangers in one camera are not linked on the
  cross-camera curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from reid.datasets.base import Sample
from reid.errors import ReidError

CENTERING_PRIOR_TRACKLETS = 5.0  # a camera with n tracklets has n / (n + 5) of its mean removed
CROPS_PER_TRACKLET = 8  # as many as the app embeds per tracklet (tracklets.crops_per_tracklet)
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
    # The fitted curve: log LR at these similarities, linear in between, constant beyond the ends.
    # Empty: the logistic line (slope, intercept).
    curve_similarity: tuple[float, ...] = ()
    curve_log_lr: tuple[float, ...] = ()
    # Same-camera (re-entry) pairs read through their own calibration, fitted on same-view pairs: one
    # camera renders a person the same way each time, so the same similarity says less there than
    # across cameras. None: re-entry pairs use this (cross-camera) calibration.
    reentry: LinkCalibration | None = None

    def for_pairs(self, same_camera: bool) -> LinkCalibration:
        """The calibration that reads pairs of one camera (same_camera) or of two."""
        return self.reentry if same_camera and self.reentry is not None else self

    def log_likelihood_ratio(self, similarity: np.ndarray) -> np.ndarray:
        similarity = np.asarray(similarity, np.float64)
        if self.curve_similarity:
            return np.interp(similarity, self.curve_similarity, self.curve_log_lr)
        return self.slope * similarity + self.intercept

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LinkCalibration:
        try:
            values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
            if isinstance(values.get("reentry"), dict):
                values["reentry"] = cls.from_dict(values["reentry"])
            return cls(**values)
        except TypeError as error:
            raise ReidError(f"malformed link calibration {values!r}: {error}") from None

    def summary(self) -> str:
        curve = ", ".join(f"{x:.2f}: {y:+.1f}" for x, y in zip(self.curve_similarity, self.curve_log_lr))
        text = (f"link calibration ({self.positive_pairs} same / {self.negative_pairs} different pairs, ROC AUC "
                f"{self.roc_auc:.3f}): log LR at cos {curve or f'= {self.slope:.2f} x cos + {self.intercept:.2f}'}")
        if self.reentry is not None:
            text += "; re-entry " + self.reentry.summary().removeprefix("link calibration ")
        return text


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


CURVE_BINS = 8
CURVE_PSEUDO_COUNT = 1.0  # per bin and class: no bin claims infinite evidence from zero strangers


def fit_monotone_curve(similarity: np.ndarray, same: np.ndarray, bins: int = CURVE_BINS) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(bin centres, log LR per bin): bins hold equal numbers of same-person pairs (the lowest bin also
    everything below, the highest everything above; empty bins are dropped), log LR = log share of same-person pairs - log share
    of different-person pairs (with CURVE_PSEUDO_COUNT each), pooled into a non-decreasing sequence."""
    similarity, same = np.asarray(similarity, np.float64), np.asarray(same, bool)
    edges = np.quantile(similarity[same], np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    which = np.clip(np.searchsorted(edges, similarity, side="right") - 1, 0, bins - 1)
    positives = np.bincount(which[same], minlength=bins) + CURVE_PSEUDO_COUNT
    negatives = np.bincount(which[~same], minlength=bins) + CURVE_PSEUDO_COUNT
    log_lr = np.log(positives / positives.sum()) - np.log(negatives / negatives.sum())
    weights = positives + negatives
    # A bin's place is the median of all its pairs: the lowest bin sits among the strangers.
    centres = np.array([np.median(similarity[which == b]) if (which == b).any() else np.nan for b in range(bins)])
    keep = np.isfinite(centres)
    centres, log_lr, weights = centres[keep], log_lr[keep], weights[keep]
    log_lr = _pool_adjacent_violators(log_lr, weights)
    keep = np.r_[True, np.diff(centres) > 0]  # np.interp needs increasing places
    return tuple(float(x) for x in centres[keep]), tuple(float(y) for y in log_lr[keep])


def _pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in weighted least squares."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for value, weight in zip(values.tolist(), weights.tolist()):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean_b, weight_b, length_b = blocks.pop()
            mean_a, weight_a, length_a = blocks.pop()
            total = weight_a + weight_b
            blocks.append([(mean_a * weight_a + mean_b * weight_b) / total, total, length_a + length_b])
    return np.concatenate([np.full(length, mean) for mean, _, length in blocks])


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


@dataclass(frozen=True)
class CalibrationPairs:
    """Every cross-camera pair of calibration tracklets: its similarity and the two identities."""

    similarity: np.ndarray  # (P,) cosine of the per-camera centred tracklet descriptors
    pid_a: np.ndarray  # (P,)
    pid_b: np.ndarray  # (P,)

    @property
    def same(self) -> np.ndarray:
        return self.pid_a == self.pid_b


def calibration_pairs(embed: Embed, samples: Sequence[Sample]) -> CalibrationPairs:
    """The pairs a calibration is fitted on: `samples` degraded like surveillance crops, grouped into
    tracklets, embedded as the app does (`embed`), every cross-camera pair of tracklets."""
    return _tracklet_pairs(_crop_features(embed, samples), *calibration_tracklets(samples), same_camera=False)


def reentry_tracklets(samples: Sequence[Sample]) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Two tracklets per (pid, camera), an earlier and a later sighting, like a person who leaves a camera
    and comes back: its images in file-name order, split in two halves. Images that share a file name
    (one photo in several box sets) stay on one side, so the halves never show the same photo.
    Returns (rows per tracklet, pid per tracklet, camera per tracklet)."""
    groups: dict[tuple[int, int], dict[str, list[int]]] = {}
    for row, sample in enumerate(samples):
        groups.setdefault((sample.pid, sample.camid), {}).setdefault(Path(sample.path).name, []).append(row)
    tracklets, pids, cameras = [], [], []
    for (pid, camera), photos in sorted(groups.items()):
        names = sorted(photos)
        if len(names) < 2:
            continue
        middle = (len(names) + 1) // 2
        for half in (names[:middle], names[middle:]):
            tracklets.append([row for name in half for row in photos[name]][:CROPS_PER_TRACKLET])
            pids.append(pid)
            cameras.append(camera)
    return tracklets, np.array(pids, np.int64), np.array(cameras, np.int64)


def reentry_pairs(embed: Embed, samples: Sequence[Sample]) -> CalibrationPairs:
    """The pairs a re-entry calibration is fitted on: like calibration_pairs, but every same-camera pair
    of reentry_tracklets (the same person's two halves, and strangers seen by one camera)."""
    return _tracklet_pairs(_crop_features(embed, samples), *reentry_tracklets(samples), same_camera=True)


def _crop_features(embed: Embed, samples: Sequence[Sample]) -> np.ndarray:
    return np.asarray(embed(degraded_crops(samples)), np.float32)


def _tracklet_pairs(crop_features: np.ndarray, tracklets: list[list[int]], pids: np.ndarray, cameras: np.ndarray,
                    same_camera: bool) -> CalibrationPairs:
    """Every pair of tracklets of one camera (same_camera) or of two: the cosine of their per-camera
    centred descriptors (the mean crop feature, L2-normalised), as the app compares tracklets."""
    descriptors = np.stack([crop_features[rows].mean(axis=0) for rows in tracklets])
    descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    descriptors = center_per_camera(descriptors, cameras)
    wanted = (cameras[:, None] == cameras[None, :]) if same_camera else (cameras[:, None] != cameras[None, :])
    first, second = np.nonzero(np.triu(wanted, k=1))
    return CalibrationPairs((descriptors @ descriptors.T)[first, second], pids[first], pids[second])


def fit_calibration(embed: Embed, samples: Sequence[Sample], feature: str = "bnneck") -> LinkCalibration:
    """Fit the link calibration of a descriptor (`embed`, as the app calls it) on `samples` of identities
    it never trained on, seen by at least two cameras; with its re-entry calibration (`.reentry`) fitted
    on the same crops' same-camera pairs, when the identities have at least two photos per camera."""
    crop_features = _crop_features(embed, samples)
    pairs = _tracklet_pairs(crop_features, *calibration_tracklets(samples), same_camera=False)
    if pairs.same.sum() == 0 or (~pairs.same).sum() == 0:
        raise ReidError("calibration needs identities seen by two cameras, and more than one identity")
    calibration = _fit_on_pairs(pairs, feature)
    tracklets, pids, cameras = reentry_tracklets(samples)
    if len(tracklets) == 0:
        return calibration
    same_camera = _tracklet_pairs(crop_features, tracklets, pids, cameras, same_camera=True)
    if same_camera.same.sum() == 0 or (~same_camera.same).sum() == 0:
        return calibration
    return replace(calibration, reentry=_fit_on_pairs(same_camera, feature))


def _fit_on_pairs(pairs: CalibrationPairs, feature: str) -> LinkCalibration:
    same, similarity = pairs.same, pairs.similarity
    slope, intercept = fit_logistic(similarity, same)
    centre, spread = robust_centre_spread(similarity[~same])
    curve_similarity, curve_log_lr = fit_monotone_curve(similarity, same)
    return LinkCalibration(slope, intercept, int(same.sum()), int((~same).sum()), roc_auc(similarity, same),
                           feature=feature, negative_centre=centre, negative_spread=spread,
                           curve_similarity=curve_similarity, curve_log_lr=curve_log_lr)


def robust_centre_spread(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x median absolute deviation): a normal's mean and standard deviation, unmoved by
    the few same-person pairs hidden among many different-person ones."""
    values = np.asarray(values, np.float64)
    centre = float(np.median(values))
    return centre, float(1.4826 * np.median(np.abs(values - centre)))


def transported(calibration: LinkCalibration, before: tuple[float, float], after: tuple[float, float],
                reentry: tuple[tuple[float, float], tuple[float, float]] | None = None) -> LinkCalibration:
    """The calibration carried over to a changed model (e.g. fine-tuned by reid.adapt) without labels.

    before, after: (median, spread) of the same stranger pairs' similarities under the calibrated model and
    under the changed one. A similarity lying z spreads above the strangers' median gets the evidence it
    had at z spreads before: strangers stay where they were, and a model that lifts the same person
    further above them earns more evidence, up to the curve's end. reentry: (before, after) of stranger
    pairs within one camera, which carry the re-entry curve over (None: before and after carry it too)."""
    (centre_before, spread_before), (centre_after, spread_after) = before, after
    if not (spread_before > 0 and spread_after > 0):
        raise ReidError(f"cannot carry a calibration over a zero spread of strangers ({spread_before}, {spread_after})")
    scale = spread_after / spread_before

    def move(similarity: float) -> float:
        return centre_after + (similarity - centre_before) * scale

    slope = calibration.slope / scale
    return replace(
        calibration,
        slope=slope,
        intercept=calibration.intercept + calibration.slope * centre_before - slope * centre_after,
        negative_centre=move(calibration.negative_centre),
        negative_spread=calibration.negative_spread * scale,
        curve_similarity=tuple(move(x) for x in calibration.curve_similarity),
        reentry=None if calibration.reentry is None else transported(calibration.reentry, *(reentry or (before, after))),
    )


def calibrate_weights_file(path, samples: Sequence[Sample], device: str | torch.device = "auto") -> LinkCalibration:
    """Fit the calibration of the weights file at `path` (its BNNeck feature, through the app's Embedder)
    on `samples` and store it in the file, so that the checkpoint brings its own."""
    from reid.checkpoint import set_weights_extra
    from reid.embedder import Embedder

    embedder = Embedder.from_checkpoint(path, device=device, feature="bnneck")
    calibration = fit_calibration(embedder.embed, samples, feature="bnneck")
    set_weights_extra(path, calibration=calibration.as_dict())
    return calibration
