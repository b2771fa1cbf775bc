"""detector.image_size: auto follows the footage: the smallest size at which the detector finds nearly all the
people it finds at any size, on real frames."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cctrack.config import load_config
from cctrack.detect import DetectorSettings, PersonDetector
from cctrack import detector_size
from cctrack.detector_size import MIDDLE_SIZE, PROBE_FRAMES, choose_image_size, probe_frames, size_for_camera
from cctrack.errors import CctrackError
from cctrack.outdir import claim_for_run, inputs_fingerprint
from cctrack.pipeline import SIZE_RECORD, _with_detector_size
from cctrack.video import discover_cameras, read_frames
from tests.conftest import SAMPLE_DIR


@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    return PersonDetector(DetectorSettings(runtime="torch"), torch.device("cpu"))


def _write_camera(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(folder / "cam.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return folder


@pytest.fixture(scope="module")
def cam_right_frames() -> list[np.ndarray]:
    camera = {c.name: c for c in discover_cameras(SAMPLE_DIR)}["cam_right"]
    return [frame for _, frame in read_frames(camera, stride=100)]


def test_the_smallest_size_that_finds_nearly_everyone_is_chosen():
    assert size_for_camera({640: 16, 960: 15, 1280: 16}) == 640
    assert size_for_camera({640: 13, 960: 23, 1280: 24}) == 960  # 23 >= 0.9 x 24
    assert size_for_camera({640: 2, 960: 30, 1280: 54}) == 1280
    assert size_for_camera({640: 0, 960: 0, 1280: 0}) == MIDDLE_SIZE  # nothing to measure


def test_probe_frames_spread_over_the_part_to_process():
    camera = {c.name: c for c in discover_cameras(SAMPLE_DIR)}["cam_left"]
    frames = probe_frames(camera, 40)
    assert len(frames) == PROBE_FRAMES and frames[0].shape == (576, 320, 3)
    assert len(probe_frames(camera, 3)) == 3 and probe_frames(camera, 0) == []
    first = next(read_frames(camera, max_frames=1))[1]
    assert np.array_equal(frames[0], first)


def test_size_follows_how_large_people_are_in_the_frame(tmp_path, detector, cam_right_frames):
    """The sample's far-view people need the frame enlarged (960, as the fixed default was); the same scene
    zoomed 2x (people twice as tall in the frame) needs 640; the sample at half resolution, where people are
    as tall relative to the frame, chooses as the sample does."""
    sample = choose_image_size([c for c in discover_cameras(SAMPLE_DIR) if c.name == "cam_right"], detector.count_people)
    assert sample.image_size == 960, sample.summary()
    zoomed = _write_camera(tmp_path / "zoomed", [cv2.resize(f[144:432, 80:240], (320, 576)) for f in cam_right_frames])
    choice = choose_image_size(discover_cameras(zoomed), detector.count_people)
    assert choice.image_size == 640, choice.summary()
    assert choice.people_found["cam"][640] >= 0.9 * max(choice.people_found["cam"].values())
    half = _write_camera(tmp_path / "half", [cv2.resize(f, (160, 288), interpolation=cv2.INTER_AREA) for f in cam_right_frames])
    assert choose_image_size(discover_cameras(half), detector.count_people).image_size == 960


def test_the_run_uses_the_largest_size_any_camera_needs(monkeypatch):
    cameras = [c for c in discover_cameras(SAMPLE_DIR)]  # cam_left, cam_right
    found = {"cam_left": {640: 10, 960: 10, 1280: 10}, "cam_right": {640: 1, 960: 4, 1280: 9}}
    monkeypatch.setattr(detector_size, "probe_frames", lambda camera, last: [camera.name])
    choice = choose_image_size(cameras, lambda frames, size, score: found[frames[0]][size])
    assert choice.camera_sizes == {"cam_left": 640, "cam_right": 1280} and choice.image_size == 1280
    assert "cam_right 1280 px" in choice.summary()
    monkeypatch.setattr(detector_size, "probe_frames", lambda camera, last: [])  # nothing readable
    assert choose_image_size(cameras, lambda frames, size, score: 1 / 0).image_size == MIDDLE_SIZE


class CountingDetector:
    """Finds 3 people at 640 px and 10 at the larger sizes; counts its probe calls."""

    device = torch.device("cpu")

    def __init__(self):
        self.probed, self.size = 0, None

    def count_people(self, frames, size, score):
        self.probed += 1
        return {640: 3, 960: 10, 1280: 10}[size]

    def use_image_size(self, size):
        self.size = size


def test_a_run_resolves_auto_once_and_keeps_an_explicit_size(tmp_path):
    cameras = [c for c in discover_cameras(SAMPLE_DIR) if c.name == "cam_left"]
    auto, fake = load_config(None), CountingDetector()
    assert auto.detector.image_size == "auto"
    resolved, record = _with_detector_size(auto, cameras, inputs_fingerprint(cameras), fake, "sha", tmp_path, show_progress=False)
    assert resolved.detector.image_size == 960 and fake.size == 960 and fake.probed == 3 and record["image_size"] == 960
    fixed, fake = load_config(None, ["detector.image_size=1280"]), CountingDetector()
    assert _with_detector_size(fixed, cameras, inputs_fingerprint(cameras), fake, "sha", tmp_path, show_progress=False) == (fixed, None)
    assert fake.probed == 0


def test_a_rerun_of_the_same_footage_and_settings_reuses_the_choice_and_any_change_probes_again(tmp_path):
    cameras = [c for c in discover_cameras(SAMPLE_DIR) if c.name == "cam_left"]
    config, first = load_config(None), CountingDetector()
    _, record = _with_detector_size(config, cameras, inputs_fingerprint(cameras), first, "sha", tmp_path, show_progress=False)
    (tmp_path / SIZE_RECORD).parent.mkdir()
    (tmp_path / SIZE_RECORD).write_text(json.dumps({**record, "image_size": 1280}))  # tell the reuse from a probe
    again = CountingDetector()
    resolved, _ = _with_detector_size(config, cameras, inputs_fingerprint(cameras), again, "sha", tmp_path, show_progress=False)
    assert again.probed == 0 and again.size == 1280 and resolved.detector.image_size == 1280
    for changed, weights in [(load_config(None, ["video.max_frames=100"]), "sha"), (config, "other weights")]:
        fake = CountingDetector()
        resolved, _ = _with_detector_size(changed, cameras, inputs_fingerprint(cameras), fake, weights, tmp_path, show_progress=False)
        assert fake.probed == 3 and resolved.detector.image_size == 960
    (tmp_path / SIZE_RECORD).write_text("{not json")
    fake = CountingDetector()
    assert _with_detector_size(config, cameras, inputs_fingerprint(cameras), fake, "sha", tmp_path, show_progress=False)[0].detector.image_size == 960
    assert fake.probed == 3


def test_a_folder_of_another_run_is_refused_before_the_probe(tmp_path, monkeypatch):
    import cctrack.pipeline as pipeline

    out = tmp_path / "out"
    out.mkdir()
    claim_for_run(out, inputs_fingerprint([c for c in discover_cameras(SAMPLE_DIR) if c.name == "cam_left"]), None)

    def probe(*args, **kwargs):
        raise AssertionError("probed a folder that belongs to another run")

    monkeypatch.setattr(pipeline, "choose_image_size", probe)
    with pytest.raises(CctrackError, match="holds a run of other videos"):
        pipeline.run(SAMPLE_DIR, out, load_config(None, ["export.link=false", "detector.runtime=torch"]), show_progress=False)


def test_a_detector_left_on_auto_chooses_from_the_first_frames_it_sees(detector, cam_right_frames):
    fresh = PersonDetector(DetectorSettings(runtime="torch"), torch.device("cpu"))
    assert fresh.settings.image_size == "auto"
    fresh.detect(cam_right_frames[:4])
    assert fresh.settings.image_size in (640, 960, 1280)


def test_bad_sizes_are_refused():
    for bad in (100, 0, "big", 960.0):
        with pytest.raises(ValueError, match="auto or a positive multiple of 32"):
            DetectorSettings(image_size=bad)
