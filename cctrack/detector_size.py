"""The detector's input size, chosen from the footage: `detector.image_size: auto`.

One number cannot suit every camera. Small, far-away people need the frame enlarged before the detector
sees them; enlarging footage whose people are already large costs quadratic compute and finds more false
people, not more real ones. Person height alone does not settle it (how well a person is seen also
depends on blur, contrast and crowding), so the detector is asked directly:

- a few frames spread over each camera (PROBE_FRAMES) are detected at each candidate size, counting the
  confident people (score >= PROBE_MIN_SCORE);
- a camera needs the smallest candidate size that finds at least ENOUGH_SHARE of the most people any
  candidate found there;
- the run uses the largest size any camera needs, so that every camera's people are seen (one size keeps
  cameras in one detector batch).

The candidates and ENOUGH_SHARE are fixed a priori, not fitted to any footage. A camera where nobody is
found at any size gets MIDDLE_SIZE: there is nothing to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.video import Camera, frames_available

CANDIDATE_SIZES = (640, 960, 1280)  # the model's training size, 1.5x and 2x (4x the pixels)
MIDDLE_SIZE = 960
ENOUGH_SHARE = 0.9
PROBE_FRAMES = 8
PROBE_MIN_SCORE = 0.5


@dataclass(frozen=True)
class SizeChoice:
    """The run's detector input size and why: each camera's need, and its confident people per size."""

    image_size: int
    camera_sizes: dict[str, int]
    people_found: dict[str, dict[int, int]]  # camera -> candidate size -> confident people in its probe frames

    def summary(self) -> str:
        parts = [f"{name} {size} px (people found at " + ", ".join(f"{s}: {n}" for s, n in found.items()) + ")"
                 for (name, size), found in zip(self.camera_sizes.items(), self.people_found.values())]
        return f"detector input size {self.image_size} px, chosen from the footage: " + "; ".join(parts)


def size_for_camera(people_found: dict[int, int]) -> int:
    """The smallest candidate size that finds ENOUGH_SHARE of the most people found at any size."""
    most = max(people_found.values(), default=0)
    if most == 0:
        return MIDDLE_SIZE
    return min(size for size, count in people_found.items() if count >= ENOUGH_SHARE * most)


def probe_frames(camera: Camera, last_frame: int, count: int = PROBE_FRAMES) -> list[np.ndarray]:
    """Up to `count` BGR frames spread evenly over the camera's first `last_frame` frames."""
    if last_frame <= 0:
        return []
    indices = sorted({int(i) for i in np.linspace(0, last_frame - 1, num=min(count, last_frame))})
    if camera.is_image_sequence:
        frames = [cv2.imread(str(camera.image_files[i])) for i in indices]
        return [frame for frame in frames if frame is not None]
    capture = cv2.VideoCapture(str(camera.path))
    frames = []
    try:
        for index in indices:
            # Seeking is approximate for some codecs; a probe only needs frames from about there.
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
    finally:
        capture.release()
    return frames


def choose_image_size(cameras: list[Camera], count_people, max_frames: int | None = None,
                      max_seconds: float | None = None) -> SizeChoice:
    """The run's input size for `cameras`. count_people(frames, image_size, min_score) -> how many people
    it finds in `frames` at `image_size` (e.g. PersonDetector.count_people)."""
    if not cameras:
        raise CctrackError("no cameras to choose a detector input size for")
    sizes: dict[str, int] = {}
    found: dict[str, dict[int, int]] = {}
    for camera in cameras:
        frames = probe_frames(camera, frames_available(camera, max_frames, max_seconds))
        found[camera.name] = {size: int(count_people(frames, size, PROBE_MIN_SCORE)) if frames else 0 for size in CANDIDATE_SIZES}
        sizes[camera.name] = size_for_camera(found[camera.name])
    return SizeChoice(max(sizes.values()), sizes, found)
