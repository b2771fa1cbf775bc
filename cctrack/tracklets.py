"""Tracklets while tracking: each finished track of one camera, with its boxes and its best few crops for
re-id. Once tracking is done they become the rows of the one cctrack.table.TrackletTable (and their crops
files in OUT_DIR/crops); no later stage sees a Tracklet."""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from cctrack.detections import Detections, TrackedBoxes

# A box within this many pixels of the image edge is probably cut by it: a poor re-id crop.
BORDER_MARGIN_PIXELS = 2
# Height at which a crop is "big enough"; smaller crops are down-weighted in proportion.
GOOD_CROP_HEIGHT_PIXELS = 128


@dataclass(frozen=True)
class Tracklet:
    camera: str
    track_id: int  # the tracker's id, 1-based, unique within the camera
    frames: np.ndarray  # (T,) int64, 0-based frame indices of the camera video, increasing
    boxes: np.ndarray  # (T, 4) float32, xyxy pixels
    scores: np.ndarray  # (T,) float32 detector confidences
    crops: tuple[np.ndarray, ...]  # up to K BGR uint8 crops, best first
    crop_frames: np.ndarray  # (K,) int64, frame index of each crop
    crop_quality: np.ndarray  # (K,) float32, the score used to choose the crops (higher is better)

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])


@dataclass
class _TrackInProgress:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    # Min-heap of (quality, frame_index, crop): the worst kept candidate is dropped first.
    crop_candidates: list[tuple[float, int, np.ndarray]] = field(default_factory=list)


def crop_quality(boxes: np.ndarray, scores: np.ndarray, frame_width: int, frame_height: int) -> np.ndarray:
    """How useful each box is as a re-id crop: confident, tall, not cut by the border, not covered by others.

    boxes: (N, 4) xyxy pixels of all people seen in the frame; returns (N,) in [0, 1].
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.float32)
    heights = boxes[:, 3] - boxes[:, 1]
    size_factor = np.clip(heights / GOOD_CROP_HEIGHT_PIXELS, 0.0, 1.0)
    cut = (
        (boxes[:, 0] <= BORDER_MARGIN_PIXELS)
        | (boxes[:, 1] <= BORDER_MARGIN_PIXELS)
        | (boxes[:, 2] >= frame_width - BORDER_MARGIN_PIXELS)
        | (boxes[:, 3] >= frame_height - BORDER_MARGIN_PIXELS)
    )
    border_factor = np.where(cut, 0.3, 1.0)
    # Fraction of each box covered by the other boxes (the largest single one): another person in the crop.
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    np.fill_diagonal(intersection, 0.0)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * heights, 1e-6)
    covered = (intersection / area[:, None]).max(axis=1)
    overlap_factor = np.clip(1.0 - covered, 0.0, 1.0)
    return (scores * size_factor * border_factor * overlap_factor).astype(np.float32)


class TrackletCollector:
    """Accumulates one camera's tracker output frame by frame and keeps the best crops of each track."""

    def __init__(self, camera: str, crops_per_tracklet: int = 8):
        if crops_per_tracklet < 1:
            raise ValueError(f"crops_per_tracklet must be >= 1, got {crops_per_tracklet}")
        self.camera = camera
        self.crops_per_tracklet = crops_per_tracklet
        self._tracks: dict[int, _TrackInProgress] = {}
        self._reported: set[int] = set()  # ended tracks already handed out by `newly_ended`

    def add(self, frame_index: int, frame: np.ndarray, detections: Detections, tracked: TrackedBoxes) -> None:
        if len(tracked.track_ids) == 0:
            return
        height, width = frame.shape[:2]
        # Quality is judged against every detection of the frame, not just the tracked ones,
        # so an untracked person standing in front still spoils a crop.
        quality_all = crop_quality(detections.boxes, detections.scores, width, height)
        quality = quality_all[tracked.detection_index]
        for track_id, box, score, box_quality in zip(tracked.track_ids, tracked.boxes, tracked.scores, quality):
            track = self._tracks.setdefault(int(track_id), _TrackInProgress())
            track.frames.append(frame_index)
            track.boxes.append(box)
            track.scores.append(float(score))
            self._offer_crop(track, float(box_quality), frame_index, frame, box)

    def _offer_crop(self, track: _TrackInProgress, quality: float, frame_index: int, frame: np.ndarray, box: np.ndarray) -> None:
        # Keep twice as many candidates as needed so that `finish` can prefer crops spread in time.
        capacity = 2 * self.crops_per_tracklet
        if len(track.crop_candidates) >= capacity and quality <= track.crop_candidates[0][0]:
            return
        crop = cut_crop(frame, box)
        if crop is None:
            return
        entry = (quality, frame_index, crop)
        if len(track.crop_candidates) < capacity:
            heapq.heappush(track.crop_candidates, entry)
        else:
            heapq.heapreplace(track.crop_candidates, entry)

    def finish(self) -> list[Tracklet]:
        """All tracklets of the camera not taken by `take_ended` yet, ordered by track id."""
        return self.take_ended(active_track_ids=())

    def take_ended(self, active_track_ids) -> list[Tracklet]:
        """The tracklets whose track is no longer alive in the tracker (not in `active_track_ids`), ordered
        by track id, forgotten here: an ended track never comes back (track ids are not reused)."""
        active = {int(track_id) for track_id in active_track_ids}
        ended = sorted(track_id for track_id in self._tracks if track_id not in active)
        self._reported.difference_update(ended)
        return [self._tracklet(track_id, self._tracks.pop(track_id)) for track_id in ended]

    def newly_ended(self, active_track_ids) -> list[Tracklet]:
        """The tracklets whose track ended since the last call, ordered by track id, kept here (`take_ended`
        still takes them): their crops are final, so they can be embedded while tracking goes on."""
        active = {int(track_id) for track_id in active_track_ids}
        ended = sorted(track_id for track_id in self._tracks if track_id not in active and track_id not in self._reported)
        self._reported.update(ended)
        return [self._tracklet(track_id, self._tracks[track_id]) for track_id in ended]

    def _tracklet(self, track_id: int, track: _TrackInProgress) -> Tracklet:
        chosen = spread_in_time(track.crop_candidates, self.crops_per_tracklet)
        return Tracklet(
            camera=self.camera,
            track_id=track_id,
            frames=np.asarray(track.frames, np.int64),
            boxes=np.asarray(track.boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(track.scores, np.float32),
            crops=tuple(crop for _, _, crop in chosen),
            crop_frames=np.asarray([frame for _, frame, _ in chosen], np.int64),
            crop_quality=np.asarray([quality for quality, _, _ in chosen], np.float32),
        )

    def state(self) -> dict[str, np.ndarray]:
        """The tracks in progress as flat arrays (a resume checkpoint; `restore` reads it back). The crop
        candidates keep their heap order, so that later offers evict exactly what they would have."""
        tracks = list(self._tracks.items())
        candidates = [entry for _, track in tracks for entry in track.crop_candidates]
        crops = [crop for _, _, crop in candidates]
        return {
            "track_id": np.array([track_id for track_id, _ in tracks], np.int64),
            "box_offsets": offsets([len(track.frames) for _, track in tracks]),
            "frames": np.array([f for _, track in tracks for f in track.frames], np.int64),
            "boxes": np.array([b for _, track in tracks for b in track.boxes], np.float32).reshape(-1, 4),
            "scores": np.array([s for _, track in tracks for s in track.scores], np.float64),
            "candidate_offsets": offsets([len(track.crop_candidates) for _, track in tracks]),
            "candidate_quality": np.array([quality for quality, _, _ in candidates], np.float64),
            "candidate_frame": np.array([frame for _, frame, _ in candidates], np.int64),
            "crop_shapes": np.array([crop.shape for crop in crops], np.int64).reshape(-1, 3),
            "crop_pixels": np.concatenate([crop.reshape(-1) for crop in crops]) if crops else np.zeros(0, np.uint8),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a `state()` of a collector of the same camera and crops_per_tracklet."""
        box_offsets, candidate_offsets = state["box_offsets"], state["candidate_offsets"]
        crop_ends = np.cumsum(np.prod(state["crop_shapes"], axis=1))
        crops = [state["crop_pixels"][end - int(np.prod(shape)):end].reshape(shape)
                 for end, shape in zip(crop_ends, state["crop_shapes"])]
        self._tracks = {}
        for i, track_id in enumerate(state["track_id"]):
            boxes, candidates = slice(box_offsets[i], box_offsets[i + 1]), range(candidate_offsets[i], candidate_offsets[i + 1])
            self._tracks[int(track_id)] = _TrackInProgress(
                frames=state["frames"][boxes].tolist(),
                boxes=list(state["boxes"][boxes]),
                scores=state["scores"][boxes].tolist(),
                crop_candidates=[(float(state["candidate_quality"][c]), int(state["candidate_frame"][c]), crops[c])
                                 for c in candidates],
            )


INTERPOLATED_SCORE = 0.0  # the confidence of a filled-in box: no detection is behind it


def fill_gaps(tracklet: Tracklet, frame_step: int = 1) -> Tracklet:
    """The tracklet with a box in every processed frame from its first to its last.

    A gap in a tracklet is a stretch the tracker bridged: it lost the person (missed or occluded
    detections) and matched them again within tracker.lost_track_seconds, so the identity across it is
    the tracker's own claim. Each box of the gap is interpolated linearly (corners) between the
    detections either side and scored INTERPOLATED_SCORE; detected boxes are kept as they are.
    frame_step: the run's stride; only frames the run processed are filled (those of the tracklet's own
    frame grid), so a strided run is not turned into a full-rate one.
    """
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    frames = tracklet.frames
    if len(frames) < 2 or np.all(np.diff(frames) <= frame_step):
        return tracklet
    filled = np.union1d(np.arange(frames[0], frames[-1] + 1, frame_step, dtype=np.int64), frames)
    detected = np.isin(filled, frames)
    boxes = np.empty((len(filled), 4), np.float32)
    for corner in range(4):
        boxes[:, corner] = np.interp(filled, frames, tracklet.boxes[:, corner].astype(np.float64))
    boxes[detected] = tracklet.boxes
    scores = np.full(len(filled), INTERPOLATED_SCORE, np.float32)
    scores[detected] = tracklet.scores
    return dataclasses.replace(tracklet, frames=filled, boxes=boxes, scores=scores)


def offsets(lengths: list[int]) -> np.ndarray:
    """(N + 1,) int64 start of each of N ragged parts in their concatenation, then the total."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def cut_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's pixels (clipped to the frame) as a contiguous copy, or None when nothing is left."""
    height, width = frame.shape[:2]
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return np.ascontiguousarray(frame[y0:y1, x0:x1])


Payload = TypeVar("Payload")


def spread_in_time(candidates: list[tuple[float, int, Payload]], count: int) -> list[tuple[float, int, Payload]]:
    """(quality, frame, payload) candidates, `count` of them chosen best-first, but skipping a candidate that
    sits next to an already chosen frame while others remain: neighbouring frames add little to a
    tracklet's mean embedding. The payload (a crop, or a stored crop and its embedding) rides along."""
    ranked = sorted(candidates, key=lambda entry: (-entry[0], entry[1]))
    chosen: list[tuple[float, int, Payload]] = []
    deferred = []
    for entry in ranked:
        if any(abs(entry[1] - other[1]) <= 1 for other in chosen):
            deferred.append(entry)
        else:
            chosen.append(entry)
        if len(chosen) == count:
            return chosen
    return (chosen + deferred)[:count]


def crop_path(camera: str, track_id: int, rank: int) -> str:
    """Relative to OUT_DIR."""
    return f"crops/{camera}/{track_id:05d}_{rank}.jpg"
