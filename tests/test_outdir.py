"""An output folder belongs to one run (cctrack.outdir): other videos are refused, one command at a time,
stale locks are taken over, and a cache is only re-used for what made it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cctrack import cache, outdir
from cctrack.cli import app
from cctrack.outdir import LOCK_NAME
from cctrack.video import Camera
from tests.conftest import read_sample_frames, write_video

runner = CliRunner()


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def run(video_dir: Path, out: Path, *extra: str):
    return invoke("run", video_dir, "--out", out, "--max-frames", "8", "--no-video", "--no-link", "--quiet", *extra)


def one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


def snapshot(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def two_footages(tmp_path_factory) -> tuple[Path, Path]:
    """The sample's first 8 frames, and the same frames mirrored: two different sets of videos."""
    root = tmp_path_factory.mktemp("footage")
    plain, mirrored = root / "plain", root / "mirrored"
    for folder, flip in ((plain, False), (mirrored, True)):
        folder.mkdir()
        for camera in ("cam_left", "cam_right"):
            frames = read_sample_frames(camera, 8)
            write_video(folder / f"{camera}.mp4", [frame[:, ::-1].copy() if flip else frame for frame in frames])
    return plain, mirrored


def test_a_run_of_other_videos_is_refused_before_any_work_and_replaced_only_with_overwrite(two_footages, tmp_path):
    plain, mirrored = two_footages
    out = tmp_path / "out"
    assert run(plain, out).exit_code == 0
    (out / "my_notes.txt").write_text("the analyst's own file")
    before = snapshot(out)
    one_error_line(run(mirrored, out), "holds a run of other videos", "--overwrite")
    assert snapshot(out) == before
    result = run(mirrored, out, "--overwrite")
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "cache" / "inputs.json").read_text())["inputs"]
    assert {Path(entry["path"]).parent for entry in recorded} == {mirrored.resolve()}
    assert (out / "my_notes.txt").read_text() == "the analyst's own file"  # only cctrack's outputs go
    assert not (out / LOCK_NAME).exists()


def test_a_rerun_on_the_same_videos_replaces_its_own_outputs(two_footages, tmp_path):
    plain, _ = two_footages
    out = tmp_path / "out"
    assert invoke("run", plain, "--out", out, "--max-frames", "8", "--quiet").exit_code == 0
    assert (out / "videos").is_dir() and (out / "identities.json").is_file()
    assert run(plain, out).exit_code == 0  # no video, no link this time
    assert not (out / "videos").exists() and not (out / "identities.json").exists()  # nothing stale is left


def test_a_folder_that_is_not_a_run_is_never_written_into(two_footages, tmp_path):
    plain, _ = two_footages
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    one_error_line(run(plain, tmp_path / "home"), "not empty and holds no cctrack run")
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["thesis.tex"]


def test_empty_out_and_out_inside_the_video_folder_are_refused(two_footages, tmp_path, monkeypatch):
    plain, _ = two_footages
    monkeypatch.chdir(tmp_path)
    one_error_line(run(plain, ""), "--out is empty")
    assert list(tmp_path.iterdir()) == []
    one_error_line(run(plain, plain / "out"), "inside the video folder")
    assert not (plain / "out").exists()


def test_a_second_command_fails_at_once_while_a_run_holds_the_folder(two_footages, tmp_path):
    plain, _ = two_footages
    out = tmp_path / "out"
    assert run(plain, out).exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cctrack.outdir import output_lock\n"
         "with output_lock(sys.argv[1], 'run'):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        one_error_line(run(plain, out), "in use by `cctrack run`", f"pid {holder.pid}")
        one_error_line(invoke("link", out, "--quiet"), "in use by `cctrack run`")
        assert time.perf_counter() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(two_footages, tmp_path):
    plain, _ = two_footages
    out = tmp_path / "out"
    assert run(plain, out).exit_code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = {"pid": dead.pid, "host": socket.gethostname(), "command": "run", "started": "earlier"}
    (out / LOCK_NAME).write_text(json.dumps(lock))
    result = run(plain, out)
    assert result.exit_code == 0, result.output
    assert not (out / LOCK_NAME).exists()


def test_cached_embeddings_are_not_reused_for_other_tracklets(two_footages, tmp_path):
    plain, mirrored = two_footages
    out = tmp_path / "out"
    assert invoke("run", plain, "--out", out, "--max-frames", "8", "--no-video", "--quiet").exit_code == 0
    info = cache.load_run_info(out)
    count = len(cache.load_tracklets(out, info))
    assert cache.load_embeddings(out, count) is not None
    # Another run's tracklets.npz with the same number of tracklets: the embeddings are not theirs.
    arrays = dict(np.load(out / "cache" / "tracklets.npz"))
    arrays["boxes"] = arrays["boxes"] + 1.0
    np.savez(out / "cache" / "tracklets.npz", **arrays)
    assert cache.load_embeddings(out, count) is None


def test_a_run_warns_when_the_disk_is_likely_too_small(two_footages, tmp_path, monkeypatch):
    plain, _ = two_footages
    free = {"bytes": 10**12}
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda path: shutil_usage(free["bytes"]))
    result = run(plain, tmp_path / "roomy")
    assert result.exit_code == 0 and "warning" not in result.stderr
    # 8 frames at 10 fps of 2 cameras is 1.6 camera-seconds: about 18 kB of cache without videos.
    free["bytes"] = 1000
    result = run(plain, tmp_path / "tight")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "MB free; this run may need about" in warning[0]
    hour = [3600.0, 3600.0]
    cameras = [Camera(f"cam{i}", tmp_path / f"cam{i}.mp4", 25.0, 90000, 1920, 1080) for i in range(2)]
    assert outdir.space_warning(tmp_path, cameras, hour, with_videos=True).endswith("a rerun resumes")
    assert "(--no-video writes far less)" in outdir.space_warning(tmp_path, cameras, hour, with_videos=True)
    # An hour of two 1080p cameras: their videos and the mosaic are most of it; without videos, the cache.
    free["bytes"] = 5 * 10**9  # the videos need about 6.7 GB, the cache 90 MB
    assert outdir.space_warning(tmp_path, cameras, hour, with_videos=True) is not None
    assert outdir.space_warning(tmp_path, cameras, hour, with_videos=False) is None


def shutil_usage(free: int):
    import collections

    return collections.namedtuple("usage", "total used free")(10 * free, 9 * free, free)
