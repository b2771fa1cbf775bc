"""The tracklet table (cctrack.table): built from the tracking stage's tracklets, columns that agree with
them, saved in the tracklets.npz layout, and refused when its columns do not hold together."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cctrack.errors import CctrackError
from cctrack.table import COLUMNS, TrackletTable
from cctrack.tracklets import Tracklet

CAMERAS, FPS = ["cam_a", "cam_b"], [10.0, 25.0]


def tracklet(camera: str, track_id: int, frames: list[int], crops: int) -> Tracklet:
    boxes = np.array([[f, 2 * f, f + 10, 2 * f + 30] for f in frames], np.float32)
    return Tracklet(camera, track_id, np.array(frames, np.int64), boxes, np.linspace(0.5, 0.9, len(frames)).astype(np.float32),
                    tuple(np.full((4, 2, 3), k, np.uint8) for k in range(crops)), np.array(frames[:crops], np.int64),
                    np.linspace(1.0, 0.5, crops).astype(np.float32))


TRACKLETS = [tracklet("cam_a", 1, [0, 1, 2, 5], 2), tracklet("cam_a", 3, [5], 1), tracklet("cam_b", 2, [7, 9, 10], 3)]


def test_columns_agree_with_the_tracklets_they_were_made_of():
    table = TrackletTable.from_tracklets(TRACKLETS, CAMERAS, FPS)
    assert len(table) == 3 and table.camera_names == ("cam_a", "cam_b") and table.camera_fps == (10.0, 25.0)
    assert table.camera.tolist() == ["cam_a", "cam_a", "cam_b"] and table.keys == [("cam_a", 1), ("cam_a", 3), ("cam_b", 2)]
    assert table.first_frame.tolist() == [0, 5, 7] and table.last_frame.tolist() == [5, 5, 10]
    assert table.box_counts.tolist() == [4, 1, 3] and table.crop_counts.tolist() == [2, 1, 3]
    assert table.box_tracklet.tolist() == [0, 0, 0, 0, 1, 2, 2, 2]
    assert table.crop_paths(2) == ["crops/cam_b/00002_0.jpg", "crops/cam_b/00002_1.jpg", "crops/cam_b/00002_2.jpg"]
    for row, original in enumerate(TRACKLETS):
        again = table.tracklet(row)
        assert (again.camera, again.track_id, again.crops) == (original.camera, original.track_id, ())
        for field in ("frames", "boxes", "scores", "crop_frames", "crop_quality"):
            assert np.array_equal(getattr(again, field), getattr(original, field)) and getattr(again, field).dtype == getattr(original, field).dtype
    assert table.descriptors is None and table.identity is None


def test_stages_add_columns_to_a_new_table():
    table = TrackletTable.from_tracklets(TRACKLETS, CAMERAS, FPS)
    descriptors = np.eye(3, 4, dtype=np.float32)
    linked = table.with_descriptors(descriptors).with_identity(np.array([2, 1, 2]))
    assert table.descriptors is None and table.identity is None  # the table it came from is unchanged
    assert np.array_equal(linked.descriptors, descriptors) and linked.identity.tolist() == [2, 1, 2]
    assert linked.identity.dtype == np.int64 and np.array_equal(linked.frames, table.frames)
    with pytest.raises(ValueError, match=r"descriptors must have shape \(3, D\)"):
        table.with_descriptors(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"identity must have shape \(3,\)"):
        table.with_identity(np.array([1, 2]))


def test_saved_and_loaded_in_the_tracklets_npz_layout_with_the_same_bytes(tmp_path):
    table = TrackletTable.from_tracklets(TRACKLETS, CAMERAS, FPS)
    table.save(tmp_path / "tracklets.npz", tracking_key="key-1")
    with np.load(tmp_path / "tracklets.npz") as data:
        assert data.files == [*COLUMNS, "version", "tracking_key"] and str(data["tracking_key"]) == "key-1"
        assert {name: data[name].dtype.name for name in COLUMNS} == {
            "camera_index": "int32", "track_id": "int64", "box_offsets": "int64", "frames": "int64", "boxes": "float32",
            "scores": "float32", "crop_offsets": "int64", "crop_frames": "int64", "crop_quality": "float32"}
    loaded = TrackletTable.load(tmp_path / "tracklets.npz", CAMERAS, FPS)
    assert loaded.keys == table.keys and all(np.array_equal(loaded.arrays()[n], table.arrays()[n]) for n in COLUMNS)
    # The embeddings cache is keyed by the file's sha256: equal tables write equal members, byte for byte.
    loaded.save(tmp_path / "again.npz", tracking_key="key-1")
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "tracklets.npz").read_bytes()


def test_an_empty_run_is_an_empty_table(tmp_path):
    table = TrackletTable.from_tracklets([], CAMERAS, FPS)
    assert len(table) == 0 and table.boxes.shape == (0, 4) and table.keys == [] and table.first_frame.shape == (0,)
    table.save(tmp_path / "tracklets.npz")
    assert len(TrackletTable.load(tmp_path / "tracklets.npz", CAMERAS, FPS)) == 0


def test_spans_number_tracks_per_camera_in_row_order():
    table = TrackletTable.from_spans(CAMERAS, FPS, [1, 0, 1, 0], [0, 3, 5, 9], [4, 3, 8, 20])
    assert table.keys == [("cam_b", 1), ("cam_a", 1), ("cam_b", 2), ("cam_a", 2)]
    assert table.first_frame.tolist() == [0, 3, 5, 9] and table.last_frame.tolist() == [4, 3, 8, 20]
    assert table.box_counts.tolist() == [2, 1, 2, 2] and table.crop_counts.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("column, value, message", [
    ("box_offsets", [0, 4, 5, 9], "box_offsets must rise from 0 to 8"),
    ("box_offsets", [0, 4, 4, 8], "box_offsets must rise from 0 to 8 by at least 1 per tracklet"),
    ("crop_offsets", [0, 2, 3], r"crop_offsets must have shape \(4,\)"),
    ("frames", [0, 1, 1, 5, 5, 7, 9, 10], "frames must be >= 0 and increase within each tracklet"),
    ("frames", [-1, 1, 2, 5, 5, 7, 9, 10], "frames must be >= 0"),
    ("camera_index", [0, 0, 2], r"camera_index must lie in \[0, 2\)"),
    ("scores", [0.5] * 7, r"scores must have shape \(8,\)"),
    ("track_id", [1, 3], r"track_id must have shape \(3,\)"),
])
def test_columns_that_do_not_hold_together_are_refused(tmp_path, column, value, message):
    arrays = TrackletTable.from_tracklets(TRACKLETS, CAMERAS, FPS).arrays()
    with pytest.raises(ValueError, match=message):
        TrackletTable(tuple(CAMERAS), tuple(FPS), **{**arrays, column: np.asarray(value)})
    # Read from a file, the same table is a corrupt cache, said in one line.
    np.savez(tmp_path / "tracklets.npz", **{**arrays, column: np.asarray(value)})
    with pytest.raises(CctrackError, match=f"^corrupt cache: {re.escape(str(tmp_path / 'tracklets.npz'))} does not hold together .*{message}"):
        TrackletTable.load(tmp_path / "tracklets.npz", CAMERAS, FPS)


def test_a_new_tracklet_may_start_before_the_last_one_ended():
    # Row order is camera, then track id: the next tracklet's first frame is often earlier.
    table = TrackletTable.from_tracklets([tracklet("cam_a", 1, [5, 6], 1), tracklet("cam_a", 2, [0, 9], 1)], CAMERAS, FPS)
    assert table.first_frame.tolist() == [5, 0]
