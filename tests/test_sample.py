"""The bundled sample: camera cuts, colour looks, derived ground truth, and the committed videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cctrack.errors import CctrackError
from cctrack.mot import read_mot_txt
from cctrack.sample import (
    PETS_GT_ENV_VAR,
    SAMPLE_CAMERAS,
    SAMPLE_FPS,
    SAMPLE_FRAME_COUNT,
    SOURCE_HEIGHT,
    VirtualCamera,
    default_pets_gt_path,
    derive_camera_ground_truth,
    read_video_frames,
    render_camera_frame,
    write_sample_ground_truth,
    write_video,
)
from tests.conftest import shared_pets_gt_path

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples" / "pets09"
CAMERAS = {camera.name: camera for camera in SAMPLE_CAMERAS}


@pytest.fixture(scope="module")
def pets_gt() -> np.ndarray:
    return read_mot_txt(shared_pets_gt_path())


def _row(frame: int, person: int, x: float, y: float, w: float, h: float) -> list[float]:
    return [frame, person, x, y, w, h, 1, -1, -1, -1]


# ----------------------------------------------------------------------------- camera definitions


def test_cameras_do_not_overlap_and_leave_an_unseen_strip():
    left, right = CAMERAS["cam_left"], CAMERAS["cam_right"]
    assert (left.x0, left.x1, right.x0, right.x1) == (0, 320, 448, 768)
    assert right.x0 - left.x1 == 128
    assert left.width == right.width == 320


def test_render_cuts_the_camera_columns():
    # Each source column's blue value is its own column index mod 256, so the cut is readable from the pixels.
    columns = np.arange(768) % 256
    source = np.zeros((SOURCE_HEIGHT, 768, 3), np.uint8)
    source[:, :, 0] = columns[None, :]
    identity = VirtualCamera("plain", 448, 768, brightness_gain=1.0, channel_gains_bgr=(1.0, 1.0, 1.0), gamma=1.0)
    view = render_camera_frame(source, identity)
    assert view.shape == (SOURCE_HEIGHT, 320, 3)
    np.testing.assert_array_equal(view[0, :, 0], columns[448:768])


def test_each_camera_has_its_own_look():
    grey = np.full((8, 768, 3), 128, np.uint8)
    left = render_camera_frame(grey, CAMERAS["cam_left"])[0, 0].astype(int)  # BGR
    right = render_camera_frame(grey, CAMERAS["cam_right"])[0, 0].astype(int)
    assert left[2] > left[0], "cam_left is warm: red above blue on grey"
    assert right[0] > right[2], "cam_right is cool: blue above red on grey"
    assert left.sum() > right.sum(), "cam_left is brighter than cam_right"
    for camera in SAMPLE_CAMERAS:
        table = camera.lookup_table()[0].astype(int)
        assert np.all(np.diff(table, axis=0) >= 0), f"{camera.name} look must keep intensity order"


def test_render_rejects_a_too_narrow_frame():
    with pytest.raises(CctrackError, match="cam_right"):
        render_camera_frame(np.zeros((576, 640, 3), np.uint8), CAMERAS["cam_right"])


# -------------------------------------------------------------------------- derived ground truth


def test_partly_visible_rule_and_hidden_strip():
    gt_rows = np.array(
        [
            _row(1, 1, 300, 100, 40, 80),  # 20 of 40 px in cam_left: exactly half, kept and clipped
            _row(1, 2, 305, 100, 40, 80),  # 15 of 40 px in cam_left: dropped
            _row(1, 3, 340, 100, 40, 80),  # inside the unseen strip: in neither camera
            _row(2, 4, 430, 500, 40, 100),  # 22 of 40 px in cam_right, bottom below the frame
        ]
    )
    left = derive_camera_ground_truth(gt_rows, CAMERAS["cam_left"])
    right = derive_camera_ground_truth(gt_rows, CAMERAS["cam_right"])
    np.testing.assert_allclose(left, [_row(1, 1, 300, 100, 20, 80)])
    np.testing.assert_allclose(right, [_row(2, 4, 0, 500, 22, 76)])


def test_derived_boxes_lie_inside_each_camera(pets_gt):
    for camera in SAMPLE_CAMERAS:
        rows = derive_camera_ground_truth(pets_gt, camera)
        x, y, w, h = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
        assert len(rows) > 1000
        assert np.all(x >= 0) and np.all(x + w <= camera.width + 1e-9)
        assert np.all(y >= 0) and np.all(y + h <= SOURCE_HEIGHT + 1e-9)
        assert np.all(w > 0) and np.all(h > 0)


def test_ids_and_frames_are_kept(pets_gt):
    source_rows = {(int(row[0]), int(row[1])): row for row in pets_gt}
    for camera in SAMPLE_CAMERAS:
        rows = derive_camera_ground_truth(pets_gt, camera)
        assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= SAMPLE_FRAME_COUNT
        keys = [(int(f), int(i)) for f, i in rows[:, :2]]
        assert len(set(keys)) == len(keys)
        assert set(keys) <= set(source_rows)
        for derived in rows[::97]:
            original = source_rows[(int(derived[0]), int(derived[1]))]
            fully_inside = original[2] >= camera.x0 and original[2] + original[4] <= camera.x1
            if fully_inside:
                assert derived[2] == pytest.approx(original[2] - camera.x0)
                assert derived[4] == pytest.approx(original[4])


def test_sixteen_of_nineteen_people_appear_in_both_cameras(pets_gt):
    left_ids = set(derive_camera_ground_truth(pets_gt, CAMERAS["cam_left"])[:, 1].astype(int))
    right_ids = set(derive_camera_ground_truth(pets_gt, CAMERAS["cam_right"])[:, 1].astype(int))
    assert len(left_ids | right_ids) == 19
    assert len(left_ids & right_ids) == 16
    assert right_ids - left_ids == {11, 12, 18}


def test_people_inside_the_unseen_strip_appear_in_neither_camera(pets_gt):
    left, right = CAMERAS["cam_left"], CAMERAS["cam_right"]
    hidden = pets_gt[(pets_gt[:, 2] >= left.x1) & (pets_gt[:, 2] + pets_gt[:, 4] <= right.x0)]
    assert len(hidden) > 0, "PETS09-S2L1 has people walking through the strip"
    hidden_keys = {(int(f), int(i)) for f, i in hidden[:, :2]}
    for camera in SAMPLE_CAMERAS:
        seen = {(int(f), int(i)) for f, i in derive_camera_ground_truth(pets_gt, camera)[:, :2]}
        assert not hidden_keys & seen


def test_write_sample_ground_truth_round_trip(pets_gt, tmp_path):
    written = write_sample_ground_truth(tmp_path, shared_pets_gt_path())
    assert set(written) == set(CAMERAS)
    for name, gt_path in written.items():
        assert gt_path == tmp_path / name / "gt" / "gt.txt"
        round_trip = read_mot_txt(gt_path)
        np.testing.assert_allclose(round_trip, derive_camera_ground_truth(pets_gt, CAMERAS[name]), atol=5e-4)
        seqinfo = (tmp_path / name / "seqinfo.ini").read_text()
        assert "frameRate=10\n" in seqinfo and f"seqLength={SAMPLE_FRAME_COUNT}\n" in seqinfo
        assert "imWidth=320\n" in seqinfo and "imHeight=576\n" in seqinfo
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_gt_path_follows_the_environment(tmp_path, monkeypatch):
    custom = tmp_path / "gt.txt"
    custom.write_text("1,1,10,10,5,5,1,-1,-1,-1\n")
    monkeypatch.setenv(PETS_GT_ENV_VAR, str(custom))
    assert default_pets_gt_path() == custom
    monkeypatch.setenv(PETS_GT_ENV_VAR, str(tmp_path / "absent.txt"))
    with pytest.raises(CctrackError, match="absent.txt"):
        default_pets_gt_path()


# ----------------------------------------------------------------------------------------- videos


@pytest.mark.parametrize("camera", SAMPLE_CAMERAS, ids=lambda camera: camera.name)
def test_sample_video_matches_its_ground_truth_frame(camera):
    video = SAMPLES_DIR / f"{camera.name}.mp4"
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(SAMPLE_FPS)
    capture.release()
    frame_count = 0
    for frame in read_video_frames(video):
        assert frame.shape == (SOURCE_HEIGHT, camera.width, 3)
        frame_count += 1
    assert frame_count == SAMPLE_FRAME_COUNT
    assert video.stat().st_size < 4_000_000


def test_write_video_is_atomic_and_checks_frame_sizes(tmp_path):
    frames = [np.full((64, 48, 3), value, np.uint8) for value in (40, 120, 200)]
    target = tmp_path / "clip.mp4"
    assert write_video(target, frames, fps=10.0) == 3
    decoded = list(read_video_frames(target))
    assert [int(round(frame.mean())) for frame in decoded] == pytest.approx([40, 120, 200], abs=3)

    mixed = [np.zeros((64, 48, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)]
    with pytest.raises(CctrackError, match="frame 1"):
        write_video(tmp_path / "mixed.mp4", mixed, fps=10.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


# -------------------------------------------------------------------------- cloth-change stress copy


def test_rotate_hue_turns_red_into_chartreuse():
    from bench.stress import rotate_hue

    red = np.zeros((4, 4, 3), np.uint8)
    red[:, :, 2] = 255
    rotated = rotate_hue(red, 90)[0, 0].astype(int)  # BGR; hue 90 degrees = half red, full green
    np.testing.assert_allclose(rotated, [0, 255, 128], atol=2)
    np.testing.assert_array_equal(rotate_hue(red, 360), red)


def test_hue_rotated_copy_changes_only_the_chosen_camera(tmp_path):
    from bench.stress import make_hue_rotated_copy

    sample_dir = tmp_path / "sample"
    red_frames = [np.dstack([np.zeros((48, 32), np.uint8)] * 2 + [np.full((48, 32), 200, np.uint8)])] * 4
    write_video(sample_dir / "cam_left.mp4", red_frames, fps=10.0)
    write_video(sample_dir / "cam_right.mp4", red_frames, fps=10.0)
    out_dir = make_hue_rotated_copy(sample_dir, tmp_path / "stress", camera="cam_right", degrees=240)
    assert (out_dir / "cam_left.mp4").read_bytes() == (sample_dir / "cam_left.mp4").read_bytes()
    rotated = list(read_video_frames(out_dir / "cam_right.mp4"))
    assert len(rotated) == 4
    mean_bgr = rotated[2].reshape(-1, 3).mean(axis=0)
    assert mean_bgr[0] > 150 and mean_bgr[2] < 50, "red turned 240 degrees is blue"
    assert not list(out_dir.glob("*.tmp*"))
    with pytest.raises(CctrackError, match="cam_middle"):
        make_hue_rotated_copy(sample_dir, tmp_path / "other", camera="cam_middle")
