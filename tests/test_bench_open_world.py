"""bench.open_world counts every cross-camera link as false: that holds only if its windows share nobody."""

from bench.open_world import WINDOW_PAIRS, window_ground_truth
from tests.conftest import shared_pets_gt_path


def test_each_window_pair_shares_no_person_and_its_ground_truth_is_cut_to_the_window():
    shared_pets_gt_path()  # fails saying what is missing when ../shared lacks the annotations
    for name, windows in WINDOW_PAIRS.items():
        truth = window_ground_truth(windows)
        people = {camera: set(rows[:, 1].astype(int)) for camera, rows in truth.items()}
        assert not people["cam_left"] & people["cam_right"], name
        for camera, (first, end) in windows.items():
            assert len(people[camera]) >= 3, (name, camera)
            frames = truth[camera][:, 0]
            assert frames.min() >= 1 and frames.max() <= end - first, (name, camera)
