"""Resume instead of redo (cctrack.track.checkpoint): a run killed at any moment and run again gives the
tracklets and identities of a run never stopped; Ctrl-C saves, says how to resume and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cctrack import cache
from cctrack.config import load_config
from cctrack.detect import PersonDetector
from cctrack.detections import Detections
from cctrack.track import checkpoint as checkpoint_module
from cctrack.track import track_cameras
from cctrack.track.checkpoint import RESUME_FOLDER, STATE_NAME, TrackingCheckpoint
from cctrack.track.tracker import Tracker, TrackerSettings
from cctrack.tracklets import TrackletCollector, crop_path
from cctrack.video import discover_cameras
from tests.conftest import REPO_ROOT

CHECKPOINT_SECONDS = 0.5  # 5 frames of the 10 fps sample: several checkpoints in a 3 s clip


def walkers(frame_index: int) -> Detections:
    """Three people walking across a 320 x 240 view, one leaving and one arriving, with a missed frame."""
    boxes, scores = [], []
    for person, (x0, y0, vx) in enumerate(((10, 40, 6), (300, 120, -5), (150, 60, 2))):
        if person == 2 and frame_index < 6 or person == 0 and frame_index == 9:
            continue
        x = x0 + vx * frame_index
        boxes.append([x, y0, x + 30, y0 + 80])
        scores.append(0.9 - 0.05 * person)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))


def test_a_restored_tracker_and_collector_continue_exactly_as_the_originals():
    settings = TrackerSettings(lost_track_seconds=0.3)
    frame = np.random.default_rng(0).integers(0, 255, (240, 400, 3), np.uint8)
    original, original_collector = Tracker(settings, fps=10), TrackletCollector("cam", crops_per_tracklet=2)
    for index in range(8):
        detections = walkers(index)
        original_collector.add(index, frame, detections, original.update(detections))
    restored, restored_collector = Tracker(settings, fps=10), TrackletCollector("cam", crops_per_tracklet=2)
    restored.restore({k: v.copy() for k, v in original.state().items()})
    restored_collector.restore({k: v.copy() for k, v in original_collector.state().items()})
    for index in range(8, 40):
        detections = walkers(index)
        tracked, again = original.update(detections), restored.update(detections)
        assert np.array_equal(tracked.track_ids, again.track_ids) and np.array_equal(tracked.boxes, again.boxes)
        original_collector.add(index, frame, detections, tracked)
        restored_collector.add(index, frame, detections, again)
    first, second = original_collector.finish(), restored_collector.finish()
    assert [t.track_id for t in first] == [t.track_id for t in second] and len(first) >= 3
    for a, b in zip(first, second):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.crop_frames, b.crop_frames) and all(np.array_equal(x, y) for x, y in zip(a.crops, b.crops))


def test_take_ended_returns_only_tracks_the_tracker_dropped():
    tracker, collector = Tracker(TrackerSettings(lost_track_seconds=0.2), fps=10), TrackletCollector("cam", 2)
    frame = np.zeros((240, 400, 3), np.uint8)
    for index in range(12):
        detections = walkers(index)
        collector.add(index, frame, detections, tracker.update(detections))
    ended = collector.take_ended(tracker.active_track_ids)
    # Person 0 missed frame 9 only (kept), person 1 left the view; none has ended yet except by leaving.
    assert all(t.track_id not in set(tracker.active_track_ids) for t in ended)
    remaining = collector.finish()
    assert {t.track_id for t in remaining} == set(tracker.active_track_ids)


class Killed(Exception):
    """Stands for SIGKILL at a chosen moment of a checkpoint."""


@pytest.fixture(scope="module")
def detector():
    return PersonDetector(load_config(None, ["detector.image_size=640", "detector.batch_size=4"]).detector, torch.device("cpu"))


@pytest.fixture(scope="module")
def never_stopped(short_sample, detector, tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("never_stopped")
    return out, _track(discover_cameras(short_sample), detector, out)


def _track(cameras, detector, out_dir: Path, key: str = "k") -> list:
    checkpoint = TrackingCheckpoint(out_dir, key, cameras, CHECKPOINT_SECONDS,
                                    lambda tracklet: cache.write_crops(out_dir, tracklet))
    # Tracks lost for 0.3 s end, so that checkpoints also write ended tracklets and their crops.
    tracks = track_cameras(cameras, detector, TrackerSettings(lost_track_seconds=0.3), crops_per_tracklet=4, min_boxes=3,
                           show_progress=False, checkpoint=checkpoint)
    tracklets = [t for camera in tracks for t in camera.tracklets]
    for tracklet in tracklets:
        cache.write_crops(out_dir, tracklet)
    return tracklets


def _crop_bytes(out_dir: Path, tracklets) -> list[bytes]:
    return [(out_dir / crop_path(t.camera, t.track_id, rank)).read_bytes() for t in tracklets for rank in range(len(t.crop_frames))]


def _same_tracklets(first, second) -> bool:
    return [(t.camera, t.track_id) for t in first] == [(t.camera, t.track_id) for t in second] and all(
        np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.crop_frames, b.crop_frames) and np.array_equal(a.crop_quality, b.crop_quality)
        for a, b in zip(first, second)
    )


@pytest.mark.parametrize("kill_at", ["after checkpoint 2", "inside checkpoint 4", "after checkpoint 5"])
def test_tracking_killed_and_resumed_equals_tracking_never_stopped(short_sample, detector, never_stopped, tmp_path, monkeypatch,
                                                                   kill_at):
    cameras = discover_cameras(short_sample)
    reference_dir, reference = never_stopped

    out = tmp_path / "resumed"
    commits = {"count": 0}
    write_json = checkpoint_module.write_json_atomic
    number = int(kill_at.split()[-1])

    def commit_then_maybe_die(path, document):
        commits["count"] += 1
        if kill_at.startswith("inside") and commits["count"] == number:
            raise Killed  # the crops and files of this checkpoint are written, its state.json is not
        write_json(path, document)
        if kill_at.startswith("after") and commits["count"] == number:
            raise Killed

    monkeypatch.setattr(checkpoint_module, "write_json_atomic", commit_then_maybe_die)
    with pytest.raises(Killed):
        _track(cameras, detector, out)
    monkeypatch.setattr(checkpoint_module, "write_json_atomic", write_json)
    state = json.loads((out / RESUME_FOLDER / STATE_NAME).read_text())
    assert state["number"] == (number if kill_at.startswith("after") else number - 1)
    if number >= 4:  # at 640 px, a tracklet of the clip ends before checkpoint 3
        assert state["ended_files"], "no tracklet ended before the kill: the test would not cover them"

    resumed = _track(cameras, detector, out)
    assert _same_tracklets(reference, resumed)
    assert _crop_bytes(reference_dir, reference) == _crop_bytes(out, resumed)


def test_a_checkpoint_of_another_key_is_not_resumed(short_sample, detector, tmp_path, monkeypatch):
    cameras = discover_cameras(short_sample)
    monkeypatch.setattr(checkpoint_module.TrackingCheckpoint, "due", lambda self, seconds: True)
    first = TrackingCheckpoint(tmp_path, "settings A", cameras, 1.0, lambda t: cache.write_crops(tmp_path, t))
    track_cameras(cameras, detector, TrackerSettings(), max_frames=6, show_progress=False, checkpoint=first)
    assert first.load() is not None
    other = TrackingCheckpoint(tmp_path, "settings B", cameras, 1.0, lambda t: None)
    assert other.load() is None
    # A damaged checkpoint is said and skipped, never a crash or a half-restored state.
    state = json.loads((tmp_path / RESUME_FOLDER / STATE_NAME).read_text())
    (tmp_path / RESUME_FOLDER / state["state_file"]).write_bytes(b"not a zip")
    assert TrackingCheckpoint(tmp_path, "settings A", cameras, 1.0, lambda t: None).load() is None


# --- the command line, killed for real --------------------------------------------------------------------

RUN_FLAGS = ["--no-video", "--imgsz", "640", "--set", f"video.checkpoint_seconds={CHECKPOINT_SECONDS}", "--quiet"]


def _cctrack_run(video_dir: Path, out: Path) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
    return subprocess.Popen([sys.executable, "-m", "cctrack.cli", "run", str(video_dir), "--out", str(out), *RUN_FLAGS],
                            cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _checkpoint_number(out: Path) -> int:
    try:
        return json.loads((out / RESUME_FOLDER / STATE_NAME).read_text())["number"]
    except (OSError, ValueError, KeyError):
        return 0


def _identities_without_time(out: Path) -> dict:
    document = json.loads((out / "identities.json").read_text())
    document.pop("created", None)
    for section in document.values():
        if isinstance(section, dict):
            section.pop("created", None)
    return document


def _tracklet_arrays(out: Path) -> dict:
    with np.load(out / "cache" / "tracklets.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def uninterrupted(short_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    process = _cctrack_run(short_sample, out)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    return out


def _assert_same_run(out: Path, reference: Path) -> None:
    first, second = _tracklet_arrays(out), _tracklet_arrays(reference)
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    assert _identities_without_time(out) == _identities_without_time(reference)
    assert not (out / RESUME_FOLDER).exists()  # finished: the checkpoints are gone
    for path in (reference / "crops").rglob("*.jpg"):
        assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(out / path.relative_to(reference))))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["tracking, checkpoint 1", "tracking, checkpoint 3", "embedding"])
def test_cctrack_run_killed_and_run_again_equals_a_run_never_killed(short_sample, uninterrupted, tmp_path, stage):
    out = tmp_path / "out"
    process = _cctrack_run(short_sample, out)
    if stage == "embedding":
        reached = _wait_for(lambda: (out / "cache" / "tracklets.npz").is_file(), process)
    else:
        number = int(stage.split()[-1])
        reached = _wait_for(lambda: _checkpoint_number(out) >= number, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert reached, f"the run ended before the {stage} kill point: {process.stderr.read()}"
    assert not (out / "identities.json").exists()
    again = _cctrack_run(short_sample, out)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    _assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_ctrl_c_saves_says_how_to_resume_and_exits_130(short_sample, uninterrupted, tmp_path):
    out = tmp_path / "out"
    process = _cctrack_run(short_sample, out)
    assert _wait_for(lambda: _checkpoint_number(out) >= 1, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    message = process.stderr.read().strip().splitlines()
    assert message[-1].startswith("interrupted: tracking saved at") and "run the same command again" in message[-1]
    saved = _checkpoint_number(out)
    assert saved >= 2  # the one it was waiting for, then the one Ctrl-C asked for
    again = _cctrack_run(short_sample, out)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    _assert_same_run(out, uninterrupted)
