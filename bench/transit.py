"""What learning transit times costs the link, at scale: link_tracklets with the default (calibrated)
settings and no layout, with transit learning against without it (the peer: the same link on the same
tracklets and embeddings, the step the learning adds to), on bench.link's synthetic world (50 cameras
on a ring, one hour). The world's tracklets carry no boxes, so the transit places are skipped there; a
third run gives every tracklet random boxes (foot points anywhere in a 640x480 picture), so that places
are learned and tested too: what they cost, and whether places without a pattern make chance patterns.
The shipped model's calibration reads the similarities. Also how many camera
pairs got a transit pattern, with real matches behind it or among strangers only, and what learning
does to the identities (pairwise precision and recall against the true people).

Wall clock, one thread (set OMP_NUM_THREADS=1, as bench.link does), median of --repeats after --warmups untimed calls (1).

    python -m bench.transit [--sizes 2000 10000] [--repeats 3] [--out bench/results/transit.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bench.link import CAMERAS, make_world, pair_scores  # noqa: E402
from bench.record import REPOSITORY, timed, write_record  # noqa: E402
from cctrack.config import load_config  # noqa: E402
from cctrack.embed import load_embedder  # noqa: E402
from cctrack.link import LinkSettings, evidence, link_tracklets, tracklet_seconds  # noqa: E402
from cctrack.link.candidates import candidate_pairs  # noqa: E402
from cctrack.link.layout import CameraLayout  # noqa: E402
from cctrack.table import TrackletTable  # noqa: E402


def learned_patterns(world, model: evidence.TransitModel) -> dict[str, int]:
    """The camera pairs of `model` (the link's learned transit patterns), split by whether any of their
    candidate pairs is truly one person: a person walking on the ring reaches cameras several hops away
    too, so a pattern there is real; one among strangers only is a chance pattern (look-alike people give
    many pairs at one gap)."""
    table, settings = world.table, LinkSettings(center_per_camera=False)
    layout = CameraLayout.open(table.camera_names)
    start, end = tracklet_seconds(table, layout)
    a, b, _ = candidate_pairs(table, world.embeddings, start, end, settings, layout, "cpu")
    camera_a, camera_b = table.camera_index[a], table.camera_index[b]
    low, high = np.minimum(camera_a, camera_b), np.maximum(camera_a, camera_b)
    same_person = world.person[a] == world.person[b]
    real = sum(bool(same_person[(low == i) & (high == j)].any()) for i, j in model.patterns)
    tested = len({(int(i), int(j)) for i, j in zip(low, high)})
    return {"camera_pairs_with_candidates": tested, "patterns_with_real_matches": real,
            "patterns_among_strangers_only": len(model.patterns) - real}


def with_random_boxes(table: TrackletTable, seed: int = 1) -> TrackletTable:
    """The table with a random person-sized box at every box row: foot points anywhere in a 640x480
    picture, so places exist but say nothing about who is who."""
    rng = np.random.default_rng(seed)
    foot_x, foot_y = rng.uniform(10, 630, len(table.frames)), rng.uniform(80, 480, len(table.frames))
    boxes = np.stack([foot_x - 10, foot_y - 80, foot_x + 10, foot_y], axis=1).astype(np.float32)
    return dataclasses.replace(table, boxes=boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmups", type=int, default=1, help="untimed calls first (0 for the 100k run)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "transit.json")
    arguments = parser.parse_args()
    config = load_config(None, ["device=cpu"])
    calibration = load_embedder(config.reid.checkpoint, "cpu", None, 128, config.reid.descriptor).calibration
    rows = []
    for count in arguments.sizes:
        world = make_world(count, arguments.dim)
        boxed = dataclasses.replace(world, table=with_random_boxes(world.table))
        row = {"tracklets": count, "cameras": CAMERAS}
        for name, learn, scene in (("with_transit", True, world), ("with_transit_and_places", True, boxed),
                                   ("without_transit", False, world)):
            settings = LinkSettings(center_per_camera=False, learn_transit=learn)
            row[name] = timed(lambda: link_tracklets(scene.table, scene.embeddings, settings, calibration=calibration,
                                                     device="cpu"), arguments.repeats, arguments.warmups)
            result = link_tracklets(scene.table, scene.embeddings, settings, calibration=calibration, device="cpu")
            row[name].update(identities=int(len(np.unique(result.identity))), **pair_scores(scene.person, result.identity))
            if learn:
                row["patterns" if scene is world else "patterns_with_places"] = learned_patterns(scene, result.transit)
        row["time_with_over_without"] = row["with_transit"]["median"] / row["without_transit"]["median"]
        row["places_time_over_without"] = row["with_transit_and_places"]["median"] / row["without_transit"]["median"]
        print(f"{count:>7} tracklets: {row['with_transit']['median']:.1f} s with transit learning, "
              f"{row['without_transit']['median']:.1f} s without ({row['time_with_over_without']:.1f}x); pair precision "
              f"{row['with_transit']['pair_precision']:.3f} with, {row['without_transit']['pair_precision']:.3f} without; "
              f"patterns {row['patterns']}", flush=True)
        print(f"{'':>7} with random boxes (places learned and tested): {row['with_transit_and_places']['median']:.1f} s "
              f"({row['places_time_over_without']:.1f}x), pair precision {row['with_transit_and_places']['pair_precision']:.3f}, "
              f"patterns {row['patterns_with_places']}", flush=True)
        rows.append(row)
    write_record(arguments.out,
                 {"timing": f"wall clock, median of {arguments.repeats} after {arguments.warmups} warm-up(s), OMP_NUM_THREADS="
                            + os.environ["OMP_NUM_THREADS"], "results": rows})


if __name__ == "__main__":
    main()
