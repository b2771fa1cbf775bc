"""MOT evaluation: known-answer metrics, multi-camera identity scoring, file discovery, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cctrack.errors import CctrackError
from cctrack.evaluate import (
    _iou_distances,
    evaluate_camera,
    evaluate_run,
    format_report,
    report_to_dict,
)
from cctrack.mot import read_mot_txt, write_mot_txt
from cctrack.sample import SAMPLE_CAMERAS, write_sample_ground_truth
from tests.conftest import shared_pets_gt_path

FRAMES = 10


def _walkers(ids: tuple[int, ...] = (1, 2), frames: int = FRAMES) -> np.ndarray:
    """Two people walking right, far apart, one row per person per frame (1-based frames, xywh pixels)."""
    rows = []
    for frame in range(1, frames + 1):
        for lane, person in enumerate(ids):
            rows.append([frame, person, 10 + 5 * frame, 50 + 200 * lane, 40, 100, 1, -1, -1, -1])
    return np.array(rows, dtype=np.float64)


def _with_ids(rows: np.ndarray, new_ids: dict[int, int]) -> np.ndarray:
    renamed = rows.copy()
    renamed[:, 1] = [new_ids[int(person)] for person in rows[:, 1]]
    return renamed


def _write_run(root: Path, gt_by_camera: dict[str, np.ndarray], pred_by_camera: dict[str, np.ndarray]) -> tuple[Path, Path]:
    gt_dir, pred_dir = root / "gt", root / "run"
    for camera, rows in gt_by_camera.items():
        write_mot_txt(gt_dir / camera / "gt" / "gt.txt", rows)
    for camera, rows in pred_by_camera.items():
        write_mot_txt(pred_dir / "global" / f"{camera}.txt", rows)
    return gt_dir, pred_dir


# ------------------------------------------------------------------------------ one camera, known answers


def test_perfect_prediction_scores_one():
    gt = _walkers()
    metrics = evaluate_camera(gt, gt)
    assert metrics["mota"] == 1.0 and metrics["idf1"] == 1.0
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["id_switches"] == 0
    assert (metrics["num_frames"], metrics["num_gt_ids"], metrics["num_pred_ids"]) == (FRAMES, 2, 2)


def test_prediction_ids_need_not_equal_gt_ids():
    gt = _walkers()
    metrics = evaluate_camera(gt, _with_ids(gt, {1: 7, 2: 3}))
    assert metrics["mota"] == 1.0 and metrics["idf1"] == 1.0


def test_a_missing_box_is_one_miss():
    gt = _walkers()
    pred = gt[~((gt[:, 0] == 5) & (gt[:, 1] == 2))]
    metrics = evaluate_camera(gt, pred)
    assert metrics["misses"] == 1 and metrics["false_positives"] == 0
    assert metrics["recall"] == pytest.approx(19 / 20)
    assert metrics["precision"] == 1.0
    assert metrics["mota"] == pytest.approx(1 - 1 / 20)
    assert metrics["idf1"] == pytest.approx(2 * 19 / (20 + 19))


def test_an_extra_false_positive():
    gt = _walkers()
    ghost = np.array([[3, 99, 600, 400, 40, 100, 1, -1, -1, -1]], dtype=np.float64)
    metrics = evaluate_camera(gt, np.vstack([gt, ghost]))
    assert metrics["false_positives"] == 1 and metrics["misses"] == 0
    assert metrics["precision"] == pytest.approx(20 / 21)
    assert metrics["mota"] == pytest.approx(1 - 1 / 20)
    assert metrics["num_pred_ids"] == 3


def test_an_identity_switch_mid_track():
    gt = _walkers()
    pred = gt.copy()
    pred[(pred[:, 1] == 1) & (pred[:, 0] > 5), 1] = 5  # person 1 gets a new id from frame 6
    metrics = evaluate_camera(gt, pred)
    assert metrics["id_switches"] == 1
    assert metrics["mota"] == pytest.approx(1 - 1 / 20)
    # Best one-to-one id matching: person 1 keeps 5 of 10 frames under either id.
    assert metrics["idf1"] == pytest.approx(15 / 20)


def test_iou_threshold_decides_a_match():
    gt = _walkers(ids=(1,), frames=1)
    shifted = gt.copy()
    shifted[:, 2] += 20  # 40 px wide box shifted 20 px: IoU = 20 / 60 = 1/3
    assert evaluate_camera(gt, shifted, iou_threshold=0.5)["recall"] == 0.0
    assert evaluate_camera(gt, shifted, iou_threshold=0.3)["recall"] == 1.0


def test_gt_rows_flagged_zero_are_ignored():
    gt = _walkers()
    flagged = gt.copy()
    flagged[flagged[:, 1] == 2, 6] = 0
    metrics = evaluate_camera(flagged, gt[gt[:, 1] == 1])
    assert metrics["mota"] == 1.0 and metrics["num_gt_ids"] == 1


def test_iou_distances_match_a_plain_loop():
    generator = np.random.default_rng(0)
    gt_boxes = np.hstack([generator.uniform(0, 200, (7, 2)), generator.uniform(10, 80, (7, 2))])
    pred_boxes = np.vstack([gt_boxes[:4] + generator.normal(0, 8, (4, 4)).clip(-9, 9), [[500, 500, 20, 20]]])
    expected = np.full((7, 5), np.nan)
    for g, (gx, gy, gw, gh) in enumerate(gt_boxes):
        for p, (px, py, pw, ph) in enumerate(pred_boxes):
            inter_w = max(0.0, min(gx + gw, px + pw) - max(gx, px))
            inter_h = max(0.0, min(gy + gh, py + ph) - max(gy, py))
            inter = inter_w * inter_h
            iou = inter / (gw * gh + pw * ph - inter)
            if iou >= 0.5:
                expected[g, p] = 1 - iou
    np.testing.assert_allclose(_iou_distances(gt_boxes, pred_boxes, 0.5), expected)
    assert _iou_distances(gt_boxes, pred_boxes[:0], 0.5).shape == (7, 0)


# --------------------------------------------------------------------------------------- multi-camera


def test_swapped_ids_across_cameras_cost_only_multi_camera_idf1(tmp_path):
    gt = {"cam_a": _walkers(), "cam_b": _walkers()}
    pred = {"cam_a": _walkers(), "cam_b": _with_ids(_walkers(), {1: 2, 2: 1})}
    report = evaluate_run(*_write_run(tmp_path, gt, pred))
    for camera in ("cam_a", "cam_b"):
        assert report.per_camera[camera]["idf1"] == 1.0 and report.per_camera[camera]["mota"] == 1.0
    # Each person is right in one camera and wrong in the other: half the identity-true positives.
    assert report.multi_camera["idf1"] == pytest.approx(0.5)
    assert report.multi_camera["id_switches"] == 2
    assert report.multi_camera["num_frames"] == 2 * FRAMES


def test_consistent_global_ids_score_one_across_cameras(tmp_path):
    gt = {"cam_a": _walkers(), "cam_b": _walkers()}
    pred = {"cam_a": _with_ids(_walkers(), {1: 4, 2: 9}), "cam_b": _with_ids(_walkers(), {1: 4, 2: 9})}
    report = evaluate_run(*_write_run(tmp_path, gt, pred))
    assert report.multi_camera["idf1"] == 1.0 and report.multi_camera["id_switches"] == 0


def test_sample_ground_truth_with_per_camera_ids(tmp_path):
    gt_files = write_sample_ground_truth(tmp_path / "gt", shared_pets_gt_path())
    # A tracker perfect inside each camera that never re-identifies: cam_right's ids are all new.
    left = read_mot_txt(gt_files["cam_left"])
    right = read_mot_txt(gt_files["cam_right"])
    right_renamed = right.copy()
    right_renamed[:, 1] += 100
    write_mot_txt(tmp_path / "run" / "tracks" / "cam_left.txt", left)
    write_mot_txt(tmp_path / "run" / "tracks" / "cam_right.txt", right_renamed)
    report = evaluate_run(tmp_path / "gt", tmp_path / "run")
    assert all(metrics["idf1"] == 1.0 for metrics in report.per_camera.values())
    assert report.last_frame == {camera.name: 795 for camera in SAMPLE_CAMERAS}
    # Reference: each person is credited in the camera where they are seen longer.
    left_counts = np.bincount(left[:, 1].astype(int), minlength=20)
    right_counts = np.bincount(right[:, 1].astype(int), minlength=20)
    expected_idf1 = np.maximum(left_counts, right_counts).sum() / (len(left) + len(right))
    assert report.multi_camera["idf1"] == pytest.approx(expected_idf1)
    assert report.multi_camera["idf1"] < 0.9


# --------------------------------------------------------------------------------- files and limits


def test_prediction_discovery_order_and_missing_camera(tmp_path):
    gt = _walkers()
    write_mot_txt(tmp_path / "gt" / "cam_a.txt", gt)  # flat GT layout
    run = tmp_path / "run"
    write_mot_txt(run / "cam_a.txt", gt[:3])
    write_mot_txt(run / "tracks" / "cam_a.txt", gt[:10])
    assert evaluate_run(tmp_path / "gt", run).per_camera["cam_a"]["recall"] == pytest.approx(10 / 20)
    write_mot_txt(run / "global" / "cam_a.txt", gt)
    assert evaluate_run(tmp_path / "gt", run).per_camera["cam_a"]["recall"] == 1.0

    write_mot_txt(tmp_path / "gt" / "cam_b" / "gt" / "gt.txt", gt)
    with pytest.raises(CctrackError, match="cam_b"):
        evaluate_run(tmp_path / "gt", run)


def test_no_ground_truth_is_an_error(tmp_path):
    with pytest.raises(CctrackError, match="no ground truth"):
        evaluate_run(tmp_path, tmp_path)


def test_max_frame_and_identities_json_limit_the_scored_frames(tmp_path):
    gt = _walkers(frames=20)
    processed = gt[gt[:, 0] <= 8]
    gt_dir, pred_dir = _write_run(tmp_path, {"cam_a": gt}, {"cam_a": processed})
    assert evaluate_run(gt_dir, pred_dir).per_camera["cam_a"]["recall"] == pytest.approx(8 / 20)

    limited = evaluate_run(gt_dir, pred_dir, max_frame=8)
    assert limited.per_camera["cam_a"]["recall"] == 1.0
    assert limited.per_camera["cam_a"]["num_frames"] == 8 and limited.last_frame == {"cam_a": 8}

    (pred_dir / "identities.json").write_text(json.dumps({"run": {"cameras": [{"name": "cam_a", "last_frame": 8}]}}))
    from_json = evaluate_run(gt_dir, pred_dir)
    assert from_json.per_camera["cam_a"]["mota"] == 1.0 and from_json.last_frame == {"cam_a": 8}
    assert evaluate_run(gt_dir, pred_dir, max_frame=5).last_frame == {"cam_a": 5}


def test_a_strided_run_is_scored_on_the_frames_it_saw(tmp_path):
    gt = _walkers(frames=20)
    seen = gt[(gt[:, 0] - 1) % 3 == 0]  # stride 3: frames 1, 4, ..., 19
    gt_dir, pred_dir = _write_run(tmp_path, {"cam_a": gt, "cam_b": gt}, {"cam_a": seen, "cam_b": gt})
    cameras = [{"name": "cam_a", "last_frame": 19, "stride": 3}, {"name": "cam_b", "last_frame": 0, "stride": 1}]
    (pred_dir / "identities.json").write_text(json.dumps({"run": {"cameras": cameras}}))
    report = evaluate_run(gt_dir, pred_dir)
    assert report.per_camera["cam_a"]["mota"] == 1.0 and report.per_camera["cam_a"]["num_frames"] == 7
    # Nothing processed in cam_b: nothing to score, and the rates are undefined rather than invented.
    assert report.per_camera["cam_b"]["num_frames"] == 0 and np.isnan(report.per_camera["cam_b"]["mota"])
    assert report_to_dict(report)["per_camera"]["cam_b"]["idf1"] is None
    assert report.multi_camera["idf1"] == 1.0 and report.multi_camera["num_frames"] == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,1,10,10,5,5\n1,2,10,x,5,5\n", r"bad\.txt:2: not a number"),
        ("1,1,10,10,5\n", r"bad\.txt:1: expected at least 6 values"),
        ("1,1,10,10,5,5,1\n2,1,10,10,5,5\n", r"bad\.txt:2: 6 values, but earlier lines have 7"),
        ("1,1,10,10,5,5\n\n1.5,1,10,10,5,5\n", r"bad\.txt:3: frame must be a 1-based integer"),
        ("0,1,10,10,5,5\n", r"bad\.txt:1: frame must be a 1-based integer"),
        ("1,1,10,10,-5,5\n", r"bad\.txt:1: box width and height must be >= 0"),
        ("1,1,nan,10,5,5\n", r"bad\.txt:1: frame, id and box must be finite"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    with pytest.raises(CctrackError, match=message):
        read_mot_txt(bad)


def test_mot_text_round_trip_and_empty_file(tmp_path):
    rows = _walkers()[:, :6]
    path = write_mot_txt(tmp_path / "out" / "cam.txt", rows)
    round_trip = read_mot_txt(path)
    np.testing.assert_allclose(round_trip[:, :6], rows)
    np.testing.assert_array_equal(round_trip[:, 6:], np.tile([1, -1, -1, -1], (len(rows), 1)))
    (tmp_path / "empty.txt").write_text("")
    assert read_mot_txt(tmp_path / "empty.txt").shape == (0, 10)
    with pytest.raises(CctrackError, match="not found"):
        read_mot_txt(tmp_path / "absent.txt")


def test_empty_predictions_score_zero_recall(tmp_path):
    gt_dir, pred_dir = _write_run(tmp_path, {"cam_a": _walkers()}, {"cam_a": np.zeros((0, 10))})
    metrics = evaluate_run(gt_dir, pred_dir).per_camera["cam_a"]
    assert metrics["recall"] == 0.0 and metrics["misses"] == 20 and metrics["num_pred_ids"] == 0


def test_report_table_and_dict(tmp_path):
    gt = {"cam_a": _walkers(), "cam_b": _walkers()}
    pred = {"cam_a": _walkers(), "cam_b": _walkers()[:-1]}
    report = evaluate_run(*_write_run(tmp_path, gt, pred))
    table = format_report(report).splitlines()
    assert table[0].split()[:3] == ["camera", "MOTA", "IDF1"]
    assert [line.split()[0] for line in table[2:]] == ["cam_a", "cam_b", "multi-camera"]
    assert table[2].split()[1] == "100.0" and table[3].split()[1] == "95.0"
    as_dict = json.loads(json.dumps(report_to_dict(report)))
    assert as_dict["per_camera"]["cam_b"]["misses"] == 1
    assert as_dict["multi_camera"]["mota"] == pytest.approx(1 - 1 / 40)
