"""RunRecord: what a run was made of, saved as cache/run.json and written into identities.json."""

from __future__ import annotations

import json

import pytest

from cctrack.errors import CctrackError
from cctrack.record import CameraRecord, ModelRecord, RunRecord


def record() -> RunRecord:
    return RunRecord(
        video_dir="/videos",
        cameras=(CameraRecord("cam_a", "/videos/cam_a.mp4", 10.0, 100, 640, 480, 50, 99, 2),
                 CameraRecord("cam_b", "/videos/cam_b.mp4", 25.0, 250, 320, 240, 250, 250, 1)),
        detector=ModelRecord("ultralytics YOLO yolo11n-pose.pt at 960 px", "/w/yolo.pt", "ab" * 32),
        reid=None,
        config={"video": {"stride": 2}, "detector": {"image_size": 960}, "tracker": {}, "link": {"min_probability": 0.9}},
    )


def test_a_record_saves_and_loads_itself_unchanged(tmp_path):
    path = tmp_path / "run.json"
    original = record()
    original.save(path)
    assert RunRecord.load(path) == original
    written = json.loads(path.read_text())
    assert list(written) == ["cache_version", "video_dir", "cameras", "models", "config"]
    assert written["models"] == {"detector": {"description": original.detector.description, "path": "/w/yolo.pt",
                                              "sha256": "ab" * 32}, "reid": None}
    assert written["cameras"][0]["last_frame"] == 99 and original.camera_names == ["cam_a", "cam_b"]


def test_a_relink_keeps_the_tracking_settings_the_tracklets_were_made_with(tmp_path):
    reid = ModelRecord("CSSC", "/w/cssc.pt", "cd" * 32, 1280)
    relinked = record().with_reid(reid, {"video": {"stride": 1}, "detector": {"image_size": 640}, "tracker": {"x": 1},
                                         "link": {"min_probability": 0.95}})
    assert relinked.config == {"video": {"stride": 2}, "detector": {"image_size": 960}, "tracker": {},
                               "link": {"min_probability": 0.95}}
    assert relinked.to_dict()["models"]["reid"] == {"description": "CSSC", "path": "/w/cssc.pt", "sha256": "cd" * 32, "dim": 1280}
    relinked.save(tmp_path / "run.json")
    assert RunRecord.load(tmp_path / "run.json") == relinked


@pytest.mark.parametrize("content, message", [
    ("not json", "is not a cctrack run record"),
    ('{"cache_version": 1, "cameras": [{"name": "a"}]}', "is not a cctrack run record"),
    ('{"cache_version": 7, "cameras": []}', "has version 7 but this cctrack reads version 1"),
])
def test_a_damaged_or_foreign_record_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(CctrackError, match=message):
        RunRecord.load(tmp_path / "run.json")
