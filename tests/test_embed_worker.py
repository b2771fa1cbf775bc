"""Embedding in the background as tracklets end: the same bits as embedding the written crops at the end."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cctrack.cache import StoredCrops, write_crops
from cctrack.config import load_config
from cctrack.detect import PersonDetector
from cctrack.embed import embed_tracklets, load_embedder
from cctrack.embed_worker import BackgroundEmbedding, stored_pixels
from cctrack.errors import CctrackError
from cctrack.table import TrackletTable
from cctrack.track import track_cameras
from cctrack.track.tracker import TrackerSettings
from cctrack.tracklets import Tracklet
from cctrack.video import discover_cameras
from tests.conftest import interrupt_detection_at_call, read_sample_frames, write_video


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """cam_right, sample frames 101-230 (people walk out of view): the tracks, and every tracklet handed
    on as its track ended, while tracking went on."""
    folder = tmp_path_factory.mktemp("walk_out")
    write_video(folder / "cam_right.mp4", read_sample_frames("cam_right", 130, start=100))
    config = load_config(None, ["detector.image_size=640", "detector.runtime=torch"])
    detector = PersonDetector(config.detector, torch.device("cpu"))
    handed_on: list[tuple[int, Tracklet]] = []  # (tracklets handed on so far, the tracklet)
    tracks = track_cameras(discover_cameras(folder), detector, TrackerSettings(), min_boxes=3, show_progress=False,
                           on_tracklet_end=lambda tracklet: handed_on.append((len(handed_on), tracklet)))[0]
    return tracks, [tracklet for _, tracklet in handed_on]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(None, "cpu")


def test_tracklets_are_handed_on_when_they_end_exactly_as_they_finish(tracked):
    tracks, handed_on = tracked
    final = {t.track_id: t for t in tracks.tracklets}
    assert 0 < len(handed_on) < len(final)  # some ended before the video did; some were alive at its end
    assert len({t.track_id for t in handed_on}) == len(handed_on)  # each once
    for early in handed_on:
        late = final[early.track_id]
        assert np.array_equal(early.frames, late.frames) and np.array_equal(early.boxes, late.boxes)
        assert np.array_equal(early.crop_frames, late.crop_frames)
        assert all(np.array_equal(a, b) for a, b in zip(early.crops, late.crops)) and len(early.crops) == len(late.crops)
        assert late.last_frame < tracks.last_frame


def test_background_embeddings_equal_embedding_the_written_crops_at_the_end(tracked, embedder, tmp_path):
    tracks, handed_on = tracked
    background = BackgroundEmbedding(embedder)
    for tracklet in handed_on:
        background.submit(tracklet)
    embedded = background.finish()
    assert set(embedded) == {(t.camera, t.track_id) for t in handed_on}
    for tracklet in tracks.tracklets:
        write_crops(tmp_path, tracklet)
    table = TrackletTable.from_tracklets(tracks.tracklets, ["cam_right"], [10.0])
    stored = StoredCrops(tmp_path, table)
    assert all(np.array_equal(stored_pixels(c), s) for c, s in zip(tracks.tracklets[0].crops, stored[0]))
    known = {row: embedded[key] for row, key in enumerate(table.keys) if key in embedded}
    mixed = embed_tracklets(stored, embedder, show_progress=False, known=known)
    at_the_end = embed_tracklets(stored, embedder, show_progress=False)
    assert np.array_equal(mixed.crop_embeddings, at_the_end.crop_embeddings)  # bit for bit, not just close
    assert np.array_equal(mixed.descriptors, at_the_end.descriptors)


class SlowEmbedder:
    dim = 4

    def __init__(self, fail_on: int | None = None, seconds: float = 0.0):
        self.calls, self.fail_on, self.seconds = 0, fail_on, seconds

    def embed(self, crops):
        self.calls += 1
        time.sleep(self.seconds)
        if self.calls == self.fail_on:
            raise RuntimeError("out of memory")
        return np.ones((len(crops), self.dim), np.float32)


def _tracklet(track_id: int) -> Tracklet:
    crop = np.full((32, 16, 3), 90, np.uint8)
    return Tracklet("cam", track_id, np.arange(3), np.zeros((3, 4), np.float32), np.ones(3, np.float32), (crop, crop),
                    np.arange(2), np.ones(2, np.float32))


def test_an_error_in_the_worker_is_one_line_at_the_next_submit_or_at_finish():
    background = BackgroundEmbedding(SlowEmbedder(fail_on=1))
    background.submit(_tracklet(1))
    with pytest.raises(CctrackError, match="embedding in the background failed: RuntimeError: out of memory"):
        for track_id in range(2, 200):  # the worker keeps draining: these never block
            background.submit(_tracklet(track_id))
            time.sleep(0.001)
        background.finish()
    background.close()


def test_the_queue_is_bounded_and_close_stops_at_once():
    embedder = SlowEmbedder(seconds=0.05)
    background = BackgroundEmbedding(embedder, max_waiting=2)
    submitted = []

    def submit_many():
        for track_id in range(20):
            background.submit(_tracklet(track_id))
            submitted.append(track_id)

    producer = threading.Thread(target=submit_many)
    producer.start()
    time.sleep(0.2)
    assert len(submitted) < 10  # tracking waits for a worker that falls behind
    producer.join()
    started = time.perf_counter()
    background.close()
    assert time.perf_counter() - started < 1.0 and embedder.calls < 20
    assert not [t for t in threading.enumerate() if t.name == "embed tracklets" and t.is_alive()]


def test_ctrl_c_while_tracking_stops_the_embedding_worker_too(short_sample, embedder, monkeypatch, tmp_path):
    from cctrack.pipeline import _track_here
    from cctrack.track.checkpoint import TrackingCheckpoint

    config = load_config(None, ["detector.image_size=320", "detector.runtime=torch"])
    detector = PersonDetector(config.detector, torch.device("cpu"))
    interrupt_detection_at_call(detector, monkeypatch, 5)
    cameras = discover_cameras(short_sample)
    checkpoint = TrackingCheckpoint(tmp_path, "key", cameras, 0.0, lambda tracklet: None)
    with pytest.raises(KeyboardInterrupt):
        _track_here(cameras, config, detector, checkpoint, show_progress=False, embedder=embedder)
    assert not [t for t in threading.enumerate() if t.name in ("embed tracklets", "read cam_left", "read cam_right") and t.is_alive()]
