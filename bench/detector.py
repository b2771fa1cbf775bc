"""Detector inference size on the bundled sample: recall, precision and time per frame at 640 / 960 / 1280.

The default `detector.image_size` is chosen from this table. Boxes are matched one-to-one to the derived
ground truth at IoU >= 0.5 (lap assignment); detections at score >= 0.5 (the tracker's first stage) count.

    python -m bench.detector [--every 10] [--sizes 640 960 1280] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cctrack.detect import DetectorSettings, PersonDetector
from cctrack.sample import SAMPLE_CAMERAS, default_pets_gt_path, derive_camera_ground_truth
from cctrack.track.tracker import assign, iou_matrix
from cctrack.video import discover_cameras, read_frames

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "pets09"
SCORE = 0.5
MATCH_IOU = 0.5


def sample_frames(every: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every `every`-th frame of both cameras, with the ground-truth boxes (xyxy) of each."""
    gt = np.loadtxt(default_pets_gt_path(), delimiter=",")
    frames, truths = [], []
    for camera, virtual in zip(discover_cameras(SAMPLE_DIR), SAMPLE_CAMERAS):
        camera_gt = derive_camera_ground_truth(gt, virtual)
        for index, frame in read_frames(camera, stride=every):
            rows = camera_gt[camera_gt[:, 0] == index + 1]
            frames.append(frame)
            truths.append(np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
    return frames, truths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="use every N-th frame")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 960, 1280])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench/results/detector.json"))
    args = parser.parse_args()
    frames, truths = sample_frames(args.every)
    rows = []
    for size in args.sizes:
        detector = PersonDetector(DetectorSettings(image_size=size), args.device)
        detector.detect(frames[:2])  # warm-up
        start = time.perf_counter()
        detections = detector.detect(frames)
        seconds = (time.perf_counter() - start) / len(frames)
        matched = predicted = annotated = 0
        for found, truth in zip(detections, truths):
            boxes = found.boxes[found.scores >= SCORE]
            predicted += len(boxes)
            annotated += len(truth)
            if len(boxes) and len(truth):
                pairs, _, _ = assign(1.0 - iou_matrix(boxes, truth.astype(np.float32)), 1.0 - MATCH_IOU)
                matched += len(pairs)
        rows.append({"image_size": size, "ms_per_frame": 1000 * seconds, "recall": matched / annotated, "precision": matched / max(predicted, 1)})
    reference = rows[-1]["ms_per_frame"]
    print(f"{len(frames)} frames (every {args.every}-th of both cameras), device {detector.device}, score >= {SCORE}, IoU >= {MATCH_IOU}")
    print(f"{'size':>6s}{'recall':>9s}{'precision':>11s}{'ms/frame':>10s}{'time vs ' + str(args.sizes[-1]):>16s}")
    for row in rows:
        print(f"{row['image_size']:6d}{row['recall']:9.3f}{row['precision']:11.3f}{row['ms_per_frame']:10.1f}{row['ms_per_frame'] / reference:16.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": len(frames), "device": str(detector.device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
