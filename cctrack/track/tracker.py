"""Per-camera multi-person tracker: a Kalman box per person and ByteTrack's two-stage IoU association.

Each processed frame, every track's box is predicted forward by one frame interval, then:
  1. high-score detections are matched to all confirmed tracks, tracked or lost (IoU, optionally x score);
  2. low-score detections are matched to the confirmed tracks still unmatched that were tracked last frame
     (IoU only): a half-occluded person whose score drops keeps the track alive (ByteTrack's key idea),
     but a low-score box never re-finds a lost track nor starts a new one;
  3. tentative tracks (not yet confirmed) are matched to the high-score detections left over;
  4. high-score detections still left over start tentative tracks, if their score reaches new_track_score.
Lifecycle: tentative -> (min_hits consecutive matches) confirmed -> (unmatched) lost -> (found again within
lost_track_seconds) tracked again, else removed. A tentative track that misses one frame is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import lap
import numpy as np

from cctrack.detections import Detections, TrackedBoxes
from cctrack.errors import CctrackError
from cctrack.track.kalman import BoxKalman


@dataclass(frozen=True)
class TrackerSettings:
    """How detections become tracks. Defaults suit pedestrians at 10 fps (PETS09-S2L1-like footage) with
    the bundled yolo11n detector. They were chosen on the bundled sample and its ground truth, so
    bench/tracker.py reports them as such, and compares the trackers fairly on a held-out camera and at
    bytetrack.yaml's values (where ours scores the same as these defaults)."""

    # Detector score (0-1) at or above which a detection is "high": it can match any track and start one.
    high_score: float = 0.5
    # Scores in [low_score, high_score) are "low": they only keep a currently tracked person alive.
    low_score: float = 0.1
    # A high detection left unmatched starts a new track only at or above this score (>= high_score).
    new_track_score: float = 0.5
    # Stage 1: least IoU (times the detection score when fuse_score) between a track's predicted box and a
    # high detection for them to match; 0.2 is the usual cost limit 0.8.
    match_iou: float = 0.2
    # Stage 2: least IoU between a tracked box and a low detection; strict, since low boxes are often clutter.
    low_match_iou: float = 0.5
    # Stage 3: least IoU (times the score when fuse_score) between a tentative track and a high detection.
    tentative_match_iou: float = 0.3
    # Multiply IoU by the detection score in stages 1 and 3, so that a confident box wins a close call.
    # Off by default: at 10 fps the predicted box is further off than at ByteTrack's 30 fps, true IoUs are
    # lower, and the product with a middling score pushes them under match_iou.
    fuse_score: bool = False
    # Consecutive frames with a matched detection before a track is confirmed and reported (>= 1).
    min_hits: int = 2
    # Wall-clock seconds a confirmed track that lost its person waits to be found again before removal;
    # converted to frames with the camera's effective fps.
    lost_track_seconds: float = 3.0

    def __post_init__(self) -> None:
        # Types are checked once, where the config enters (cctrack.config); these are the ranges. Written
        # so that NaN fails every one (each comparison with NaN is false).
        for name in ("high_score", "low_score", "new_track_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"tracker.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.low_score > self.high_score:
            raise ValueError(
                f"tracker.low_score ({self.low_score}) must not exceed tracker.high_score ({self.high_score})"
            )
        if self.new_track_score < self.high_score:
            raise ValueError(
                f"tracker.new_track_score ({self.new_track_score}) must be >= tracker.high_score ({self.high_score}): "
                "only high-score detections start tracks"
            )
        for name in ("match_iou", "low_match_iou", "tentative_match_iou"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"tracker.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_hits < 1:
            raise ValueError(f"tracker.min_hits must be >= 1, got {self.min_hits}")
        if not 0 <= self.lost_track_seconds < math.inf:
            raise ValueError(f"tracker.lost_track_seconds must be a finite number >= 0, got {self.lost_track_seconds}")


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) float64 intersection over union of xyxy px boxes (A, 4) and (B, 4); 0 where a union is empty."""
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def assign(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of rows to columns minimising the total cost (lap's Jonker-Volgenant),
    keeping only pairs with cost <= max_cost.

    Returns (pairs (K, 2) int64 [row, column], unmatched rows (int64), unmatched columns (int64)).
    """
    rows, columns = cost.shape
    if rows == 0 or columns == 0:
        return np.zeros((0, 2), np.int64), np.arange(rows), np.arange(columns)
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    _, column_of_row, _ = lap.lapjv(cost, extend_cost=True, cost_limit=max_cost)
    matched_rows = np.flatnonzero(column_of_row >= 0)
    matched_columns = column_of_row[matched_rows]
    # cost_limit already refuses worse pairs; checking again keeps ties at the limit on the strict side.
    keep = cost[matched_rows, matched_columns] <= max_cost
    pairs = np.stack([matched_rows[keep], matched_columns[keep]], axis=1).astype(np.int64)
    row_matched = np.zeros(rows, dtype=bool)
    column_matched = np.zeros(columns, dtype=bool)
    row_matched[pairs[:, 0]] = True
    column_matched[pairs[:, 1]] = True
    return pairs, np.flatnonzero(~row_matched), np.flatnonzero(~column_matched)


def _match(
    tracks: list["_Track"], candidates: np.ndarray, cost: np.ndarray, max_cost: float
) -> tuple[list[tuple["_Track", int]], list["_Track"], np.ndarray]:
    """`assign` on (tracks, candidate detection indices): (track, detection index) pairs, unmatched tracks,
    unmatched candidates."""
    pairs, unmatched_rows, unmatched_columns = assign(cost, max_cost)
    matches = [(tracks[row], int(candidates[column])) for row, column in pairs]
    return matches, [tracks[row] for row in unmatched_rows], candidates[unmatched_columns]


class TrackState(Enum):
    TENTATIVE = "tentative"  # started recently, not yet reported
    TRACKED = "tracked"  # confirmed and matched in the latest frame
    LOST = "lost"  # confirmed, unmatched for 1..lost_track_frames frames


_STATE_CODES = (TrackState.TENTATIVE, TrackState.TRACKED, TrackState.LOST)  # saved as the index


class _Track:
    """One person's box over time (mutable, private to the tracker)."""

    def __init__(self, box_xyxy: np.ndarray):
        self.kalman = BoxKalman(box_xyxy)
        self.state = TrackState.TENTATIVE
        self.track_id = 0  # public id, given on confirmation so that reported ids have no gaps
        self.consecutive_hits = 1
        self.frames_missed = 0


class Tracker:
    """Tracks the people of one camera; call `update` once per processed frame, in order."""

    def __init__(self, settings: TrackerSettings, fps: float):
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise CctrackError(f"tracker needs the camera's frames per second as a positive number, got {fps!r}")
        self.settings = settings
        self.fps = float(fps)  # processed frames per second (video fps / frame stride)
        # Round half up, so 2.5 frames keeps a track for 3 frames rather than 2.
        self.lost_track_frames = int(math.floor(settings.lost_track_seconds * self.fps + 0.5))
        self.frames_processed = 0
        self._tracks: list[_Track] = []
        self._last_track_id = 0

    @property
    def active_track_ids(self) -> np.ndarray:
        """(K,) int64 sorted ids of the confirmed tracks still alive (tracked or lost)."""
        return np.array(sorted(t.track_id for t in self._tracks if t.state is not TrackState.TENTATIVE), np.int64)

    def state(self) -> dict[str, np.ndarray]:
        """Everything later updates depend on, as arrays (a resume checkpoint); `restore` reads it back."""
        tracks = self._tracks
        return {
            "frames_processed": np.asarray(self.frames_processed, np.int64),
            "last_track_id": np.asarray(self._last_track_id, np.int64),
            "mean": np.array([t.kalman.mean for t in tracks], np.float64).reshape(-1, 8),
            "covariance": np.array([t.kalman.covariance for t in tracks], np.float64).reshape(-1, 8, 8),
            "state": np.array([_STATE_CODES.index(t.state) for t in tracks], np.int8),
            "track_id": np.array([t.track_id for t in tracks], np.int64),
            "consecutive_hits": np.array([t.consecutive_hits for t in tracks], np.int64),
            "frames_missed": np.array([t.frames_missed for t in tracks], np.int64),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a `state()` of a tracker with the same settings and fps, as if never stopped."""
        self.frames_processed = int(state["frames_processed"])
        self._last_track_id = int(state["last_track_id"])
        self._tracks = []
        for i in range(len(state["track_id"])):
            track = _Track.__new__(_Track)
            track.kalman = BoxKalman.from_state(state["mean"][i], state["covariance"][i])
            track.state = _STATE_CODES[int(state["state"][i])]
            track.track_id = int(state["track_id"][i])
            track.consecutive_hits = int(state["consecutive_hits"][i])
            track.frames_missed = int(state["frames_missed"][i])
            self._tracks.append(track)

    def update(self, detections: Detections) -> TrackedBoxes:
        """Advance one frame with that frame's detections; returns the confirmed tracks matched in it."""
        settings = self.settings
        self.frames_processed += 1
        for track in self._tracks:
            track.kalman.predict(1.0 / self.fps)

        boxes, scores = detections.boxes, detections.scores
        # The Kalman model divides by the height; a box with no area or NaNs cannot be tracked.
        usable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        high = np.flatnonzero(usable & (scores >= settings.high_score))
        low = np.flatnonzero(usable & (scores >= settings.low_score) & (scores < settings.high_score))

        confirmed = [t for t in self._tracks if t.state is not TrackState.TENTATIVE]
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        matches: list[tuple[_Track, int]] = []

        # Stage 1: high detections vs every confirmed track.
        cost = self._iou_cost(confirmed, high, detections, settings.fuse_score)
        stage_matches, unmatched_confirmed, high = _match(confirmed, high, cost, 1.0 - settings.match_iou)
        matches += stage_matches
        # Stage 2: low detections keep tracked people alive; they never re-find a lost one.
        still_tracked = [t for t in unmatched_confirmed if t.state is TrackState.TRACKED]
        cost = self._iou_cost(still_tracked, low, detections, fuse_score=False)
        matches += _match(still_tracked, low, cost, 1.0 - settings.low_match_iou)[0]
        # Stage 3: tentative tracks take what is left of the high detections.
        cost = self._iou_cost(tentative, high, detections, settings.fuse_score)
        stage_matches, unmatched_tentative, high = _match(tentative, high, cost, 1.0 - settings.tentative_match_iou)
        matches += stage_matches

        reported: list[tuple[int, int]] = []  # (track id, detection index)
        for track, detection_index in matches:
            self._apply_match(track, boxes[detection_index])
            if track.state is TrackState.TRACKED:
                reported.append((track.track_id, detection_index))

        matched = {id(track) for track, _ in matches}
        removed = {id(track) for track in unmatched_tentative}
        for track in confirmed:
            if id(track) in matched:
                continue
            if track.state is TrackState.TRACKED:
                track.kalman.hold_size()
            track.state = TrackState.LOST
            track.frames_missed += 1
            if track.frames_missed > self.lost_track_frames:
                removed.add(id(track))
        self._tracks = [t for t in self._tracks if id(t) not in removed]

        for detection_index in high[scores[high] >= settings.new_track_score]:
            track = _Track(boxes[detection_index])
            self._tracks.append(track)
            if settings.min_hits <= 1:
                self._confirm(track)
                reported.append((track.track_id, int(detection_index)))

        return self._report(reported, detections)

    @staticmethod
    def _iou_cost(tracks: list[_Track], candidates: np.ndarray, detections: Detections, fuse_score: bool) -> np.ndarray:
        """(tracks, candidates) 1 - IoU of predicted boxes and the detections at indices `candidates`
        (IoU times the detection score when fuse_score)."""
        if not tracks or not len(candidates):
            return np.ones((len(tracks), len(candidates)))
        predicted = np.array([t.kalman.box_xyxy for t in tracks]).reshape(-1, 4)
        similarity = iou_matrix(predicted, detections.boxes[candidates])
        if fuse_score:
            similarity = similarity * detections.scores[candidates][None, :]
        return 1.0 - similarity

    def _apply_match(self, track: _Track, box_xyxy: np.ndarray) -> None:
        track.kalman.update(box_xyxy)
        track.frames_missed = 0
        track.consecutive_hits += 1
        if track.state is TrackState.LOST:
            track.state = TrackState.TRACKED
        elif track.state is TrackState.TENTATIVE and track.consecutive_hits >= self.settings.min_hits:
            self._confirm(track)

    def _confirm(self, track: _Track) -> None:
        self._last_track_id += 1
        track.track_id = self._last_track_id
        track.state = TrackState.TRACKED

    @staticmethod
    def _report(reported: list[tuple[int, int]], detections: Detections) -> TrackedBoxes:
        if not reported:
            return TrackedBoxes.empty()
        track_ids, detection_index = np.array(sorted(reported), np.int64).T
        boxes, scores = detections.boxes[detection_index], detections.scores[detection_index]
        return TrackedBoxes(track_ids, boxes, scores, detection_index)
