"""The per-camera stage: frames -> detections -> tracks -> tracklets, for all cameras at once.

Frames of all cameras are read in lockstep and detected in shared batches, so one network call serves
several cameras; each camera keeps its own tracker, fed in frame order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cctrack.detect import PersonDetector
from cctrack.progress import progress_bar
from cctrack.track.tracker import Tracker, TrackerSettings
from cctrack.tracklets import Tracklet, TrackletCollector
from cctrack.video import Camera, frames_to_process, read_frames


@dataclass(frozen=True)
class CameraTracks:
    camera: Camera
    tracklets: list[Tracklet]
    frames_processed: int  # frames read and detected (after stride, max_frames and max_seconds)
    last_frame: int  # 0-based index of the last frame processed
    stride: int


def track_cameras(
    cameras: list[Camera],
    detector: PersonDetector,
    tracker_settings: TrackerSettings,
    crops_per_tracklet: int = 8,
    min_boxes: int = 1,
    max_frames: int | None = None,
    stride: int = 1,
    show_progress: bool = True,
    max_seconds: float | None = None,
) -> list[CameraTracks]:
    """Detect and track people in every camera; one `CameraTracks` per camera, in the given order."""
    trackers = [Tracker(tracker_settings, fps=camera.fps / stride) for camera in cameras]
    collectors = [TrackletCollector(camera.name, crops_per_tracklet) for camera in cameras]
    streams: list[Iterator[tuple[int, np.ndarray]] | None] = [read_frames(c, max_frames, stride, max_seconds) for c in cameras]
    totals = [frames_to_process(camera, max_frames, stride, max_seconds) for camera in cameras]
    bars = [
        progress_bar(total, f"track {camera.name}", "frame", show_progress, position=i)
        for i, (camera, total) in enumerate(zip(cameras, totals))
    ]
    processed = [0] * len(cameras)
    last_frame = [-1] * len(cameras)
    # Enough frames per camera per round that a round fills about one detector batch.
    frames_per_camera = max(1, detector.settings.batch_size // max(1, len(cameras)))
    try:
        while any(stream is not None for stream in streams):
            batch: list[tuple[int, int, np.ndarray]] = []  # (camera position, frame index, frame)
            for position, stream in enumerate(streams):
                if stream is None:
                    continue
                for _ in range(frames_per_camera):
                    item = next(stream, None)
                    if item is None:
                        streams[position] = None
                        break
                    batch.append((position, item[0], item[1]))
            if not batch:
                break
            detections = detector.detect([frame for _, _, frame in batch])
            for (position, frame_index, frame), frame_detections in zip(batch, detections):
                tracked = trackers[position].update(frame_detections)
                collectors[position].add(frame_index, frame, frame_detections, tracked)
                processed[position] += 1
                last_frame[position] = frame_index
                bars[position].update(1)
    finally:
        for bar in bars:
            bar.close()
    return [
        CameraTracks(
            camera=camera,
            tracklets=[t for t in collector.finish() if len(t.frames) >= min_boxes],
            frames_processed=count,
            last_frame=last,
            stride=stride,
        )
        for camera, collector, count, last in zip(cameras, collectors, processed, last_frame)
    ]
