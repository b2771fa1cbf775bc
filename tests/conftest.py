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


@pytest.fixture(scope="session")
def short_sample(tmp_path_factory) -> Path:
    """Both sample cameras, first 30 frames (3 s): a real two-camera folder that runs in seconds."""
    folder = tmp_path_factory.mktemp("short_sample")
    for camera in ("cam_left", "cam_right"):
        write_video(folder / f"{camera}.mp4", read_sample_frames(camera, 30))
    return folder
