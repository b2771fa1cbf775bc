"""How tracklets are joined into identities: the `link:` section of the config."""

from __future__ import annotations

import math
from dataclasses import dataclass

LINKAGES = ("average", "single", "complete")


@dataclass(frozen=True)
class LinkSettings:
    """How tracklets are joined into identities (see cctrack.link for the method)."""

    # Two clusters merge only if the probability that they are one person is at least this. The default
    # asks for high precision: a missed link leaves two ids for one person, a false one merges two people.
    min_probability: float = 0.9
    # Probability that a person seen in one camera is among the tracklets of another camera (or comes back
    # to the same camera) within prior_window_seconds. With n such candidate tracklets, each one's prior
    # is this / n: most people seen by one camera never appear in another (an open world).
    prior_seen_elsewhere: float = 0.5
    # The time around a tracklet (seconds, shared clock) in which its candidates are counted for the
    # prior: people move between neighbouring cameras within minutes. Pairs further apart are still
    # compared (see max_gap_seconds), with the same prior.
    prior_window_seconds: float = 300.0
    # Learn each camera pair's transit times from the run's confident matches and use them as evidence
    # (ignored when a camera layout is configured: the layout's bounds are used instead).
    learn_transit: bool = True
    # Legacy rule: a raw cosine-distance threshold (1 - cos, in (0, 2]) instead of probabilities, for
    # descriptors without a calibration. None: use min_probability.
    distance_threshold: float | None = None
    linkage: str = "average"  # "average", "single" or "complete" (over the candidate pairs)
    # Tracklets further apart in time than this (seconds, shared clock) are not compared; None: no limit.
    max_gap_seconds: float | None = None
    neighbours_per_tracklet: int = 20  # candidate partners kept per tracklet (the kNN graph's k)
    # Tracklets per side of one similarity block (memory ~ 40 bytes * block_size^2): smaller blocks waste
    # less work outside a short time window, larger ones pay less per-block overhead.
    block_size: int = 512
    # Subtract each camera's mean embedding before comparing (shrunk towards 0 for cameras with few
    # tracklets, see reid.calibration.center_per_camera): a camera's colour look, background and
    # viewpoint move all of its embeddings the same way, which hides the person. Calibrations are fitted
    # on centred descriptors, so this stays on unless linking by distance_threshold.
    center_per_camera: bool = True

    def __post_init__(self) -> None:
        if not 0.5 <= self.min_probability < 1:
            raise ValueError(f"min_probability must lie in [0.5, 1), got {self.min_probability}")
        if not 0 < self.prior_seen_elsewhere < 1:
            raise ValueError(f"prior_seen_elsewhere must lie in (0, 1), got {self.prior_seen_elsewhere}")
        if not 0 < self.prior_window_seconds < math.inf:
            raise ValueError(f"prior_window_seconds must be a finite number > 0, got {self.prior_window_seconds}")
        if self.distance_threshold is not None and not 0 < self.distance_threshold <= 2:
            raise ValueError(f"distance_threshold must be null or lie in (0, 2], got {self.distance_threshold}")
        if self.linkage not in LINKAGES:
            raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, got {self.linkage!r}")
        if self.max_gap_seconds is not None and not 0 <= self.max_gap_seconds < math.inf:
            raise ValueError(f"max_gap_seconds must be None or a finite number >= 0, got {self.max_gap_seconds}")
        if self.neighbours_per_tracklet < 1:
            raise ValueError(f"neighbours_per_tracklet must be >= 1, got {self.neighbours_per_tracklet}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
