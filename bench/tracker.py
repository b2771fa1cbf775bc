"""Benchmark: our per-camera Tracker against ultralytics' BYTETracker on the same detections.

For every camera video: detections come from `cctrack.detect.PersonDetector` (default settings), cached in
`<detections dir>/detections_<camera>.npz` so that re-runs skip the detector; both trackers are fed exactly
those detections frame by frame. Reported per camera and tracker: milliseconds per frame spent in the
tracker's update (detection excluded; best of --repeats runs), our time / BYTETracker's, and, where ground
truth exists, MOTA and IDF1 from py-motmetrics (via `cctrack.evaluate.evaluate_camera`, IoU >= 0.5).

BYTETracker runs with ultralytics' default `bytetrack.yaml` and is scored twice: with the boxes it outputs
(its Kalman estimates, what `model.track` returns) and with the detection boxes it matched (what our
tracker reports), so that the second row compares association alone.

    .venv/bin/python bench/tracker.py                      # the bundled sample, ground truth from ../shared/data
    .venv/bin/python bench/tracker.py --video some.avi --gt some=gt.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from cctrack.detections import Detections  # noqa: E402
from cctrack.errors import CctrackError  # noqa: E402
from cctrack.evaluate import evaluate_camera  # noqa: E402
from cctrack.mot import read_mot_txt  # noqa: E402
from cctrack.track.tracker import Tracker, TrackerSettings  # noqa: E402
from cctrack.video import Camera, open_video, read_frames  # noqa: E402

SAMPLE_VIDEOS = tuple(REPOSITORY / "samples" / "pets09" / f"{name}.mp4" for name in ("cam_left", "cam_right"))
RESULTS = REPOSITORY / "bench" / "results"


# ------------------------------------------------------------------------------------------ inputs


def load_or_detect(camera: Camera, cache: Path) -> list[Detections]:
    """One Detections per frame of `camera`, from the cache file if it was made from a video of the same
    size in bytes, else from the detector (and then cached)."""
    video_bytes = camera.path.stat().st_size
    stored = np.load(cache) if cache.is_file() else None
    if stored is not None and "video_bytes" in stored.files and int(stored["video_bytes"]) == video_bytes:
        frame_of_box, boxes, scores = stored["frame"], stored["boxes"], stored["scores"]
        return [
            Detections(boxes[frame_of_box == index], scores[frame_of_box == index])
            for index in range(int(stored["frame_count"]))
        ]
    from cctrack.detect import DetectorSettings, PersonDetector

    detector = PersonDetector(DetectorSettings())
    frames = [frame for _, frame in read_frames(camera)]
    started = time.perf_counter()
    detections = detector.detect(frames)
    print(f"{camera.name}: detected {len(frames)} frames in {time.perf_counter() - started:.1f} s on {detector.device}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.stem + ".tmp.npz")  # np.savez appends .npz to other names
    np.savez(
        temporary,
        frame=np.concatenate([np.full(len(d), index) for index, d in enumerate(detections)]).astype(np.int64),
        boxes=np.concatenate([d.boxes for d in detections]),
        scores=np.concatenate([d.scores for d in detections]),
        frame_count=len(detections),
        video_bytes=video_bytes,
    )
    os.replace(temporary, cache)
    return detections


# ---------------------------------------------------------------------------------------- trackers


class UltralyticsBoxes:
    """The part of ultralytics' `Boxes` (after .cpu().numpy()) that BYTETracker reads; all one class."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray):
        self.xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, dtype=np.float32).reshape(-1)
        self.cls = np.zeros(len(self.conf), dtype=np.float32)

    @property
    def xywh(self) -> np.ndarray:
        centre = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        return np.concatenate([centre, self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: np.ndarray) -> "UltralyticsBoxes":
        return UltralyticsBoxes(self.xyxy[mask], self.conf[mask])


def mot_rows(frame_number: int, track_ids: np.ndarray, boxes_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(K, 7) MOTChallenge rows: 1-based frame, id, x, y, w, h (px), score."""
    rows = np.zeros((len(track_ids), 7))
    rows[:, 0] = frame_number
    rows[:, 1] = track_ids
    rows[:, 2:4] = boxes_xyxy[:, :2]
    rows[:, 4:6] = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    rows[:, 6] = scores
    return rows


def run_ours(
    detections: list[Detections], fps: float, settings: TrackerSettings
) -> tuple[float, dict[str, np.ndarray]]:
    """(seconds in update, {"ours": MOT rows})."""
    tracker = Tracker(settings, fps)
    rows, elapsed = [], 0.0
    for index, frame_detections in enumerate(detections):
        started = time.perf_counter()
        tracked = tracker.update(frame_detections)
        elapsed += time.perf_counter() - started
        rows.append(mot_rows(index + 1, tracked.track_ids, tracked.boxes, tracked.scores))
    return elapsed, {"ours": np.concatenate(rows)}


def run_bytetrack(detections: list[Detections]) -> tuple[float, dict[str, np.ndarray]]:
    """(seconds in update, {"bytetrack": rows with its own boxes, "bytetrack_det_boxes": matched detections})."""
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import ROOT, YAML, IterableSimpleNamespace

    tracker = BYTETracker(IterableSimpleNamespace(**YAML.load(ROOT / "cfg" / "trackers" / "bytetrack.yaml")))
    own_rows, detection_rows, elapsed = [], [], 0.0
    for index, frame_detections in enumerate(detections):
        boxes = UltralyticsBoxes(frame_detections.boxes, frame_detections.scores)
        started = time.perf_counter()
        output = tracker.update(boxes)
        elapsed += time.perf_counter() - started
        output = output.reshape(-1, 8)  # x1, y1, x2, y2, track id, score, class, detection index
        matched = output[:, 7].astype(np.int64)
        own_rows.append(mot_rows(index + 1, output[:, 4], output[:, :4], output[:, 5]))
        detection_rows.append(mot_rows(index + 1, output[:, 4], frame_detections.boxes[matched], output[:, 5]))
    return elapsed, {"bytetrack": np.concatenate(own_rows), "bytetrack_det_boxes": np.concatenate(detection_rows)}


# ------------------------------------------------------------------------------------------- bench


def ground_truth_files(videos: list[Path], gt_arguments: list[str], scratch: Path) -> dict[str, Path]:
    """Camera name -> gt.txt: from --gt NAME=PATH, and for the bundled sample from ../shared/data."""
    files: dict[str, Path] = {}
    for argument in gt_arguments:
        name, separator, path = argument.partition("=")
        if not separator:
            raise CctrackError(f"--gt wants CAMERA=PATH, got {argument!r}")
        files[name] = Path(path)
    if any(video.resolve() in {v.resolve() for v in SAMPLE_VIDEOS} for video in videos):
        from cctrack.sample import write_sample_ground_truth

        try:
            sample_files = write_sample_ground_truth(scratch)
        except CctrackError as error:
            print(f"no sample ground truth, timing only: {error}")
            sample_files = {}
        files = {**sample_files, **files}
    return files


def bench_camera(video: Path, cache_dir: Path, gt_file: Path | None, repeats: int, settings: TrackerSettings) -> dict:
    camera = open_video(video)
    detections = load_or_detect(camera, cache_dir / f"detections_{camera.name}.npz")
    our_seconds, runs = min((run_ours(detections, camera.fps, settings) for _ in range(repeats)), key=lambda r: r[0])
    byte_seconds, byte_runs = min((run_bytetrack(detections) for _ in range(repeats)), key=lambda r: r[0])
    runs.update(byte_runs)
    frames = len(detections)
    result: dict = {
        "camera": camera.name,
        "fps": camera.fps,
        "frames": frames,
        "detections": int(sum(len(d) for d in detections)),
        "ms_per_frame": {"ours": 1e3 * our_seconds / frames, "bytetrack": 1e3 * byte_seconds / frames},
        "time_ratio_ours_over_bytetrack": our_seconds / byte_seconds,
        "metrics": {},
    }
    if gt_file is not None:
        gt_rows = read_mot_txt(gt_file)
        for name, rows in runs.items():
            result["metrics"][name] = evaluate_camera(gt_rows, rows)
    return result


def print_table(results: list[dict]) -> None:
    header = (
        f"{'camera':<12} {'tracker':<20} {'ms/frame':>9} {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} "
        f"{'pred ids':>8} {'gt ids':>6}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for name in ("ours", "bytetrack", "bytetrack_det_boxes"):
            timing_key = "ours" if name == "ours" else "bytetrack"
            metrics = result["metrics"].get(name)
            time_cell = f"{result['ms_per_frame'][timing_key]:9.3f}" if name != "bytetrack_det_boxes" else " " * 9
            if metrics is None:
                print(f"{result['camera']:<12} {name:<20} {time_cell}")
                continue
            print(
                f"{result['camera']:<12} {name:<20} {time_cell} {100 * metrics['mota']:6.1f} "
                f"{100 * metrics['idf1']:6.1f} {metrics['id_switches']:5d} {metrics['num_pred_ids']:8d} "
                f"{metrics['num_gt_ids']:6d}"
            )
        print(f"{result['camera']:<12} {'time ours/bytetrack':<20} {result['time_ratio_ours_over_bytetrack']:9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, action="append", help="a camera video (repeatable); default the sample")
    parser.add_argument("--gt", action="append", default=[], help="CAMERA=PATH of a MOTChallenge gt.txt (repeatable)")
    parser.add_argument("--detections", type=Path, default=RESULTS, help="folder of cached detections_<camera>.npz")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per tracker; the fastest counts")
    parser.add_argument("--out", type=Path, default=RESULTS / "tracker.json")
    arguments = parser.parse_args(argv)
    videos = arguments.video or list(SAMPLE_VIDEOS)
    settings = TrackerSettings()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            gt_files = ground_truth_files(videos, arguments.gt, Path(scratch))
            results = [
                bench_camera(video, arguments.detections, gt_files.get(video.stem), max(1, arguments.repeats), settings)
                for video in videos
            ]
    except CctrackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_table(results)
    import ultralytics

    document = {
        "tracker_settings": dataclasses.asdict(settings),
        "bytetrack": "ultralytics " + ultralytics.__version__ + " BYTETracker, default bytetrack.yaml",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "cameras": results,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = arguments.out.with_name(arguments.out.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2))
    os.replace(temporary, arguments.out)
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
