"""Cross-camera matching: tracklets and their re-id embeddings -> global identities.

Constrained agglomerative clustering over candidate pairs, in three steps that scale to 100k tracklets:

1. Candidate pairs (cctrack.link.candidates). Each camera's tracklets, by start time, are compared with
   those of the cameras the layout joins to it that lie within the time window, block by block (chunked
   matrix products, on the GPU when there is one); each tracklet keeps its `neighbours_per_tracklet`
   most similar partners among the pairs that pass the gates. Pair gates: two tracklets of one camera
   that overlap in frames are never compared (one person is not in two places in one picture);
   otherwise the layout must allow the move from the earlier tracklet to the later one
   (cctrack.link.layout: connected cameras, transit and re-entry bounds, simultaneous sightings only
   for overlapping views).
2. Evidence (cctrack.link.evidence). Each candidate pair gets the log-odds that it is one person: an
   open-world prior from how many candidates there are, the re-id model's calibrated appearance
   evidence, and transit-time evidence learned from the run's own confident matches (skipped when a
   layout is configured). Same-camera re-entry pairs get the same treatment, with their own gaps.
3. Merging (cctrack.link.cluster). Clusters joined by candidate pairs merge most-likely first while
   the linkage of their pairs' log-odds ("average": the mean) says at least `min_probability`.
   Cannot-link: a merge is never made if it would put two same-camera, frame-overlapping tracklets in
   one cluster, checked at every merge.

A person's corrections (cctrack.link.corrections: same, different, alone) are constraints of step 3:
must-link groups are merged first, before any evidence-based merge, and their links have source
"person"; cannot-link pairs and `alone` tracklets are never merged. No threshold or model undoes them.

A link's confidence is the probability of its merge. With `distance_threshold` set instead (descriptors
without a calibration), clusters merge on mean cosine distance, and confidence is the margin
1 - d / min(threshold, d_rival), d_rival being the closest candidate of another identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from reid.calibration import LinkCalibration, center_per_camera

from cctrack.errors import CctrackError
from cctrack.link import evidence
from cctrack.link.candidates import candidate_pairs, tracklet_seconds
from cctrack.link.cluster import Agglomeration
from cctrack.link.corrections import LinkConstraints
from cctrack.link.layout import CameraLayout
from cctrack.link.settings import LINKAGES, LinkSettings
from cctrack.table import TrackletTable

__all__ = [
    "CameraLayout", "LINKAGES", "Link", "LinkCalibration", "LinkConstraints", "LinkResult", "LinkSettings", "candidate_pairs",
    "center_per_camera", "link_tracklets", "tracklet_seconds",
]


@dataclass(frozen=True)
class Link:
    """One merge: the closest pair (row indices into the TrackletTable) of the two clusters it joined."""

    tracklet_a: int
    tracklet_b: int
    similarity: float  # cosine similarity of this pair's embeddings (after per-camera centring, if on)
    confidence: float  # in [0, 1]: the merge's probability (or margin, with distance_threshold); 1 from a person
    source: str = "model"  # "model": the evidence merged it; "person": a `same` correction did


@dataclass(frozen=True)
class LinkResult:
    """identity: (N,) int64 global ids 1..M, numbered by first appearance on the shared clock.
    links: the N - M merges, in the order they were made; each identity's links span its tracklets.
    identity_confidence: (M,) float64, row m for id m + 1: its weakest link's confidence; 1.0 for an
        identity of one tracklet (no merge was made).
    """

    identity: np.ndarray
    links: list[Link]
    identity_confidence: np.ndarray
    transit: evidence.TransitModel = field(default_factory=lambda: evidence.TransitModel({}))  # learned from the run


def link_tracklets(
    table: TrackletTable,
    embeddings: np.ndarray,
    settings: LinkSettings,
    layout: CameraLayout | None = None,
    calibration: LinkCalibration | None = None,
    device: str | torch.device = "auto",
    constraints: LinkConstraints | None = None,
) -> LinkResult:
    """Join tracklets (rows of `table`, of which linking reads the camera and first/last frame columns;
    embeddings (N, D) float32 L2-normalised, e.g. table.descriptors) into global identities.

    calibration: how the embedder's similarities read as evidence; needed unless
    settings.distance_threshold is set. device: where the candidate pairs' similarity blocks run.
    constraints: a person's corrections as rows (cctrack.link.corrections.resolve_corrections, which
    checks they are consistent), kept whatever the settings."""
    embeddings = _checked_embeddings(embeddings, len(table))
    if settings.distance_threshold is None and calibration is None:
        raise CctrackError(
            "the re-id descriptor has no link calibration: use a calibrated model (reid calibrate) "
            "or link by cosine distance with link.distance_threshold"
        )
    if settings.center_per_camera:
        embeddings = center_per_camera(embeddings, table.camera_index)
    configured_layout = layout is not None
    layout = CameraLayout.open(table.camera_names) if layout is None else layout
    if layout.camera_names != table.camera_names:
        raise CctrackError(f"layout cameras {layout.camera_names} differ from the tracklets' cameras {table.camera_names}")
    start_seconds, end_seconds = tracklet_seconds(table, layout)
    pair_a, pair_b, distance = candidate_pairs(table, embeddings, start_seconds, end_seconds, settings, layout, device)
    transit = evidence.TransitModel({})
    if settings.distance_threshold is not None:
        cost, threshold = distance, settings.distance_threshold
    else:
        window = min(math.inf if settings.max_gap_seconds is None else settings.max_gap_seconds, layout.longest_gap_seconds())
        log_odds, transit = pair_evidence(table, embeddings, pair_a, pair_b, 1.0 - distance, start_seconds, end_seconds, window,
                                          settings, calibration, learn_transit=settings.learn_transit and not configured_layout)
        cost, threshold = -log_odds, -evidence.logit(settings.min_probability)
    clustering = Agglomeration(table, threshold, settings.linkage)
    clustering.add_pairs(pair_a, pair_b, cost)
    person_links = _apply_constraints(clustering, constraints or LinkConstraints.none(), embeddings)
    merges = clustering.run()
    identity = _number_by_first_appearance(clustering.cluster_of_tracklet(), start_seconds)
    if settings.distance_threshold is not None:
        links, identity_confidence = _links_with_confidence(merges, identity, pair_a, pair_b, distance, threshold)
    else:
        links, identity_confidence = _links_with_probability(merges, identity, embeddings)
    return LinkResult(identity=identity, links=person_links + links, identity_confidence=identity_confidence, transit=transit)


def _apply_constraints(clustering: Agglomeration, constraints: LinkConstraints, embeddings: np.ndarray) -> list[Link]:
    """Cannot-link and alone first, then the must-link merges; the links of those merges."""
    for row in constraints.alone.tolist():
        clustering.isolate(row)
    for a, b in constraints.cannot_link.tolist():
        clustering.forbid(a, b)
    links = []
    for a, b in constraints.must_link.tolist():
        if clustering.join(a, b):
            links.append(Link(a, b, float(embeddings[a] @ embeddings[b]), 1.0, source="person"))
    return links


def pair_log_odds(table: TrackletTable, embeddings: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray,
                  similarity: np.ndarray, start: np.ndarray, end: np.ndarray, window: float, settings: LinkSettings,
                  calibration: LinkCalibration, learn_transit: bool) -> np.ndarray:
    """(P,) log-odds that each candidate pair is one person: prior + appearance (+ transit)."""
    return pair_evidence(table, embeddings, pair_a, pair_b, similarity, start, end, window, settings, calibration,
                         learn_transit)[0]


def pair_evidence(table: TrackletTable, embeddings: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray,
                  similarity: np.ndarray, start: np.ndarray, end: np.ndarray, window: float, settings: LinkSettings,
                  calibration: LinkCalibration, learn_transit: bool) -> tuple[np.ndarray, evidence.TransitModel]:
    """pair_log_odds, and the transit model learned on the way (no patterns when not learned)."""
    counts = evidence.candidate_counts(table, start, end, min(window, settings.prior_window_seconds))
    prior = evidence.prior_log_odds(table, pair_a, pair_b, counts, settings.prior_seen_elsewhere)
    null = evidence.appearance_null(table, embeddings, start, end)
    appearance = evidence.appearance_log_lr(table, pair_a, pair_b, similarity, null, calibration)
    log_odds = prior + appearance
    if not learn_transit or len(pair_a) == 0:
        return log_odds, evidence.TransitModel({})
    # Transit times are learned from every candidate pair, weighted by how likely it is one person on
    # appearance and prior alone: a camera pair's real transit shows as gaps that the likely matches
    # share, and look-alike strangers' gaps do not (evidence.fit_transit_pattern tests that by chance).
    model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, evidence.sigmoid(log_odds), window)
    gaps = evidence.signed_gaps(pair_a, pair_b, start, end)
    places = evidence.PairPlaces.of(table, pair_a, pair_b, start, end)
    return log_odds + model.log_likelihood_ratio(table, pair_a, pair_b, gaps, places), model


def _number_by_first_appearance(cluster_of: np.ndarray, start_seconds: np.ndarray) -> np.ndarray:
    """(N,) int64 ids 1..M: clusters ranked by their earliest (start time, row) tracklet."""
    by_appearance = np.lexsort((np.arange(len(cluster_of)), start_seconds))
    clusters, first_position = np.unique(cluster_of[by_appearance], return_index=True)
    rank = np.empty(len(clusters), np.int64)
    rank[np.argsort(first_position, kind="stable")] = np.arange(len(clusters))
    return rank[np.searchsorted(clusters, cluster_of)] + 1


def _links_with_confidence(merges: list, identity: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray,
                           distance: np.ndarray, threshold: float) -> tuple[list[Link], np.ndarray]:
    """(links of the merges, (M,) weakest link confidence per identity); see the module docstring."""
    rival_distance = np.full(len(identity), math.inf)
    rivals = identity[pair_a] != identity[pair_b]
    for tracklets in (pair_a, pair_b):
        np.minimum.at(rival_distance, tracklets[rivals], distance[rivals])
    merges = np.array(merges, dtype=np.float64).reshape(-1, 4)
    tracklet_a, tracklet_b = merges[:, 0].astype(np.int64), merges[:, 1].astype(np.int64)
    margin_distance = np.minimum(threshold, np.minimum(rival_distance[tracklet_a], rival_distance[tracklet_b]))
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = np.where(margin_distance > 0, np.clip(1 - merges[:, 3] / margin_distance, 0, 1), 0.0)
    links = [Link(int(a), int(b), float(1 - closest), float(score))
             for a, b, closest, score in zip(tracklet_a, tracklet_b, merges[:, 2], confidence)]
    identity_confidence = np.ones(int(identity.max(initial=0)))
    np.minimum.at(identity_confidence, identity[tracklet_a] - 1, confidence)
    return links, identity_confidence


def _links_with_probability(merges: list, identity: np.ndarray, embeddings: np.ndarray) -> tuple[list[Link], np.ndarray]:
    """(links whose confidence is the merge's probability, (M,) weakest link probability per identity)."""
    merges = np.array(merges, dtype=np.float64).reshape(-1, 4)
    tracklet_a, tracklet_b = merges[:, 0].astype(np.int64), merges[:, 1].astype(np.int64)
    probability = evidence.sigmoid(-merges[:, 3])
    similarity = np.einsum("ij,ij->i", embeddings[tracklet_a], embeddings[tracklet_b])
    links = [Link(int(a), int(b), float(cos), float(p)) for a, b, cos, p in zip(tracklet_a, tracklet_b, similarity, probability)]
    identity_confidence = np.ones(int(identity.max(initial=0)))
    np.minimum.at(identity_confidence, identity[tracklet_a] - 1, probability)
    return links, identity_confidence


def _checked_embeddings(embeddings: np.ndarray, count: int) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] == 0:
        raise CctrackError(f"embeddings must have shape (N, D) with D >= 1, got {embeddings.shape}")
    if embeddings.shape[0] != count:
        raise CctrackError(f"embeddings have {embeddings.shape[0]} rows but the tracklet table has {count} tracklets")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if bad_rows.size:
        raise CctrackError(f"embeddings contain NaN or inf in rows {bad_rows[:5].tolist()}")
    norms = np.linalg.norm(embeddings, axis=1)
    off_rows = np.flatnonzero(np.abs(norms - 1) > 1e-3)
    if off_rows.size:
        raise CctrackError(f"embeddings must be L2-normalised: row {off_rows[0]} has norm {norms[off_rows[0]]:.4f}")
    return embeddings


