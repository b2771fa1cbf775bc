"""Benchmark: finishing a `cctrack run` killed halfway through tracking, against running it again from
scratch (what a rerun did before checkpoints), on the bundled sample.

Each repeat, as a user runs it (`cctrack run SAMPLE --out OUT --no-video --quiet`, a fresh process):
  1. a full run into a new folder: its wall time, and when its tracking finished (cache/tracklets.npz);
  2. a run into another new folder, SIGKILLed at `--kill-at` (0.5) of that tracking time;
  3. the same command again into that folder: the time to finish after the kill.
The resumed result is checked equal to the full run's (tracklets and identities.json, apart from its
timestamp). Also timed: a full run with checkpoints off (video.checkpoint_seconds=0), their cost.

    python -m bench.resume [--repeats 3] [--kill-at 0.5] [--max-seconds S] [--out bench/results/resume.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.record import REPOSITORY, write_record

SAMPLE = REPOSITORY / "samples" / "pets09"


def start_run(out: Path, extra: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
    return subprocess.Popen([sys.executable, "-m", "cctrack.cli", "run", str(SAMPLE), "--out", str(out), "--no-video",
                             "--quiet", *extra], cwd=REPOSITORY, env=environment, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> None:
    _, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"cctrack run failed ({process.returncode}): {errors.strip()}")


def full_run(out: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, seconds until tracking finished) of one uninterrupted run."""
    started = time.perf_counter()
    process = start_run(out, extra)
    tracked = None
    while process.poll() is None:
        if tracked is None and (out / "cache" / "tracklets.npz").is_file():
            tracked = time.perf_counter() - started
        time.sleep(0.05)
    finish(process)
    return time.perf_counter() - started, tracked if tracked is not None else float("nan")


def killed_then_resumed(out: Path, kill_after: float, extra: list[str]) -> tuple[float, float]:
    """(video seconds the last checkpoint held at the kill, wall seconds of the rerun that finishes)."""
    process = start_run(out, extra)
    time.sleep(kill_after)
    if process.poll() is not None:
        raise SystemExit("the run finished before the kill; lower --kill-at")
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = out / "cache" / "resume" / "state.json"
    saved = json.loads(state.read_text())["video_seconds"] if state.is_file() else 0.0
    started = time.perf_counter()
    finish(start_run(out, extra))
    return saved, time.perf_counter() - started


def same_result(first: Path, second: Path) -> bool:
    arrays = [dict(np.load(folder / "cache" / "tracklets.npz")) for folder in (first, second)]
    documents = [json.loads((folder / "identities.json").read_text()) for folder in (first, second)]
    for document in documents:
        document.get("run", {}).pop("created", None)
        document.pop("created", None)
    return all(np.array_equal(arrays[0][k], arrays[1][k]) for k in arrays[0]) and documents[0] == documents[1]


def median_range(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the full run's tracking time")
    parser.add_argument("--max-seconds", type=float, default=None, help="of each camera (default: all of the sample)")
    parser.add_argument("--overhead", action="store_true", help="also time a full run with checkpoints off, per repeat")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "resume.json")
    arguments = parser.parse_args()
    extra = ["--max-seconds", str(arguments.max_seconds)] if arguments.max_seconds else []

    rows = {"full": [], "tracking": [], "resumed": [], "saved_video_seconds": [], "no_checkpoints": [], "same": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(arguments.repeats):
            full, resumed, plain = (Path(scratch) / f"{name}{repeat}" for name in ("full", "resumed", "plain"))
            wall, tracking = full_run(full, extra)
            saved, finish_seconds = killed_then_resumed(resumed, arguments.kill_at * tracking, extra)
            no_checkpoints = full_run(plain, [*extra, "--set", "video.checkpoint_seconds=0"])[0] if arguments.overhead else float("nan")
            rows["full"].append(wall)
            rows["tracking"].append(tracking)
            rows["resumed"].append(finish_seconds)
            rows["saved_video_seconds"].append(saved)
            rows["no_checkpoints"].append(no_checkpoints)
            rows["same"].append(same_result(full, resumed))
            print(f"repeat {repeat + 1}: full {wall:.1f} s (tracking {tracking:.1f} s), killed at {arguments.kill_at:.0%} "
                  f"of tracking (checkpoint at {saved:.0f} s of video), finished in {finish_seconds:.1f} s; "
                  f"no checkpoints {no_checkpoints:.1f} s; same result: {rows['same'][-1]}", flush=True)
            for folder in (full, resumed, plain):
                if folder.exists():
                    shutil.rmtree(folder)
    full, resumed = median_range(rows["full"]), median_range(rows["resumed"])
    record = {
        "input": f"samples/pets09 (2 cameras, 795 frames each at 10 fps){', ' + str(arguments.max_seconds) + ' s each' if extra else ''}",
        "kill_at_fraction_of_tracking": arguments.kill_at,
        "checkpoint_seconds": "the default (configs/default.yaml video.checkpoint_seconds)",
        "full_run_seconds": full,
        "tracking_seconds": median_range(rows["tracking"]),
        "finish_after_kill_seconds": resumed,
        "checkpoint_video_seconds_at_kill": rows["saved_video_seconds"],
        "finish_after_kill_vs_rerun_from_scratch": resumed["median"] / full["median"],
        **({"full_run_without_checkpoints_seconds": median_range(rows["no_checkpoints"]),
            "checkpoint_cost": full["median"] / statistics.median(rows["no_checkpoints"]) - 1} if arguments.overhead else {}),
        "resumed_result_equals_full_run": all(rows["same"]),
    }
    record["load_average_at_end"] = os.getloadavg()  # other work on the machine slows every figure
    write_record(arguments.out, record)
    print(json.dumps({k: v for k, v in record.items() if k not in ("machine",)}, indent=1))


if __name__ == "__main__":
    main()
