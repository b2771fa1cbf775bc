"""Benchmark: `cctrack run` in one process against `cctrack run --ray`, and what more workers would give.

1. This machine: 4 cameras (the sample's two, and copies of both with every colour's hue rotated by 90
   degrees), the first --max-seconds of each. In-process with all cores (as `cctrack run` runs) against
   Ray with 2 single-threaded workers (a local 2-CPU instance, `--ray local`); frames/s of each and the
   ratio. Both are fresh processes, as a user runs them, without videos. Also Ray with the cameras cut
   in --chunk-seconds chunks, and every run's per-camera IDF1 on the sample's ground truth: stitching
   must not cost identity.
2. Past this machine, on paper from measured parts:
   - the cost of one camera-hour on one worker: worker-seconds per camera-second of the Ray run (its
     wall time x workers / camera-seconds), so it includes each piece's model loading;
   - Ray's overhead per task: a local instance's round trip of an empty task (median of 200), and each
     piece's model loading (measured: a task that only loads the detector and the re-id model);
   - the central link: bench/results/link.json's 10k and 100k tracklets (with a layout), extended to 1M
     by the power law through those two points (a projection, said as such), at the tracklets per
     camera-hour this run found.
   The wall time for 1,000 camera-hours in 10-minute chunks on 10, 100 and 1,000 workers: pieces run in
   waves of `workers`; then one link.

    python -m bench.scale [--max-seconds 30] [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.record import REPOSITORY, write_record
from bench.stress import make_hue_rotated_copy
from cctrack.evaluate import evaluate_run

SAMPLE = REPOSITORY / "samples" / "pets09"
CHUNK_SECONDS = 600.0  # the projection's chunk: 10 minutes of one camera


def four_cameras(folder: Path) -> Path:
    """The sample's cameras and hue-rotated copies of both, as one folder of 4 videos."""
    videos = folder / "videos"
    videos.mkdir()
    for camera in ("cam_left", "cam_right"):
        (videos / f"{camera}.mp4").symlink_to(SAMPLE / f"{camera}.mp4")
        rotated = folder / f"rotated_{camera}"
        make_hue_rotated_copy(SAMPLE, rotated, camera, 90.0)
        (videos / f"{camera}_hue90.mp4").symlink_to(rotated / f"{camera}.mp4")
    return videos


def four_camera_ground_truth(folder: Path) -> Path:
    """The sample's ground truth for the 4 cameras (a hue-rotated copy has its original's)."""
    from cctrack.sample import write_sample_ground_truth

    for camera in write_sample_ground_truth(folder):
        shutil.copytree(folder / camera, folder / f"{camera}_hue90")
    return folder


def timed_run(videos: Path, out: Path, max_seconds: float, extra: list[str], threads: int | None) -> float:
    environment = {**os.environ, "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cctrack.cli", "run", str(videos), "--out", str(out), "--no-video", "--quiet",
                           "--max-seconds", str(max_seconds), *extra], cwd=REPOSITORY, env=environment,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cctrack run failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def task_overheads() -> dict:
    """Ray's round trip of an empty task, and one piece's model loading, on a local instance."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=1)
        def empty() -> None:
            return None

        ray.get([empty.remote() for _ in range(4)])  # workers started
        round_trips = []
        for _ in range(200):
            started = time.perf_counter()
            ray.get(empty.remote())
            round_trips.append(time.perf_counter() - started)

        @ray.remote(num_cpus=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "True"}})
        def load_models() -> float:
            import torch

            from cctrack.config import load_config
            from cctrack.detect import PersonDetector
            from cctrack.embed import load_embedder

            started = time.perf_counter()
            config = load_config(None, [])
            PersonDetector(config.detector, torch.device("cpu"))
            load_embedder(None, torch.device("cpu"))
            return time.perf_counter() - started

        loads = ray.get([load_models.remote() for _ in range(2)])
    finally:
        ray.shutdown()
    return {"empty_task_round_trip_seconds": statistics.median(round_trips), "model_loading_seconds": statistics.median(loads)}


def link_seconds(tracklets: float) -> tuple[float, str]:
    """Central link time for this many tracklets: measured (bench/results/link.json, with a layout) at
    10k and 100k, a power law through them beyond."""
    results = json.loads((REPOSITORY / "bench" / "results" / "link.json").read_text())["results"]
    measured = {row["tracklets"]: row["seconds"] for row in results if row["method"] == "ours"}
    (small, small_seconds), (large, large_seconds) = sorted(measured.items())[-2:]
    exponent = math.log(large_seconds / small_seconds) / math.log(large / small)
    if tracklets in measured:
        return measured[tracklets], "measured"
    return large_seconds * (tracklets / large) ** exponent, f"projected (power law, exponent {exponent:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=30.0, help="of each camera's video")
    parser.add_argument("--chunk-seconds", type=float, default=10.0, help="the chunked Ray run's chunks")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "scale.json")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        videos = four_cameras(Path(scratch))
        frames = 4 * round(arguments.max_seconds * 10)  # the sample is 10 fps
        in_process = timed_run(videos, Path(scratch) / "in_process", arguments.max_seconds, [], threads=None)
        on_ray = timed_run(videos, Path(scratch) / "ray", arguments.max_seconds, ["--ray", "local"], threads=1)
        chunked = timed_run(videos, Path(scratch) / "chunked", arguments.max_seconds,
                            ["--ray", "local", "--chunk-seconds", str(arguments.chunk_seconds)], threads=1)
        tracklets = len(np.load(Path(scratch) / "ray" / "cache" / "tracklets.npz")["track_id"])
        ground_truth = four_camera_ground_truth(Path(scratch) / "gt")
        idf1 = {name: evaluate_run(ground_truth, Path(scratch) / name).per_camera
                for name in ("in_process", "ray", "chunked")}
    overheads = task_overheads()
    camera_seconds = 4 * arguments.max_seconds
    worker_seconds_per_camera_second = on_ray * 2 / camera_seconds
    tracklets_per_camera_hour = tracklets / camera_seconds * 3600
    projection = []
    hours = 1000
    pieces = math.ceil(hours * 3600 / CHUNK_SECONDS)
    piece_seconds = CHUNK_SECONDS * worker_seconds_per_camera_second + overheads["model_loading_seconds"]
    link, link_source = link_seconds(hours * tracklets_per_camera_hour)
    for workers in (10, 100, 1000):
        per_camera = math.ceil(pieces / workers) * piece_seconds
        projection.append({"workers": workers, "pieces": pieces, "per_camera_work_hours": per_camera / 3600,
                           "link_hours": link / 3600, "wall_hours": (per_camera + link) / 3600,
                           "link_share": link / (per_camera + link)})
    record = {
        "input": f"4 cameras (samples/pets09 and hue-rotated copies), first {arguments.max_seconds:g} s each, 10 fps, no videos",
        "this_machine": {
            "in_process_seconds": in_process, "in_process_frames_per_second": frames / in_process,
            "ray_2_workers_seconds": on_ray, "ray_2_workers_frames_per_second": frames / on_ray,
            "ray_vs_in_process": in_process / on_ray,
            f"ray_2_workers_chunks_of_{arguments.chunk_seconds:g}_s_seconds": chunked,
        },
        "per_camera_idf1": {camera: {name: idf1[name][camera]["idf1"] for name in idf1} for camera in idf1["in_process"]},
        "per_camera_idf1_note": "the sample's ground truth scores the hue-rotated copies too (same people, same frames)",
        "parts": {**overheads, "worker_seconds_per_camera_second": worker_seconds_per_camera_second,
                  "tracklets_per_camera_hour": tracklets_per_camera_hour},
        "projection_1000_camera_hours": {"chunk_seconds": CHUNK_SECONDS, "link_tracklets": hours * tracklets_per_camera_hour,
                                         "link_seconds": link, "link_source": link_source, "rows": projection},
    }
    record["load_average_at_end"] = os.getloadavg()  # other work on the machine slows every figure
    write_record(arguments.out, record)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
