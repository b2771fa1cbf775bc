"""Camera input: a folder with one video file per camera, or one MOTChallenge image sequence per camera.

Frames are read streaming (one decoded frame in memory per camera). Frame indices are 0-based indices into
the camera's own video; MOTChallenge files add 1 on export.
"""

from __future__ import annotations

import configparser
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from cctrack.errors import CctrackError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# A truncated file often still reports the full frame count in its header; allow a little slack for
# containers whose count is an estimate.
TRUNCATION_SLACK_FRAMES = 2


@dataclass(frozen=True)
class Camera:
    """One camera of a run: a video file or a folder of frames."""

    name: str  # the file stem (video) or the folder name (image sequence)
    path: Path  # the video file, or the folder holding the frames
    fps: float  # frames per second of the source
    frame_count: int  # frames in the source
    width: int  # pixels
    height: int  # pixels
    image_files: tuple[Path, ...] = ()  # the frames of an image sequence, in order; empty for a video

    @property
    def is_image_sequence(self) -> bool:
        return bool(self.image_files)

    @property
    def duration_seconds(self) -> float:
        return self.frame_count / self.fps


def discover_cameras(video_dir: Path, image_fps: float = 25.0) -> list[Camera]:
    """Every camera in `video_dir`, checked to open and decode, sorted by name.

    A file with a video extension is a camera; a sub-folder holding images (or `img1/` with images, the
    MOTChallenge layout, whose `seqinfo.ini` gives the frame rate) is a camera. Anything else is an error,
    so that a typo'd or unsupported file is never silently skipped. Hidden files are ignored.
    """
    video_dir = Path(video_dir)
    if not video_dir.exists():
        raise CctrackError(f"video folder not found: {video_dir}")
    if not video_dir.is_dir():
        raise CctrackError(f"not a folder: {video_dir} (give a folder with one video per camera)")
    entries = sorted(p for p in video_dir.iterdir() if not p.name.startswith("."))
    if not entries:
        raise CctrackError(f"video folder is empty: {video_dir}")
    cameras = []
    for entry in entries:
        if entry.is_dir():
            cameras.append(_open_image_sequence(entry, image_fps))
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            cameras.append(open_video(entry))
        else:
            raise CctrackError(
                f"not a video: {entry} (supported: {', '.join(VIDEO_EXTENSIONS)}, or a folder of images per camera)"
            )
    names = [camera.name for camera in cameras]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise CctrackError(f"two cameras share the name {duplicated[0]!r} in {video_dir}")
    return cameras


def open_video(path: Path) -> Camera:
    """One video file as a camera, checked to open and decode its first frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise CctrackError(f"cannot open video {path}: corrupt, truncated or unsupported codec")
        fps = capture.get(cv2.CAP_PROP_FPS)
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None:
        raise CctrackError(f"video {path} has no decodable frames")
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise CctrackError(f"video {path} does not report a frame rate")
    if frame_count <= 0:
        raise CctrackError(f"video {path} does not report a frame count")
    height, width = frame.shape[:2]
    return Camera(path.stem, path, float(fps), frame_count, width, height)


def list_images(folder: Path) -> tuple[Path, ...]:
    """The frames of an image-sequence camera: `folder/img1/*` (MOTChallenge) or `folder/*`, by name."""
    image_dir = folder / "img1" if (folder / "img1").is_dir() else folder
    return tuple(sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS))


def _open_image_sequence(folder: Path, image_fps: float) -> Camera:
    image_files = list_images(folder)
    if not image_files:
        raise CctrackError(f"camera folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    first = cv2.imread(str(image_files[0]))
    if first is None:
        raise CctrackError(f"cannot decode image {image_files[0]}")
    fps = _seqinfo_fps(folder / "seqinfo.ini") or image_fps
    height, width = first.shape[:2]
    return Camera(folder.name, folder, fps, len(image_files), width, height, image_files)


def _seqinfo_fps(path: Path) -> float | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
        return float(parser["Sequence"]["frameRate"])
    except (configparser.Error, KeyError, ValueError) as error:
        raise CctrackError(f"cannot read frameRate from {path}: {error}") from None


def frames_available(camera: Camera, max_frames: int | None = None, max_seconds: float | None = None) -> int:
    """How many of the camera's first frames a run reads: all of them, at most `max_frames`, and at most
    `max_seconds` of this camera's video (floor(seconds x fps) frames)."""
    available = camera.frame_count
    if max_frames is not None:
        available = min(available, max_frames)
    if max_seconds is not None:
        # The epsilon keeps 0.29 s x 100 fps = 28.999999999999996 at 29 frames.
        available = min(available, math.floor(max_seconds * camera.fps + 1e-9))
    return available


def frames_to_process(camera: Camera, max_frames: int | None = None, stride: int = 1, max_seconds: float | None = None) -> int:
    """How many frames `read_frames` yields for these settings."""
    return (frames_available(camera, max_frames, max_seconds) + stride - 1) // stride


def read_frames(
    camera: Camera, max_frames: int | None = None, stride: int = 1, max_seconds: float | None = None, start: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, BGR frame) for every `stride`-th frame among the first `frames_available`,
    from frame `start` on (a multiple of `stride`: a resumed run).

    A source that stops decoding before its reported length is an error, not a short camera.
    """
    if stride < 1:
        raise CctrackError(f"frame stride must be >= 1, got {stride}")
    last_index = frames_available(camera, max_frames, max_seconds)
    if camera.is_image_sequence:
        for index in range(start, last_index, stride):
            frame = cv2.imread(str(camera.image_files[index]))
            if frame is None:
                raise CctrackError(f"cannot decode image {camera.image_files[index]}")
            yield index, frame
        return
    capture = cv2.VideoCapture(str(camera.path))
    try:
        for index in range(last_index):
            # Frames before `start` are decoded and dropped, not sought: seeking by frame index is
            # approximate for many codecs, and a resumed run must see exactly the frames it would have.
            if index % stride or index < start:
                ok = capture.grab()
                frame = None
            else:
                ok, frame = capture.read()
            if not ok:
                if camera.frame_count - index > TRUNCATION_SLACK_FRAMES:
                    raise CctrackError(
                        f"video {camera.path} stops decoding at frame {index} of {camera.frame_count}: truncated or corrupt"
                    )
                return
            if frame is not None:
                yield index, frame
    finally:
        capture.release()
