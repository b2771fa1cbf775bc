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
  calibration's scale by that median and spread, and only ever towards less evidence. Pairs of one
  camera (re-entry) are read on the calibration's re-entry curve, when it has one, against that
  camera's own strangers (appearance_log_lr).
- Transit: people who leave camera A reach camera B after a typical time, so the gap between a
  pair's tracklets is evidence; and they leave A and enter B at typical places (a door, the edge of the
  picture towards the other camera), so where the earlier tracklet ends and the later one starts is
  evidence too. Per camera pair (and per camera, for re-entry), every candidate pair is
  one person with the probability its appearance and prior give it, and one person's gap follows the
  camera pair's transit pattern (a log-normal cluster) or, for the rest, the gaps of random pairs of
  the same cameras. EM finds the cluster, and it counts only if it holds a few independent matches
  (pairs that share a tracklet are one event: a look-alike couple split into several tracklets each
  gives many pairs at one gap), is tight, and explains the gaps better than nearly every fit to the same
  pairs with their match probabilities shuffled (a permutation test: at most a 1-in-100 chance). Unrelated
  cameras, whose look-alikes fall at random gaps, get no pattern and no transit evidence (log LR 0).
  Where a camera pair shows a pattern, its matches' places are learned too, per direction of travel: a
  normal over (where the earlier tracklet was last seen, where the later one was first seen), against
  the same places of random pairs, by EM with the transit time held fixed (fit_place_pattern). The
  permutation test already weighs each fit in time and place together (_fit_mixture with places), so
  a pattern that is plain in where people walk but loose in time is found too. A pair
  that walked the usual way walked it in time and place, so the two ratios multiply inside one mixture
  (TransitPattern.log_likelihood_ratio), and the sum stays within TRANSIT_MAX_LOG_LR: when and where
  together never outweigh clear appearance evidence either. Places are read from the boxes' foot points
  in units of the camera's picture, so no frame size or calibration is needed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

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
PATTERN_MIN_MATCHES = 3.0  # a transit pattern is seen in at least this many independent (expected) matches
# Pairs that share a tracklet are not independent: a person seen in several tracklets, and a look-alike
# of theirs seen in several, give many pairs at one gap, which is one event, not many. So the pattern's
# matches are counted per group of tracklets joined by its likely pairs (in the pattern with at least
# this probability), each group as at most one match.
PATTERN_PAIR_PROBABILITY = 0.25
# A pattern must explain the gaps better than all but TRANSIT_CHANCE_REACHES of TRANSIT_PERMUTATIONS fits
# to shuffled data: p <= (2 + 1) / (299 + 1), so the chance that a camera pair with no transit pattern
# shows one is at most 1 in 100. Why not 99 fits that must all lose (the same size): that test throws
# away a real pattern of p = 0.0025 in 22 % of draws, this one in 4 %. The fits run in growing batches
# and stop at the reach that refuses the pattern (a sequential Monte Carlo test, Besag and Clifford 1991,
# with the decision all 299 would give): a camera pair with no pattern is settled after about 3 / p fits,
# about as many as before; only a real pattern costs all 299 (3x). 499 fits with 4 reaches would lose it
# in 1 % of draws at 5x.
TRANSIT_PERMUTATION_BATCHES = (9, 40, 100, 150)  # batches of at most 150 keep EM's arrays small
TRANSIT_PERMUTATIONS = sum(TRANSIT_PERMUTATION_BATCHES)
TRANSIT_CHANCE_REACHES = 2
TRANSIT_EM_STARTS = 8  # EM starts, spread over the likely matches' gaps (EM finds local optima)
TRANSIT_EM_ITERATIONS = 60
TRANSIT_EM_TOLERANCE = 1e-4  # EM stops once no share, centre or spread moves more than this
TRANSIT_FIT_PAIRS = 1000  # per camera pair: its likeliest matches, on which the pattern is fitted
MIN_SPREAD = 0.2  # in log-gap units (see log_gap): transit times are never known better than about 20 %
# In units of the camera's picture (the extent of all its boxes is 1): where people leave or enter is never
# known better than about 5 % of it (boxes jitter, and a doorway or an edge has a width).
MIN_PLACE_SPREAD = 0.05
PLACE_EM_ITERATIONS = 30
# Random pairs per direction whose places stand for the strangers' (a 4-D kernel density costs 4x a gap's
# per sample, so fewer samples keep the place evidence at about the cost of the transit time's).
PLACE_STRANGER_SAMPLES = 1000


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


def appearance_log_lr(table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, similarity: np.ndarray,
                      null: dict[tuple[int, int], tuple[float, float]], calibration: LinkCalibration) -> np.ndarray:
    """(P,) appearance log LR of each pair: its similarity on the calibration's scale (on_calibration_scale),
    read by the calibration of its kind, cross-camera or re-entry (LinkCalibration.for_pairs)."""
    log_lr = np.empty(len(pair_a))
    same_camera = table.camera_index[pair_a] == table.camera_index[pair_b]
    for kind in (False, True):
        rows = same_camera == kind
        reading = calibration.for_pairs(same_camera=kind)
        log_lr[rows] = reading.log_likelihood_ratio(
            on_calibration_scale(table, pair_a[rows], pair_b[rows], np.asarray(similarity)[rows], null, reading))
    return log_lr


def signed_gaps(pair_a: np.ndarray, pair_b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(P,) seconds from the end of the earlier tracklet to the start of the later one; negative when
    the two were seen at the same time."""
    return np.maximum(start[pair_b] - end[pair_a], start[pair_a] - end[pair_b])


def log_gap(gaps: np.ndarray) -> np.ndarray:
    """Gaps on a log scale (sign kept): 2 s vs 4 s differ as much as 60 s vs 120 s."""
    return np.sign(gaps) * np.log1p(np.abs(gaps))


def _seconds(log_gaps: np.ndarray) -> np.ndarray:
    """The inverse of log_gap."""
    return np.sign(log_gaps) * np.expm1(np.abs(log_gaps))


def _kernel_density(at: np.ndarray, samples: np.ndarray, bandwidth: float) -> np.ndarray:
    """(len(at),) Gaussian kernel density of `samples` at `at`, in chunks (memory ~ 8 MB per chunk)."""
    at = np.asarray(at, np.float64)
    density = np.empty(len(at))
    chunk = max(1, 1_000_000 // max(len(samples), 1))
    for begin in range(0, len(at), chunk):
        z = (at[begin:begin + chunk, None] - samples[None, :]) / bandwidth
        density[begin:begin + chunk] = np.exp(-0.5 * z**2).mean(axis=1) / (bandwidth * math.sqrt(2 * math.pi))
    return density


def _normal_density(at: np.ndarray, centre, spread) -> np.ndarray:
    z = (at - centre) / spread
    return np.exp(-0.5 * z**2) / (spread * math.sqrt(2 * math.pi))


@dataclass(frozen=True)
class RandomGaps:
    """The gaps of random pairs of a camera pair (log-gap space): their kernel density is what a
    stranger's gap looks like there. Kept as samples: real gap spreads are lumpy (a short video puts
    many pairs at negative gaps, a shift pattern puts them at hours), and no one normal describes them."""

    log_gaps: np.ndarray
    bandwidth: float

    @classmethod
    def of(cls, log_gaps: np.ndarray) -> RandomGaps:
        log_gaps = np.asarray(log_gaps, np.float64)
        # Silverman's rule, never finer than transit times are known (MIN_SPREAD).
        bandwidth = max(MIN_SPREAD, 1.06 * float(np.std(log_gaps)) * len(log_gaps) ** -0.2)
        return cls(log_gaps, bandwidth)

    @property
    def spread(self) -> float:
        return max(float(np.std(self.log_gaps)), MIN_SPREAD)

    def density(self, log_gaps: np.ndarray) -> np.ndarray:
        return np.maximum(_kernel_density(log_gaps, self.log_gaps, self.bandwidth), 1e-12)


def _responsibilities(log_gaps: np.ndarray, stranger_density: np.ndarray, probability: np.ndarray, share: np.ndarray,
                      centre: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For fits (R,) of share, centre and spread to the pairs' gaps (n,) with match probabilities (R, n):
    each pair's probability of being a match in the pattern, and its likelihood gain over share = 0
    (both (R, n)); see _fit_mixture for the model."""
    ratio = _normal_density(log_gaps[None, :], centre[:, None], spread[:, None]) / stranger_density
    weighted = probability * share[:, None]
    in_pattern = weighted * ratio
    return in_pattern / (in_pattern + 1 - weighted), weighted * (ratio - 1)


def _fit_mixture(log_gaps: np.ndarray, stranger_density: np.ndarray, match_probability: np.ndarray,
                 starts: np.ndarray, places: PlaceEvidence | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EM for each row of match_probability (R, n) from every start centre, all at once; per row the fit
    of highest evidence: (share, centre, spread, matches in the pattern, evidence), each (R,).

    Pair k's gap x_k is drawn from the pattern N(centre, spread) with probability p_k * share (it is
    one person, p_k from appearance and prior, and walked the usual way), else from the strangers'
    density. evidence: twice the log-likelihood gain over share = 0. With places, each row's best fit
    also places its matches (one weighted fit per direction, _place_ratio), and the evidence is that of
    time and place together: a pattern is a when and a where."""
    rows = match_probability.shape[0]
    # One EM per (start, row): Python's per-step cost, not the arithmetic, is what a small camera pair pays.
    probability = np.tile(match_probability, (len(starts), 1))
    centre = np.repeat(np.asarray(starts, np.float64), rows)
    spread, share = np.full(len(centre), 2 * MIN_SPREAD), np.full(len(centre), 0.5)

    for _ in range(TRANSIT_EM_ITERATIONS):
        previous = np.stack([share, centre, spread])
        in_pattern, gain = _responsibilities(log_gaps, stranger_density, probability, share, centre, spread)
        one_person = probability + gain
        one_person /= one_person + 1 - probability
        total = np.maximum(in_pattern.sum(axis=1), 1e-12)
        centre = (in_pattern * log_gaps).sum(axis=1) / total
        spread = np.maximum(np.sqrt((in_pattern * (log_gaps - centre[:, None]) ** 2).sum(axis=1) / total), MIN_SPREAD)
        share = np.clip(total / np.maximum(one_person.sum(axis=1), 1e-12), 0.0, 1.0)
        if np.abs(np.stack([share, centre, spread]) - previous).max() < TRANSIT_EM_TOLERANCE:
            break
    in_pattern, gain = _responsibilities(log_gaps, stranger_density, probability, share, centre, spread)
    evidence = 2 * np.log1p(gain).sum(axis=1)
    fits = np.stack([share, centre, spread, in_pattern.sum(axis=1), evidence]).reshape(5, len(starts), rows)
    best = np.argmax(fits[4], axis=0)  # the first start on ties
    fits = fits[:, best, np.arange(rows)]
    if places is not None:
        share, centre, spread = fits[0], fits[1], fits[2]
        time_ratio = _normal_density(log_gaps[None, :], centre[:, None], spread[:, None]) / stranger_density
        weighted = match_probability * share[:, None]
        in_pattern = weighted * time_ratio / (weighted * time_ratio + 1 - weighted)
        fits[4] = 2 * np.log1p(weighted * (time_ratio * _place_ratio(in_pattern, places) - 1)).sum(axis=1)
    return tuple(fits)


@dataclass(frozen=True)
class PlaceEvidence:
    """What the transit test reads of a camera pair's candidate pairs' places: PairPlaces' (n, 4) places
    and (n,) directions, and (n,) the density of random pairs' places (same direction) at each."""

    places: np.ndarray
    from_camera: np.ndarray
    stranger_density: np.ndarray
    strangers_covariance: dict[int, np.ndarray]  # per direction (camera walked from): of random pairs' places


def _place_ratio(in_pattern: np.ndarray, places: PlaceEvidence) -> np.ndarray:
    """(R, n): each pair's place ratio (normal over strangers' density) under each row's place normals,
    one per direction, fitted once to the rows' in-pattern probabilities (R, n) as fit_place_pattern's
    M-step does; 1 for a direction that fewer than PATTERN_MIN_MATCHES (expected) matches took."""
    ratio = np.ones_like(in_pattern)
    for camera in np.unique(places.from_camera):
        columns = places.from_camera == camera
        weights, points = in_pattern[:, columns], places.places[columns]
        total = weights.sum(axis=1)
        fitted = total >= PATTERN_MIN_MATCHES
        if not fitted.any():
            continue
        centre, covariance = _weighted_place_normal(weights[fitted], points, places.strangers_covariance[int(camera)])
        block = ratio[:, columns]
        block[fitted] = _place_normal_density(points, centre, covariance) / places.stranger_density[columns]
        ratio[:, columns] = block
    return ratio


def independent_matches(in_pattern: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Expected matches of a pattern counted once per group of tracklets its likely pairs join: the sum
    over groups of min(1, the group's in-pattern probabilities). in_pattern: (P,) each pair's probability
    of being a match in the pattern; first, second: the pairs' tracklets."""
    likely = in_pattern >= PATTERN_PAIR_PROBABILITY
    if not likely.any():
        return 0.0
    tracklets, ends = np.unique(np.concatenate([first[likely], second[likely]]), return_inverse=True)
    count = int(likely.sum())
    graph = coo_matrix((np.ones(count), (ends[:count], ends[count:])), shape=(len(tracklets), len(tracklets)))
    _, group_of_tracklet = connected_components(graph, directed=False)
    per_group = np.bincount(group_of_tracklet[ends[:count]], weights=in_pattern[likely])
    return float(np.minimum(per_group, 1.0).sum())


def em_starts(log_gaps: np.ndarray, match_probability: np.ndarray) -> np.ndarray:
    """EM start centres for a camera pair's transit cluster: where its likely matches' gaps lie (quantiles
    of the gaps weighted by match probability)."""
    weights = match_probability / match_probability.sum()
    order = np.argsort(log_gaps)
    return np.unique(np.interp(np.linspace(0.05, 0.95, TRANSIT_EM_STARTS), np.cumsum(weights[order]), log_gaps[order]))


def permutation_evidence(log_gaps: np.ndarray, match_probability: np.ndarray, strangers: RandomGaps,
                         shuffled: np.ndarray, places: PlaceEvidence | None = None) -> tuple[float, np.ndarray]:
    """The evidence of a camera pair's best transit cluster, and that of each row of `shuffled` (R, n)
    (the match probabilities permuted): fit_transit_pattern's test without its early stop."""
    density = strangers.density(log_gaps)
    starts = em_starts(log_gaps, match_probability)
    observed = _fit_mixture(log_gaps, density, match_probability[None], starts, places)[4][0]
    chance = [_fit_mixture(log_gaps, density, shuffled[i:i + 200], starts, places)[4] for i in range(0, len(shuffled), 200)]
    return float(observed), np.concatenate(chance)


def fit_transit_pattern(log_gaps: np.ndarray, match_probability: np.ndarray, strangers: RandomGaps,
                        rng: np.random.Generator, tracklets: tuple[np.ndarray, np.ndarray] | None = None,
                        places: PlaceEvidence | None = None) -> tuple[float, float, float, float] | None:
    """(share, centre, spread, matches) of the transit pattern of one camera pair, or None.

    log_gaps, match_probability: the camera pair's candidate pairs, and how likely each is one person
    on appearance and prior alone. The pattern is the normal cluster of gaps that the likely matches
    share and strangers do not (EM, _fit_mixture). It counts only if chance cannot explain it: at most
    TRANSIT_CHANCE_REACHES of TRANSIT_PERMUTATIONS fits with the match probabilities shuffled among the
    pairs may reach its evidence (a permutation test, p <= (TRANSIT_CHANCE_REACHES + 1) /
    (TRANSIT_PERMUTATIONS + 1) = 0.01; the shuffles are drawn batch by batch, and the test stops at the
    reach that refuses the pattern), it must hold at
    least PATTERN_MIN_MATCHES matches, and be tight (spread at most PATTERN_MAX_SPREAD of the strangers').
    tracklets: the pairs' two tracklets, so that matches are counted as independent_matches; None: the
    pairs are independent. places: where the pairs walked; the test then weighs the cluster's evidence
    in time and place together (_fit_mixture), for the data and every shuffle alike."""
    log_gaps, match_probability = np.asarray(log_gaps, np.float64), np.asarray(match_probability, np.float64)
    if match_probability.sum() < PATTERN_MIN_MATCHES:
        return None
    stranger_density = strangers.density(log_gaps)
    starts = em_starts(log_gaps, match_probability)
    fit = _fit_mixture(log_gaps, stranger_density, match_probability[None], starts, places)
    share, centre, spread, matches, evidence = (value[0] for value in fit)
    if matches < PATTERN_MIN_MATCHES or spread > PATTERN_MAX_SPREAD * strangers.spread:
        return None
    if tracklets is not None:
        in_pattern = _responsibilities(log_gaps, stranger_density, match_probability[None], *fit[:3])[0][0]
        if independent_matches(in_pattern, *tracklets) < PATTERN_MIN_MATCHES:
            return None
    reached = 0
    for size in TRANSIT_PERMUTATION_BATCHES:
        shuffled = np.stack([rng.permutation(match_probability) for _ in range(size)])
        reached += int((_fit_mixture(log_gaps, stranger_density, shuffled, starts, places)[4] >= evidence).sum())
        if reached > TRANSIT_CHANCE_REACHES:
            return None
    return float(share), float(centre), float(spread), float(matches)


def boundary_places(table: TrackletTable) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2), (N, 2)): where each tracklet was first seen and where it was last seen, as the foot point
    (bottom centre) of its first and last box, in units of its camera's picture: 0 to 1 over the extent
    of all that camera's boxes (no frame size needed; a camera whose boxes have no extent reads 0)."""
    box_camera = table.camera_index[table.box_tracklet]
    foot = np.stack([(table.boxes[:, 0] + table.boxes[:, 2]) / 2, table.boxes[:, 3]], axis=1).astype(np.float64)
    low, size = np.zeros((len(table.camera_names), 2)), np.ones((len(table.camera_names), 2))
    for camera in np.unique(box_camera):
        boxes = table.boxes[box_camera == camera].astype(np.float64)
        low[camera] = boxes[:, 0].min(), boxes[:, 1].min()
        extent = np.array([boxes[:, 2].max(), boxes[:, 3].max()]) - low[camera]
        size[camera] = np.where(extent > 0, extent, 1.0)
    scaled = (foot - low[box_camera]) / size[box_camera]
    scaled[~np.isfinite(scaled)] = 0.0
    return scaled[table.box_offsets[:-1]], scaled[table.box_offsets[1:] - 1]


@dataclass(frozen=True)
class PairPlaces:
    """Where each pair's walk left and arrived: (P, 4) the earlier tracklet's last place and the later
    one's first place (boundary_places), and (P,) the earlier tracklet's camera (the direction of travel)."""

    places: np.ndarray
    from_camera: np.ndarray

    @classmethod
    def of(cls, table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, start: np.ndarray, end: np.ndarray,
           boundary: tuple[np.ndarray, np.ndarray] | None = None) -> PairPlaces:
        """boundary: boundary_places(table), when the caller has it (it reads every box)."""
        first_seen, last_seen = boundary_places(table) if boundary is None else boundary
        a_first = (start[pair_b] - end[pair_a]) >= (start[pair_a] - end[pair_b])
        earlier, later = np.where(a_first, pair_a, pair_b), np.where(a_first, pair_b, pair_a)
        return cls(np.concatenate([last_seen[earlier], first_seen[later]], axis=1), table.camera_index[earlier])

    def rows(self, rows: np.ndarray) -> PairPlaces:
        return PairPlaces(self.places[rows], self.from_camera[rows])


def _product_kernel_density(at: np.ndarray, samples: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """(len(at),) Gaussian product-kernel density of `samples` (m, D) at `at` (n, D), in chunks."""
    density = np.empty(len(at))
    chunk = max(1, 1_000_000 // max(len(samples) * samples.shape[1], 1))
    norm = float(np.prod(bandwidth * math.sqrt(2 * math.pi)))
    for begin in range(0, len(at), chunk):
        z = (at[begin:begin + chunk, None, :] - samples[None, :, :]) / bandwidth
        density[begin:begin + chunk] = np.exp(-0.5 * (z**2).sum(axis=2)).mean(axis=1) / norm
    return np.maximum(density, 1e-12)


def _weighted_place_normal(weights: np.ndarray, points: np.ndarray,
                           strangers_covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of weights (R, m) over points (m, D): the weighted mean (R, D) and covariance (R, D, D)
    of the points. The covariance is shrunk towards the strangers' by TRANSIT_PSEUDO_MATCHES pseudo-matches
    (a pattern seen in n matches knows its places with about n / (n + 3) of their full sharpness: a
    normal fitted to a few matches' places would otherwise pin them down on noise), and is never finer
    than MIN_PLACE_SPREAD."""
    total = weights.sum(axis=1)
    centre = weights @ points / total[:, None]
    offset = points[None, :, :] - centre[:, None, :]
    scatter = np.einsum("rm,rmi,rmj->rij", weights, offset, offset)
    covariance = (scatter + TRANSIT_PSEUDO_MATCHES * strangers_covariance) / (total + TRANSIT_PSEUDO_MATCHES)[:, None, None]
    return centre, covariance + MIN_PLACE_SPREAD**2 * np.eye(points.shape[1])


def _covariance(points: np.ndarray) -> np.ndarray:
    """(D, D) covariance of points (m, D); zeros for fewer than two."""
    if len(points) < 2:
        return np.zeros((points.shape[1], points.shape[1]))
    return np.cov(points, rowvar=False).reshape(points.shape[1], points.shape[1])


def _place_normal_density(points: np.ndarray, centre: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """(R, m): the density of each of R normals (centre (R, D), covariance (R, D, D)) at the points (m, D)."""
    offset = points[None, :, :] - centre[:, None, :]
    distance = np.einsum("rmi,rij,rmj->rm", offset, np.linalg.inv(covariance), offset)
    log_norm = 0.5 * np.linalg.slogdet(covariance)[1] + 0.5 * points.shape[1] * math.log(2 * math.pi)
    return np.exp(-0.5 * distance - log_norm[:, None])


@dataclass(frozen=True)
class PlacePattern:
    """Where the matches of one direction of a transit pattern leave and arrive (PairPlaces' four
    coordinates): their normal, and random pairs' places as the strangers'. The covariance is full, as
    in Javed et al. (ICCV 2003), who learn exit and entry places jointly: where people cross the edge
    between two views varies, but the place they leave one and enter the other go together."""

    centre: np.ndarray  # (4,)
    covariance: np.ndarray  # (4, 4)
    strangers: np.ndarray  # (m, 4)
    bandwidth: np.ndarray  # (4,)

    @classmethod
    def strangers_of(cls, places: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(samples, bandwidth): random pairs' places and their kernel bandwidth (Silverman's rule in 4
        dimensions, never finer than MIN_PLACE_SPREAD)."""
        places = np.asarray(places, np.float64).reshape(-1, 4)
        scale = places.std(axis=0) if len(places) > 1 else np.zeros(4)
        bandwidth = np.maximum(MIN_PLACE_SPREAD, 1.06 * scale * max(len(places), 1) ** (-1 / 8))
        return places, bandwidth

    def ratio(self, places: np.ndarray) -> np.ndarray:
        """(P,) how much likelier each pair's places are for a match walking this way than for strangers."""
        return (_place_normal_density(places, self.centre[None], self.covariance[None])[0]
                / _product_kernel_density(places, self.strangers, self.bandwidth))


def fit_place_pattern(places: np.ndarray, time_ratio: np.ndarray, match_probability: np.ndarray, share: float,
                      stranger_places: np.ndarray, stranger_density: np.ndarray,
                      strangers_covariance: np.ndarray) -> PlacePattern | None:
    """The places of one direction of travel of a transit pattern, or None when fewer than
    PATTERN_MIN_MATCHES (expected) matches of the pattern went that way, or no random pair did.

    places (n, 4), time_ratio (n,) the pattern's time ratio, match_probability (n,) on appearance and
    prior: the direction's candidate pairs; stranger_places (m, 4) random pairs' places, their density
    at the candidates' places (n,) and their covariance (4, 4), as PlaceEvidence holds them. EM with the
    transit time held fixed (share as fitted): pair k is a match in the pattern with probability
    p_k * share, and then its places follow the normal, else the random pairs' places (product-kernel
    density). The covariance is _weighted_place_normal's: shrunk towards the strangers' and never
    finer than MIN_PLACE_SPREAD."""
    if len(stranger_places) == 0:
        return None
    strangers, bandwidth = PlacePattern.strangers_of(stranger_places)
    weighted = np.asarray(match_probability, np.float64) * share
    place_ratio = np.ones(len(places))
    centre = covariance = None
    for _ in range(PLACE_EM_ITERATIONS):
        in_pattern = weighted * time_ratio * place_ratio
        in_pattern = in_pattern / (in_pattern + 1 - weighted)
        if in_pattern.sum() < PATTERN_MIN_MATCHES:
            return None
        previous = centre
        centre, covariance = (value[0] for value in _weighted_place_normal(in_pattern[None], places, strangers_covariance))
        place_ratio = _place_normal_density(places, centre[None], covariance[None])[0] / stranger_density
        if previous is not None and np.abs(centre - previous).max() < TRANSIT_EM_TOLERANCE:
            break
    return PlacePattern(centre, covariance, strangers, bandwidth)


@dataclass(frozen=True)
class TransitPattern:
    """A camera pair's transit times, in log-gap space (see log_gap): the share of true matches that
    walk the usual way (shrunk by TRANSIT_PSEUDO_MATCHES), their normal, and the strangers' gaps; and,
    per direction of travel (keyed by the camera walked from) with enough matches, where they walk."""

    share: float
    centre: float
    spread: float
    strangers: RandomGaps
    matches: float = 0.0  # expected matches the pattern was seen in
    places: dict[int, PlacePattern] = field(default_factory=dict)

    def seconds(self) -> tuple[float, float, float]:
        """(typical, low, high) gap in seconds: the centre and one spread either side."""
        return tuple(float(_seconds(value)) for value in (self.centre, self.centre - self.spread, self.centre + self.spread))

    def time_ratio(self, log_gaps: np.ndarray) -> np.ndarray:
        return _normal_density(log_gaps, self.centre, self.spread) / self.strangers.density(log_gaps)

    def log_likelihood_ratio(self, log_gaps: np.ndarray, places: PairPlaces | None = None) -> np.ndarray:
        """(P,) log LR of the pairs' gaps, and of their places where this pattern knows the direction's."""
        ratio = self.time_ratio(log_gaps)
        if places is not None:
            for camera, place in self.places.items():
                rows = places.from_camera == camera
                ratio[rows] *= place.ratio(places.places[rows])
        return np.clip(np.log(self.share * ratio + 1 - self.share), -TRANSIT_MAX_LOG_LR, TRANSIT_MAX_LOG_LR)


@dataclass(frozen=True)
class TransitModel:
    """Per unordered camera pair (i <= j) that shows a transit pattern: that pattern."""

    patterns: dict[tuple[int, int], TransitPattern]

    def summary(self, camera_names: tuple[str, ...]) -> list[dict]:
        """What was learned, per camera pair, for identities.json and the log: the typical gap and the
        range of one spread either side, in seconds, the matches it was seen in, and, per direction of
        travel whose places were learned ("ways"), where its matches typically leave and enter (foot
        point, in units of each camera's picture: x from the left, y from the top)."""
        rows = []
        for (i, j), pattern in sorted(self.patterns.items()):
            typical, low, high = pattern.seconds()
            row = {"cameras": [camera_names[i], camera_names[j]], "typical_seconds": round(typical, 2),
                   "range_seconds": [round(low, 2), round(high, 2)], "matches": round(pattern.matches, 1)}
            if pattern.places:
                row["ways"] = [{"from": camera_names[walked_from], "to": camera_names[j if walked_from == i else i],
                                "leave_at": place.centre[:2].round(3).tolist(), "enter_at": place.centre[2:].round(3).tolist()}
                               for walked_from, place in sorted(pattern.places.items())]
            rows.append(row)
        return rows

    def log_likelihood_ratio(self, table: TrackletTable, pair_a: np.ndarray, pair_b: np.ndarray, gaps: np.ndarray,
                             places: PairPlaces | None = None) -> np.ndarray:
        """(P,) transit log LR of each pair, 0 where its camera pair shows no pattern. places: where each
        pair left and arrived (PairPlaces.of); None reads the transit time alone."""
        result = np.zeros(len(pair_a))
        camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
        low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
        log_gaps = log_gap(gaps)
        for (i, j), pattern in self.patterns.items():
            rows = (low == i) & (high == j)
            result[rows] = pattern.log_likelihood_ratio(log_gaps[rows], None if places is None else places.rows(rows))
        return result


def camera_pair_places(table: TrackletTable, key: tuple[int, int], pair_a: np.ndarray, pair_b: np.ndarray,
                       random_a: np.ndarray, random_b: np.ndarray, start: np.ndarray, end: np.ndarray, seed: int = 0,
                       boundary: tuple[np.ndarray, np.ndarray] | None = None,
                       ) -> tuple[PairPlaces, dict[int, np.ndarray], PlaceEvidence | None]:
    """For one camera pair: its candidate pairs' places, per direction of travel the places of (at most
    PLACE_STRANGER_SAMPLES) random pairs, and what the transit test reads of them (None: no place).
    boundary: boundary_places(table), computed once for all camera pairs."""
    boundary = boundary_places(table) if boundary is None else boundary
    places = PairPlaces.of(table, pair_a, pair_b, start, end, boundary)
    random_places = PairPlaces.of(table, random_a, random_b, start, end, boundary)
    # Its own generator: drawing these leaves the permutation test's draws as they were.
    rng = np.random.default_rng((seed, 1, *(zlib.crc32(table.camera_names[i].encode()) for i in key)))
    stranger_places = {}
    for camera in sorted(set(key)):
        going = np.flatnonzero(random_places.from_camera == camera)
        if len(going) > PLACE_STRANGER_SAMPLES:
            going = rng.choice(going, PLACE_STRANGER_SAMPLES, replace=False)
        stranger_places[camera] = random_places.places[going]
    return places, stranger_places, _place_evidence(places, stranger_places)


def _place_evidence(places: PairPlaces, stranger_places: dict[int, np.ndarray]) -> PlaceEvidence | None:
    """The transit test's view of the pairs' places (PlaceEvidence), or None when they carry no place:
    all the same (tracklets without boxes), or a direction no random pair took."""
    if len(places.places) == 0 or np.ptp(places.places, axis=0).max() == 0:
        return None
    density, covariance = np.empty(len(places.places)), {}
    for camera in np.unique(places.from_camera):
        samples = stranger_places.get(int(camera), np.zeros((0, 4)))
        if len(samples) == 0:
            return None
        going = places.from_camera == camera
        strangers, bandwidth = PlacePattern.strangers_of(samples)
        density[going] = _product_kernel_density(places.places[going], strangers, bandwidth)
        covariance[int(camera)] = _covariance(strangers)
    return PlaceEvidence(places.places, places.from_camera, density, covariance)


def fit_transit_model(table: TrackletTable, start: np.ndarray, end: np.ndarray, pair_a: np.ndarray,
                      pair_b: np.ndarray, match_probability: np.ndarray, window: float, seed: int = 0) -> TransitModel:
    """The transit pattern of every camera pair whose likely matches' gaps cluster (fit_transit_pattern),
    against the gaps of random pairs of the same cameras within the time window, with the places of
    each direction of travel that enough of its matches took (fit_place_pattern). match_probability:
    (P,) how likely each candidate pair is one person without transit evidence. Fixed seed: the same
    run gives the same model, and each camera pair draws from a generator seeded by its cameras' names,
    so that its pattern depends on its own tracklets only (adding a camera changes no other pattern)."""
    camera_a, camera_b = table.camera_index[pair_a], table.camera_index[pair_b]
    low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
    log_gaps = log_gap(signed_gaps(pair_a, pair_b, start, end))
    match_probability = np.asarray(match_probability, np.float64)
    boundary = boundary_places(table)
    patterns = {}
    for key in sorted({(int(i), int(j)) for i, j in zip(low, high)}):
        rows = np.flatnonzero((low == key[0]) & (high == key[1]))
        # The likeliest matches carry the pattern; the rest add cost, not evidence.
        rows = rows[np.argsort(-match_probability[rows], kind="stable")[:TRANSIT_FIT_PAIRS]]
        if match_probability[rows].sum() < PATTERN_MIN_MATCHES:  # no pattern possible: skip the random pairs
            continue
        rng = np.random.default_rng((seed, *(zlib.crc32(table.camera_names[i].encode()) for i in key)))
        first, second = camera_pair_samples(table, key, start, end, rng, PAIRS_PER_CAMERA_PAIR)
        random = signed_gaps(first, second, start, end)
        within = random <= window
        first, second, random = first[within], second[within], log_gap(random[within])
        if len(random) < 2:
            continue
        strangers = RandomGaps.of(random)
        places, stranger_places, place_evidence = camera_pair_places(table, key, pair_a[rows], pair_b[rows], first,
                                                                     second, start, end, seed, boundary)
        found = fit_transit_pattern(log_gaps[rows], match_probability[rows], strangers, rng, (pair_a[rows], pair_b[rows]),
                                    place_evidence)
        if found is None:
            continue
        share, centre, spread, matches = found
        time_ratio = TransitPattern(share, centre, spread, strangers, matches).time_ratio(log_gaps[rows])
        learned = {}
        for camera, random_going in stranger_places.items():
            going = places.from_camera == camera
            place = None if place_evidence is None or not going.any() else fit_place_pattern(
                places.places[going], time_ratio[going], match_probability[rows][going], share, random_going,
                place_evidence.stranger_density[going], place_evidence.strangers_covariance[camera])
            if place is not None:
                learned[camera] = place
        patterns[key] = TransitPattern(share * matches / (matches + TRANSIT_PSEUDO_MATCHES), centre, spread, strangers,
                                       matches, learned)
    return TransitModel(patterns)
