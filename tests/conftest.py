"""Shared fixtures: short real clips cut from the bundled PETS 2009 sample."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_OFFLINE", "True")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "samples" / "pets09"


def shared_pets_gt_path() -> Path:
    """The PETS09-S2L1 ground truth in ../shared/data (or $CCTRACK_PETS_GT). One rule for every test
    that needs ../shared: fail saying what is missing, never skip (CI has ../shared, so a missing file is
    a broken setup, not a test to pass over quietly)."""
    from cctrack.errors import CctrackError
    from cctrack.sample import default_pets_gt_path

    try:
        return default_pets_gt_path()
    except CctrackError as error:
        pytest.fail(f"this test needs ../shared/data beside the checkout: {error}", pytrace=False)


def read_sample_frames(camera: str, count: int, start: int = 0) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(SAMPLE_DIR / f"{camera}.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0, codec: str = "mp4v") -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def good_and_truncated_cameras(folder: Path, good: str = "cam_good", bad: str = "cam_bad") -> Path:
    """`folder`/videos with a 10-frame camera `good`.mp4 and `bad`.avi, an MJPG AVI cut in half: it keeps a
    readable header, so it opens and then stops decoding (a truncated file found during the work)."""
    videos = folder / "videos"
    videos.mkdir()
    write_video(videos / f"{good}.mp4", read_sample_frames("cam_left", 10))
    data = write_video(folder / "full.avi", read_sample_frames("cam_right", 40), codec="MJPG").read_bytes()
    (videos / f"{bad}.avi").write_bytes(data[: len(data) // 2])
    return videos


@pytest.fixture(scope="session")
def short_sample(tmp_path_factory) -> Path:
    """Both sample cameras, first 30 frames (3 s): a real two-camera folder that runs in seconds."""
    folder = tmp_path_factory.mktemp("short_sample")
    for camera in ("cam_left", "cam_right"):
        write_video(folder / f"{camera}.mp4", read_sample_frames(camera, 30))
    return folder


FRAME_BITS = 7  # frame numbers up to 126; 0 reads back from a black tile


def numbered_frame(index: int) -> np.ndarray:
    """A 64 x 128 frame that shows index + 1 in binary as white 16-pixel columns (survives mp4v)."""
    frame = np.zeros((64, 128, 3), np.uint8)
    for bit in range(FRAME_BITS):
        if (index + 1) >> bit & 1:
            frame[:, bit * 16 : (bit + 1) * 16] = 255
    return frame


def frame_number(tile: np.ndarray) -> int:
    """The index numbered_frame drew on a 64 x 128 tile, -1 for black; reads the rows below the camera name."""
    columns = tile[40:, : FRAME_BITS * 16].reshape(24, FRAME_BITS, 16, 3).mean(axis=(0, 2, 3)) > 128
    return sum(1 << bit for bit in range(FRAME_BITS) if columns[bit]) - 1


def numbered_cameras(folder: Path, fps_and_frames: dict[str, tuple[float, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (fps, count) in fps_and_frames.items():
        write_video(folder / f"{name}.mp4", [numbered_frame(i) for i in range(count)], fps=fps)
    return folder


def read_mosaic(path: Path) -> list[tuple[int, int]]:
    """(left camera's frame, right camera's frame) shown in every frame of a two-camera mosaic."""
    capture = cv2.VideoCapture(str(path))
    shown = []
    while (decoded := capture.read())[0]:
        shown.append((frame_number(decoded[1][:, :128]), frame_number(decoded[1][:, 128:])))
    capture.release()
    return shown


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def interrupt_detection_at_call(detector, monkeypatch, call: int) -> None:
    """Make the detector's `call`-th detect() raise KeyboardInterrupt, as Ctrl-C in the middle of tracking."""
    calls = {"count": 0}
    detect = detector.detect

    def detect_then_interrupt(frames):
        calls["count"] += 1
        if calls["count"] == call:
            raise KeyboardInterrupt
        return detect(frames)

    monkeypatch.setattr(detector, "detect", detect_then_interrupt)
