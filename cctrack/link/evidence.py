"""Evidence that two tracklets are one person, as log-odds: prior + appearance + transit time.

    log-odds(a, b) = log prior odds  +  appearance log LR(cos)  +  transit log LR(gap)

- Prior: a person seen in one camera is among the n candidate tracklets of another camera (those within
  the time window) with probability `prior_seen_elsewhere`, so each candidate's prior is that / n; n is
  the geometric mean of the two directions. Most people never reach another camera, and a crowded
  camera offers more look-alikes: both lower the prior.
- Appearance: the re-id model's own calibration (reid.calibration), fitted on identities it never saw,
  read against this run's own different-person similarities ("empirical null"). Nearly every pair of
  two cameras is two different people, so the median and spread of a camera pair's similarities say how
  alike strangers look there: in a scene where everyone wears dark coats, or between cameras whose
  centring left a shared look, the same cosine is weaker evidence. Similarities are moved onto the
  calibration's scale by that median and spread, and only ever towards less evidence.
- Transit: people who leave camera A reach camera B after a typical time, so the gap between a
  look-alike pair's tracklets is evidence. Per camera pair (and per camera, for re-entry), the gaps of
  the run's look-alike pairs are a mixture of true matches clustered around the transit time and
  strangers at random gaps (the gaps of random pairs of the same cameras); EM finds the cluster
  (log-normal), and a pattern counts only if it is tight and far more likely than chance. Unrelated
  cameras, whose look-alikes fall at random gaps, get no pattern and no transit evidence (log LR 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reid.calibration import LinkCalibration, robust_centre_spread

from cctrack.table import TrackletTable

# Pseudo-count against a pattern of few matches: a pattern holding n matches speaks with about
# n / (n + 3) of its full strength.
TRANSIT_PSEUDO_MATCHES = 3.0
TRANSIT_MAX_LOG_LR = 3.0  # a transit time alone never outweighs clear appearance evidence
# Tracklet pairs per camera pair (all of them when there are fewer) from which the run's stranger
# similarities and random gaps are estimated.
PAIRS_PER_CAMERA_PAIR = 4000
PATTERN_MAX_SPREAD = 0.5  # matches' gaps must spread at most half as far as random pairs' to count
PATTERN_MIN_MATCHES = 3.0  # a transit pattern is seen in at least this many look-alike pairs
# Twice the log-likelihood gain of the pattern over chance; about a 1-in-1000 chance level for the
# 3 fitted numbers (share, centre, spread) of a chi-square test.
PATTERN_MIN_EVIDENCE = 16.3
MIN_SPREAD = 0.2  # in log-gap units (see _log_gap): transit times are never known better than about 20 %


def logit(probability: float) -> float:
    return math.log(probability / (1 - probability))


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(log_odds, np.float64)))


def candidate_counts(table: TrackletTable, start: np.ndarray, end: np.ndarray, window: float) -> np.ndarray:
    """(N, C) int64: for each tracklet, how many tracklets of each camera lie within `window` seconds of it
    (itself excluded)."""
    counts = np.zeros((len(table), len(table.camera_names)), np.int64)
    low, high = start - window, end + window
    for camera in range(len(table.camera_names)):
        rows = table.camera_index == camera
        starts, ends = np.sort(start[rows]), np.sort(end[rows])
        # Tracklets starting by `high`, minus those that ended before `low` (they started before it too).
        counts[:, camera] = np.searchsorted(starts, high, side="right") - np.searchsorted(ends, low, side="left")
    counts[np.arange(len(table)), table.camera_index] -= 1
    return counts


def prior_log_odds(table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, counts: np.ndarray,
                   prior_seen_elsewhere: float) -> np.ndarray:
    """(P,) log prior odds that each candidate pair is one person (see module docstring)."""
    camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
    candidates = np.sqrt(np.maximum(counts[pair_a, camera_b], 1) * np.maximum(counts[pair_b, camera_a], 1))
    prior = prior_seen_elsewhere / np.maximum(candidates, 1.0)
    prior = np.minimum(prior, 0.5)
    return np.log(prior / (1 - prior))


# A camera pair needs this many tracklet pairs to estimate its own null. Its estimate is used as it is,
# not shrunk towards the calibration's: the correction only ever lowers evidence, so a noisy estimate
# can cost a link but never make a false one, and shrinking would only let look-alike strangers of a
# small run through.
MIN_NULL_PAIRS = 10


def camera_pair_samples(table: TrackletTable, key: tuple[int, int], start: np.ndarray, end: np.ndarray,
                         rng: np.random.Generator, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of distinct tracklets of cameras key[0] and key[1] (all of them, or `limit` at random); for
    one camera only pairs seen at different times, as re-entry candidates are."""
    rows_i, rows_j = np.flatnonzero(table.camera_index == key[0]), np.flatnonzero(table.camera_index == key[1])
    if len(rows_i) * len(rows_j) <= limit:
        first, second = np.repeat(rows_i, len(rows_j)), np.tile(rows_j, len(rows_i))
    else:
        first, second = rng.choice(rows_i, limit), rng.choice(rows_j, limit)
    keep = first != second
    if key[0] == key[1]:
        keep &= (end[first] <= start[second]) | (end[second] <= start[first])
    return first[keep], second[keep]


def appearance_null(table: TrackletTable, embeddings: np.ndarray, start: np.ndarray, end: np.ndarray,
                    seed: int = 0) -> dict[tuple[int, int], tuple[float, float]]:
    """Per unordered camera pair with at least MIN_NULL_PAIRS pairs: (median, spread) of its
    different-person similarities, estimated from all (or random) pairs."""
    rng = np.random.default_rng(seed)
    cameras = len(table.camera_names)
    null = {}
    for i in range(cameras):
        for j in range(i, cameras):
            first, second = camera_pair_samples(table, (i, j), start, end, rng, PAIRS_PER_CAMERA_PAIR)
            if len(first) < MIN_NULL_PAIRS:
                continue
            null[(i, j)] = robust_centre_spread(np.einsum("ij,ij->i", embeddings[first], embeddings[second]))
    return null


def on_calibration_scale(table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, similarity: np.ndarray,
                         null: dict[tuple[int, int], tuple[float, float]], calibration: LinkCalibration) -> np.ndarray:
    """Similarities moved onto the calibration's scale, s' = c + w (s - r) / v, where (r, v) is the run's
    null of the pair's cameras and (c, w) the calibration's. Only ever towards less evidence: r is taken
    as at least c, and v as at least w."""
    moved = np.asarray(similarity, np.float64).copy()
    camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
    low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
    for (i, j), (centre, spread) in null.items():
        rows = (low == i) & (high == j)
        run_centre = max(centre, calibration.negative_centre)
        run_spread = max(spread, calibration.negative_spread)
        moved[rows] = calibration.negative_centre + calibration.negative_spread * (moved[rows] - run_centre) / run_spread
    return moved


def signed_gaps(pair_a: np.ndarray, pair_b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(P,) seconds from the end of the earlier tracklet to the start of the later one; negative when
    the two were seen at the same time."""
    return np.maximum(start[pair_b] - end[pair_a], start[pair_a] - end[pair_b])


def _log_gap(gaps: np.ndarray) -> np.ndarray:
    """Gaps on a log scale (sign kept): 2 s vs 4 s differ as much as 60 s vs 120 s."""
    return np.sign(gaps) * np.log1p(np.abs(gaps))


def _robust_normal(samples: np.ndarray) -> tuple[float, float]:
    """(median, spread from the median absolute deviation, >= MIN_SPREAD): one stray match moves neither."""
    centre, spread = robust_centre_spread(samples)
    return centre, max(spread, MIN_SPREAD)


def _normal_density(at: np.ndarray, centre: float, spread: float) -> np.ndarray:
    z = (at - centre) / spread
    return np.exp(-0.5 * z**2) / (spread * math.sqrt(2 * math.pi))


def fit_transit_pattern(matches: np.ndarray, random_centre: float, random_spread: float,
                        iterations: int = 100) -> tuple[float, float, float] | None:
    """(share, centre, spread) of a transit pattern among the log-gaps of look-alike pairs, or None.

    The look-alike pairs are a mixture: true matches, whose gaps cluster around the transit time, and
    strangers, whose gaps follow the random pairs' normal (random_centre, random_spread). EM fits the
    cluster's share, centre and spread. It counts as a pattern only if it is tight (spread at most
    PATTERN_MAX_SPREAD of the random pairs'), holds at least PATTERN_MIN_MATCHES matches, and explains
    the gaps much better than chance (likelihood-ratio statistic above PATTERN_MIN_EVIDENCE)."""
    if len(matches) < PATTERN_MIN_MATCHES:
        return None
    background = _normal_density(matches, random_centre, random_spread)
    share, (centre, spread) = 0.5, _robust_normal(matches)
    for _ in range(iterations):
        cluster = share * _normal_density(matches, centre, spread)
        responsibility = cluster / np.maximum(cluster + (1 - share) * background, 1e-300)
        total = responsibility.sum()
        if total < 1e-9:
            return None
        share = total / len(matches)
        centre = float((responsibility * matches).sum() / total)
        spread = max(float(np.sqrt((responsibility * (matches - centre) ** 2).sum() / total)), MIN_SPREAD)
    mixture = share * _normal_density(matches, centre, spread) + (1 - share) * background
    evidence = 2 * float(np.sum(np.log(np.maximum(mixture, 1e-300)) - np.log(np.maximum(background, 1e-300))))
    if spread > PATTERN_MAX_SPREAD * random_spread or share * len(matches) < PATTERN_MIN_MATCHES or evidence < PATTERN_MIN_EVIDENCE:
        return None
    return share, centre, spread


@dataclass(frozen=True)
class TransitPattern:
    """A camera pair's transit times, in log-gap space (see _log_gap): the share of look-alike pairs
    that are true matches (shrunk by TRANSIT_PSEUDO_MATCHES), their normal, and the random pairs' normal."""

    share: float
    centre: float
    spread: float
    random_centre: float
    random_spread: float


@dataclass(frozen=True)
class TransitModel:
    """Per unordered camera pair (i <= j) that shows a transit pattern: that pattern."""

    patterns: dict[tuple[int, int], TransitPattern]

    def log_likelihood_ratio(self, table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, gaps: np.ndarray) -> np.ndarray:
        """(P,) transit log LR of each pair, 0 where its camera pair shows no pattern."""
        result = np.zeros(len(pair_a))
        camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
        low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
        log_gaps = _log_gap(gaps)
        for (i, j), pattern in self.patterns.items():
            rows = (low == i) & (high == j)
            ratio = _normal_density(log_gaps[rows], pattern.centre, pattern.spread) / np.maximum(
                _normal_density(log_gaps[rows], pattern.random_centre, pattern.random_spread), 1e-300)
            result[rows] = np.clip(np.log(pattern.share * ratio + 1 - pattern.share), -TRANSIT_MAX_LOG_LR, TRANSIT_MAX_LOG_LR)
        return result


def fit_transit_model(table: TrackletTable, start: np.ndarray, end: np.ndarray, pair_a: np.ndarray,
                      pair_b: np.ndarray, confident: np.ndarray, window: float, seed: int = 0) -> TransitModel:
    """The transit pattern of every camera pair whose confident pairs' gaps cluster, against the gaps
    of random pairs of the same cameras within the time window (fixed seed: the same run gives the same
    model)."""
    rng = np.random.default_rng(seed)
    camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
    low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
    gaps = _log_gap(signed_gaps(pair_a, pair_b, start, end))
    patterns = {}
    for key in sorted({(int(i), int(j)) for i, j in zip(low[confident], high[confident])}):
        matches = gaps[confident & (low == key[0]) & (high == key[1])]
        first, second = camera_pair_samples(table, key, start, end, rng, PAIRS_PER_CAMERA_PAIR)
        random = signed_gaps(first, second, start, end)
        random = _log_gap(random[random <= window])
        if len(random) < 2:
            continue
        random_centre, random_spread = _robust_normal(random)
        found = fit_transit_pattern(matches, random_centre, random_spread)
        if found is None:
            continue
        share, centre, spread = found
        share *= share * len(matches) / (share * len(matches) + TRANSIT_PSEUDO_MATCHES)
        patterns[key] = TransitPattern(share, centre, spread, random_centre, random_spread)
    return TransitModel(patterns)


def mutual_best(pair_a: np.ndarray, pair_b: np.ndarray, score: np.ndarray, table: TrackletTable) -> np.ndarray:
    """(P,) bool: the pair is each tracklet's highest-scoring partner in the other tracklet's camera."""
    count, cameras = len(table), len(table.camera_names)
    best = np.full((count, cameras), -np.inf)
    np.maximum.at(best, (pair_a, table.camera_index[pair_b]), score)
    np.maximum.at(best, (pair_b, table.camera_index[pair_a]), score)
    return (score >= best[pair_a, table.camera_index[pair_b]]) & (score >= best[pair_b, table.camera_index[pair_a]])
