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
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from bench.record import REPOSITORY, timed, write_record
from cctrack.search import rank_tracklets


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

    results = {
        "ours": timed(lambda: rank_tracklets(descriptors, query, allowed, args.top), args.repeats),
        "peer_scipy_cdist_argsort": timed(lambda: np.argsort(cdist(query[None], descriptors, "cosine")[0], kind="stable")[: args.top],
                                          args.repeats),
    }
    ours, peer = results["ours"], results["peer_scipy_cdist_argsort"]
    ratio = peer["median"] / ours["median"]
    print(f"{args.tracklets} tracklets x {args.dim}-d, top {args.top}: ours {ours['median'] * 1e3:.1f} ms "
          f"(min {ours['min'] * 1e3:.1f}, max {ours['max'] * 1e3:.1f}), scipy cdist + argsort "
          f"{peer['median'] * 1e3:.1f} ms: {ratio:.1f}x faster")
    write_record(args.out, {
        "setup": f"{args.tracklets} tracklets, {args.dim}-d float32 unit descriptors, top {args.top}, "
                 f"{args.repeats} queries after a warm-up (same ranking checked)",
        "results": results,
        "ratio": ratio,
    })


if __name__ == "__main__":
    main()
