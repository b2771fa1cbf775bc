"""Where and when each tracklet was seen: what the linker needs besides the embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackletTable:
    """Where and when each of N tracklets was seen.

    camera_names: (C,) camera names; camera_fps: (C,) each camera's real frames per second.
    camera_index: (N,) int32 index into camera_names.
    first_frame, last_frame: (N,) int64, 0-based frame indices in that camera's video, inclusive.
    """

    camera_names: tuple[str, ...]
    camera_fps: tuple[float, ...]
    camera_index: np.ndarray
    first_frame: np.ndarray
    last_frame: np.ndarray

    def __post_init__(self) -> None:
        names, fps = tuple(self.camera_names), tuple(float(value) for value in self.camera_fps)
        if len(set(names)) != len(names) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"camera_names must be distinct strings, got {names}")
        if len(fps) != len(names) or not all(math.isfinite(value) and value > 0 for value in fps):
            raise ValueError(f"camera_fps must hold one positive fps per camera, got {fps}")
        camera_index = np.asarray(self.camera_index, dtype=np.int32)
        first_frame = np.asarray(self.first_frame, dtype=np.int64)
        last_frame = np.asarray(self.last_frame, dtype=np.int64)
        count = len(camera_index)
        for name, values in (("camera_index", camera_index), ("first_frame", first_frame), ("last_frame", last_frame)):
            if values.shape != (count,):
                raise ValueError(f"{name} must have shape ({count},), got {values.shape}")
        if count and (camera_index.min() < 0 or camera_index.max() >= len(names)):
            raise ValueError(f"camera_index must lie in [0, {len(names)}), got {camera_index.min()}..{camera_index.max()}")
        if np.any(first_frame < 0) or np.any(last_frame < first_frame):
            raise ValueError("frames must satisfy 0 <= first_frame <= last_frame")
        for name, value in (("camera_names", names), ("camera_fps", fps), ("camera_index", camera_index),
                            ("first_frame", first_frame), ("last_frame", last_frame)):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.camera_index)
