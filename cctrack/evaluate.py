"""MOTChallenge evaluation of a run: per-camera CLEAR-MOT and identity metrics, plus multi-camera IDF1.

All metrics come from py-motmetrics; this module only reads files, pairs boxes by IoU and arranges the
accumulators. Rules:
- Boxes pair when IoU >= `iou_threshold` (0.5, the MOTChallenge rule).
- Ground-truth rows whose 7th column (the MOTChallenge "consider" flag) is 0 are ignored; prediction rows
  are all used (their 7th column is a detection score).
- Multi-camera: every camera's ground truth and predictions go into one accumulator, each camera's frames
  shifted past the previous camera's, and ids kept as they are (GT ids are global person ids, prediction
  ids the run's global identities). A person who walks from one camera into another under a new predicted
  id therefore costs multi-camera IDF1 even when each camera alone is tracked perfectly (usual MTMC practice).
- A run that processed only the first frames of each video (``--max-frames``) is scored on those frames only:
  GT and prediction rows after the last processed frame are dropped.
"""

from __future__ import annotations

import configparser
import json
import math
from dataclasses import dataclass
from pathlib import Path

import motmetrics
import numpy as np

from cctrack.errors import CctrackError
from cctrack.mot import MOT_COLUMNS, read_mot_txt

PREDICTION_SUBFOLDERS = ("global", "tracks", "")  # searched in this order under a run's output folder
MULTI_CAMERA_ROW = "multi-camera"

# py-motmetrics metric name -> our key; fractions, not percent.
_MOTMETRICS_NAMES = {
    "mota": "mota",
    "idf1": "idf1",
    "idp": "idp",
    "idr": "idr",
    "num_switches": "id_switches",
    "num_frames": "num_frames",
    "num_unique_objects": "num_gt_ids",
    "precision": "precision",
    "recall": "recall",
    "num_false_positives": "false_positives",
    "num_misses": "misses",
}
_COUNT_KEYS = {"id_switches", "num_frames", "num_gt_ids", "num_pred_ids", "false_positives", "misses"}


@dataclass(frozen=True)
class EvalReport:
    """Metrics of one run. Values are fractions in [0, 1] (MOTA may go below 0) or integer counts."""

    per_camera: dict[str, dict[str, float | int]]  # camera name -> metrics, cameras sorted by name
    multi_camera: dict[str, float | int]  # all cameras in one accumulator with global ids
    last_frame: dict[str, int]  # camera name -> last scored frame (1-based): frames 1..last_frame (every stride-th)


# ---------------------------------------------------------------------------------------------- files


# ------------------------------------------------------------------------------------------- metrics


def evaluate_camera(gt_rows: np.ndarray, pred_rows: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float | int]:
    """Metrics of one camera's predictions against its ground truth (both MOTChallenge rows, same frames)."""
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    _accumulate(accumulator, _considered_gt(gt_rows), _as_rows(pred_rows, "predictions"), iou_threshold)
    return _summarise(accumulator, pred_rows)


def evaluate_run(
    gt_dir: str | Path,
    pred_dir: str | Path,
    max_frame: int | None = None,
    iou_threshold: float = 0.5,
) -> EvalReport:
    """Score a run's output folder against a ground-truth folder, per camera and across cameras.

    Cameras are those in `gt_dir` (``<gt_dir>/<cam>/gt/gt.txt`` or ``<gt_dir>/<cam>.txt``); predictions are
    read from ``<pred_dir>/global/<cam>.txt``, else ``tracks/<cam>.txt``, else ``<cam>.txt``.
    Scored frames: 1 .. the smaller of `max_frame` and ``run.cameras[].last_frame`` of
    ``<pred_dir>/identities.json`` (both 1-based, either may be absent); with neither, up to the later of the
    last frame mentioned and seqinfo.ini's seqLength. A run with ``run.cameras[].stride`` k > 1 saw only
    frames 1, 1+k, 1+2k, ..., so only those are scored.
    """
    if max_frame is not None and max_frame < 1:
        raise CctrackError(f"max_frame must be >= 1, got {max_frame}")
    gt_files = find_ground_truth_files(gt_dir)
    processed = _read_processed_frames(Path(pred_dir))
    per_camera: dict[str, dict[str, float | int]] = {}
    last_frames: dict[str, int] = {}
    all_pred_rows: list[np.ndarray] = []
    multi_camera = motmetrics.MOTAccumulator(auto_id=False)
    frame_offset = 0
    for camera, gt_path in gt_files.items():
        gt_rows = _considered_gt(read_mot_txt(gt_path))
        pred_rows = read_mot_txt(find_prediction_file(pred_dir, camera))
        run_last_frame, stride = processed.get(camera, (None, 1))
        limits = [limit for limit in (max_frame, run_last_frame) if limit is not None]
        if limits:
            last_frame = min(limits)
        else:
            mentioned = int(max(gt_rows[:, 0].max(initial=0), pred_rows[:, 0].max(initial=0)))
            last_frame = max(mentioned, _sequence_length(gt_path))
        scored_frames = np.arange(1, last_frame + 1, stride)
        gt_rows = gt_rows[np.isin(gt_rows[:, 0], scored_frames)]
        pred_rows = pred_rows[np.isin(pred_rows[:, 0], scored_frames)]

        camera_accumulator = motmetrics.MOTAccumulator(auto_id=False)
        _accumulate(camera_accumulator, gt_rows, pred_rows, iou_threshold, scored_frames)
        per_camera[camera] = _summarise(camera_accumulator, pred_rows)
        # Multi-camera: this camera's frames follow the previous cameras' so no two cameras share a frame id.
        _accumulate(multi_camera, gt_rows, pred_rows, iou_threshold, scored_frames, frame_offset)
        frame_offset += last_frame
        last_frames[camera] = last_frame
        all_pred_rows.append(pred_rows)
    if all(metrics["num_gt_ids"] == 0 for metrics in per_camera.values()):
        raise CctrackError(f"ground truth is empty: no camera in {gt_dir} has a box in the scored frames")
    return EvalReport(per_camera, _summarise(multi_camera, np.concatenate(all_pred_rows)), last_frames)


def find_ground_truth_files(gt_dir: str | Path) -> dict[str, Path]:
    """Camera name -> gt file for ``<gt_dir>/<cam>/gt/gt.txt`` and ``<gt_dir>/<cam>.txt``, sorted by name."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise CctrackError(f"ground-truth folder not found: {gt_dir}")
    found: dict[str, Path] = {}
    for sequence_gt in gt_dir.glob("*/gt/gt.txt"):
        found[sequence_gt.parent.parent.name] = sequence_gt
    for flat_gt in gt_dir.glob("*.txt"):
        if flat_gt.stem in found:
            raise CctrackError(f"camera '{flat_gt.stem}' has two ground-truth files in {gt_dir}")
        found[flat_gt.stem] = flat_gt
    if not found:
        raise CctrackError(f"no ground truth in {gt_dir} (expected <camera>/gt/gt.txt or <camera>.txt)")
    return dict(sorted(found.items()))


def find_prediction_file(pred_dir: str | Path, camera: str) -> Path:
    """The first of ``global/<cam>.txt``, ``tracks/<cam>.txt``, ``<cam>.txt`` under `pred_dir` that exists."""
    candidates = [Path(pred_dir) / subfolder / f"{camera}.txt" for subfolder in PREDICTION_SUBFOLDERS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise CctrackError(f"no predictions for camera '{camera}' (tried {tried})")


# -------------------------------------------------------------------------------------------- report


def report_to_dict(report: EvalReport) -> dict:
    """A JSON-ready dict: ``{"per_camera": {...}, "multi_camera": {...}, "last_frame": {...}}``; NaN -> None."""
    return {
        "per_camera": {camera: _json_metrics(metrics) for camera, metrics in report.per_camera.items()},
        "multi_camera": _json_metrics(report.multi_camera),
        "last_frame": dict(report.last_frame),
    }


def format_report(report: EvalReport) -> str:
    """A fixed-width table: one row per camera and a final multi-camera row; fractions shown as percent."""
    columns = [
        ("MOTA", "mota"),
        ("IDF1", "idf1"),
        ("IDP", "idp"),
        ("IDR", "idr"),
        ("Prec", "precision"),
        ("Rec", "recall"),
        ("IDsw", "id_switches"),
        ("FP", "false_positives"),
        ("FN", "misses"),
        ("GT ids", "num_gt_ids"),
        ("Pred ids", "num_pred_ids"),
        ("Frames", "num_frames"),
    ]
    rows = [(camera, metrics) for camera, metrics in report.per_camera.items()]
    rows.append((MULTI_CAMERA_ROW, report.multi_camera))
    name_width = max(len(name) for name, _ in rows)
    header = f"{'camera':<{name_width}}  " + "  ".join(f"{title:>8}" for title, _ in columns)
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        cells = [_format_cell(key, metrics[key]) for _, key in columns]
        lines.append(f"{name:<{name_width}}  " + "  ".join(f"{cell:>8}" for cell in cells))
    lines += [
        f"note: {camera} has no ground-truth boxes in the scored frames; its MOTA, IDR and recall are undefined (-)"
        for camera, metrics in report.per_camera.items()
        if metrics["num_gt_ids"] == 0
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- helpers


def _as_rows(rows: np.ndarray, what: str) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, MOT_COLUMNS), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise CctrackError(f"{what} must be (K, >=6) MOTChallenge rows, got shape {rows.shape}")
    return rows


def _considered_gt(gt_rows: np.ndarray) -> np.ndarray:
    rows = _as_rows(gt_rows, "ground truth")
    if rows.shape[1] >= 7:
        rows = rows[rows[:, 6] != 0]
    return rows


def _frame_groups(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Frame -> that frame's rows, by one sort instead of a mask per frame."""
    if len(rows) == 0:
        return {}
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    frames, starts = np.unique(rows[:, 0].astype(np.int64), return_index=True)
    return dict(zip(frames.tolist(), np.split(rows, starts[1:])))


def _iou_distances(gt_boxes: np.ndarray, pred_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(G, P) 1 - IoU of xywh boxes, NaN (never pair) where IoU < iou_threshold.

    motmetrics.distances.iou_matrix would do this, but 1.4.0 (the newest release) calls np.asfarray,
    which NumPy 2 removed; its boxiou is NumPy-2 clean, so only the thresholding is done here.
    """
    distances = 1.0 - motmetrics.distances.boxiou(gt_boxes[:, None, :], pred_boxes[None, :, :])
    distances = np.asarray(distances, dtype=np.float64).reshape(len(gt_boxes), len(pred_boxes))
    distances[distances > 1.0 - iou_threshold] = np.nan
    return distances


def _accumulate(
    accumulator: motmetrics.MOTAccumulator,
    gt_rows: np.ndarray,
    pred_rows: np.ndarray,
    iou_threshold: float,
    frames: np.ndarray | None = None,
    frame_offset: int = 0,
) -> None:
    """Add one camera's frames to `accumulator`, frame f (1-based) under frame id ``f + frame_offset``.

    frames: the frames to add, empty ones included so num_frames is the scored length of the video;
    None = every frame from 1 to the last either side mentions.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise CctrackError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    gt_by_frame = _frame_groups(gt_rows)
    pred_by_frame = _frame_groups(pred_rows)
    if frames is None:
        frames = np.arange(1, max(gt_by_frame.keys() | pred_by_frame.keys(), default=0) + 1)
    no_rows = np.zeros((0, MOT_COLUMNS), dtype=np.float64)
    for frame in frames.tolist():
        gt = gt_by_frame.get(frame, no_rows)
        pred = pred_by_frame.get(frame, no_rows)
        accumulator.update(
            gt[:, 1].astype(np.int64),
            pred[:, 1].astype(np.int64),
            _iou_distances(gt[:, 2:6], pred[:, 2:6], iou_threshold),
            frameid=frame + frame_offset,
        )


def _summarise(accumulator: motmetrics.MOTAccumulator, pred_rows: np.ndarray) -> dict[str, float | int]:
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(_MOTMETRICS_NAMES), name="run")
    metrics: dict[str, float | int] = {}
    for motmetrics_name, key in _MOTMETRICS_NAMES.items():
        value = float(summary[motmetrics_name].iloc[0])
        if not math.isfinite(value):
            value = math.nan  # a rate over no ground truth (MOTA = 1 - errors / 0) is undefined, not -inf
        metrics[key] = int(value) if key in _COUNT_KEYS and math.isfinite(value) else value
    metrics["num_pred_ids"] = int(len(np.unique(_as_rows(pred_rows, "predictions")[:, 1])))
    return metrics


def _sequence_length(gt_path: Path) -> int:
    """seqLength from the MOTChallenge seqinfo.ini beside ``<cam>/gt/gt.txt``; 0 when there is none."""
    seqinfo_path = gt_path.parent.parent / "seqinfo.ini"
    if gt_path.parent.name != "gt" or not seqinfo_path.is_file():
        return 0
    seqinfo = configparser.ConfigParser()
    try:
        seqinfo.read(seqinfo_path)
        return seqinfo.getint("Sequence", "seqLength", fallback=0)
    except (configparser.Error, ValueError) as error:
        raise CctrackError(f"{seqinfo_path}: unreadable seqinfo ({error})") from None


def _read_processed_frames(pred_dir: Path) -> dict[str, tuple[int, int]]:
    """Camera name -> (last_frame 1-based, stride) from ``run.cameras[]`` of the run's identities.json."""
    identities_path = pred_dir / "identities.json"
    if not identities_path.is_file():
        return {}
    try:
        document = json.loads(identities_path.read_text())
    except json.JSONDecodeError as error:
        raise CctrackError(f"{identities_path}: not valid JSON ({error})") from None
    run = document.get("run") if isinstance(document, dict) else None
    cameras = run.get("cameras") if isinstance(run, dict) else None
    if not isinstance(cameras, list):
        return {}
    processed: dict[str, tuple[int, int]] = {}
    for entry in cameras:
        if not isinstance(entry, dict) or "name" not in entry or entry.get("last_frame") is None:
            continue
        last_frame, stride = entry["last_frame"], entry.get("stride", 1)
        if not isinstance(last_frame, int) or last_frame < 0:
            raise CctrackError(f"{identities_path}: run.cameras[].last_frame must be an integer >= 0, got {last_frame!r}")
        if not isinstance(stride, int) or stride < 1:
            raise CctrackError(f"{identities_path}: run.cameras[].stride must be an integer >= 1, got {stride!r}")
        processed[str(entry["name"])] = (last_frame, stride)
    return processed


def _json_metrics(metrics: dict[str, float | int]) -> dict[str, float | int | None]:
    return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in metrics.items()}


def _format_cell(key: str, value: float | int) -> str:
    if key in _COUNT_KEYS:
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{100.0 * value:.1f}"
