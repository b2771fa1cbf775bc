"""The small containers that flow from the detector to the tracker (Detections) and from the tracker to
the tracklets (TrackedBoxes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Person detections in one frame of one camera.

    boxes: (N, 4) float32, xyxy in pixels of that camera's frame.
    scores: (N,) float32 detector confidences in [0, 1].
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def select(self, mask: np.ndarray) -> "Detections":
        return Detections(self.boxes[mask], self.scores[mask])


@dataclass(frozen=True)
class TrackedBoxes:
    """The confirmed tracks that matched a detection in one frame of one camera, sorted by track id."""

    track_ids: np.ndarray  # (M,) int64, 1-based, unique within the camera for the whole run
    # (M, 4) float32 xyxy px: the matched DETECTION's box, not the Kalman estimate (crops come from it)
    boxes: np.ndarray
    scores: np.ndarray  # (M,) float32 detector score of that detection
    detection_index: np.ndarray  # (M,) int64 index of that detection in the frame's input Detections

    def __post_init__(self) -> None:
        track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        detection_index = np.asarray(self.detection_index, dtype=np.int64).reshape(-1)
        if not len(track_ids) == len(boxes) == len(scores) == len(detection_index):
            raise ValueError(
                f"{len(track_ids)} track ids, {len(boxes)} boxes, {len(scores)} scores, "
                f"{len(detection_index)} detection indices"
            )
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "detection_index", detection_index)

    def __len__(self) -> int:
        return len(self.track_ids)

    @classmethod
    def empty(cls) -> "TrackedBoxes":
        return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
