"""The small container that flows from the detector to the tracker."""

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
