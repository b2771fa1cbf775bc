"""The open world, end to end: the default `cctrack run`, then `cctrack adapt` round after round, on two
camera windows of the sample that share no person, played as if recorded at the same time.

tests/test_open_world.py checks the linker on ground-truth tracklets of such windows. This bench runs
what a user runs: detection, tracking, linking on the real videos, then self-training (`cctrack adapt
--rounds R` is R chained rounds; bench.adapt scores the same chain on the full sample). Because the two
windows share nobody, every cross-camera link is false, whatever the tracker did. Re-entry links (one
camera) are scored against the windows' ground truth: each tracklet is labelled with the person its boxes
overlap most (bench.linking.ground_truth_person). Nothing here chooses a default.

    python -m bench.open_world [--rounds 3] [--out bench/results/open_world]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from itertools import islice
from pathlib import Path

import numpy as np

from bench.linking import REPOSITORY, SAMPLE_DIR, ground_truth_person, relink_with
from bench.record import write_record
from cctrack import cache
from cctrack.adapt import adapt
from cctrack.config import load_config
from cctrack.mot import read_mot_txt, write_mot_txt
from cctrack.pipeline import run
from cctrack.sample import SAMPLE_CAMERAS, SAMPLE_FPS, default_pets_gt_path, derive_camera_ground_truth, read_video_frames, write_video
from reid.adapt import AdaptSettings

# The windows of tests/test_open_world.py (video frames, end exclusive), and the other way round (cam_right's
# window ends at 200 because person 1 enters it at 225).
WINDOW_PAIRS = {
    "left_early_right_late": {"cam_left": (0, 225), "cam_right": (600, 795)},
    "left_late_right_early": {"cam_left": (600, 795), "cam_right": (0, 200)},
}


def window_ground_truth(windows: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Each camera's ground-truth rows inside its window, frames renumbered from 1."""
    rows = read_mot_txt(default_pets_gt_path())
    cameras = {camera.name: camera for camera in SAMPLE_CAMERAS}
    cut = {}
    for name, (first, end) in windows.items():
        derived = derive_camera_ground_truth(rows, cameras[name])
        inside = (derived[:, 0] >= first + 1) & (derived[:, 0] <= end)
        derived = derived[inside].copy()
        derived[:, 0] -= first
        cut[name] = derived
    return cut


def make_window_videos(windows: dict[str, tuple[int, int]], out: Path) -> None:
    for name, (first, end) in windows.items():
        write_video(out / f"{name}.mp4", islice(read_video_frames(SAMPLE_DIR / f"{name}.mp4"), first, end), SAMPLE_FPS)


def link_counts(out_dir: Path, person: np.ndarray) -> dict:
    """Cross-camera tracklet pairs put in one identity (all false here), the linker's cross-camera links
and their confidences, and same-camera tracklet pairs in one identity (re-entry: right / wrong)."""
    table = cache.load_tracklets(out_dir, cache.load_run_info(out_dir))
    document = json.loads((out_dir / "identities.json").read_text())
    identity_of = {(t["camera"], t["track_id"]): identity["id"] for identity in document["identities"] for t in identity["tracklets"]}
    identity = [identity_of[key] for key in table.keys]
    cross, reentry_right, reentry_wrong = 0, 0, 0
    for i in range(len(table)):
        for j in range(i + 1, len(table)):
            if identity[i] != identity[j]:
                continue
            if table.camera[i] != table.camera[j]:
                cross += 1  # tracklet pairs in one identity across cameras
            elif person[i] >= 0 and person[i] == person[j]:
                reentry_right += 1
            else:
                reentry_wrong += 1
    return {"tracklets": len(table), "identities": document["summary"]["identities"],
            "false_cross_camera_pairs": cross, "multi_camera_identities": document["summary"]["multi_camera_identities"],
            "cross_camera_link_confidences": [link["confidence"] for link in document["links"] if link["cross_camera"]],
            "reentry_links": {"right": reentry_right, "wrong": reentry_wrong}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "open_world")
    parser.add_argument("--rounds", type=int, default=3, help="cctrack adapt rounds, scored after each")
    parser.add_argument("--steps", type=int, default=AdaptSettings().steps)
    args = parser.parse_args()
    truths = {name: window_ground_truth(windows) for name, windows in WINDOW_PAIRS.items()}
    for name, truth in truths.items():
        shared = set(truth["cam_left"][:, 1]) & set(truth["cam_right"][:, 1])
        if shared:
            raise SystemExit(f"error: windows {name} share people {sorted(int(who) for who in shared)}")
    results = {}
    for name, windows in WINDOW_PAIRS.items():
        truth = truths[name]
        work = args.out / name
        shutil.rmtree(work, ignore_errors=True)
        make_window_videos(windows, work / "videos")
        gt_dir = work / "gt"
        for camera, rows in truth.items():
            write_mot_txt(gt_dir / camera / "gt" / "gt.txt", rows)
        out_dir = work / "run"
        print(f"{name}: cctrack run ...", flush=True)
        run(work / "videos", out_dir, load_config(None, ["export.video=false", "device=cpu"]), show_progress=False)
        table = cache.load_tracklets(out_dir, cache.load_run_info(out_dir))
        person = ground_truth_person(table, gt_dir)
        rounds = [{"round": 0, **link_counts(out_dir, person)}]
        print(f"{name}: shipped model: {rounds[0]}", flush=True)
        checkpoint = None
        for number in range(1, args.rounds + 1):
            overrides = ["device=cpu", "export.video=false"] + ([f"reid.checkpoint={checkpoint}"] if checkpoint else [])
            started = time.perf_counter()
            summary = adapt(out_dir, load_config(None, overrides), AdaptSettings(steps=args.steps), show_progress=False)
            seconds = time.perf_counter() - started
            checkpoint = out_dir / f"adapted_round{number}.pt"  # the next round's base, as --rounds chains them
            summary.weights.replace(checkpoint)
            relink_with(out_dir, [f"reid.checkpoint={checkpoint}"])
            row = {"round": number, **link_counts(out_dir, person), "adapt_seconds": seconds,
                   "groups": summary.groups, "known_negative_pairs": summary.known_negative_pairs}
            rounds.append(row)
            print(f"{name}: round {number}: {row}", flush=True)
        results[name] = {"windows": windows, "people": {camera: len(set(rows[:, 1])) for camera, rows in truth.items()},
                         "rounds": rounds}
    write_record(args.out.parent / "open_world.json", {"settings": {"rounds": args.rounds, "steps": args.steps},
                                                       "results": results})


if __name__ == "__main__":
    main()
