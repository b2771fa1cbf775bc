"""Regenerate the bundled two-camera sample (samples/pets09/cam_left.mp4, samples/pets09/cam_right.mp4) from vtest.avi.

Usage, from the repository root:
    python -m samples.make_sample /path/to/vtest.avi [--out-dir samples/pets09]

vtest.avi comes with Debian's opencv-doc package (see samples/README.md). The camera cuts and colour looks are
`cctrack.sample.SAMPLE_CAMERAS`, the same definitions the ground truth is derived with.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.sample import (
    SAMPLE_CAMERAS,
    SAMPLE_FPS,
    SAMPLE_FRAME_COUNT,
    SOURCE_HEIGHT,
    SOURCE_WIDTH,
    VirtualCamera,
    read_video_frames,
    render_camera_frame,
    write_video,
)

# mp4v spends most of its bits on the source's sensor and compression noise; a light blur before encoding
# halves the files (about 5 -> 3 MB per camera) while faces, clothes and limbs stay clearly visible.
DENOISE_SIGMA = 0.6  # pixels, 3x3 Gaussian


def camera_frames(source_video: Path, camera: VirtualCamera) -> Iterator[np.ndarray]:
    """The camera's frames, in order, checking the source is the 768x576 vtest.avi the ground truth fits."""
    for frame in read_video_frames(source_video):
        if frame.shape[:2] != (SOURCE_HEIGHT, SOURCE_WIDTH):
            raise CctrackError(
                f"{source_video} is {frame.shape[1]}x{frame.shape[0]}, expected vtest.avi's {SOURCE_WIDTH}x{SOURCE_HEIGHT}"
            )
        yield cv2.GaussianBlur(render_camera_frame(frame, camera), (3, 3), DENOISE_SIGMA)


def make_sample(source_video: Path, out_dir: Path) -> dict[str, Path]:
    """Write one mp4 per sample camera into `out_dir`; returns camera name -> video path."""
    if not source_video.is_file():
        raise CctrackError(f"source video not found: {source_video}")
    written: dict[str, Path] = {}
    for camera in SAMPLE_CAMERAS:
        video_path = out_dir / f"{camera.name}.mp4"
        frame_count = write_video(video_path, camera_frames(source_video, camera), SAMPLE_FPS)
        if frame_count != SAMPLE_FRAME_COUNT:
            video_path.unlink()
            raise CctrackError(f"{source_video} has {frame_count} frames, expected {SAMPLE_FRAME_COUNT}")
        written[camera.name] = video_path
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_video", type=Path, help="path to vtest.avi (PETS 2009 S2L1 view 1)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "pets09", help="where to write")
    arguments = parser.parse_args(argv)
    try:
        written = make_sample(arguments.source_video, arguments.out_dir)
    except CctrackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for camera_name, video_path in written.items():
        print(f"{camera_name}: {video_path} ({video_path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
