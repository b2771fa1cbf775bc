"""`cctrack adapt`'s training on real people: the sample's ground-truth tracklets of one camera, where
people seen at the same time are the only labels it gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cctrack.adapt import Strangers, co_occurring, confident_groups, stranger_similarity
from cctrack.mot import read_mot_txt
from cctrack.link import Link, center_per_camera
from cctrack.sample import SAMPLE_CAMERAS, SAMPLE_FPS, derive_camera_ground_truth, ground_truth_tracklets
from cctrack.table import TrackletTable
from reid.adapt import AdaptSettings, adapt_weights
from reid.embedder import Embedder
from reid.pretrained import default_weights_path
from tests.conftest import SAMPLE_DIR, shared_pets_gt_path


def test_co_occurring_tracklets_of_one_camera_are_known_different():
    table = TrackletTable.from_spans(("a", "b"), (10.0, 10.0), [0, 0, 0, 1], [0, 5, 20, 0], [10, 15, 30, 10])
    different = co_occurring(table)
    assert different[0, 1] and different[1, 0]  # frames 5-10 shared in camera a
    assert not different[0, 2] and not different[1, 2]  # one after the other: maybe one person
    assert not different[0, 3]  # another camera: unknown
    assert not different.diagonal().any()


def test_only_confident_links_join_groups():
    links = [Link(0, 1, 0.8, 0.97), Link(2, 3, 0.7, 0.91), Link(1, 4, 0.8, 0.99)]
    assert confident_groups(5, links, 0.95).tolist() == [0, 0, 1, 2, 0]


def test_adapting_on_one_camera_separates_people_seen_together(tmp_path):
    rows = derive_camera_ground_truth(read_mot_txt(shared_pets_gt_path()), SAMPLE_CAMERAS[0])
    tracklets = ground_truth_tracklets(SAMPLE_DIR / f"{SAMPLE_CAMERAS[0].name}.mp4", rows, SAMPLE_CAMERAS[0].name, (0, 400))
    table = TrackletTable.from_spans(("cam",), (SAMPLE_FPS,), [0] * len(tracklets), [t.first_frame for t in tracklets],
                          [t.last_frame for t in tracklets])
    different = co_occurring(table)
    assert len(tracklets) >= 6 and different.sum() >= 10
    crops = [list(t.crops) for t in tracklets]

    def similarities(weights) -> tuple[float, float]:
        """(mean similarity of a tracklet's two halves, mean similarity of known-different pairs), with the
        scene's mean removed (what a busy camera's centring does)."""
        embedder = Embedder.from_checkpoint(weights, device="cpu")
        halves = [np.stack([embedder.embed(c[start::2]).mean(axis=0) for c in crops]) for start in (0, 1)]
        first, second = (center_per_camera(h / np.linalg.norm(h, axis=1, keepdims=True), np.zeros(len(h)), 0.0) for h in halves)
        return float((first * second).sum(axis=1).mean()), float((first @ second.T)[different].mean())

    settings = AdaptSettings(steps=8, groups_per_batch=4, crops_per_group=4, lr=2e-4)
    adapt_weights(default_weights_path(), crops, np.arange(len(crops)), different, tmp_path / "a.pt", settings, device="cpu")
    same_before, different_before = similarities(default_weights_path())
    same_after, different_after = similarities(tmp_path / "a.pt")
    assert different_after < different_before - 0.05  # people seen together are pushed apart
    assert same_after > same_before - 0.02  # while each person stays themself


def test_strangers_are_measured_across_cameras_and_within_one_camera_apart():
    # Camera a's tracklets all share a look (0.8 of their direction), camera b's do not; a's are seen one
    # after another. Centring removes only part of a's look (6 / 11 of the camera's mean, for 6
    # tracklets), so what is left shows within camera a and not across cameras.
    rng = np.random.default_rng(0)
    look = rng.normal(size=32)
    people = rng.normal(size=(12, 32))
    vectors = np.concatenate([0.8 * look + 0.2 * people[:6], people[6:]])
    descriptors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    table = TrackletTable.from_spans(("a", "b"), (10.0, 10.0), [0] * 6 + [1] * 6,
                                     [20 * k for k in range(6)] * 2, [20 * k + 10 for k in range(6)] * 2)
    strangers = stranger_similarity(table, descriptors)
    assert strangers.within is not None and strangers.within[0] > strangers.across[0] + 0.2
    one_each = TrackletTable.from_spans(("a", "b"), (10.0, 10.0), [0] * 6 + [1] * 6, [0] * 12, [10] * 12)
    assert stranger_similarity(one_each, descriptors).within is None  # all seen at once: no re-entry pairs


def test_a_failed_adaptation_leaves_no_adapted_weights(tmp_path, monkeypatch, short_run):
    from typer.testing import CliRunner

    import cctrack.adapt
    from cctrack.cli import app

    out = shutil.copytree(short_run, tmp_path / "out")
    runner = CliRunner()
    shutil.copy(out / "identities.json", tmp_path / "before.json")

    def broken(*args, **kwargs):
        raise cctrack.adapt.CctrackError("the calibration could not be carried over")

    # A clip this short has too few stranger pairs to carry a calibration over: pretend it has them, then
    # fail after the training, when adapted.pt has been written.
    monkeypatch.setattr(cctrack.adapt, "stranger_similarity", lambda table, descriptors: Strangers((0.0, 0.1), (0.0, 0.1)))
    monkeypatch.setattr("reid.calibration.transported", broken)
    result = runner.invoke(app, ["adapt", str(out), "--steps", "1", "--quiet"])
    assert result.exit_code == 2 and "could not be carried over" in result.stderr
    assert not (out / "adapted.pt").exists()
    assert (out / "identities.json").read_text() == (tmp_path / "before.json").read_text()


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """A 12-frame two-camera run of the sample (too few stranger pairs to carry a calibration over: the
    tests pretend it has them). Tests adapt copies of it."""
    from typer.testing import CliRunner

    from cctrack.cli import app
    from tests.conftest import read_sample_frames, write_video

    root = tmp_path_factory.mktemp("short_run")
    videos = root / "videos"
    videos.mkdir()
    for camera in ("cam_left", "cam_right"):
        write_video(videos / f"{camera}.mp4", read_sample_frames(camera, 12))
    out = root / "out"
    assert CliRunner().invoke(app, ["run", str(videos), "--out", str(out), "--no-video", "--quiet"]).exit_code == 0
    return out


def test_each_round_adapts_the_model_of_the_round_before(tmp_path, monkeypatch, short_run):
    from typer.testing import CliRunner

    import cctrack.adapt
    from cctrack.cli import app
    from reid.checkpoint import load_checkpoint
    from reid.pretrained import sha256_of_file

    out = shutil.copytree(short_run, tmp_path / "out")
    monkeypatch.setattr(cctrack.adapt, "stranger_similarity", lambda table, descriptors: Strangers((0.0, 0.1), (0.0, 0.1)))
    import reid.adapt

    real, bases = reid.adapt.adapt_weights, []

    def recording(weights, *args, **kwargs):
        bases.append(sha256_of_file(weights))
        return real(weights, *args, **kwargs)

    monkeypatch.setattr(reid.adapt, "adapt_weights", recording)
    result = CliRunner().invoke(app, ["adapt", str(out), "--steps", "1", "--rounds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "round 1:" in result.output and "round 2:" in result.output
    assert not (out / cctrack.adapt.PREVIOUS_ROUND_WEIGHTS).exists()
    extra = load_checkpoint(out / "adapted.pt")["extra"]
    assert extra["round"] == 2 and "calibration" in extra
    assert len(bases) == 2 and bases[1] != bases[0]  # round 2 started from round 1's model
    assert extra["adapted_from"]["sha256"] == bases[1]
    assert extra["first_round_base"]["sha256"] == bases[0]


def test_a_failed_later_round_leaves_no_adapted_weights(tmp_path, monkeypatch, short_run):
    from typer.testing import CliRunner

    import cctrack.adapt
    import reid.calibration
    from cctrack.cli import app

    out = shutil.copytree(short_run, tmp_path / "out")
    before = (out / "identities.json").read_text()
    monkeypatch.setattr(cctrack.adapt, "stranger_similarity", lambda table, descriptors: Strangers((0.0, 0.1), (0.0, 0.1)))
    real, calls = reid.calibration.transported, []

    def fails_in_round_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise cctrack.adapt.CctrackError("the calibration could not be carried over")
        return real(*args, **kwargs)

    monkeypatch.setattr(reid.calibration, "transported", fails_in_round_two)
    result = CliRunner().invoke(app, ["adapt", str(out), "--steps", "1", "--rounds", "3", "--quiet"])
    assert result.exit_code == 2 and "could not be carried over" in result.stderr
    assert len(calls) == 2
    assert not (out / "adapted.pt").exists() and not (out / cctrack.adapt.PREVIOUS_ROUND_WEIGHTS).exists()
    assert (out / "identities.json").read_text() == before
