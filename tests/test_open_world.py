"""Cross-camera linking with the shipped re-id model on the sample's real people, tracked perfectly
(ground-truth tracks, so that only the linker and the model are judged).

The open-world case: most people seen by one camera never appear in another. Two camera windows of the
sample that share nobody, played as if recorded at the same time, must give (almost) no cross-camera
identity.
"""

from __future__ import annotations

import numpy as np
import pytest

from cctrack.embed import embed_tracklets, load_embedder
from cctrack.errors import CctrackError
from cctrack.evaluate import read_mot_txt
from cctrack.link import LinkSettings, TrackletTable, link_tracklets
from cctrack.sample import SAMPLE_CAMERAS, SAMPLE_FPS, default_pets_gt_path, derive_camera_ground_truth, ground_truth_tracklets
from tests.conftest import SAMPLE_DIR

CAMERAS = {camera.name: camera for camera in SAMPLE_CAMERAS}


@pytest.fixture(scope="module")
def pets_gt() -> np.ndarray:
    try:
        return read_mot_txt(default_pets_gt_path())
    except CctrackError as error:
        pytest.fail(f"PETS09-S2L1 ground truth is needed beside the checkout (../shared/data): {error}")


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(None, device="cpu")


def tracklets_in(pets_gt, camera: str, frames: tuple[int, int]):
    rows = derive_camera_ground_truth(pets_gt, CAMERAS[camera])
    return ground_truth_tracklets(SAMPLE_DIR / f"{camera}.mp4", rows, camera, frames)


def link(tracklets, embedder, restart_clock: dict[str, int] | None = None):
    """Link ground-truth tracklets with the default settings; restart_clock[camera] = the frame that
    becomes frame 0 (to play two windows as if recorded at once)."""
    names = tuple(sorted({t.camera for t in tracklets}))
    shift = restart_clock or {}
    table = TrackletTable(
        camera_names=names,
        camera_fps=tuple(SAMPLE_FPS for _ in names),
        camera_index=[names.index(t.camera) for t in tracklets],
        first_frame=[t.first_frame - shift.get(t.camera, 0) for t in tracklets],
        last_frame=[t.last_frame - shift.get(t.camera, 0) for t in tracklets],
    )
    embeddings = embed_tracklets([list(t.crops) for t in tracklets], embedder, show_progress=False)
    return link_tracklets(table, embeddings.descriptors, LinkSettings(device="cpu"), calibration=embedder.calibration)


def test_two_windows_that_share_nobody_get_at_most_one_false_cross_camera_link(pets_gt, embedder):
    left = tracklets_in(pets_gt, "cam_left", (0, 225))
    right = tracklets_in(pets_gt, "cam_right", (600, 795))
    assert not {t.person for t in left} & {t.person for t in right}, "the windows must share nobody"
    assert len(left) >= 3 and len(right) >= 6
    tracklets = left + right
    result = link(tracklets, embedder, restart_clock={"cam_left": 0, "cam_right": 600})
    cross_camera = [link for link in result.links if tracklets[link.tracklet_a].camera != tracklets[link.tracklet_b].camera]
    assert len(cross_camera) <= 1
    assert all(link.confidence >= 0.9 for link in result.links)


def test_cross_camera_links_on_the_whole_sample_are_mostly_right(pets_gt, embedder):
    tracklets = tracklets_in(pets_gt, "cam_left", (0, 795)) + tracklets_in(pets_gt, "cam_right", (0, 795))
    result = link(tracklets, embedder)
    right = wrong = 0
    for identity in np.unique(result.identity):
        members = [tracklets[i] for i in np.flatnonzero(result.identity == identity)]
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                if members[a].camera != members[b].camera:
                    right += members[a].person == members[b].person
                    wrong += members[a].person != members[b].person
    assert right >= 5
    assert right / (right + wrong) >= 0.9
