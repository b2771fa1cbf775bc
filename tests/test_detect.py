import numpy as np
import pytest
import torch

from cctrack.detect import DetectorSettings, PersonDetector, bundled_weights_path
from cctrack.errors import CctrackError
from cctrack.sample import SAMPLE_CAMERAS, derive_camera_ground_truth
from tests.conftest import read_sample_frames, shared_pets_gt_path


def _iou(box, boxes):
    x0 = np.maximum(box[0], boxes[:, 0]); y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2]); y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(boxes) - inter)


@pytest.fixture(scope="module", params=["torch", "auto"])
def detector(request):
    """PyTorch, and the default runtime (on this CPU an export of the same weights, see detector_runtime)."""
    return PersonDetector(DetectorSettings(runtime=request.param))


def test_bundled_weights_are_found_offline():
    assert bundled_weights_path().name == "yolo11n-pose.pt"


def test_detector_finds_the_annotated_people_on_real_frames_of_both_cameras(detector):
    """One batch mixing both cameras; most ground-truth people are found with IoU >= 0.5."""
    frame_numbers = [1, 150, 300, 450, 600]
    frames, truths = [], []
    gt = np.loadtxt(shared_pets_gt_path(), delimiter=",")
    for camera in SAMPLE_CAMERAS:
        camera_gt = derive_camera_ground_truth(gt, camera)
        for number in frame_numbers:
            frames.append(read_sample_frames(camera.name, 1, start=number - 1)[0])
            rows = camera_gt[camera_gt[:, 0] == number]
            truths.append(np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
    detections = detector.detect(frames)
    assert len(detections) == len(frames)
    found = total = 0
    for det, truth in zip(detections, truths):
        confident = det.boxes[det.scores >= 0.3]
        assert det.boxes.dtype == np.float32 and (det.scores >= 0.1).all()
        total += len(truth)
        found += sum(len(confident) > 0 and _iou(box, confident).max() >= 0.5 for box in truth)
    assert total >= 20
    assert found / total >= 0.75


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(CctrackError, match="weights not found"):
        PersonDetector(DetectorSettings(weights=str(tmp_path / "missing.pt")))


def test_corrupt_weights_are_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CctrackError, match="cannot load detector weights"):
        PersonDetector(DetectorSettings(weights=str(bad)))


@pytest.mark.parametrize("runtime", ["torch", "auto"])
def test_detecting_leaves_torchs_thread_count_as_it_was(runtime):
    """ultralytics sets torch's threads to cores - 1 when it first predicts; the embedder runs after the detector."""
    from ultralytics.utils import NUM_THREADS

    original = torch.get_num_threads()
    wanted = 3 if NUM_THREADS != 3 else 2
    torch.set_num_threads(wanted)
    try:
        PersonDetector(DetectorSettings(image_size=320, runtime=runtime), "cpu").detect(read_sample_frames("cam_left", 1))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(original)
