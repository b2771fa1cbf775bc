"""Annotated videos: the mosaic shows every camera at the same moment, whatever their frame rates."""

from __future__ import annotations

import numpy as np
import pytest

from cctrack.draw import labelled_boxes, write_annotated_videos
from cctrack.table import TrackletTable
from cctrack.video import discover_cameras
from tests.conftest import frame_count, numbered_cameras, read_mosaic
from tests.test_table import CAMERAS, FPS, TRACKLETS


@pytest.mark.parametrize("fast_offset_seconds", [0, 1])
def test_mosaic_shows_cameras_of_10_and_25_fps_at_the_same_time(tmp_path, fast_offset_seconds):
    """3 s at 10 fps and 3 s at 25 fps, the second camera's clock maybe 1 s later (a layout time offset):
    mosaic frame k is time k / 25 s and shows the slow camera's frame 2k // 5 and the fast camera's frame
    k - 25 x offset, black outside that camera's own 3 s."""
    cameras = discover_cameras(numbered_cameras(tmp_path / "cams", {"a_slow": (10.0, 30), "b_fast": (25.0, 75)}))
    clock = (np.array([10.0, 25.0]), np.array([0.0, fast_offset_seconds])) if fast_offset_seconds else None
    nobody = TrackletTable.from_tracklets([], [c.name for c in cameras], [c.fps for c in cameras])
    write_annotated_videos(cameras, nobody, tmp_path / "videos", show_progress=False, clock=clock)

    def within(index: int, count: int) -> int:
        return index if 0 <= index < count else -1

    expected = [(within(2 * k // 5, 30), within(k - 25 * fast_offset_seconds, 75)) for k in range(75 + 25 * fast_offset_seconds)]
    assert read_mosaic(tmp_path / "videos" / "mosaic.mp4") == expected
    assert frame_count(tmp_path / "videos" / "a_slow.mp4") == 30
    assert frame_count(tmp_path / "videos" / "b_fast.mp4") == 75


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_people_walking_close_together_never_overlap():
    from cctrack.draw import draw_boxes, identity_colour, label_size, place_labels

    frame = np.full((240, 320, 3), 40, np.uint8)
    # Three people side by side, two more at the top edge, one at the right edge: their boxes' top-left
    # corners are a few pixels apart, so labels drawn at the corners would cover each other.
    boxes = [(100, 80, 140, 200), (104, 82, 150, 210), (108, 79, 160, 205), (10, 2, 50, 120), (12, 4, 60, 118), (290, 100, 330, 200)]
    labels = [f"ID {key}" for key in range(1, len(boxes) + 1)]
    rects = place_labels(boxes, [label_size(label) for label in labels], frame.shape)
    assert all(not overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1:])
    assert all(0 <= r[0] and r[2] <= 320 and 0 <= r[1] and r[3] <= 240 for r in rects)  # in the frame
    width, height = label_size(labels[2])
    assert rects[2] == (108, 79 - height, 108 + width, 79)  # the top-most of a crowd keeps its place above its box
    assert all(abs(r[1] - b[1]) <= 3 * height for r, b in zip(rects, boxes))  # the others stay near theirs
    # Drawn, every label keeps its own colour where it was placed: none is painted over by another.
    canvas = draw_boxes(frame, [(np.array(box, np.float32), key, label) for key, (box, label) in enumerate(zip(boxes, labels), start=1)])
    for key, rect in enumerate(rects, start=1):
        assert tuple(int(v) for v in canvas[rect[1] + 1, rect[0] + 1]) == identity_colour(key)


def test_drawing_labels_boxes_by_track_id_until_linked_then_by_identity():
    table = TrackletTable.from_tracklets(TRACKLETS, CAMERAS, FPS)
    unlinked = labelled_boxes(table)
    assert [(key, label) for _, key, label in unlinked["cam_a"][5]] == [(1, "1"), (3, "3")]
    linked = labelled_boxes(table.with_identity(np.array([5, 6, 5])))
    assert [(key, label) for _, key, label in linked["cam_a"][5]] == [(5, "ID 5"), (6, "ID 6")]
    assert [(key, label) for _, key, label in linked["cam_b"][10]] == [(5, "ID 5")]
    assert np.array_equal(linked["cam_b"][10][0][0], [10, 20, 20, 50]) and sorted(linked["cam_b"]) == [7, 9, 10]
