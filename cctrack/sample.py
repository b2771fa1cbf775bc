"""The bundled two-camera sample: two virtual cameras cut from PETS 2009 S2L1 view 1, and their ground truth.

The source video (Debian opencv-doc's ``vtest.avi``, 768x576, 10 fps, 795 frames) is cut into two
non-overlapping column ranges with a 128-pixel strip between them that neither camera sees, and each
camera gets its own deterministic photometric look (gain, colour balance, gamma), so a person leaving one
camera must be re-identified in the other under a different appearance. The published MOTChallenge ground
truth of PETS09-S2L1 (global ids) is mapped into each camera with `derive_camera_ground_truth`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.mot import read_mot_txt, write_mot_txt
from cctrack.files import atomic_path, write_text_atomic
from cctrack.video import open_video, read_frames

SOURCE_WIDTH = 768  # pixels, vtest.avi
SOURCE_HEIGHT = 576  # pixels, vtest.avi
SAMPLE_FPS = 10.0  # the AVI's own rate; MOT15's seqinfo says 7, which is wrong for this video
SAMPLE_FRAME_COUNT = 795  # frames in vtest.avi == frames in the MOT15 ground truth
PETS_GT_ENV_VAR = "CCTRACK_PETS_GT"
SAMPLE_VIDEO_FOURCC = "mp4v"  # MPEG-4 Part 2: in every OpenCV FFmpeg build, ~3 MB per camera for the sample


@dataclass(frozen=True)
class VirtualCamera:
    """A camera simulated as a column range of the source video with its own colour response."""

    name: str
    x0: int  # first source column this camera sees (pixels, inclusive)
    x1: int  # end of the column range (pixels, exclusive); frame width = x1 - x0
    brightness_gain: float  # multiplies all channels after gamma
    channel_gains_bgr: tuple[float, float, float]  # colour balance, OpenCV channel order
    gamma: float  # exponent on intensities in [0, 1]; < 1 lifts shadows, > 1 deepens them

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def lookup_table(self) -> np.ndarray:
        """(1, 256, 3) uint8 table mapping a source intensity to this camera's, per BGR channel."""
        intensities = (np.arange(256, dtype=np.float64) / 255.0) ** self.gamma
        gains = self.brightness_gain * np.asarray(self.channel_gains_bgr, dtype=np.float64)
        table = np.clip(np.rint(intensities[:, None] * gains[None, :] * 255.0), 0, 255)
        return table.astype(np.uint8)[None, :, :]


# Warm and bright on the left, cool and dark on the right: the same shirt reads differently in each camera.
SAMPLE_CAMERAS: tuple[VirtualCamera, ...] = (
    VirtualCamera("cam_left", 0, 320, brightness_gain=1.05, channel_gains_bgr=(0.84, 1.0, 1.12), gamma=0.9),
    VirtualCamera("cam_right", 448, 768, brightness_gain=0.85, channel_gains_bgr=(1.2, 1.03, 0.82), gamma=1.15),
)


def render_camera_frame(source_frame_bgr: np.ndarray, camera: VirtualCamera) -> np.ndarray:
    """Cut `camera`'s columns out of a source frame (H, W, 3 uint8 BGR) and apply its colour response."""
    if source_frame_bgr.ndim != 3 or source_frame_bgr.shape[2] != 3 or source_frame_bgr.dtype != np.uint8:
        raise CctrackError(f"expected an HxWx3 uint8 BGR frame, got shape {source_frame_bgr.shape}")
    if source_frame_bgr.shape[1] < camera.x1:
        raise CctrackError(
            f"frame is {source_frame_bgr.shape[1]} px wide but camera {camera.name} needs columns up to {camera.x1}"
        )
    view = np.ascontiguousarray(source_frame_bgr[:, camera.x0 : camera.x1])
    return cv2.LUT(view, camera.lookup_table())


def read_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """A video's frames one at a time (H, W, 3 uint8 BGR), through cctrack.video's reader, which also
    refuses a truncated file."""
    return (frame for _, frame in read_frames(open_video(Path(path))))


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Encode BGR frames of one size into `path` (mp4v), atomically; returns the number of frames written."""
    path = Path(path)
    frame_count = 0
    with atomic_path(path) as temporary:
        writer: cv2.VideoWriter | None = None
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(*SAMPLE_VIDEO_FOURCC)
                    writer = cv2.VideoWriter(str(temporary), cv2.CAP_FFMPEG, fourcc, fps, (width, height))
                    if not writer.isOpened():
                        raise CctrackError(f"cannot open a {SAMPLE_VIDEO_FOURCC} video writer for {path}")
                if frame.shape[:2] != (height, width):
                    # OpenCV would drop a frame of another size without a word.
                    raise CctrackError(f"frame {frame_count} of {path} is {frame.shape[:2]}, not {(height, width)}")
                writer.write(frame)
                frame_count += 1
        finally:
            if writer is not None:
                writer.release()
        if frame_count == 0:
            raise CctrackError(f"no frames to write to {path}")
    return frame_count


def default_pets_gt_path() -> Path:
    """The PETS09-S2L1 ground truth beside the repository (``../shared/data``), or $CCTRACK_PETS_GT."""
    override = os.environ.get(PETS_GT_ENV_VAR)
    if override:
        path = Path(override)
    else:
        path = Path(__file__).resolve().parents[2] / "shared" / "data" / "PETS09-S2L1" / "gt" / "gt.txt"
    if not path.is_file():
        raise CctrackError(
            f"PETS09-S2L1 ground truth not found at {path}; set {PETS_GT_ENV_VAR} to the MOT15 gt.txt "
            "(annotations are not bundled, see samples/README.md)"
        )
    return path


def derive_camera_ground_truth(
    gt_rows: np.ndarray,
    camera: VirtualCamera,
    frame_height: int = SOURCE_HEIGHT,
    min_visible_fraction: float = 0.5,
) -> np.ndarray:
    """Map full-frame MOTChallenge ground truth into one virtual camera.

    gt_rows: (K, >=6) rows ``frame, id, x, y, w, h, ...`` in source-frame pixels, frames 1-based.
    Returns (M, 10) float64 MOTChallenge rows ``frame, id, x, y, w, h, 1, -1, -1, -1`` in camera pixels,
    sorted by frame then id; frame numbers and the global PETS ids are kept.

    Partly visible rule: a box is kept when at least `min_visible_fraction` of its width lies inside the
    camera's columns, and is then clipped to the camera (and to the frame vertically). A tracker cannot be
    expected to hold a person who is mostly out of view, and at 0.5 the box still covers the visible body.
    People inside the unseen strip therefore vanish from both cameras.
    """
    if not 0.0 < min_visible_fraction <= 1.0:
        raise CctrackError(f"min_visible_fraction must be in (0, 1], got {min_visible_fraction}")
    rows = np.asarray(gt_rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise CctrackError(f"ground truth must be (K, >=6) MOTChallenge rows, got shape {rows.shape}")
    left, top, width, height = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
    clipped_left = np.maximum(left, camera.x0)
    clipped_right = np.minimum(left + width, camera.x1)
    visible_width = np.maximum(clipped_right - clipped_left, 0.0)
    keep = (width > 0) & (visible_width >= min_visible_fraction * width)

    clipped_top = np.maximum(top[keep], 0.0)
    clipped_bottom = np.minimum(top[keep] + height[keep], frame_height)
    derived = np.empty((int(keep.sum()), 10), dtype=np.float64)
    derived[:, 0] = rows[keep, 0]
    derived[:, 1] = rows[keep, 1]
    derived[:, 2] = clipped_left[keep] - camera.x0
    derived[:, 3] = clipped_top
    derived[:, 4] = visible_width[keep]
    derived[:, 5] = clipped_bottom - clipped_top
    derived[:, 6] = 1.0
    derived[:, 7:] = -1.0
    order = np.lexsort((derived[:, 1], derived[:, 0]))
    return derived[order]


def write_sample_ground_truth(out_dir: str | Path, gt_path: str | Path | None = None) -> dict[str, Path]:
    """Write MOTChallenge folders ``<out_dir>/<camera>/gt/gt.txt`` (+ seqinfo.ini) for every sample camera.

    gt_path: the PETS09-S2L1 MOT15 gt.txt; None finds it with `default_pets_gt_path`.
    Returns camera name -> written gt.txt path.
    """
    source_gt = Path(gt_path) if gt_path is not None else default_pets_gt_path()
    if not source_gt.is_file():
        raise CctrackError(f"ground truth file not found: {source_gt}")
    gt_rows = read_mot_txt(source_gt)
    written: dict[str, Path] = {}
    for camera in SAMPLE_CAMERAS:
        sequence_dir = Path(out_dir) / camera.name
        camera_gt_path = sequence_dir / "gt" / "gt.txt"
        write_mot_txt(camera_gt_path, derive_camera_ground_truth(gt_rows, camera))
        _write_seqinfo(sequence_dir / "seqinfo.ini", camera)
        written[camera.name] = camera_gt_path
    return written


def _write_seqinfo(path: Path, camera: VirtualCamera) -> None:
    # No imDir/imExt: the frames live in the sample's mp4, not as MOTChallenge image folders.
    write_text_atomic(
        path,
        "[Sequence]\n"
        f"name={camera.name}\n"
        f"frameRate={SAMPLE_FPS:g}\n"
        f"seqLength={SAMPLE_FRAME_COUNT}\n"
        f"imWidth={camera.width}\n"
        f"imHeight={SOURCE_HEIGHT}\n",
    )


@dataclass(frozen=True)
class GroundTruthTracklet:
    """One person's ground-truth track in one sample camera, cut to a frame window, with crops."""

    camera: str
    person: int  # PETS id
    first_frame: int  # 0-based video frame index
    last_frame: int  # inclusive
    crops: tuple[np.ndarray, ...]  # HxWx3 uint8 BGR, evenly spaced over the track


def ground_truth_tracklets(
    video_path: str | Path,
    camera_rows: np.ndarray,
    camera: str,
    frames: tuple[int, int] | None = None,
    crops_per_tracklet: int = 8,
    min_boxes: int = 3,
) -> list[GroundTruthTracklet]:
    """Tracklets made of a camera's ground truth instead of the tracker: what the linker is judged on
    when tracking errors should not count. camera_rows: the camera's MOTChallenge rows (1-based frames,
    from `derive_camera_ground_truth`); frames: a [start, stop) window of 0-based frame indices."""
    rows = np.asarray(camera_rows, np.float64)
    frame_index = rows[:, 0].astype(np.int64) - 1
    if frames is not None:
        keep = (frame_index >= frames[0]) & (frame_index < frames[1])
        rows, frame_index = rows[keep], frame_index[keep]
    wanted: dict[int, list[tuple[int, np.ndarray]]] = {}
    spans = []
    for person in np.unique(rows[:, 1]).astype(int):
        mine = np.flatnonzero(rows[:, 1] == person)
        if len(mine) < min_boxes:
            continue
        picks = mine[np.linspace(0, len(mine) - 1, min(crops_per_tracklet, len(mine))).round().astype(int)]
        spans.append((person, int(frame_index[mine].min()), int(frame_index[mine].max())))
        for row in picks:
            wanted.setdefault(int(frame_index[row]), []).append((person, rows[row, 2:6]))
    crops: dict[int, list[np.ndarray]] = {person: [] for person, _, _ in spans}
    for index, frame in enumerate(read_video_frames(video_path)):
        for person, (x, y, w, h) in wanted.get(index, []):
            x0, y0 = max(int(round(x)), 0), max(int(round(y)), 0)
            x1, y1 = min(int(round(x + w)), frame.shape[1]), min(int(round(y + h)), frame.shape[0])
            if x1 > x0 and y1 > y0:
                crops[person].append(frame[y0:y1, x0:x1].copy())
    return [GroundTruthTracklet(camera, person, first, last, tuple(crops[person]))
            for person, first, last in spans if crops[person]]
