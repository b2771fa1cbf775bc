"""`cctrack search`'s ranking on a big run: 100k tracklets, 1280-d descriptors (the shipped model's), top 20.

- ours: `cctrack.search.rank_tracklets`: one float32 matrix-vector product, argpartition for the top k,
  only those k sorted;
- peer: what one writes with SciPy: `scipy.spatial.distance.cdist(query, descriptors, "cosine")`, then a
  full argsort.

Both rank the same random unit vectors (the time does not depend on the values) for the same queries;
each is warmed up, then timed over --repeats queries; the median and the range are reported. Loading the
run (descriptors from cache/embeddings.npz) is done once per `cctrack search` and not timed here.

    python -m bench.search [--tracklets 100000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from cctrack.files import write_json_atomic
from cctrack.search import rank_tracklets

REPOSITORY = Path(__file__).resolve().parents[1]


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracklets", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "search.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    descriptors = rng.standard_normal((args.tracklets, args.dim), dtype=np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    query = descriptors[123] + 0.1 * rng.standard_normal(args.dim, dtype=np.float32)
    allowed = np.ones(args.tracklets, bool)

    ours_rows, _ = rank_tracklets(descriptors, query, allowed, args.top)
    peer_rows = np.argsort(cdist(query[None], descriptors, "cosine")[0], kind="stable")[: args.top]
    assert ours_rows.tolist() == peer_rows.tolist(), "the two rankings differ"

    ours = timed(lambda: rank_tracklets(descriptors, query, allowed, args.top), args.repeats)
    peer = timed(lambda: np.argsort(cdist(query[None], descriptors, "cosine")[0], kind="stable")[: args.top], args.repeats)
    results = {name: {"seconds_median": statistics.median(values), "min": min(values), "max": max(values)}
               for name, values in (("ours", ours), ("peer_scipy_cdist_argsort", peer))}
    ratio = results["peer_scipy_cdist_argsort"]["seconds_median"] / results["ours"]["seconds_median"]
    print(f"{args.tracklets} tracklets x {args.dim}-d, top {args.top}: ours {results['ours']['seconds_median'] * 1e3:.1f} ms "
          f"(min {min(ours) * 1e3:.1f}, max {max(ours) * 1e3:.1f}), scipy cdist + argsort "
          f"{results['peer_scipy_cdist_argsort']['seconds_median'] * 1e3:.1f} ms: {ratio:.1f}x faster")
    record = {
        "command": " ".join(["python -m bench.search", *sys.argv[1:]]),
        "machine": {"cores": len(os.sched_getaffinity(0)), "device": "cpu", "processor": platform.processor() or platform.machine(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "date": time.strftime("%Y-%m-%d"),
        "setup": f"{args.tracklets} tracklets, {args.dim}-d float32 unit descriptors, top {args.top}, "
                 f"{args.repeats} queries after a warm-up (same ranking checked)",
        "results": results,
        "ratio": ratio,
    }
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
