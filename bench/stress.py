"""Cloth-change stress variant of the sample: one camera's colours hue-rotated, so every shirt changes colour.

Cloth-changing re-identification must match a person whose clothes look different in the other camera. Rotating
one camera's hue by 90 degrees does that to everyone at once while shapes, poses and timing stay the same, and the
sample's ground truth still applies unchanged.

Usage, from the repository root:
    python -m bench.stress [--sample-dir samples/pets09] [--out-dir bench/results/stress] [--camera cam_right] [--degrees 90]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.files import atomic_path
from cctrack.sample import read_video_frames, write_video
from cctrack.video import open_video

OPENCV_HUE_STEPS = 180  # 8-bit OpenCV HSV stores hue in 0..179, two degrees per step


def rotate_hue(frame_bgr: np.ndarray, degrees: float) -> np.ndarray:
    """The frame (H, W, 3 uint8 BGR) with every pixel's hue turned by `degrees`; saturation and value kept."""
    shift = int(round(degrees / 2.0)) % OPENCV_HUE_STEPS
    hsv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV)
    hue = hsv[:, :, 0].astype(np.int16)
    hsv[:, :, 0] = ((hue + shift) % OPENCV_HUE_STEPS).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def make_hue_rotated_copy(
    sample_dir: str | Path,
    out_dir: str | Path,
    camera: str = "cam_right",
    degrees: float = 90.0,
) -> Path:
    """Copy the sample's videos into `out_dir`, `camera`'s with its hue rotated; returns `out_dir`.

    sample_dir holds one ``<camera>.mp4`` per camera (the bundled samples/pets09/ folder); the other cameras are
    copied byte for byte. Frames are streamed, and every output is written to a temporary name first.
    """
    sample_dir, out_dir = Path(sample_dir), Path(out_dir)
    videos = sorted(sample_dir.glob("*.mp4"))
    camera_names = [video.stem for video in videos]
    if camera not in camera_names:
        raise CctrackError(f"no video for camera '{camera}' in {sample_dir} (found: {', '.join(camera_names) or 'none'})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for video in videos:
        target = out_dir / video.name
        if video.stem == camera:
            write_video(target, _hue_rotated_frames(video, degrees), open_video(video).fps)
        else:
            with atomic_path(target) as temporary:
                shutil.copyfile(video, temporary)
    return out_dir


def _hue_rotated_frames(video: Path, degrees: float) -> Iterator[np.ndarray]:
    for frame in read_video_frames(video):
        yield rotate_hue(frame, degrees)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-dir", type=Path, default=Path("samples/pets09"), help="folder of <camera>.mp4 videos")
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results/stress"), help="where to write")
    parser.add_argument("--camera", default="cam_right", help="camera whose hue is rotated")
    parser.add_argument("--degrees", type=float, default=90.0, help="hue rotation in degrees")
    arguments = parser.parse_args(argv)
    try:
        out_dir = make_hue_rotated_copy(arguments.sample_dir, arguments.out_dir, arguments.camera, arguments.degrees)
    except CctrackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out_dir} ({arguments.camera} hue rotated by {arguments.degrees:g} degrees)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
