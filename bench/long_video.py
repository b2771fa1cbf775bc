"""Benchmark: memory and disk of `cctrack run` as the footage gets longer (1k vs 10k vs 100k frames).

The footage is the sample's cam_left played forward and backward in turn (ping-pong, so that people do not
jump at a loop point) up to N frames, one camera. Each length runs as a user runs it, a fresh process:
`cctrack run DIR --out OUT --quiet` (with videos). Reported per length:
  - peak RSS while tracking (sampled from /proc every 0.2 s until cache/tracklets.npz appears) and peak RSS of
    the whole run (the kernel's maximum for the process, os.wait4);
  - disk: cache/ + crops/, and videos/, in MB and in MB per camera-hour of footage;
  - wall time and frames/s.
Memory should stay flat in the footage length, disk grow linearly.

    python -m bench.long_video [--frames 1000,10000,100000] [--imgsz 960] [--out bench/results/long_video.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.record import REPOSITORY, write_record

SOURCE = REPOSITORY / "samples" / "pets09" / "cam_left.mp4"


def write_looped_video(path: Path, frame_count: int, source: Path = SOURCE) -> float:
    """`frame_count` frames of `source` played forward, backward, forward, ...; returns its fps."""
    capture = cv2.VideoCapture(str(source))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    cycle = frames + frames[-2:0:-1]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for index in range(frame_count):
        writer.write(cycle[index % len(cycle)])
    writer.release()
    return fps


def folder_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6 if folder.is_dir() else 0.0


def rss_megabytes(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(video_dir: Path, out: Path, image_size: int) -> dict:
    environment = {**os.environ, "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cctrack.cli", "run", str(video_dir), "--out", str(out), "--quiet",
                                "--imgsz", str(image_size)], cwd=REPOSITORY, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tracking_peak, tracking_seconds = 0.0, None
    while process.poll() is None:
        if tracking_seconds is None:
            if (out / "cache" / "tracklets.npz").is_file():
                tracking_seconds = time.perf_counter() - started
            else:
                tracking_peak = max(tracking_peak, rss_megabytes(process.pid))
        time.sleep(0.2)
    # poll() reaped the child; its peak RSS is in the children's rusage only as a running maximum, so
    # every length runs in its own bench process (main() re-launches itself).
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"cctrack run failed: {process.stderr.read().decode().strip()}")
    return {"wall_seconds": wall, "tracking_seconds": tracking_seconds, "peak_rss_tracking_mb": tracking_peak,
            "cache_and_crops_mb": folder_megabytes(out / "cache") + folder_megabytes(out / "crops"),
            "videos_mb": folder_megabytes(out / "videos"),
            "tracklets": len(np.load(out / "cache" / "tracklets.npz")["track_id"])}


def one_length(frame_count: int, image_size: int) -> dict:
    import resource

    with tempfile.TemporaryDirectory() as scratch:
        video_dir = Path(scratch) / "videos"
        video_dir.mkdir()
        fps = write_looped_video(video_dir / "cam_left.mp4", frame_count)
        result = measure(video_dir, Path(scratch) / "out", image_size)
    hours = frame_count / fps / 3600
    result.update({
        "frames": frame_count,
        "frames_per_second": frame_count / result["wall_seconds"],
        "peak_rss_run_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "cache_and_crops_mb_per_camera_hour": result["cache_and_crops_mb"] / hours,
        "videos_mb_per_camera_hour": result["videos_mb"] / hours,
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="1000,10000,100000", help="comma-separated lengths")
    parser.add_argument("--imgsz", type=int, default=960, help="detector inference size")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "long_video.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one length, print JSON
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(one_length(arguments.one, arguments.imgsz)))
        return
    rows = []
    for frame_count in (int(value) for value in arguments.frames.split(",")):
        # A fresh process per length: the kernel's peak RSS of children is a maximum over all of them.
        output = subprocess.run([sys.executable, "-m", "bench.long_video", "--one", str(frame_count), "--imgsz",
                                 str(arguments.imgsz)], cwd=REPOSITORY, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"{frame_count} frames: {row['wall_seconds']:.0f} s, peak RSS tracking {row['peak_rss_tracking_mb']:.0f} MB, "
              f"whole run {row['peak_rss_run_mb']:.0f} MB; cache+crops {row['cache_and_crops_mb']:.1f} MB, "
              f"videos {row['videos_mb']:.1f} MB", flush=True)
    write_record(arguments.out, {"load_average_at_end": os.getloadavg(), "input": "samples/pets09/cam_left.mp4 ping-pong looped (320x576, 10 fps), one camera",
                                 "detector_image_size": arguments.imgsz, "lengths": rows})


if __name__ == "__main__":
    main()
