import numpy as np

from cctrack.detections import Detections
from cctrack.detections import TrackedBoxes
from cctrack.mot import read_mot_txt
from cctrack.sample import SAMPLE_CAMERAS, derive_camera_ground_truth
from cctrack.track.tracker import iou_matrix
from cctrack.tracklets import INTERPOLATED_SCORE, Tracklet, TrackletCollector, crop_quality, cut_crop, fill_gaps
from tests.conftest import read_sample_frames, shared_pets_gt_path


def test_crop_quality_prefers_confident_tall_uncut_unoccluded_boxes():
    boxes = np.array(
        [
            [100, 100, 150, 240],  # tall, clear
            [100, 300, 115, 340],  # small
            [0, 100, 50, 240],  # cut by the left border
            [200, 100, 250, 240],  # half covered by the next one
            [225, 100, 275, 240],
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9], np.float32)
    quality = crop_quality(boxes, scores, frame_width=320, frame_height=576)
    assert quality.argmax() == 0
    assert quality[0] > quality[1] and quality[0] > quality[2] and quality[0] > quality[3]
    assert quality[3] == quality[4] and 0.4 < quality[3] / quality[0] < 0.6
    # A clear box taller than 128 px scores its detector confidence; a 64 px one half of it.
    assert crop_quality(boxes[:1], np.array([0.45], np.float32), 320, 576)[0] == np.float32(0.45)
    short = np.array([[100, 100, 130, 164]], np.float32)
    assert np.isclose(crop_quality(short, np.array([0.45], np.float32), 320, 576)[0], 0.225)


def test_cut_crop_clips_to_the_frame_and_rejects_empty_boxes():
    frame = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    crop = cut_crop(frame, np.array([-10, 90, 20, 130], np.float32))
    assert crop.shape == (10, 20, 3) and np.array_equal(crop, frame[90:100, 0:20])
    assert cut_crop(frame, np.array([79.5, 10, 120, 50], np.float32)) is None


def test_collector_keeps_the_best_crops_spread_in_time_on_real_frames():
    frames = read_sample_frames("cam_left", 12)
    collector = TrackletCollector("cam_left", crops_per_tracklet=3)
    for index, frame in enumerate(frames):
        # One person whose score rises over time; a second one seen only in even frames.
        boxes = np.array([[100, 200, 140, 300], [200, 150, 240, 260]], np.float32)
        scores = np.array([0.3 + 0.05 * index, 0.8], np.float32)
        detections = Detections(boxes, scores)
        ids, rows = ([1, 2], [0, 1]) if index % 2 == 0 else ([1], [0])
        tracked = TrackedBoxes(np.array(ids), boxes[rows], scores[rows], np.array(rows))
        collector.add(index, frame, detections, tracked)
    first, second = collector.finish()
    assert (first.camera, first.track_id, second.track_id) == ("cam_left", 1, 2)
    assert first.frames.tolist() == list(range(12))
    assert second.frames.tolist() == list(range(0, 12, 2))
    assert len(first.crops) == 3 and first.crops[0].shape == (100, 40, 3)
    # Best scores are in the last frames, and neighbouring frames are skipped while others remain.
    assert sorted(first.crop_frames.tolist()) == [7, 9, 11]
    assert np.all(np.diff(first.crop_quality) <= 0)
    assert np.array_equal(first.crops[0], frames[11][200:300, 100:140])


def _tracklet(frames, boxes, scores=None) -> Tracklet:
    frames = np.asarray(frames, np.int64)
    scores = np.full(len(frames), 0.8, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Tracklet("cam", 7, frames, np.asarray(boxes, np.float32).reshape(-1, 4), scores, (np.zeros((4, 2, 3), np.uint8),),
                    np.array([frames[0]], np.int64), np.array([0.5], np.float32))


def test_fill_gaps_interpolates_the_frames_the_tracker_bridged_and_keeps_the_detections():
    tracklet = _tracklet([3, 4, 7, 8], [[0, 0, 10, 20], [3, 0, 13, 20], [12, 6, 22, 29], [14, 6, 24, 29]],
                         [0.9, 0.6, 0.7, 0.8])
    filled = fill_gaps(tracklet)
    assert filled.frames.tolist() == [3, 4, 5, 6, 7, 8]
    assert np.array_equal(filled.boxes[[0, 1, 4, 5]], tracklet.boxes)
    assert np.allclose(filled.boxes[2:4], [[6, 2, 16, 23], [9, 4, 19, 26]])  # a third and two thirds of the way
    assert filled.scores.tolist() == [np.float32(0.9), np.float32(0.6), INTERPOLATED_SCORE, INTERPOLATED_SCORE,
                                      np.float32(0.7), np.float32(0.8)]
    # Crops, camera and id ride along untouched; a tracklet without a gap is returned as it is.
    assert filled.crops is tracklet.crops and filled.track_id == 7 and filled.crop_frames is tracklet.crop_frames
    assert fill_gaps(_tracklet([3, 4, 5], np.zeros((3, 4)))).frames.tolist() == [3, 4, 5]


def test_fill_gaps_of_a_strided_run_fills_only_the_frames_it_processed():
    tracklet = _tracklet([0, 2, 8], [[0, 0, 10, 10], [2, 0, 12, 10], [8, 0, 18, 10]])
    filled = fill_gaps(tracklet, frame_step=2)
    assert filled.frames.tolist() == [0, 2, 4, 6, 8]
    assert np.allclose(filled.boxes[:, 0], [0, 2, 4, 6, 8])
    assert fill_gaps(_tracklet([0, 2, 4], np.zeros((3, 4))), frame_step=2).frames.tolist() == [0, 2, 4]


def test_filled_boxes_find_real_people_walking_through_a_one_second_detector_miss():
    """The sample's ground truth (real pedestrians, both cameras): cut a second (10 frames) out of every
    long enough person track at several places, as a detector miss the tracker bridges, and fill it.
    Nearly every filled box still covers the person (IoU >= 0.5, what MOT metrics count), far more than
    keeping the last detected box would."""
    interpolated, held = [], []
    for camera in SAMPLE_CAMERAS:
        rows = derive_camera_ground_truth(read_mot_txt(shared_pets_gt_path()), camera)
        for person in np.unique(rows[:, 1]):
            track = rows[rows[:, 1] == person]
            frames = (track[:, 0] - 1).astype(np.int64)
            if len(frames) < 40 or np.any(np.diff(frames) != 1):
                continue
            boxes = np.c_[track[:, 2:4], track[:, 2:4] + track[:, 4:6]].astype(np.float32)
            for start in range(5, len(frames) - 15, 15):
                seen = np.ones(len(frames), bool)
                seen[start:start + 10] = False
                filled = fill_gaps(_tracklet(frames[seen], boxes[seen]))
                assert np.array_equal(filled.frames, frames)
                for index in np.flatnonzero(~seen):
                    interpolated.append(iou_matrix(filled.boxes[index:index + 1], boxes[index:index + 1])[0, 0])
                    held.append(iou_matrix(boxes[start - 1:start], boxes[index:index + 1])[0, 0])
    interpolated, held = np.array(interpolated), np.array(held)
    assert len(interpolated) > 500
    assert np.mean(interpolated >= 0.5) > 0.97 and np.mean(interpolated) > 0.85
    assert np.mean(held >= 0.5) < np.mean(interpolated >= 0.5) - 0.1
