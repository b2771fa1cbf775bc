"""Benchmark: our per-camera Tracker against ultralytics' BYTETracker on the same detections.

Detections come from `cctrack.detect.PersonDetector` (default settings), cached in
`<detections dir>/detections_<camera>.npz` so that re-runs skip the detector; both trackers are fed exactly
those detections frame by frame. Scores are py-motmetrics MOTA and IDF1 (`cctrack.evaluate.evaluate_camera`,
IoU >= 0.5); time is milliseconds per frame inside the trackers' update (detection excluded): one warm-up
pass, then --repeats timed passes, median with min-max.

Three comparisons, on cameras with ground truth:
- **Tuned on one camera, reported on the other.** Both trackers get the same search: every point of GRID,
  written once in parameters both trackers have (`SharedSettings`) and mapped onto each one's own names;
  what only one tracker has stays at its default (ours: low_match_iou 0.5, tentative_match_iou 0.3,
  min_hits 2, which are BYTETracker's fixed second-stage IoU 0.5, unconfirmed-stage cost 0.7 and one
  confirming frame). Per tracker the point with the best IDF1 on the tuning camera wins (then MOTA, then
  the first in grid order); only the other camera is reported. Every ordered pair of cameras is one row.
- **Same settings, chosen without this ground truth**, every camera: both trackers at bytetrack.yaml's
  values (the shared point they stand for; on the sample, a point of GRID).
- **Shipped defaults**, every camera: our `TrackerSettings()` and ultralytics' `bytetrack.yaml`. Our defaults
  were chosen on this sample and its ground truth and bytetrack.yaml's were not, so these rows favour us.

BYTETracker is scored on the boxes it outputs (its Kalman estimates, what `model.track` returns; this is
what is tuned) and, at the same settings, on the detection boxes it matched (what our tracker reports), so
that the second figure compares association alone.

    python -m bench.tracker                      # the bundled sample, ground truth from ../shared/data
    python -m bench.tracker --video some.avi --gt some=gt.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bench.record import timed, write_record  # noqa: E402
from cctrack.detections import Detections  # noqa: E402
from cctrack.errors import CctrackError  # noqa: E402
from cctrack.evaluate import evaluate_camera  # noqa: E402
from cctrack.mot import read_mot_txt  # noqa: E402
from cctrack.track.tracker import Tracker, TrackerSettings  # noqa: E402
from cctrack.video import Camera, open_video, read_frames  # noqa: E402

SAMPLE_VIDEOS = tuple(REPOSITORY / "samples" / "pets09" / f"{name}.mp4" for name in ("cam_left", "cam_right"))
RESULTS = REPOSITORY / "bench" / "results"
PROTOCOL = {
    "tuned": "one grid over the parameters both trackers have, mapped onto each; per tracker the best IDF1 "
             "(then MOTA) on the tuning camera is chosen, and only the other camera is reported",
    "bytetrack_yaml_settings": "both trackers at bytetrack.yaml's values (not chosen on this sample), every camera",
    "defaults": "both trackers as shipped, every camera",
}
OUTPUTS = ("ours", "bytetrack", "bytetrack_det_boxes")  # BYTETracker read twice: its own boxes, matched detections
DEFAULTS_NOTE = (
    "cctrack's TrackerSettings defaults were chosen on this sample and its ground truth; "
    "BYTETracker's bytetrack.yaml was not: these rows favour cctrack"
)

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
    from cctrack.detector_size import choose_image_size

    detector = PersonDetector(DetectorSettings())
    detector.use_image_size(choose_image_size([camera], detector.count_people).image_size)  # as `cctrack run` does
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


@dataclasses.dataclass(frozen=True)
class CameraInput:
    name: str
    fps: float
    detections: list[Detections]  # one per frame
    gt_rows: np.ndarray | None  # MOTChallenge ground truth rows, or None when there is none


# --------------------------------------------------------------------------- one search, two trackers


@dataclasses.dataclass(frozen=True)
class SharedSettings:
    """One point of the search, in the parameters both trackers have."""

    high_score: float  # ours: high_score = new_track_score; BYTETracker: track_high_thresh = new_track_thresh
    low_score: float  # ours: low_score; BYTETracker: track_low_thresh
    match_iou: float  # ours: match_iou; BYTETracker: match_thresh, a cost limit, = 1 - match_iou
    lost_track_seconds: float  # ours: lost_track_seconds; BYTETracker: track_buffer in frames = seconds x fps
    fuse_score: bool  # both: IoU x detection score in the first (and unconfirmed) stage

    @classmethod
    def from_bytetrack(cls, args: dict, fps: float) -> SharedSettings:
        """The point BYTETracker's `args` (bytetrack.yaml's keys) stand for; new_track_thresh is taken to equal
        track_high_thresh, as in bytetrack.yaml."""
        return cls(high_score=args["track_high_thresh"], low_score=args["track_low_thresh"],
                   match_iou=round(1.0 - args["match_thresh"], 6), lost_track_seconds=args["track_buffer"] / fps,
                   fuse_score=bool(args["fuse_score"]))

    def ours(self) -> TrackerSettings:
        return dataclasses.replace(
            TrackerSettings(), high_score=self.high_score, new_track_score=self.high_score, low_score=self.low_score,
            match_iou=self.match_iou, lost_track_seconds=self.lost_track_seconds, fuse_score=self.fuse_score,
        )

    def bytetrack(self, fps: float) -> dict:
        return {
            **bytetrack_defaults(), "track_high_thresh": self.high_score, "new_track_thresh": self.high_score,
            "track_low_thresh": self.low_score, "match_thresh": round(1.0 - self.match_iou, 6),
            # Rounded half up, as our Tracker turns seconds into frames.
            "track_buffer": math.floor(self.lost_track_seconds * fps + 0.5), "fuse_score": self.fuse_score,
        }


# Written before any search was run; it holds both trackers' defaults (ours 0.5 / 0.1 / 0.2 / 3 s / no fuse,
# bytetrack.yaml 0.25 / 0.1 / 0.2 / 30 frames = 3 s at 10 fps / fuse), so on the tuning camera the choice is
# never worse than either.
GRID = {
    "high_score": (0.25, 0.4, 0.5, 0.6),
    "low_score": (0.05, 0.1, 0.2),
    "match_iou": (0.1, 0.2, 0.3, 0.4),
    "lost_track_seconds": (1.0, 3.0, 6.0),
    "fuse_score": (False, True),
}


def grid_points() -> list[SharedSettings]:
    return [SharedSettings(**dict(zip(GRID, values, strict=True))) for values in itertools.product(*GRID.values())]


def bytetrack_defaults() -> dict:
    from ultralytics.utils import ROOT, YAML

    return dict(YAML.load(ROOT / "cfg" / "trackers" / "bytetrack.yaml"))


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

    def __getitem__(self, mask: np.ndarray) -> UltralyticsBoxes:
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


@dataclasses.dataclass(frozen=True)
class Contender:
    """One tracker at one setting on one camera: how to make it fresh, what it is fed each frame, and how
    its per-frame outputs become MOTChallenge rows."""

    make: Callable[[], object]
    inputs: list
    rows: Callable[[list], np.ndarray]

    def outputs(self) -> list:
        tracker = self.make()
        return [tracker.update(frame_input) for frame_input in self.inputs]


def ours(settings: TrackerSettings, camera: CameraInput) -> Contender:
    def rows(outputs: list) -> np.ndarray:
        return np.concatenate([mot_rows(i + 1, o.track_ids, o.boxes, o.scores) for i, o in enumerate(outputs)])

    return Contender(lambda: Tracker(settings, camera.fps), camera.detections, rows)


def bytetrack(args: dict, camera: CameraInput, detection_boxes: bool = False) -> Contender:
    """BYTETracker with `args` (bytetrack.yaml's keys); rows carry its own boxes, or with `detection_boxes`
    the detections it matched."""
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import IterableSimpleNamespace

    def rows(outputs: list) -> np.ndarray:
        per_frame = []
        for index, (output, frame_detections) in enumerate(zip(outputs, camera.detections, strict=True)):
            output = output.reshape(-1, 8)  # x1, y1, x2, y2, track id, score, class, detection index
            boxes = frame_detections.boxes[output[:, 7].astype(np.int64)] if detection_boxes else output[:, :4]
            per_frame.append(mot_rows(index + 1, output[:, 4], boxes, output[:, 5]))
        return np.concatenate(per_frame)

    inputs = [UltralyticsBoxes(d.boxes, d.scores) for d in camera.detections]
    return Contender(lambda: BYTETracker(IterableSimpleNamespace(**args)), inputs, rows)


def score(contender: Contender, gt_rows: np.ndarray) -> dict:
    return evaluate_camera(gt_rows, contender.rows(contender.outputs()))


def ms_per_frame(contender: Contender, repeats: int, clock: Callable[[], float]) -> dict:
    seconds = timed(contender.outputs, repeats, warmups=1, clock=clock)
    frames = len(contender.inputs)
    return {key: 1e3 * seconds[key] / frames for key in ("median", "min", "max")} | {"repeats": repeats}


def measured(contenders: dict[str, Contender], gt_rows: np.ndarray | None, repeats: int) -> dict:
    """Per contender: its scores (where there is ground truth) and, for a tracker's own output, its time."""
    result = {}
    for name, contender in contenders.items():
        entry = score(contender, gt_rows) if gt_rows is not None else {}
        if name != "bytetrack_det_boxes":  # the same run as "bytetrack", read differently
            # CPU time as well as wall time: the machine may be shared, and both trackers are single-threaded.
            entry["ms_per_frame"] = ms_per_frame(contender, repeats, time.perf_counter)
            entry["cpu_ms_per_frame"] = ms_per_frame(contender, repeats, time.process_time)
        result[name] = entry
    return result


# ------------------------------------------------------------------------------------------ protocol


def search(camera: CameraInput, points: list[SharedSettings]) -> dict[str, list[dict]]:
    """IDF1 and MOTA of both trackers at every point, on `camera`."""
    found: dict[str, list[dict]] = {"ours": [], "bytetrack": []}
    for point in points:
        for name, contender in (("ours", ours(point.ours(), camera)), ("bytetrack", bytetrack(point.bytetrack(camera.fps), camera))):
            metrics = score(contender, camera.gt_rows)
            found[name].append({"idf1": metrics["idf1"], "mota": metrics["mota"]})
    return found


def best_point(scores: list[dict]) -> int:
    """Index of the best IDF1, then MOTA; the first in grid order on a tie."""
    return max(range(len(scores)), key=lambda i: (scores[i]["idf1"], scores[i]["mota"], -i))


def compare(camera: CameraInput, our_settings: TrackerSettings, bytetrack_args: dict, repeats: int) -> dict:
    """Both trackers on `camera`, each at its given settings: scores and time per frame (keys: OUTPUTS)."""
    contenders = {
        "ours": ours(our_settings, camera),
        "bytetrack": bytetrack(bytetrack_args, camera),
        "bytetrack_det_boxes": bytetrack(bytetrack_args, camera, detection_boxes=True),
    }
    return measured(contenders, camera.gt_rows, repeats)


def tuned_row(tune: CameraInput, report: CameraInput, found: dict[str, list[dict]], points: list[SharedSettings],
              repeats: int) -> dict:
    chosen = {name: points[best_point(scores)] for name, scores in found.items()}
    return {
        "tuned_on": tune.name,
        "reported_on": report.name,
        "chosen": {name: dataclasses.asdict(point) for name, point in chosen.items()},
        "tuning_camera_scores": {name: found[name][points.index(point)] for name, point in chosen.items()},
        "reported": compare(report, chosen["ours"].ours(), chosen["bytetrack"].bytetrack(report.fps), repeats),
    }


def bytetrack_yaml_row(camera: CameraInput, repeats: int) -> dict:
    point = SharedSettings.from_bytetrack(bytetrack_defaults(), camera.fps)
    return {"camera": camera.name, "settings": dataclasses.asdict(point),
            **compare(camera, point.ours(), point.bytetrack(camera.fps), repeats)}


def defaults_row(camera: CameraInput, repeats: int) -> dict:
    return {"camera": camera.name, "frames": len(camera.detections), "fps": camera.fps,
            "detections": int(sum(len(d) for d in camera.detections)),
            **compare(camera, TrackerSettings(), bytetrack_defaults(), repeats)}


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


def load_cameras(videos: list[Path], gt_arguments: list[str], detections_dir: Path) -> list[CameraInput]:
    cameras = []
    with tempfile.TemporaryDirectory() as scratch:
        gt_files = ground_truth_files(videos, gt_arguments, Path(scratch))
        for video in videos:
            camera = open_video(video)
            detections = load_or_detect(camera, detections_dir / f"detections_{camera.name}.npz")
            gt_file = gt_files.get(camera.name)
            cameras.append(CameraInput(camera.name, camera.fps, detections, read_mot_txt(gt_file) if gt_file else None))
    return cameras


def metrics_cells(entry: dict) -> str:
    scores = f"{100 * entry['mota']:6.1f} {100 * entry['idf1']:6.1f} {entry['id_switches']:5d}" if "idf1" in entry else ""
    times = [entry[key] for key in ("ms_per_frame", "cpu_ms_per_frame") if key in entry]
    time_cells = ["{median:.3f} ({min:.3f}-{max:.3f})".format(**figures) for figures in times]
    return f"{scores:19s}  " + "  ".join(f"{cell:22s}" for cell in time_cells)


def print_tables(tuned: list[dict], same_settings: list[dict], defaults: list[dict]) -> None:
    print(f"{'':38s} {'tracker':20s} {'MOTA':>6s} {'IDF1':>6s} {'IDsw':>5s}  wall ms/frame (min-max)  CPU ms/frame (min-max)")
    rows = [(f"tuned on {row['tuned_on']}, on {row['reported_on']}", row["reported"]) for row in tuned]
    rows += [(f"bytetrack.yaml values, {row['camera']}", row) for row in same_settings]
    rows += [(f"shipped defaults*, {row['camera']}", row) for row in defaults]
    for label, row in rows:
        for name in OUTPUTS:
            print(f"{label:38s} {name:20s} {metrics_cells(row[name])}")
    print(f"* {DEFAULTS_NOTE}")


def comparisons(cameras: list[CameraInput], repeats: int) -> dict:
    """The three comparisons of the module docstring, printed; the bench JSON's content."""
    import ultralytics

    points = grid_points()
    scored = {camera.name: camera for camera in cameras if camera.gt_rows is not None}
    searches = {}
    for name, camera in scored.items():
        started = time.perf_counter()
        searches[name] = search(camera, points)
        print(f"searched {len(points)} points x 2 trackers on {name} in {time.perf_counter() - started:.0f} s")
    tuned = [tuned_row(scored[tune], scored[report], searches[tune], points, repeats)
             for tune, report in itertools.permutations(scored, 2)]
    same_settings = [bytetrack_yaml_row(camera, repeats) for camera in cameras]
    defaults = [defaults_row(camera, repeats) for camera in cameras]
    print_tables(tuned, same_settings, defaults)
    return {
        "protocol": PROTOCOL,
        "trackers": {"ours": "cctrack.track.tracker.Tracker",
                     "bytetrack": f"ultralytics {ultralytics.__version__} BYTETracker"},
        "timing": f"ms per frame in update(), detection excluded: 1 warm-up pass, then {repeats} timed passes; "
                  "median, min, max; ms_per_frame is wall time, cpu_ms_per_frame this process's CPU time",
        "load_average_1_5_15_min_after": os.getloadavg(),
        "grid": {name: list(values) for name, values in GRID.items()},
        "grid_points": len(points),
        "tuned": tuned,
        "bytetrack_yaml_settings": same_settings,
        "defaults": {"note": DEFAULTS_NOTE, "ours": dataclasses.asdict(TrackerSettings()),
                     "bytetrack": bytetrack_defaults(), "cameras": defaults},
        "search": {"points": [dataclasses.asdict(point) for point in points], "scores": searches},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, action="append", help="a camera video (repeatable); default the sample")
    parser.add_argument("--gt", action="append", default=[], help="CAMERA=PATH of a MOTChallenge gt.txt (repeatable)")
    parser.add_argument("--detections", type=Path, default=RESULTS, help="folder of cached detections_<camera>.npz")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per tracker after one warm-up pass")
    parser.add_argument("--out", type=Path, default=RESULTS / "tracker.json")
    arguments = parser.parse_args(argv)
    repeats = max(1, arguments.repeats)
    try:
        cameras = load_cameras(arguments.video or list(SAMPLE_VIDEOS), arguments.gt, arguments.detections)
    except CctrackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_record(arguments.out, comparisons(cameras, repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
