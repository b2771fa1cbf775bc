"""Per-camera tracker and its Kalman box model, on constructed walks with known answers and on the
PETS09-S2L1 ground-truth boxes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cctrack.detections import Detections
from cctrack.errors import CctrackError
from cctrack.track.kalman import BoxKalman, xyah_to_xyxy, xyxy_to_xyah
from cctrack.detections import TrackedBoxes
from cctrack.track.tracker import Tracker, TrackerSettings, assign, iou_matrix

PERSON_WIDTH = 30.0  # px
PERSON_HEIGHT = 80.0  # px


def person_box(centre_x: float, centre_y: float, height: float = PERSON_HEIGHT) -> np.ndarray:
    width = height * PERSON_WIDTH / PERSON_HEIGHT
    return np.array([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2])


def walker(start_x: float, start_y: float, speed_x: float, speed_y: float = 0.0):
    """Box of a person walking at constant velocity (px per second) at time `seconds`."""
    return lambda seconds: person_box(start_x + speed_x * seconds, start_y + speed_y * seconds)


def frame(*boxes_and_scores: tuple[np.ndarray, float]) -> Detections:
    if not boxes_and_scores:
        return Detections.empty()
    boxes, scores = zip(*boxes_and_scores)
    return Detections(np.stack(boxes), np.array(scores))


def ids_of(tracked: TrackedBoxes, detection_index: int) -> int | None:
    """Track id reported for one input detection, None if that detection was not reported."""
    hits = tracked.track_ids[tracked.detection_index == detection_index]
    return int(hits[0]) if len(hits) else None


# ------------------------------------------------------------------------------------ vectorised helpers


def test_iou_matrix_matches_plain_loop():
    generator = np.random.default_rng(0)
    corners = generator.uniform(0, 100, size=(13, 2))
    boxes = np.concatenate([corners, corners + generator.uniform(1, 60, size=(13, 2))], axis=1)
    boxes[3] = [10, 10, 10, 30]  # zero width: IoU 0 with everything, itself included
    boxes_a, boxes_b = boxes[:6], boxes[5:]

    def reference(a: np.ndarray, b: np.ndarray) -> float:
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
        return width * height / union if union > 0 else 0.0

    expected = np.array([[reference(a, b) for b in boxes_b] for a in boxes_a])
    np.testing.assert_allclose(iou_matrix(boxes_a, boxes_b), expected, rtol=1e-12)
    assert iou_matrix(boxes_a[:0], boxes_b).shape == (0, len(boxes_b))
    np.testing.assert_allclose(np.diag(iou_matrix(boxes, boxes))[[0, 1, 2, 4]], 1.0)


def test_assign_is_optimal_and_respects_the_cost_limit():
    """Against brute force: every unmatched row or column costs max_cost / 2, as lap's extended matrix."""
    generator = np.random.default_rng(1)
    for rows, columns in [(3, 3), (2, 4), (4, 2), (3, 1)]:
        cost = generator.uniform(0, 1, size=(rows, columns))
        max_cost = 0.6
        pairs, unmatched_rows, unmatched_columns = assign(cost, max_cost)
        assert np.all(cost[pairs[:, 0], pairs[:, 1]] <= max_cost)
        assert sorted([*pairs[:, 0], *unmatched_rows]) == list(range(rows))
        assert sorted([*pairs[:, 1], *unmatched_columns]) == list(range(columns))

        def total(matching: list[tuple[int, int]]) -> float:
            unmatched = rows + columns - 2 * len(matching)
            return sum(cost[r, c] for r, c in matching) + unmatched * max_cost / 2

        best = math.inf
        for size in range(min(rows, columns) + 1):
            for chosen_rows in itertools.combinations(range(rows), size):
                for chosen_columns in itertools.permutations(range(columns), size):
                    matching = list(zip(chosen_rows, chosen_columns))
                    if all(cost[r, c] <= max_cost for r, c in matching):
                        best = min(best, total(matching))
        assert total([tuple(pair) for pair in pairs]) == pytest.approx(best)
    empty = assign(np.zeros((0, 3)), 0.5)
    assert empty[0].shape == (0, 2) and list(empty[2]) == [0, 1, 2]


# ----------------------------------------------------------------------------------------- Kalman model


def test_box_conversions_round_trip():
    box = np.array([10.0, 20.0, 40.0, 100.0])
    np.testing.assert_allclose(xyxy_to_xyah(box), [25.0, 60.0, 30.0 / 80.0, 80.0])
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(box)), box)


@pytest.mark.parametrize("fps", [10.0, 30.0])
def test_kalman_learns_velocity_in_pixels_per_second(fps):
    person = walker(100, 200, speed_x=45.0, speed_y=-15.0)
    kalman = BoxKalman(person(0.0))
    for index in range(1, int(3 * fps) + 1):
        kalman.predict(1.0 / fps)
        kalman.update(person(index / fps))
    np.testing.assert_allclose(kalman.velocity_px_per_second, [45.0, -15.0], atol=1.0)
    kalman.predict(1.0)  # one second without detections: constant velocity
    np.testing.assert_allclose(kalman.box_xyxy, person(4.0), atol=1.5)


def test_kalman_uncertainty_over_one_second_does_not_depend_on_frame_rate():
    coarse, fine = BoxKalman(person_box(100, 100)), BoxKalman(person_box(100, 100))
    for _ in range(10):
        coarse.predict(0.1)
    for _ in range(30):
        fine.predict(1.0 / 30.0)
    np.testing.assert_allclose(coarse.filter.P, fine.filter.P, rtol=1e-9)
    np.testing.assert_allclose(coarse.box_xyxy, fine.box_xyxy)


# ------------------------------------------------------------------------------------------------ tracker


def test_two_people_crossing_keep_their_ids():
    """A walks right, B walks left just behind; while they overlap B is hidden (as after the detector's NMS)."""
    fps = 10.0
    person_a, person_b = walker(40, 200, speed_x=60.0), walker(360, 210, speed_x=-60.0)
    tracker = Tracker(TrackerSettings(), fps)
    ids_a, ids_b = set(), set()
    hidden_frames = 0
    for index in range(int(5.5 * fps)):
        box_a, box_b = person_a(index / fps), person_b(index / fps)
        b_hidden = iou_matrix(box_a[None], box_b[None])[0, 0] > 0.3
        hidden_frames += b_hidden
        tracked = tracker.update(frame((box_a, 0.9)) if b_hidden else frame((box_a, 0.9), (box_b, 0.8)))
        if index >= 2:  # confirmed from the second frame on
            ids_a.add(ids_of(tracked, 0))
            if not b_hidden:
                ids_b.add(ids_of(tracked, 1))
    assert hidden_frames >= 2, "the scene must actually hide B for a while"
    assert len(ids_a) == 1 and len(ids_b) == 1 and None not in ids_a | ids_b
    assert ids_a != ids_b
    assert list(tracker.active_track_ids) == sorted(ids_a | ids_b) == [1, 2]


@pytest.mark.parametrize("fps", [10.0, 30.0])
def test_one_second_occlusion_keeps_the_id_at_any_frame_rate(fps):
    person = walker(50, 200, speed_x=40.0)
    tracker = Tracker(TrackerSettings(lost_track_seconds=3.0), fps)
    reported_ids = []
    for index in range(int(5 * fps)):
        seconds = index / fps
        occluded = 2.0 <= seconds < 3.0
        tracked = tracker.update(Detections.empty() if occluded else frame((person(seconds), 0.9)))
        if occluded:
            assert len(tracked) == 0
        elif index >= 1:
            reported_ids.append(ids_of(tracked, 0))
    assert set(reported_ids) == {1}
    assert len(reported_ids) == int(5 * fps) - int(fps) - 1


@pytest.mark.parametrize("fps", [10.0, 30.0])
def test_lost_track_is_kept_for_lost_track_seconds_whatever_the_frame_rate(fps):
    """A person who stands still and vanishes: found again after exactly lost_track_seconds of frames
    without them, given a new id one frame later."""
    settings = TrackerSettings(lost_track_seconds=2.0)
    box = person_box(200, 200)
    expected_frames = {10.0: 20, 30.0: 60}[fps]
    for missing_frames, expected_id in [(expected_frames, 1), (expected_frames + 1, 2)]:
        tracker = Tracker(settings, fps)
        assert tracker.lost_track_frames == expected_frames
        for _ in range(5):
            tracker.update(frame((box, 0.9)))
        for _ in range(missing_frames):
            tracker.update(Detections.empty())
        first_back = tracker.update(frame((box, 0.9)))
        second_back = tracker.update(frame((box, 0.9)))
        assert ids_of(second_back, 0) == expected_id
        # An old identity is reported at once; a new one first needs min_hits frames.
        assert ids_of(first_back, 0) == (1 if expected_id == 1 else None)


def test_lost_track_frames_round_half_up():
    assert Tracker(TrackerSettings(lost_track_seconds=3.0), fps=10).lost_track_frames == 30
    assert Tracker(TrackerSettings(lost_track_seconds=3.0), fps=30).lost_track_frames == 90
    assert Tracker(TrackerSettings(lost_track_seconds=1.0), fps=7.5).lost_track_frames == 8
    assert Tracker(TrackerSettings(lost_track_seconds=0.0), fps=25).lost_track_frames == 0


def test_low_score_detections_keep_a_track_alive():
    """A person whose score drops (half occluded) stays tracked only thanks to the second stage."""
    person = walker(50, 200, speed_x=40.0)
    scores = [0.9] * 10 + [0.3] * 10 + [0.9] * 5
    with_second_stage, without = [], []
    for low_score, reported in [(0.1, with_second_stage), (0.5, without)]:
        tracker = Tracker(TrackerSettings(low_score=low_score, lost_track_seconds=0.5), fps=10)
        for index, score in enumerate(scores):
            tracked = tracker.update(frame((person(index / 10), score)))
            reported.append(ids_of(tracked, 0))
    assert with_second_stage[1:] == [1] * (len(scores) - 1)
    # Without it the track is lost during the low scores, dropped after 0.5 s, and a new one starts.
    assert without[10:20] == [None] * 10
    assert without[-1] == 2


def test_low_score_detections_never_start_a_track():
    tracker = Tracker(TrackerSettings(), fps=10)
    box = person_box(100, 100)
    for _ in range(20):
        assert len(tracker.update(frame((box, 0.45)))) == 0
    assert len(tracker.active_track_ids) == 0
    # Above high_score but below new_track_score: still no new track.
    tracker = Tracker(TrackerSettings(high_score=0.5, new_track_score=0.6), fps=10)
    for _ in range(5):
        assert len(tracker.update(frame((box, 0.55)))) == 0
    assert len(tracker.active_track_ids) == 0


def test_low_score_detection_does_not_refind_a_lost_track():
    tracker = Tracker(TrackerSettings(), fps=10)
    box = person_box(100, 100)
    for _ in range(5):
        tracker.update(frame((box, 0.9)))
    tracker.update(Detections.empty())
    assert len(tracker.update(frame((box, 0.3)))) == 0
    assert ids_of(tracker.update(frame((box, 0.9))), 0) == 1


def test_single_spurious_detection_is_never_reported():
    person = walker(50, 200, speed_x=40.0)
    tracker = Tracker(TrackerSettings(), fps=10)
    reported = set()
    for index in range(30):
        detections = [(person(index / 10), 0.9)]
        if index == 12:
            detections.append((person_box(300, 100), 0.95))  # a one-frame false positive, far from anyone
        reported |= set(tracker.update(frame(*detections)).track_ids.tolist())
    assert reported == {1}
    assert list(tracker.active_track_ids) == [1]


def test_min_hits_one_reports_a_track_on_its_first_frame():
    tracker = Tracker(TrackerSettings(min_hits=1), fps=10)
    tracked = tracker.update(frame((person_box(100, 100), 0.9)))
    assert list(tracked.track_ids) == [1]


def test_reported_boxes_are_the_detections_and_indices_point_at_them():
    """Detections in shuffled order with distractors: every reported row is the input detection it names."""
    generator = np.random.default_rng(3)
    people = [walker(60 + 120 * k, 150 + 40 * k, speed_x=30.0 - 20 * k) for k in range(3)]
    tracker = Tracker(TrackerSettings(), fps=10)
    for index in range(15):
        boxes = [person(index / 10) + generator.normal(0, 1.0, 4) for person in people]
        boxes.append(person_box(700, 500, height=40))  # low-score clutter, never reported
        scores = [0.9, 0.8, 0.7, 0.2]
        order = generator.permutation(len(boxes))
        detections = Detections(np.stack(boxes)[order], np.array(scores)[order])
        tracked = tracker.update(detections)
        np.testing.assert_array_equal(tracked.boxes, detections.boxes[tracked.detection_index])
        np.testing.assert_array_equal(tracked.scores, detections.scores[tracked.detection_index])
        assert np.all(np.diff(tracked.track_ids) > 0)
        assert tracked.track_ids.dtype == np.int64 and tracked.detection_index.dtype == np.int64
        assert tracked.boxes.dtype == np.float32 and tracked.boxes.shape == (len(tracked), 4)
        if index >= 1:
            person_of_detection = {int(np.flatnonzero(order == k)[0]): k for k in range(3)}
            assert {person_of_detection[int(i)] for i in tracked.detection_index} == {0, 1, 2}
            assert sorted(tracked.track_ids.tolist()) == [1, 2, 3]


def test_ids_are_never_reused_after_removal():
    tracker = Tracker(TrackerSettings(lost_track_seconds=0.2), fps=10)
    seen = []
    for round_number in range(3):
        box = person_box(100 + 200 * round_number, 100)
        for _ in range(4):
            seen.extend(tracker.update(frame((box, 0.9))).track_ids.tolist())
        for _ in range(4):
            tracker.update(Detections.empty())
        assert len(tracker.active_track_ids) == 0
    assert sorted(set(seen)) == [1, 2, 3]


def test_empty_and_unusable_frames():
    tracker = Tracker(TrackerSettings(), fps=10)
    empty = tracker.update(Detections.empty())
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.track_ids.dtype == np.int64
    unusable = Detections(
        np.array([[10, 10, 10, 50], [10, 50, 40, 20], [np.nan, 0, 10, 10]], dtype=np.float32), np.full(3, 0.9)
    )
    for _ in range(3):
        assert len(tracker.update(unusable)) == 0
    box = person_box(100, 100)
    tracker.update(frame((box, 0.9)))
    assert list(tracker.update(frame((box, 0.9))).track_ids) == [1]
    assert tracker.frames_processed == 6


@pytest.mark.parametrize(
    "field, value",
    [
        ("high_score", 1.5),
        ("low_score", -0.1),
        ("low_score", 0.7),  # above high_score
        ("new_track_score", 0.4),  # below high_score
        ("match_iou", 0.0),
        ("low_match_iou", 1.2),
        ("tentative_match_iou", -0.3),
        ("min_hits", 0),
        ("lost_track_seconds", -1.0),
        ("lost_track_seconds", float("nan")),
        ("lost_track_seconds", float("inf")),
        ("high_score", float("nan")),
        ("match_iou", float("nan")),
    ],
)
def test_settings_validation_names_the_field(field, value):
    """Ranges here; types are checked once, where the config enters (tests/test_config.py)."""
    with pytest.raises(ValueError, match=field):
        TrackerSettings(**{field: value})


@pytest.mark.parametrize("fps", [0.0, -10.0, float("nan"), float("inf"), "10"])
def test_tracker_rejects_a_bad_frame_rate(fps):
    with pytest.raises(CctrackError, match="frames per second"):
        Tracker(TrackerSettings(), fps)


def test_tracked_boxes_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        TrackedBoxes(np.array([1, 2]), np.zeros((1, 4)), np.zeros(1), np.zeros(1))


# --------------------------------------------------------------------------------- real ground truth


def test_pets_ground_truth_boxes_are_tracked_with_few_id_switches():
    """PETS09-S2L1's annotated boxes as detections (score 0.9, 10 fps): with perfect detections the
    tracker alone decides the identities, through real crossings and occlusions of 19 walkers."""
    from cctrack.evaluate import evaluate_camera
    from cctrack.mot import read_mot_txt
    from tests.conftest import shared_pets_gt_path

    gt_rows = read_mot_txt(shared_pets_gt_path())
    gt_rows = gt_rows[gt_rows[:, 6] != 0]
    tracker = Tracker(TrackerSettings(), fps=10.0)
    predictions = []
    for frame_number in range(1, int(gt_rows[:, 0].max()) + 1):
        rows = gt_rows[gt_rows[:, 0] == frame_number]
        boxes = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1)
        tracked = tracker.update(Detections(boxes, np.full(len(rows), 0.9)))
        out = np.zeros((len(tracked), 7))
        out[:, 0], out[:, 1], out[:, 6] = frame_number, tracked.track_ids, tracked.scores
        out[:, 2:4], out[:, 4:6] = tracked.boxes[:, :2], tracked.boxes[:, 2:] - tracked.boxes[:, :2]
        predictions.append(out)
    metrics = evaluate_camera(gt_rows, np.concatenate(predictions))
    assert metrics["id_switches"] <= 4
    assert metrics["idf1"] >= 0.9
    assert metrics["mota"] >= 0.95
