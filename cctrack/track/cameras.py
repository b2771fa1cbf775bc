"""The per-camera stage: frames -> detections -> tracks -> tracklets, for all cameras at once.

Frames of all cameras are read in lockstep and detected in shared batches, so one network call serves
several cameras; each camera keeps its own tracker, fed in frame order. Each camera's frames are decoded
ahead in a reader thread (bounded), overlapping decoding with detection; tracklets can be handed on as
they end (`on_tracklet_end`), overlapping embedding with detection too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from cctrack.detect import PersonDetector
from cctrack.prefetch import Prefetched
from cctrack.progress import progress_bar
from cctrack.track.checkpoint import (CameraProgress, TrackingCheckpoint, interrupted_at, stop_on_ctrl_c,
                                      without_crop_pixels)
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
    checkpoint: TrackingCheckpoint | None = None,
    first_frame: int = 0,
    on_tracklet_end: Callable[[Tracklet], None] | None = None,
) -> list[CameraTracks]:
    """Detect and track people in every camera; one `CameraTracks` per camera, in the given order.

    With a `checkpoint`, tracking resumes from its last save and saves as it goes; Ctrl-C then saves and
    raises cctrack.errors.Interrupted. Tracklets that ended before the last save come back without crop
    pixels (written to OUT_DIR/crops already); the rest carry theirs. `first_frame` (a multiple of
    `stride`) starts every camera there instead of at frame 0: a time chunk (cctrack.distributed).
    `on_tracklet_end` is given each tracklet (of at least `min_boxes` boxes) as soon as its track ends, its
    crops final, e.g. to embed it in the background (cctrack.embed_worker); tracklets still alive when the
    frames run out are not given.
    """
    trackers = [Tracker(tracker_settings, fps=camera.fps / stride) for camera in cameras]
    collectors = [TrackletCollector(camera.name, crops_per_tracklet) for camera in cameras]
    progress = [CameraProgress() for _ in cameras]
    ended: list[list[Tracklet]] = [[] for _ in cameras]
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        progress, ended = saved.progress, saved.ended
        for tracker, collector, tracker_state, collector_state in zip(trackers, collectors, saved.trackers, saved.collectors):
            tracker.restore(tracker_state)
            collector.restore(collector_state)
    # Each camera decodes ahead in its own thread (cctrack.prefetch) while the detector works.
    readers = [
        None if p.finished else Prefetched(read_frames(c, max_frames, stride, max_seconds, start=max(first_frame, p.next_frame(stride))),
                                           name=f"read {c.name}")
        for c, p in zip(cameras, progress)
    ]
    streams: list[Iterator[tuple[int, np.ndarray]] | None] = list(readers)
    totals = [frames_to_process(camera, max_frames, stride, max_seconds) - first_frame // stride for camera in cameras]
    bars = [
        progress_bar(total, f"track {camera.name}", "frame", show_progress, position=i)
        for i, (camera, total) in enumerate(zip(cameras, totals))
    ]
    for bar, camera_progress in zip(bars, progress):
        if camera_progress.processed:
            bar.update(camera_progress.processed)
    # Enough frames per camera per round that a round fills about one detector batch.
    frames_per_camera = max(1, detector.settings.batch_size // max(1, len(cameras)))
    try:
        with stop_on_ctrl_c(checkpoint is not None) as stop:
            while any(stream is not None for stream in streams):
                batch: list[tuple[int, int, np.ndarray]] = []  # (camera position, frame index, frame)
                for position, stream in enumerate(streams):
                    if stream is None:
                        continue
                    for _ in range(frames_per_camera):
                        item = next(stream, None)
                        if item is None:
                            streams[position] = None
                            progress[position].finished = True
                            break
                        batch.append((position, item[0], item[1]))
                detections = detector.detect([frame for _, _, frame in batch]) if batch else []
                for (position, frame_index, frame), frame_detections in zip(batch, detections):
                    tracked = trackers[position].update(frame_detections)
                    collectors[position].add(frame_index, frame, frame_detections, tracked)
                    progress[position].processed += 1
                    progress[position].last_frame = frame_index
                    bars[position].update(1)
                if on_tracklet_end is not None:
                    for collector, tracker in zip(collectors, trackers):
                        for tracklet in _long_enough(collector.newly_ended(tracker.active_track_ids), min_boxes):
                            on_tracklet_end(tracklet)
                if checkpoint is None:
                    continue
                # A checkpoint ends a round, so that a resumed run forms the same detector batches.
                video_seconds = max(p.seconds(camera.fps) for p, camera in zip(progress, cameras))
                if checkpoint.due(video_seconds) or stop.requested:
                    newly_ended = [_long_enough(c.take_ended(t.active_track_ids), min_boxes) for c, t in zip(collectors, trackers)]
                    checkpoint.save(video_seconds, progress, trackers, collectors, newly_ended)
                    for camera_ended, camera_new in zip(ended, newly_ended):
                        camera_ended += [without_crop_pixels(t) for t in camera_new]
                if stop.requested:
                    raise interrupted_at(checkpoint, video_seconds)
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
        for bar in bars:
            bar.close()
    return [
        CameraTracks(
            camera=camera,
            tracklets=sorted(camera_ended + _long_enough(collector.finish(), min_boxes), key=lambda t: t.track_id),
            frames_processed=camera_progress.processed,
            last_frame=camera_progress.last_frame,
            stride=stride,
        )
        for camera, collector, camera_progress, camera_ended in zip(cameras, collectors, progress, ended)
    ]


def _long_enough(tracklets: list[Tracklet], min_boxes: int) -> list[Tracklet]:
    return [t for t in tracklets if len(t.frames) >= min_boxes]
