"""`cctrack run --ray` (cctrack.distributed): the same tracklets and identities as the in-process run, chunks
stitched without losing identity quality, a dead worker's piece retried, bad input named by camera."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cctrack.cli import app
from cctrack.config import load_config
from cctrack.distributed import KILL_FIRST_ATTEMPT_ENV, PIECES_FOLDER, RaySettings, _piece_error, plan_pieces, stitch, track_piece
from cctrack.errors import CctrackError
from cctrack.evaluate import evaluate_camera
from cctrack.mot import read_mot_txt
from cctrack.pipeline import run
from cctrack.sample import write_sample_ground_truth
from cctrack.video import discover_cameras
from tests.conftest import REPO_ROOT, good_and_truncated_cameras, read_sample_frames, shared_pets_gt_path, write_video

ray = pytest.importorskip("ray", reason="the Ray path needs `pip install -e .[ray]` (in the test extras)")

runner = CliRunner()
SETTINGS = ["detector.image_size=640"]


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU Ray instance for the module, as CI runs it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_pieces_cover_every_frame_once_with_a_lead_in_on_stride_multiples(short_sample):
    cameras = discover_cameras(short_sample)
    config = load_config(None, ["video.stride=2", "video.max_frames=25"])
    pieces = plan_pieces(cameras, config, chunk_seconds=0.8, overlap_seconds=0.3)
    for camera in cameras:
        own = [p for p in pieces if p.camera.name == camera.name]
        assert [p.index for p in own] == list(range(len(own))) and len(own) == 4  # 8-frame chunks of 25 frames
        assert own[0].own_from == 0 and own[-1].own_to == 25
        assert all(a.own_to == b.own_from for a, b in zip(own, own[1:]))
        assert all(p.own_from % 2 == 0 and p.read_from % 2 == 0 for p in own)
        assert [p.own_from - p.read_from for p in own] == [0, 4, 4, 4]  # 0.3 s at 10 fps, rounded up to the stride
    whole = plan_pieces(cameras, config, chunk_seconds=None, overlap_seconds=3.0)
    assert [(p.read_from, p.own_from, p.own_to) for p in whole] == [(0, 0, 25)] * 2


def test_a_failed_piece_names_its_camera_and_only_a_real_chunk(short_sample):
    cameras = discover_cameras(short_sample)
    config = load_config(None, ["video.max_frames=25"])  # fewer frames than the videos have
    failure = RuntimeError("decoder crashed\nsecond line")
    chunked = plan_pieces(cameras[:1], config, chunk_seconds=0.8, overlap_seconds=0.3)
    assert str(_piece_error(chunked[1], failure)) == (
        f"camera {cameras[0].name} (chunk 2 of 4, frames 8-15): the Ray task failed: RuntimeError: decoder crashed")
    (whole,) = plan_pieces(cameras[:1], config, chunk_seconds=None, overlap_seconds=0.3)
    assert str(_piece_error(whole, CctrackError("no space left on device"))) == f"camera {cameras[0].name}: no space left on device"


def _same_outputs(first: Path, second: Path) -> None:
    a, b = (dict(np.load(folder / "cache" / "tracklets.npz")) for folder in (first, second))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    documents = [json.loads((folder / "identities.json").read_text()) for folder in (first, second)]
    for document in documents:
        document["run"].pop("created", None)
    assert documents[0] == documents[1]


@pytest.fixture(scope="module")
def in_process(short_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("in_process") / "out"
    run(short_sample, out, load_config(None, [*SETTINGS, "export.video=false"]), show_progress=False)
    return out


@pytest.mark.slow
def test_ray_run_gives_the_in_process_tracklets_and_identities(short_sample, in_process, local_ray, tmp_path):
    out = tmp_path / "ray"
    summary = run(short_sample, out, load_config(None, [*SETTINGS, "export.video=false"]), show_progress=False,
                  ray=RaySettings("auto"))
    assert summary.tracklets > 0
    _same_outputs(out, in_process)
    assert not (out / PIECES_FOLDER).exists()  # finished: the pieces are in the cache


@pytest.mark.slow
def test_a_dead_worker_is_retried_and_the_run_still_gives_the_same_result(short_sample, in_process, local_ray, tmp_path,
                                                                          monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(KILL_FIRST_ATTEMPT_ENV, str(markers))
    out = tmp_path / "ray"
    run(short_sample, out, load_config(None, [*SETTINGS, "export.video=false"]), show_progress=False, ray=RaySettings("auto"))
    assert sorted(path.name for path in markers.iterdir()) == ["cam_left.0", "cam_right.0"]  # each piece died once
    _same_outputs(out, in_process)


@pytest.mark.slow
def test_a_restarted_driver_reuses_finished_pieces(short_sample, in_process, local_ray, tmp_path, monkeypatch):
    out = tmp_path / "ray"
    config = load_config(None, [*SETTINGS, "export.video=false"])
    import cctrack.distributed as distributed

    saved = []
    original_save = distributed.PieceStore.save

    def save_then_die_after_the_first(self, piece, result):
        original_save(self, piece, result)
        saved.append(piece.camera.name)
        raise KeyboardInterrupt  # the driver is stopped once one piece is safe

    monkeypatch.setattr(distributed.PieceStore, "save", save_then_die_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        run(discover_cameras(short_sample)[0].path.parent, out, config, show_progress=False, ray=RaySettings("auto"))
    monkeypatch.setattr(distributed.PieceStore, "save", original_save)
    assert len(list((out / PIECES_FOLDER).glob("*.npz"))) == 1
    found = []
    original_load = distributed.PieceStore.load

    def load_and_note(self, piece):
        result = original_load(self, piece)
        found.append((piece.camera.name, result is not None))
        return result

    monkeypatch.setattr(distributed.PieceStore, "load", load_and_note)
    run(short_sample, out, config, show_progress=False, ray=RaySettings("auto"))
    assert found == [(name, name in saved) for name in ("cam_left", "cam_right")]  # only the missing piece ran again
    _same_outputs(out, in_process)


@pytest.mark.slow
def test_bad_input_in_one_camera_is_one_error_line_naming_it(local_ray, tmp_path):
    videos = good_and_truncated_cameras(tmp_path)  # cam_bad fails inside its task, not when opened
    result = runner.invoke(app, ["run", str(videos), "--out", str(tmp_path / "out"), "--ray", "auto", "--quiet", "--no-video",
                                 "--imgsz", "320"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: camera cam_bad: video ") and "truncated or corrupt" in lines[0]
    assert not (tmp_path / "out" / "identities.json").exists()


def test_chunk_seconds_without_ray_is_refused(short_sample, tmp_path):
    result = runner.invoke(app, ["run", str(short_sample), "--out", str(tmp_path / "out"), "--chunk-seconds", "10"])
    assert result.exit_code == 2 and "--chunk-seconds needs --ray" in result.stderr


@pytest.mark.slow
def test_chunks_stitched_keep_per_camera_idf1_within_one_point(tmp_path):
    """The sample's first 15 s in 5 s chunks (3 s overlap) against the same 15 s unchunked, scored on the
    sample's ground truth: stitching at the two borders must not cost identity."""
    frames = 150
    videos = tmp_path / "videos"
    videos.mkdir()
    for camera in ("cam_left", "cam_right"):
        write_video(videos / f"{camera}.mp4", read_sample_frames(camera, frames))
    cameras = discover_cameras(videos)
    config = load_config(None, SETTINGS)
    ground_truth = write_sample_ground_truth(tmp_path / "gt", shared_pets_gt_path())
    for camera in cameras:
        whole = plan_pieces([camera], config, None, 3.0)
        chunks = plan_pieces([camera], config, 5.0, 3.0)
        assert len(chunks) == 3
        scores = []
        for pieces in (whole, chunks):
            results = [track_piece(piece, config, embed=True, whole_camera=len(pieces) == 1) for piece in pieces]
            stitched = stitch(pieces, results, config.tracklets.min_boxes, config.tracklets.crops_per_tracklet)
            rows = np.array([(f + 1, t.track_id, x0, y0, x1 - x0, y1 - y0, 1, -1, -1, -1)
                             for t in stitched.tracklets for f, (x0, y0, x1, y1) in zip(t.frames, t.boxes)], np.float64)
            gt = read_mot_txt(ground_truth[camera.name])
            scores.append(evaluate_camera(gt[gt[:, 0] <= frames], rows)["idf1"])
        assert scores[1] >= scores[0] - 0.01, f"{camera.name}: IDF1 unchunked {scores[0]:.3f}, chunked {scores[1]:.3f}"


def test_without_ray_nothing_of_ray_is_imported(short_sample, tmp_path):
    """A plain run (CLI, pipeline, every stage) in a fresh interpreter never imports Ray."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cctrack.cli import app\n"
        f"result = CliRunner().invoke(app, ['run', {str(short_sample)!r}, '--out', {str(tmp_path / 'out')!r}, '--max-frames', '4',"
        " '--no-video', '--quiet', '--imgsz', '320'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert not [name for name in sys.modules if name == 'ray' or name.startswith('ray.')], 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
