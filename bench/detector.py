"""Detector runtimes, batch size and input size: time per frame, recall and precision on the same frames.

PyTorch, ONNX Runtime and OpenVINO run the same weights (`detector.runtime`: torch, onnx, openvino; the
exports are the ones cctrack.detector_runtime makes and caches) at batch 1 and at batch N, all in fp32, and
OpenVINO also in its reduced precision (`openvino:half`, `detector.half: true`: bf16 on CPUs that have it),
on two footages:
- `sample`: every --every-th frame of both bundled cameras (320x576), ground truth derived from PETS09-S2L1;
- `full`: every --every-th frame of the whole 768x576 PETS09-S2L1 view it was cut from (`vtest.avi` from
  Debian's opencv-doc: `apt-get install opencv-doc`, or extract it as samples/README.md shows and pass
  --full-video), the same ground truth under the same visibility rule.

Time: a warm-up on the first batches (which also makes a missing export, untimed), then --repeats rounds in
which every configuration makes one timed pass over all frames (bench.record.timed); ms per frame, median
with min-max. Scoring: detections at score >= 0.5
(the tracker's first stage) matched one-to-one to the ground truth at IoU >= 0.5 (lap assignment).
Each footage also records what `detector.image_size: auto` chooses for it (cctrack.detector_size), to read
against the recall and time of each --sizes row. The CPU defaults in cctrack.detector_runtime come from this table: `auto` is the fastest full-precision
runtime whose recall is within 0.5 pt of PyTorch's on every footage and batch, at its faster batch size, by
each row's fastest pass (see choose_defaults); reduced precision is measured, not chosen: it changes tracks
(README, Detector runtime).

    python -m bench.detector [--every 10] [--repeats 5] [--runtimes torch onnx openvino openvino:half] [--batches 1 8]
                             [--sizes 960 [640 1280]] [--full-video /usr/share/doc/opencv-doc/examples/data/vtest.avi]
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from bench.record import REPOSITORY, timed, write_record
from cctrack.detect import DetectorSettings, PersonDetector
from cctrack.detections import Detections
from cctrack.detector_size import choose_image_size
from cctrack.sample import SAMPLE_CAMERAS, SOURCE_WIDTH, VirtualCamera, default_pets_gt_path, derive_camera_ground_truth
from cctrack.track.tracker import assign, iou_matrix
from cctrack.video import Camera, discover_cameras, open_video, read_frames

SAMPLE_DIR = REPOSITORY / "samples" / "pets09"
FULL_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# The whole source view as one "camera": derive_camera_ground_truth's visibility rule then keeps every box
# at least half inside the frame, as it does for the sample's cameras.
FULL_VIEW = VirtualCamera("full", 0, SOURCE_WIDTH, brightness_gain=1.0, channel_gains_bgr=(1.0, 1.0, 1.0), gamma=1.0)
SCORE = 0.5
MATCH_IOU = 0.5
RECALL_TOLERANCE = 0.005  # 0.5 pt: a runtime may be the default only if it finds the same people as PyTorch


@dataclass(frozen=True)
class Footage:
    name: str
    frames: list[np.ndarray]  # BGR
    truths: list[np.ndarray]  # per frame, (K, 4) xyxy px ground-truth boxes
    cameras: list[Camera]

    @property
    def frame_size(self) -> str:
        height, width = self.frames[0].shape[:2]
        return f"{width}x{height}"


def read_footage(name: str, cameras: list[tuple[Camera, VirtualCamera]], every: int) -> Footage:
    """Every `every`-th frame of each camera, with the ground-truth boxes of each frame."""
    gt = np.loadtxt(default_pets_gt_path(), delimiter=",")
    frames, truths = [], []
    for camera, view in cameras:
        camera_gt = derive_camera_ground_truth(gt, view)
        for index, frame in read_frames(camera, stride=every):
            rows = camera_gt[camera_gt[:, 0] == index + 1]  # GT frames are 1-based
            frames.append(frame)
            truths.append(np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
    return Footage(name, frames, truths, [camera for camera, _ in cameras])


def auto_image_size(footage: Footage) -> dict:
    """What `detector.image_size: auto` chooses for this footage's cameras (cctrack.detector_size), as a run would."""
    detector = PersonDetector(DetectorSettings(runtime="torch"), "cpu")
    choice = choose_image_size(footage.cameras, detector.count_people)
    return {"image_size": choice.image_size, "people_found": choice.people_found}


def score(detections: list[Detections], truths: list[np.ndarray]) -> dict:
    matched = predicted = annotated = 0
    for found, truth in zip(detections, truths):
        boxes = found.boxes[found.scores >= SCORE]
        predicted += len(boxes)
        annotated += len(truth)
        if len(boxes) and len(truth):
            pairs, _, _ = assign(1.0 - iou_matrix(boxes, truth), 1.0 - MATCH_IOU)
            matched += len(pairs)
    return {"recall": matched / annotated, "precision": matched / max(predicted, 1), "annotated": annotated}


@dataclass
class Run:
    """One footage on one detector configuration: the seconds of each timed pass, the machine's 1-minute
    load average at each, and the detections of the last pass."""

    footage: Footage
    variant: str  # RUNTIME or RUNTIME:half
    detector: PersonDetector
    seconds: list[float] = field(default_factory=list)
    load_averages: list[float] = field(default_factory=list)
    detections: list[Detections] = field(default_factory=list)

    def time_one_pass(self) -> None:
        self.load_averages.append(round(os.getloadavg()[0], 2))
        self.seconds.append(timed(lambda: setattr(self, "detections", self.detector.detect(self.footage.frames)), 1, warmups=0)["median"])

    def row(self) -> dict:
        per_frame = [1000 * value / len(self.footage.frames) for value in self.seconds]
        return {"footage": self.footage.name, "frame_size": self.footage.frame_size, "frames": len(self.footage.frames),
                "image_size": self.detector.settings.image_size, "runtime": self.detector.runtime, "half": self.detector.half,
                "batch_size": self.detector.settings.batch_size,
                "ms_per_frame": {"median": statistics.median(per_frame), "min": min(per_frame), "max": max(per_frame),
                                 "all": [round(value, 1) for value in per_frame]},
                "load_average_1min": self.load_averages, **score(self.detections, self.footage.truths)}


def prepare(footage: Footage, variant: str, image_size: int, batch_size: int) -> Run:
    runtime, _, half = variant.partition(":")
    detector = PersonDetector(DetectorSettings(image_size=image_size, batch_size=batch_size, runtime=runtime, half=half == "half"), "cpu")
    detector.detect(footage.frames[: 2 * batch_size])  # warm-up; makes a missing export
    return Run(footage, variant, detector)


def choose_defaults(rows: list[dict], image_size: int) -> dict:
    """The CPU runtime and batch size `auto` should use: among full-precision runtimes whose recall is within
    RECALL_TOLERANCE of PyTorch's at every footage and batch, the (runtime, batch) with the least total time
    per frame summed over footages. Time here is each row's fastest pass: other processes on a shared
    machine only ever add time, so the fastest pass is the closest to what the work itself costs."""
    rows = [row for row in rows if row["image_size"] == image_size and not row["half"]]
    torch_recall = {(row["footage"], row["batch_size"]): row["recall"] for row in rows if row["runtime"] == "torch"}
    total: dict[tuple[str, int], float] = {}
    eligible = set()
    for runtime in {row["runtime"] for row in rows}:
        own = [row for row in rows if row["runtime"] == runtime]
        if all(abs(row["recall"] - torch_recall[row["footage"], row["batch_size"]]) <= RECALL_TOLERANCE for row in own):
            eligible.add(runtime)
        for row in own:
            total[runtime, row["batch_size"]] = total.get((runtime, row["batch_size"]), 0.0) + row["ms_per_frame"]["min"]
    runtime, batch_size = min((key for key in total if key[0] in eligible), key=total.get)
    return {"cpu_runtime": runtime, "cpu_batch_size": batch_size, "image_size": image_size,
            "eligible_runtimes": sorted(eligible), "recall_tolerance": RECALL_TOLERANCE,
            "total_fastest_ms_per_frame": {f"{name} batch {batch}": round(value, 1) for (name, batch), value in sorted(total.items())}}


def runtime_versions() -> dict:
    versions = {"ultralytics": version("ultralytics"), "torch": version("torch")}
    for package in ("onnxruntime", "openvino"):
        try:
            versions[package] = version(package)
        except Exception:  # not installed: that runtime is not measured
            versions[package] = None
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=10, help="use every N-th frame")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; each times one pass per configuration")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "openvino", "openvino:half"],
                        help="RUNTIME or RUNTIME:half (reduced precision)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sizes", type=int, nargs="+", default=[960], help="input sizes (the first one chooses the runtime)")
    parser.add_argument("--full-video", type=Path, default=FULL_VIDEO, help="the 768x576 PETS09-S2L1 view (vtest.avi)")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "detector.json")
    args = parser.parse_args()
    footages = [read_footage("sample", list(zip(discover_cameras(SAMPLE_DIR), SAMPLE_CAMERAS)), args.every),
                read_footage("full", [(open_video(args.full_video), FULL_VIEW)], args.every)]
    runs = [prepare(footage, variant, size, batch_size)
             for footage in footages for size in args.sizes for variant in args.runtimes for batch_size in args.batches]
    # Round-robin: every configuration is timed once per round, so load from other processes on a shared
    # machine falls on all of them alike rather than on whichever ran at that moment.
    for round_number in range(args.repeats):
        for run in runs:
            run.time_one_pass()
        print(f"round {round_number + 1}/{args.repeats} done", flush=True)
    rows = [run.row() for run in runs]
    print(f"{'footage':>8s}{'size':>6s}{'runtime':>14s}{'batch':>6s}{'recall':>8s}{'precision':>10s}{'ms/frame (min-max)':>22s}")
    for run, row in zip(runs, rows):
        time = row["ms_per_frame"]
        print(f"{row['footage']:>8s}{row['image_size']:6d}{run.variant:>14s}{row['batch_size']:6d}{row['recall']:8.3f}"
              f"{row['precision']:10.3f}{time['median']:10.1f} ({time['min']:.1f}-{time['max']:.1f})")
    choice = None
    if any(row["runtime"] == "torch" for row in rows):  # runtimes are judged against PyTorch
        choice = choose_defaults(rows, args.sizes[0])
        print(f"CPU default: {choice['cpu_runtime']} at batch {choice['cpu_batch_size']} "
              f"(runtimes within {100 * RECALL_TOLERANCE:.1f} pt of PyTorch's recall: {', '.join(choice['eligible_runtimes'])})")
    auto_sizes = {footage.name: auto_image_size(footage) for footage in footages}
    for name, auto in auto_sizes.items():
        print(f"detector.image_size auto on {name}: {auto['image_size']} (confident people per size: {auto['people_found']})")
    write_record(args.out, {
        "setup": f"every {args.every}-th frame; {args.repeats} timed passes after a warm-up, configurations taken in turn "
                 "each round, ms per frame median (min-max); "
                 f"score >= {SCORE}, IoU >= {MATCH_IOU}; ONNX Runtime and OpenVINO at their default threads (one per core), "
                 "torch at torch_threads (omp_num_threads is what importing ultralytics sets; torch had already "
                 "fixed its threads); load_average_1min: the machine's load before each timed pass",
        "footages": {footage.name: {"frames": len(footage.frames), "frame_size": footage.frame_size} for footage in footages},
        "versions": runtime_versions(),
        "rows": rows,
        "cpu_default": choice,
        "auto_image_size": auto_sizes,
    })


if __name__ == "__main__":
    main()
