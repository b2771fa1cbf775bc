"""One MOTChallenge reader and writer (cctrack.mot) for tracks/, global/ and ground truth."""

from __future__ import annotations

import numpy as np

from cctrack.mot import read_mot_txt, write_mot_files, write_mot_txt
from cctrack.table import TrackletTable
from cctrack.tracklets import Tracklet


def tracklet(camera: str, track_id: int, frames: list[int], x0: float) -> Tracklet:
    boxes = np.array([[x0 + f, 10.25, x0 + f + 20.5, 60.125] for f in frames], np.float32)
    return Tracklet(camera=camera, track_id=track_id, frames=np.array(frames), boxes=boxes,
                    scores=np.full(len(frames), 0.87654, np.float32), crops=(), crop_frames=np.array(frames[:1]),
                    crop_quality=np.ones(1, np.float32))


def test_track_files_and_ground_truth_share_one_format_and_read_back(tmp_path):
    tracklets = [tracklet("cam_a", 7, [3, 4], 100.0), tracklet("cam_a", 2, [4], 5.5), tracklet("cam_b", 1, [0], 1.0)]
    table = TrackletTable.from_tracklets(tracklets, ["cam_a", "cam_b", "cam_empty"], [10.0, 10.0, 10.0])
    paths = write_mot_files(tmp_path, table, np.array([70, 20, 10]))
    lines = paths[0].read_text().splitlines()
    # Sorted by frame, then id; 1-based frames; each tracklet under the id it was given.
    assert lines == ["4,70,103.000,10.250,20.500,49.875,0.8765,-1,-1,-1",
                     "5,20,9.500,10.250,20.500,49.875,0.8765,-1,-1,-1",
                     "5,70,104.000,10.250,20.500,49.875,0.8765,-1,-1,-1"]
    assert paths[2].read_text() == ""
    rows = read_mot_txt(paths[0])
    again = write_mot_txt(tmp_path / "again.txt", rows)  # the ground-truth writer: the same text
    assert again.read_text() == paths[0].read_text()
