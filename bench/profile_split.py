"""Where a `cctrack run` spends its wall time: decode, detect, track, crop, embed, link, the rest.

The run goes through `cctrack.pipeline.run` in this process under cProfile, and each stage's time is the
cumulative time of the functions that do it (STAGES). Decoding runs in reader threads, which cProfile does
not see: what the main thread waits for frames (`Prefetched.__next__`) is the decoding the pipeline could
not hide behind detection, and that is what "decode" reports. Likewise tracklets are embedded in a worker
thread as they end (cctrack.embed_worker): "embed" is what was left to embed after tracking, and "embed
(waiting for the worker)" what the main thread waited for it. Shares are of the run's wall time.

    python -m bench.profile_split [VIDEO_DIR] [--max-seconds 20] [--set key=value ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

from bench.record import REPOSITORY

# Stage -> (file suffix, function name) pairs whose cumulative time is that stage's.
STAGES = {
    "decode (not hidden by the reader threads)": [("cctrack/prefetch.py", "__next__")],
    "detect": [("cctrack/detect.py", "detect")],
    "track": [("cctrack/track/tracker.py", "update")],
    "crop": [("cctrack/tracklets.py", "add")],
    "embed": [("cctrack/embed.py", "embed_tracklets")],
    "embed (waiting for the worker)": [("cctrack/embed_worker.py", "finish"), ("cctrack/embed_worker.py", "submit")],
    "link": [("cctrack/link/__init__.py", "link_tracklets")],
    "write (crops, caches, exports)": [("cctrack/cache.py", "save_tracklets"), ("cctrack/track/checkpoint.py", "save"),
                                       ("cctrack/mot.py", "write_mot_files"), ("cctrack/export.py", "write_identities"),
                                       ("cctrack/report.py", "write_report")],
    "load models": [("cctrack/detect.py", "__init__"), ("cctrack/embed.py", "load_embedder")],
    "choose the detector input size (probe)": [("cctrack/detector_size.py", "choose_image_size")],
}


def profile_split(video_dir: Path, settings: list[str]) -> dict:
    """{stage: seconds}, the wall time, and each stage's share of it, for one in-process run."""
    from cctrack.config import load_config
    from cctrack.pipeline import run

    config = load_config(None, ["export.video=false", *settings])
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        profiler.enable()
        run(video_dir, Path(scratch) / "out", config, show_progress=False)
        profiler.disable()
        wall = time.perf_counter() - started
    statistics = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, primitive, total, cumulative, callers)
    seconds = {}
    for stage, functions in STAGES.items():
        seconds[stage] = sum(cumulative for (file, _, name), (_, _, _, cumulative, _) in statistics.items()
                             if any(file.endswith(suffix) and name == function for suffix, function in functions))
    seconds["other"] = max(0.0, wall - sum(seconds.values()))
    return {"wall_seconds": wall, "seconds": seconds, "share": {stage: value / wall for stage, value in seconds.items()}}


def format_split(split: dict) -> str:
    lines = [f"wall {split['wall_seconds']:.1f} s"]
    lines += [f"  {stage:45s} {split['seconds'][stage]:7.1f} s  {100 * share:5.1f}%" for stage, share in split["share"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video_dir", nargs="?", type=Path, default=REPOSITORY / "samples" / "pets09")
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--json", type=Path, default=None, help="also write the split here (bench.record)")
    arguments = parser.parse_args()
    settings = [f"video.max_seconds={arguments.max_seconds}", *arguments.settings]
    split = profile_split(arguments.video_dir, settings)
    print(format_split(split))
    if arguments.json is not None:
        from bench.record import write_record

        write_record(arguments.json, {"video_dir": str(arguments.video_dir), "settings": settings, **split})
    print(json.dumps(split))


if __name__ == "__main__":
    main()
