"""Annotated videos: the mosaic shows every camera at the same moment, whatever their frame rates."""

from __future__ import annotations

import numpy as np
import pytest

from cctrack.draw import write_annotated_videos
from cctrack.video import discover_cameras
from tests.conftest import frame_count, numbered_cameras, read_mosaic


@pytest.mark.parametrize("fast_offset_seconds", [0, 1])
def test_mosaic_shows_cameras_of_10_and_25_fps_at_the_same_time(tmp_path, fast_offset_seconds):
    """3 s at 10 fps and 3 s at 25 fps, the second camera's clock maybe 1 s later (a layout time offset):
    mosaic frame k is time k / 25 s and shows the slow camera's frame 2k // 5 and the fast camera's frame
    k - 25 x offset, black outside that camera's own 3 s."""
    cameras = discover_cameras(numbered_cameras(tmp_path / "cams", {"a_slow": (10.0, 30), "b_fast": (25.0, 75)}))
    clock = (np.array([10.0, 25.0]), np.array([0.0, fast_offset_seconds])) if fast_offset_seconds else None
    write_annotated_videos(cameras, [], tmp_path / "videos", show_progress=False, clock=clock)

    def within(index: int, count: int) -> int:
        return index if 0 <= index < count else -1

    expected = [(within(2 * k // 5, 30), within(k - 25 * fast_offset_seconds, 75)) for k in range(75 + 25 * fast_offset_seconds)]
    assert read_mosaic(tmp_path / "videos" / "mosaic.mp4") == expected
    assert frame_count(tmp_path / "videos" / "a_slow.mp4") == 30
    assert frame_count(tmp_path / "videos" / "b_fast.mp4") == 75
