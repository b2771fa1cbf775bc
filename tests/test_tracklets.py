import numpy as np

from cctrack.detections import Detections
from cctrack.detections import TrackedBoxes
from cctrack.tracklets import TrackletCollector, crop_quality, cut_crop
from tests.conftest import read_sample_frames


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
