"""Reader threads (cctrack.prefetch): frames in order, a reader's error raised where its frame would have
come, and every thread gone after an early stop, an error or Ctrl-C."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cctrack.config import load_config
from cctrack.detect import PersonDetector
from cctrack.errors import CctrackError
from cctrack.prefetch import Prefetched
from cctrack.track import track_cameras
from cctrack.track.tracker import TrackerSettings
from cctrack.video import discover_cameras, read_frames
from tests.conftest import good_and_truncated_cameras, interrupt_detection_at_call


def readers_alive() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("read ") or thread.name == "reader"]


def test_frames_arrive_in_order_and_equal_a_direct_read(short_sample):
    camera = discover_cameras(short_sample)[0]
    direct = list(read_frames(camera, stride=2))
    with Prefetched(read_frames(camera, stride=2), ahead=3) as ahead:
        prefetched = list(ahead)
    assert [i for i, _ in prefetched] == [i for i, _ in direct] == list(range(0, 30, 2))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(prefetched, direct))
    assert not readers_alive()


def test_a_reader_error_is_raised_where_its_item_would_have_come():
    def source():
        yield from range(5)
        raise CctrackError("video x stops decoding at frame 5 of 9: truncated or corrupt")

    received = []
    with pytest.raises(CctrackError, match="stops decoding at frame 5"):
        for item in Prefetched(source(), ahead=2):
            received.append(item)
    assert received == [0, 1, 2, 3, 4]


def test_stopping_early_or_on_ctrl_c_ends_the_thread_and_releases_the_source():
    released = threading.Event()

    def endless():
        try:
            index = 0
            while True:
                yield index
                index += 1
        finally:
            released.set()

    with pytest.raises(KeyboardInterrupt):
        with Prefetched(endless(), ahead=4) as ahead:
            assert [next(ahead) for _ in range(3)] == [0, 1, 2]
            time.sleep(0.2)  # the reader fills its queue and waits
            raise KeyboardInterrupt
    assert released.wait(2.0) and not readers_alive()


@pytest.fixture(scope="module")
def detector():
    return PersonDetector(load_config(None, ["detector.image_size=320", "detector.batch_size=4"]).detector, torch.device("cpu"))


def test_a_truncated_camera_stops_tracking_with_its_error_and_no_thread_is_left(tmp_path, detector):
    cameras = discover_cameras(good_and_truncated_cameras(tmp_path))
    with pytest.raises(CctrackError, match="cam_bad.avi stops decoding at frame"):
        track_cameras(cameras, detector, TrackerSettings(), show_progress=False)
    assert not readers_alive()


def test_ctrl_c_during_tracking_leaves_no_reader_thread(short_sample, detector, monkeypatch):
    interrupt_detection_at_call(detector, monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        track_cameras(discover_cameras(short_sample), detector, TrackerSettings(), show_progress=False)
    assert not readers_alive()
