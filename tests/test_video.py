
from pathlib import Path

import cv2
import pytest

from cctrack.errors import CctrackError
from cctrack.video import Camera, discover_cameras, frames_to_process, read_frames
from tests.conftest import SAMPLE_DIR, read_sample_frames, write_video


def test_sample_cameras_are_discovered_with_their_real_fps_and_size():
    cameras = discover_cameras(SAMPLE_DIR)
    assert [c.name for c in cameras] == ["cam_left", "cam_right"]
    for camera in cameras:
        assert camera.fps == pytest.approx(10.0)
        assert camera.frame_count == 795
        assert (camera.width, camera.height) == (320, 576)


def test_read_frames_streams_with_stride_and_max_frames(short_sample):
    camera = discover_cameras(short_sample)[0]
    indices = [index for index, frame in read_frames(camera, max_frames=10, stride=3)]
    assert indices == [0, 3, 6, 9]
    assert frames_to_process(camera, max_frames=10, stride=3) == 4
    assert frames_to_process(camera, stride=7) == 5  # 30 frames: 0, 7, 14, 21, 28


def test_max_seconds_counts_each_cameras_own_frames():
    slow, fast, odd = (Camera(name, Path(name), fps, 1000, 64, 64) for name, fps in [("slow", 10.0), ("fast", 25.0), ("odd", 100.0)])
    assert [frames_to_process(camera, max_seconds=2) for camera in (slow, fast)] == [20, 50]
    assert frames_to_process(fast, max_frames=30, max_seconds=2) == 30  # whichever is fewer
    assert frames_to_process(fast, stride=3, max_seconds=2) == 17  # 0, 3, ..., 48
    assert frames_to_process(odd, max_seconds=0.29) == 29  # not 28: 0.29 x 100 is 28.999999999999996 in floats


def test_image_sequence_camera_reads_seqinfo_fps(tmp_path):
    sequence = tmp_path / "cams" / "gate" / "img1"
    sequence.mkdir(parents=True)
    for index, frame in enumerate(read_sample_frames("cam_left", 4)):
        cv2.imwrite(str(sequence / f"{index + 1:06d}.jpg"), frame)
    (tmp_path / "cams" / "gate" / "seqinfo.ini").write_text("[Sequence]\nframeRate=7\n")
    camera = discover_cameras(tmp_path / "cams")[0]
    assert (camera.name, camera.fps, camera.frame_count) == ("gate", 7.0, 4)
    frames = list(read_frames(camera))
    assert [index for index, _ in frames] == [0, 1, 2, 3]
    assert frames[0][1].shape == (576, 320, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "not found"),
        (lambda d: d, "empty"),
        (lambda d: (d / "notes.txt").write_text("hello") and d, "not a video"),
        (lambda d: (d / "cam.mp4").write_bytes(b"\x00" * 1000) and d, "cannot open video"),
    ],
    ids=["missing", "empty", "non-video", "garbage"],
)
def test_bad_folders_are_clear_errors(tmp_path, make, message):
    with pytest.raises(CctrackError, match=message):
        discover_cameras(make(tmp_path))


def test_truncated_video_is_an_error_not_a_short_camera(tmp_path):
    # MJPG in AVI keeps a readable header when cut short, so the stream stops early instead of not opening.
    full = write_video(tmp_path / "full.avi", read_sample_frames("cam_left", 30), codec="MJPG")
    cut = tmp_path / "cams" / "cam.avi"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        camera = discover_cameras(cut.parent)[0]
    except CctrackError as error:  # some OpenCV builds refuse the file outright: also a clear error
        assert "cam.avi" in str(error)
        return
    with pytest.raises(CctrackError, match="truncated or corrupt"):
        list(read_frames(camera))


def test_zero_frame_video_is_an_error(tmp_path):
    path = tmp_path / "cams" / "empty.mp4"
    path.parent.mkdir()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    writer.release()
    with pytest.raises(CctrackError, match="empty.mp4"):
        discover_cameras(path.parent)
