"""Benchmark cctrack.link on synthetic multi-camera hours against the naive dense approach.

World: 50 cameras on a ring (a person walks to a neighbouring camera in 3-60 s, or re-enters the same
one), one hour, about 20 tracklets of 2-20 s per person. Embeddings: 1280-d unit vectors, each person a
centre (people share a common direction, and come in look-alike pairs) plus per-tracklet noise of varying
strength, so some same-person pairs are far and some look-alikes are near: accuracy is not trivially 1.

Methods:
- ours: link_tracklets with the ring layout (hard gates, 90 s longest move) and default LinkSettings.
- ours_no_layout: link_tracklets without layout or time window (every pair may be compared).
- dense: full N x N cosine distances, scipy average-linkage agglomerative clustering cut at the same
  threshold; no cannot-link, no gates (what a plain script would do). Only up to --dense-up-to tracklets.
- dense_layout: dense with the same gates as ours (cctrack.link.candidates' own pair gate: the ring layout,
  the 90 s window, same-camera frame overlap): a gated-out pair's distance is set to GATED_DISTANCE before
  scipy linkage. scipy has no "missing" distance, so under average linkage a gated pair is a cannot-link
  (a cluster holding one never merges below the threshold), stricter than ours, where a gated pair is
  only a pair not compared and only frame-overlapping same-camera pairs are cannot-link.
- dense_layout_single: the same gated matrix under single linkage, where a gated pair is only a pair
  that does not join (clusters still meet through allowed pairs), the reading closer to ours.

Like for like: ours_no_layout vs dense (no gates either side); ours vs dense_layout and dense_layout_single
(same gates).

Time is wall clock with one CPU thread unless OMP_NUM_THREADS says otherwise: on a shared machine,
multi-threaded small matrix products wait for a busy core and time what the neighbours do. Peak memory is the growth of the
process's resident set over the call (VmHWM after resetting it through /proc/self/clear_refs), which
counts torch buffers too. Accuracy: pairwise precision/recall/F1 and adjusted Rand index against the true
people, and how many tracklets share an identity with a same-camera, time-overlapping tracklet
(impossible for one person). Results go to bench/results/link.json.

    python -m bench.link [--sizes 1000 10000 100000] [--dense-up-to 10000] [--no-layout-up-to 10000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and torch start their thread pools (see above)

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a plain script from a checkout, installed or not
from bench.record import header  # noqa: E402
from cctrack.files import write_json_atomic  # noqa: E402
from cctrack.link import LinkSettings, link_tracklets  # noqa: E402
from cctrack.link.candidates import _allowed_pairs, tracklet_seconds  # noqa: E402  the gate ours uses
from cctrack.link.layout import CameraLayout  # noqa: E402
from cctrack.table import TrackletTable  # noqa: E402

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "link.json"
CAMERAS, HOUR_SECONDS, FPS = 50, 3600.0, 25.0
TRACKLETS_PER_PERSON = 20
LONGEST_MOVE_SECONDS = 90.0
GATED_DISTANCE = 1e6  # finite (scipy linkage rejects inf), far above any cut
GATE_BLOCK_ROWS = 512


@dataclass(frozen=True)
class World:
    table: TrackletTable
    embeddings: np.ndarray  # (N, D) float32, unit rows
    person: np.ndarray  # (N,) int64 true identity


def make_world(count: int, dim: int, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    people = max(1, count // TRACKLETS_PER_PERSON)
    steps = -(-count // people)  # tracklets per person, enough to reach `count`
    duration = rng.uniform(2, 20, (people, steps))
    gap = rng.uniform(3, 60, (people, steps))
    gap[:, 0] = rng.uniform(0, HOUR_SECONDS - 900, people)  # the first "gap" is when the person arrives
    start = np.cumsum(gap, axis=1) + np.cumsum(duration, axis=1) - duration
    move = rng.choice([-1, 0, 1], size=(people, steps), p=[0.45, 0.1, 0.45])
    move[:, 0] = rng.integers(0, CAMERAS, people)
    camera = np.cumsum(move, axis=1) % CAMERAS
    person = np.repeat(np.arange(people), steps)[:count]
    start, duration, camera = start.reshape(-1)[:count], duration.reshape(-1)[:count], camera.reshape(-1)[:count]
    first_frame = np.round(start * FPS).astype(np.int64)
    last_frame = first_frame + np.maximum(1, np.round(duration * FPS).astype(np.int64)) - 1
    table = TrackletTable.from_spans(tuple(f"cam{c:02d}" for c in range(CAMERAS)), (FPS,) * CAMERAS, camera, first_frame, last_frame)

    common = _unit(rng.standard_normal((1, dim), dtype=np.float32))
    look_alike = _unit(rng.standard_normal(((people + 1) // 2, dim), dtype=np.float32))[np.arange(people) // 2]
    own = _unit(rng.standard_normal((people, dim), dtype=np.float32))
    # Centres: cosine ~0.36 to anyone, ~0.84 to the look-alike (0.36 + 0.64 * 0.75).
    centres = _unit(0.6 * common + 0.8 * _unit(np.sqrt(3) * look_alike + own))
    noise_strength = rng.uniform(0.3, 0.8, (count, 1)).astype(np.float32) / np.sqrt(dim)
    embeddings = centres[person] + noise_strength * rng.standard_normal((count, dim), dtype=np.float32)
    return World(table, _unit(embeddings), person)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def ring_layout() -> dict:
    names = [f"cam{c:02d}" for c in range(CAMERAS)]
    return {
        "connections": [{"from": names[c], "to": names[(c + 1) % CAMERAS], "max_transit_seconds": LONGEST_MOVE_SECONDS}
                        for c in range(CAMERAS)],
        "reentry": {"max_gap_seconds": LONGEST_MOVE_SECONDS},
    }


def dense_linkage(embeddings: np.ndarray, threshold: float, allowed: np.ndarray | None = None,
                  method: str = "average") -> np.ndarray:
    """scipy linkage on all N x N cosine distances; pairs where `allowed` (N, N) is False at GATED_DISTANCE."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = np.clip(1.0 - embeddings @ embeddings.T, 0.0, 2.0)
    if allowed is not None:
        distance[~allowed] = GATED_DISTANCE
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False).astype(np.float64)
    del distance
    return fcluster(linkage(condensed, method=method), t=threshold, criterion="distance").astype(np.int64)


def gate_matrix(table: TrackletTable, layout: CameraLayout, settings: LinkSettings) -> np.ndarray:
    """(N, N) bool, symmetric: the pairs cctrack.link.candidates would let through its gates (before kNN)."""
    start, end = tracklet_seconds(table, layout)
    tracklet = {name: torch.from_numpy(values) for name, values in (
        ("camera", table.camera_index.astype(np.int64)), ("first", table.first_frame), ("last", table.last_frame),
        ("start", start), ("end", end))}
    moves = layout.move_bounds()
    moves = None if moves is None else {name: torch.from_numpy(values) for name, values in moves.items()}
    window = min(np.inf if settings.max_gap_seconds is None else settings.max_gap_seconds, layout.longest_gap_seconds())
    count = len(table)
    columns = torch.arange(count)
    allowed = np.empty((count, count), dtype=bool)
    for first_row in range(0, count, GATE_BLOCK_ROWS):
        rows = torch.arange(first_row, min(count, first_row + GATE_BLOCK_ROWS))
        allowed[first_row:first_row + len(rows)] = _allowed_pairs(
            tracklet, rows, columns, moves, len(layout.camera_names), window).numpy()
    # The gate scores a same-camera pair once (column after row): mirror it.
    return allowed | allowed.T


def pair_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pairwise precision / recall / F1 of "same person" and the adjusted Rand index."""
    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    _, joint = np.unique(np.stack([truth, predicted]), axis=1, return_counts=True)
    together, true_pairs = pairs(joint), pairs(np.unique(truth, return_counts=True)[1])
    predicted_pairs, all_pairs = pairs(np.unique(predicted, return_counts=True)[1]), len(truth) * (len(truth) - 1) / 2
    precision = together / predicted_pairs if predicted_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    expected = true_pairs * predicted_pairs / all_pairs
    ari = (together - expected) / ((true_pairs + predicted_pairs) / 2 - expected)
    return {"pair_precision": precision, "pair_recall": recall, "pair_f1": 2 * precision * recall / (precision + recall),
            "ari": ari}


def overlap_violations(table: TrackletTable, identity: np.ndarray) -> int:
    """Tracklets whose identity already holds a same-camera tracklet overlapping it in frames."""
    group = np.unique(np.stack([identity, table.camera_index]), axis=1, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((table.first_frame, group))
    span = int(table.last_frame.max()) + 1  # offsets keep every group's frames above the previous group's
    first = table.first_frame[order] + group[order] * span
    last = table.last_frame[order] + group[order] * span
    latest_before = np.concatenate([[-1], np.maximum.accumulate(last)[:-1]])
    return int((first <= latest_before).sum())


def measured(function, *arguments):
    """(result, seconds, peak resident growth in MiB) of function(*arguments)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    result = function(*arguments)
    seconds = time.perf_counter() - started
    return result, seconds, (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def bench_size(count: int, dim: int, dense_up_to: int, no_layout_up_to: int, settings: LinkSettings) -> list[dict]:
    world = make_world(count, dim)
    layout = CameraLayout.from_dict(ring_layout(), world.table.camera_names)
    methods = {"ours": lambda: link_tracklets(world.table, world.embeddings, settings, layout).identity}
    if count <= no_layout_up_to:
        methods["ours_no_layout"] = lambda: link_tracklets(world.table, world.embeddings, settings).identity
    if count <= dense_up_to:
        methods["dense"] = lambda: dense_linkage(world.embeddings, settings.distance_threshold)
        methods["dense_layout"] = lambda: dense_linkage(
            world.embeddings, settings.distance_threshold, gate_matrix(world.table, layout, settings))
        methods["dense_layout_single"] = lambda: dense_linkage(
            world.embeddings, settings.distance_threshold, gate_matrix(world.table, layout, settings), "single")
    rows = []
    for method, run in methods.items():
        identity, seconds, peak_mib = measured(run)
        rows.append({"tracklets": count, "people": int(world.person.max()) + 1, "method": method, "seconds": seconds,
                     "peak_mib": peak_mib, "identities": int(len(np.unique(identity))),
                     "overlap_violations": overlap_violations(world.table, identity), **pair_scores(world.person, identity)})
        print(_row(rows[-1]), flush=True)
    return rows


HEADER = f"{'tracklets':>9} {'method':<20} {'seconds':>8} {'peak MiB':>8} {'ids':>6} {'people':>6} {'pair P':>6} {'pair R':>6} {'pair F1':>7} {'ARI':>6} {'overlaps':>8}"


def _row(row: dict) -> str:
    return (f"{row['tracklets']:>9} {row['method']:<20} {row['seconds']:8.2f} {row['peak_mib']:8.0f} {row['identities']:>6} "
            f"{row['people']:>6} {row['pair_precision']:6.3f} {row['pair_recall']:6.3f} {row['pair_f1']:7.3f} {row['ari']:6.3f} "
            f"{row['overlap_violations']:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dense-up-to", type=int, default=10000, help="largest size for the dense baselines")
    parser.add_argument("--no-layout-up-to", type=int, default=10000, help="largest size for ours without layout")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    arguments = parser.parse_args(argv)
    # Synthetic embeddings carry no camera bias, and no calibration: both linkers cut at one cosine distance.
    settings = LinkSettings(center_per_camera=False, distance_threshold=0.5)
    print(HEADER)
    print("-" * len(HEADER))
    rows = [row for count in arguments.sizes
            for row in bench_size(count, arguments.dim, arguments.dense_up_to, arguments.no_layout_up_to, settings)]
    comparisons = []
    for count in arguments.sizes:
        by_method = {row["method"]: row for row in rows if row["tracklets"] == count}
        for ours, dense in (("ours_no_layout", "dense"), ("ours", "dense_layout"), ("ours", "dense_layout_single")):
            if ours in by_method and dense in by_method:
                comparison = {"tracklets": count, "ours": ours, "dense": dense,
                              "time_ours_over_dense": by_method[ours]["seconds"] / by_method[dense]["seconds"],
                              "peak_memory_ours_over_dense": by_method[ours]["peak_mib"] / max(by_method[dense]["peak_mib"], 1e-9),
                              "pair_f1_ours": by_method[ours]["pair_f1"], "pair_f1_dense": by_method[dense]["pair_f1"]}
                comparisons.append(comparison)
                print(f"{count:>9} {ours}/{dense}: time {comparison['time_ours_over_dense']:.3f}, "
                      f"peak memory {comparison['peak_memory_ours_over_dense']:.3f}")
    document = {
        **header("cpu"),
        "like_for_like": "ours_no_layout vs dense: no gates either side; ours vs dense_layout: the same gates "
                         f"(dense: gated pairs at distance {GATED_DISTANCE:g}: a cannot-link under average linkage, "
                         "a pair that does not join under single linkage)",
        "timing": "one run per method, wall clock, OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"],
        "settings": asdict(settings), "world": {"cameras": CAMERAS, "seconds": HOUR_SECONDS, "fps": FPS, "dim": arguments.dim,
                                                 "tracklets_per_person": TRACKLETS_PER_PERSON, "layout_longest_move_seconds": LONGEST_MOVE_SECONDS},
        "results": rows,
        "comparisons": comparisons,
    }
    write_json_atomic(arguments.out, document)
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
