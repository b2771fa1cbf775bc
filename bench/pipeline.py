"""Whole-pipeline benchmark on the bundled sample.

1. Speed: frames per second of `cctrack run` (detection, tracking, crops, embedding, linking; no video
   writing) against ultralytics' own `model.track(..., tracker="bytetrack.yaml")` on the same videos, same
   weights, same inference size (what `detector.image_size: auto` chooses for those cameras and that many
   frames, checked against the run's record), same device,
   measured in this run: on the sample's 2 cameras, and on 4 (the sample and hue-rotated copies of both,
   where batching across cameras can show), --repeats rounds each. Then where cctrack's wall time goes
   (bench.profile_split: decode, detect, track, crop, embed, link, write, load).
2. Accuracy: multi-camera IDF1 (and per-camera MOTA / IDF1) of the default run against the sample's
   ground truth, with the re-id descriptor in use and with the colour-histogram baseline, on the sample and
   on a stress copy whose cam_right has its hue rotated by 90 degrees (clothes change colour).

Writes bench/results/pipeline.json (bench.record: command, machine, date); the runs go to --out.

    python -m bench.pipeline [--frames N] [--device auto] [--out bench/results/pipeline] [--speed-only]
                             [--repeats 3] [--cameras 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.profile_split import format_split
from bench.record import REPOSITORY, write_record
from bench.scale import four_cameras
from bench.stress import make_hue_rotated_copy
from cctrack import cache
from cctrack.config import load_config
from cctrack.detect import DetectorSettings, PersonDetector, bundled_weights_path
from cctrack.detector_size import choose_image_size
from cctrack.device import resolve_device
from cctrack.evaluate import evaluate_run
from cctrack.pipeline import relink, run
from cctrack.sample import write_sample_ground_truth
from cctrack.video import discover_cameras

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "pets09"


def ultralytics_track(video_dir: Path, frames: int | None, image_size: int, device: str) -> int:
    """Frames that ultralytics' YOLO.track with ByteTrack processed over every camera video."""
    from ultralytics import YOLO

    total_frames = 0
    for camera in discover_cameras(video_dir):
        model = YOLO(str(bundled_weights_path()))  # a fresh model: trackers persist per model
        stream = model.track(
            source=str(camera.path), tracker="bytetrack.yaml", imgsz=image_size, conf=0.1, classes=[0],
            device=device, half=device != "cpu", stream=True, verbose=False, persist=True,
        )
        count = 0
        for _ in stream:
            count += 1
            if frames is not None and count >= frames:
                break
        total_frames += count
    return total_frames


def cctrack_run(video_dir: Path, out_dir: Path, frames: int | None, device: str) -> int:
    """Frames that the whole `cctrack run`, without video writing, processed."""
    overrides = [f"device={device}", "export.video=false"]
    if frames is not None:
        overrides.append(f"video.max_frames={frames}")
    config = load_config(None, overrides)
    summary = run(video_dir, out_dir, config, show_progress=False)
    print(f"  {summary.tracklets} tracklets, {summary.identities} identities ({summary.multi_camera_identities} in both cameras)")
    return frames_processed(out_dir)


def run_image_size(out_dir: Path) -> int:
    """The detector input size the run in out_dir used (its record)."""
    return int(cache.load_run_info(out_dir).config["detector"]["image_size"])


def auto_image_size(video_dir: Path, frames: int | None, device: str) -> int:
    """The size `detector.image_size: auto` chooses for these cameras and this many frames per camera (the
    probe sees only the frames the run will process), or the configured size; the peer gets the same."""
    image_size = load_config(None).detector.image_size
    if image_size != "auto":
        return int(image_size)
    detector = PersonDetector(DetectorSettings(runtime="torch"), device)
    return choose_image_size(discover_cameras(video_dir), detector.count_people, frames).image_size


def frames_processed(out_dir: Path) -> int:
    """Frames of all cameras that the run in `out_dir` processed, by its identities.json."""
    cameras = json.loads((out_dir / "identities.json").read_text())["run"]["cameras"]
    return sum(camera["frames_processed"] for camera in cameras)


def scores(gt_dir: Path, out_dir: Path) -> dict:
    report = evaluate_run(gt_dir, out_dir)
    return {
        "multi_camera_idf1": report.multi_camera["idf1"],
        "per_camera": {name: {"mota": m["mota"], "idf1": m["idf1"], "id_switches": m["id_switches"]} for name, m in report.per_camera.items()},
    }


THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def relink_with(out_dir: Path, descriptor: str, device: str, threshold: float | None = None) -> None:
    overrides = [f"reid.descriptor={descriptor}", f"device={device}", "export.video=false"]
    if threshold is not None:
        overrides.append(f"link.distance_threshold={threshold}")
    relink(out_dir, load_config(None, overrides), show_progress=False)


def descriptor_scores(gt_dir: Path, out_dir: Path, descriptor: str, device: str) -> dict:
    """Scores at the default link threshold, and the best multi-camera IDF1 over a threshold grid
    (an oracle choice on the test data itself: an upper bound for the descriptor, not a fair number)."""
    relink_with(out_dir, descriptor, device)
    result = scores(gt_dir, out_dir)
    sweep = {}
    for threshold in THRESHOLDS:
        relink_with(out_dir, descriptor, device, threshold)
        sweep[threshold] = scores(gt_dir, out_dir)["multi_camera_idf1"]
    best = max(sweep, key=sweep.get)
    return {**result, "threshold_sweep": sweep, "best_threshold": best, "best_multi_camera_idf1": sweep[best]}


def scores_without_linking(gt_dir: Path, out_dir: Path, device: str) -> dict:
    """Every tracklet its own identity: what cross-camera linking has to improve on."""
    relink_with(out_dir, "colour_histogram", device, threshold=1e-9)
    return scores(gt_dir, out_dir)


def rates(work: Callable[[], int]) -> dict:
    """Frames per wall second and per CPU second (this process and its children) of `work()`, which
    returns the frames it processed; CPU seconds too because the machine may be shared."""

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
    frames = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu + children_cpu() - child
    return {"frames": frames, "fps": frames / wall, "frames_per_cpu_second": frames / cpu,
            "wall_seconds": wall, "cpu_seconds": cpu}


def ultralytics_track_process(video_dir: Path, frames: int | None, image_size: int, device: str) -> int:
    """ultralytics_track in a fresh Python process, as a user runs it; the frames it processed."""
    code = ("from pathlib import Path; from bench.pipeline import ultralytics_track; "
            f"print(ultralytics_track(Path({str(video_dir)!r}), {frames!r}, {image_size!r}, {device!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"ultralytics track failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip().splitlines()[-1])


def cctrack_run_process(video_dir: Path, out_dir: Path, frames: int | None, device: str) -> int:
    """`cctrack run --no-video` in a fresh process, as a user runs it; the frames it processed."""
    command = [sys.executable, "-m", "cctrack.cli", "run", str(video_dir), "--out", str(out_dir), "--no-video", "--quiet",
               "--device", device] + (["--max-frames", str(frames)] if frames is not None else [])
    done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"cctrack run failed: {done.stderr.strip()[-500:]}")
    return frames_processed(out_dir)


def speed(video_dir: Path, out_dir: Path, frames: int | None, image_size: int, device: str, repeats: int) -> dict:
    """`repeats` rounds of one run each, model loading included (the detector dominates and a run takes
    minutes), ultralytics first in each round; the median of each side and of the per-round ratios."""
    rounds = []
    for number in range(repeats):
        print(f"round {number + 1}/{repeats}: ultralytics model.track (bytetrack.yaml) ...", flush=True)
        ultralytics = rates(lambda: ultralytics_track_process(video_dir, frames, image_size, device))
        print(f"round {number + 1}/{repeats}: cctrack run ...", flush=True)
        shutil.rmtree(out_dir, ignore_errors=True)  # a fresh run each round, not a resumed one
        ours = rates(lambda: cctrack_run_process(video_dir, out_dir, frames, device))
        if run_image_size(out_dir) != image_size:  # the comparison holds only at one size
            raise SystemExit(f"cctrack ran at {run_image_size(out_dir)} px, the peer at {image_size} px")
        rounds.append({"cctrack_run": ours, "ultralytics_track": ultralytics,
                       "ratio_cctrack_over_ultralytics": {key: ours[key] / ultralytics[key] for key in ("fps", "frames_per_cpu_second")},
                       "load_average_1min": round(os.getloadavg()[0], 2)})

    def median(side: str, key: str) -> float:
        return statistics.median(entry[side][key] for entry in rounds)

    summary = {side: {key: median(side, key) for key in ("fps", "frames_per_cpu_second")} | {"frames": rounds[0][side]["frames"]}
               for side in ("cctrack_run", "ultralytics_track")}
    summary["ratio_cctrack_over_ultralytics"] = {
        key: {"median": median("ratio_cctrack_over_ultralytics", key),
              "min": min(entry["ratio_cctrack_over_ultralytics"][key] for entry in rounds),
              "max": max(entry["ratio_cctrack_over_ultralytics"][key] for entry in rounds)}
        for key in ("fps", "frames_per_cpu_second")}
    return {"image_size": image_size, **summary, "rounds": rounds}


def accuracy(out: Path, frames: int | None, device: str, scratch: Path) -> dict:
    """Scores of the sample run in `out/sample` and of a new run on its hue-rotated copy."""
    gt_dir = scratch / "gt"
    write_sample_ground_truth(gt_dir)
    stress_dir = make_hue_rotated_copy(SAMPLE_DIR, scratch / "stress")
    scored = {}
    for name, video_dir in [("sample", SAMPLE_DIR), ("hue_rotated_cam_right", stress_dir)]:
        out_dir = out / name
        if name != "sample":
            print(f"cctrack run on {name} ...")
            cctrack_run(video_dir, out_dir, frames, device)
        reid_model = json.loads((out_dir / "identities.json").read_text())["run"]["models"]["reid"]["description"]
        scored[name] = {
            "no_linking": scores_without_linking(gt_dir, out_dir, device),
            "reid": {"model": reid_model, **descriptor_scores(gt_dir, out_dir, "reid", device)},
            "colour_histogram": descriptor_scores(gt_dir, out_dir, "colour_histogram", device),
        }
        relink_with(out_dir, "reid", device)  # leave the folder as the default run made it
    return scored


def print_results(results: dict) -> None:
    print(f"device {results['device']}, frames per camera: {results['frames_per_camera']}")
    for cameras, speed in results["speed"].items():
        print(f"{cameras} at {speed['image_size']} px: median of {len(speed['rounds'])} rounds{'frames/s':>14s}{'frames/CPU-s':>14s}")
        for label, key in [("cctrack run (no video)", "cctrack_run"), ("ultralytics track + ByteTrack", "ultralytics_track")]:
            print(f"  {label:40s}{speed[key]['fps']:10.2f}{speed[key]['frames_per_cpu_second']:14.2f}")
        ratio = speed["ratio_cctrack_over_ultralytics"]
        print(f"  {'ratio cctrack / ultralytics (min-max)':40s}"
              + "".join(f"{ratio[key]['median']:6.2f} ({ratio[key]['min']:.2f}-{ratio[key]['max']:.2f})" for key in ("fps", "frames_per_cpu_second")))
    if "profile_split" in results:
        print("where cctrack's wall time goes (2 cameras, one run under cProfile):")
        print(format_split(results["profile_split"]))
    if "accuracy" not in results:
        return
    print()
    print("multi-camera IDF1 (default link threshold; in brackets the best over a threshold grid, an oracle)")
    print(f"{'':26s}{'no linking':>12s}{'re-id':>18s}{'colour histogram':>22s}")
    for name, entry in results["accuracy"].items():
        reid, colour = entry["reid"], entry["colour_histogram"]
        print(
            f"{name:26s}{entry['no_linking']['multi_camera_idf1']:12.3f}"
            f"{reid['multi_camera_idf1']:10.3f} ({reid['best_multi_camera_idf1']:.3f})"
            f"{colour['multi_camera_idf1']:14.3f} ({colour['best_multi_camera_idf1']:.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="frames per camera (default: all 795)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline"), help="folder for the runs")
    parser.add_argument("--json", type=Path, default=Path("bench/results/pipeline.json"))
    parser.add_argument("--speed-only", action="store_true", help="skip part 2 (accuracy: bench.linking covers it)")
    parser.add_argument("--repeats", type=int, default=3, help="speed rounds per camera set (median reported)")
    parser.add_argument("--cameras", type=int, nargs="+", choices=[2, 4], default=[2, 4],
                        help="camera sets: 2 = the sample, 4 = the sample and hue-rotated copies of both (bench.scale)")
    args = parser.parse_args()
    device = str(resolve_device(args.device))  # a name: for ultralytics, the config and the JSON
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": device, "frames_per_camera": args.frames or "all",
                     "timing": f"{args.repeats} rounds of one run each, each run a fresh process as users run it (python -c "
                               "with YOLO.track; the cctrack CLI), model loading included, ultralytics first in each "
                               "round; cctrack without video writing; fps per wall second and per CPU second of the "
                               "child process; medians, and the median (min-max) of the per-round ratios",
                     "peer": "ultralytics YOLO.track(tracker='bytetrack.yaml') as its users run it: ultralytics sets torch "
                             "to cores-1 threads on its first predict (1 here), and cctrack's detector restores them"}
    results["speed"] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.cameras:
            videos = SAMPLE_DIR if count == 2 else four_cameras(Path(scratch))
            image_size = auto_image_size(videos, args.frames, device)
            print(f"{count} cameras: detector input {image_size} px on both sides", flush=True)
            results["speed"][f"{count} cameras"] = speed(videos, args.out / f"speed_{count}", args.frames, image_size, device, args.repeats)
    settings = [f"device={device}"] + ([f"video.max_frames={args.frames}"] if args.frames else [])
    # In a fresh process too: a process that has run ultralytics before is not what a user runs.
    command = [sys.executable, "-m", "bench.profile_split", str(SAMPLE_DIR), "--max-seconds", "1e9"]
    command += [part for setting in settings for part in ("--set", setting)]
    done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, check=True)
    results["profile_split"] = json.loads(done.stdout.strip().splitlines()[-1])
    if not args.speed_only:
        with tempfile.TemporaryDirectory() as scratch:
            results["accuracy"] = accuracy(args.out, args.frames, device, Path(scratch))
    print()
    print_results(results)
    write_record(args.json, results, device)


if __name__ == "__main__":
    main()
