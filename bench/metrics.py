"""Benchmark reid.metrics.evaluate against the usual per-query loop (torchreid `eval_market1501` style).

The baseline argsorts the whole matrix with numpy, then loops over queries in Python doing numpy work per
query (mask, cumsum), which is how most re-id code bases score CMC/mAP. The loop is run on a subset of the queries and its time is
extrapolated linearly to all queries (each query costs the same: one row of the same gallery); the output
says so. Results go to bench/results/metrics.json.

    python bench/metrics.py [--queries 5000] [--gallery 20000] [--loop-queries 500] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import sys
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a plain script from a checkout, installed or not
from reid.metrics import evaluate  # noqa: E402

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "metrics.json"


def per_query_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 10) -> dict[str, float]:
    """Per-query numpy baseline: mode "standard" (drop same pid AND same camera)."""
    all_cmc, all_ap, all_inp = [], [], []
    orders = np.argsort(distmat, axis=1)  # one argsort of the whole matrix, as torchreid does
    for query in range(distmat.shape[0]):
        order = orders[query]
        keep = ~((g_pids[order] == q_pids[query]) & (g_camids[order] == q_camids[query]))
        matches = (g_pids[order] == q_pids[query])[keep].astype(np.int64)
        if not matches.any():
            continue
        cmc = matches.cumsum()
        all_cmc.append(np.minimum(cmc, 1)[:max_rank])
        last = np.flatnonzero(matches)[-1]
        all_inp.append(cmc[last] / (last + 1.0))
        precision = cmc / np.arange(1, len(cmc) + 1)
        all_ap.append((precision * matches).sum() / matches.sum())
    cmc_mean = np.mean(all_cmc, axis=0)
    return {"rank1": float(cmc_mean[0]), "mAP": float(np.mean(all_ap)), "mINP": float(np.mean(all_inp))}


def make_problem(num_queries: int, num_gallery: int, num_ids: int, seed: int = 0):
    """Features of `num_ids` identities in 4 cameras; distance = squared Euclidean on unit vectors."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_ids, 64, generator=generator), dim=1)
    q_pids = torch.randint(0, num_ids, (num_queries,), generator=generator)
    g_pids = torch.randint(0, num_ids, (num_gallery,), generator=generator)
    q_features = torch.nn.functional.normalize(centres[q_pids] + 0.12 * torch.randn(num_queries, 64, generator=generator), dim=1)
    g_features = torch.nn.functional.normalize(centres[g_pids] + 0.12 * torch.randn(num_gallery, 64, generator=generator), dim=1)
    distmat = (2 - 2 * q_features @ g_features.T).float()
    q_camids = torch.randint(0, 4, (num_queries,), generator=generator)
    g_camids = torch.randint(0, 4, (num_gallery,), generator=generator)
    return distmat, q_pids, g_pids, q_camids, g_camids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--ids", type=int, default=1500)
    parser.add_argument("--loop-queries", type=int, default=500, help="queries the baseline loop really runs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(args.queries, args.gallery, args.ids)
    device = torch.device(args.device)
    on_device = [t.to(device) for t in (distmat, q_pids, g_pids, q_camids, g_camids)]
    evaluate(*(t[:50] if i in (0, 1, 3) else t for i, t in enumerate(on_device)))  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    ours = evaluate(*on_device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours_seconds = time.perf_counter() - started

    loop_queries = min(args.loop_queries, args.queries)
    arrays = [t.numpy() for t in (distmat, q_pids, g_pids, q_camids, g_camids)]
    started = time.perf_counter()
    loop_subset = per_query_loop(arrays[0][:loop_queries], arrays[1][:loop_queries], arrays[2],
                                 arrays[3][:loop_queries], arrays[4])
    loop_subset_seconds = time.perf_counter() - started
    loop_seconds = loop_subset_seconds * args.queries / loop_queries
    ours_subset = evaluate(distmat[:loop_queries], q_pids[:loop_queries], g_pids, q_camids[:loop_queries], g_camids)
    agree = all(abs(ours_subset[key] - loop_subset[key]) < 1e-9 for key in loop_subset)

    result = {
        "queries": args.queries, "gallery": args.gallery, "device": str(device),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "evaluate_seconds": round(ours_seconds, 3),
        "loop_queries_run": loop_queries,
        "loop_seconds_measured": round(loop_subset_seconds, 3),
        "loop_seconds_extrapolated": round(loop_seconds, 3),
        "speedup": round(loop_seconds / ours_seconds, 2),
        "subset_metrics_agree": agree,
        "metrics": {key: value if isinstance(value, int) else round(value, 6) for key, value in ours.items()},
    }
    print(f"evaluate (vectorised, {device}): {ours_seconds:8.2f} s for {args.queries} x {args.gallery}")
    print(f"per-query loop (numpy, cpu):   {loop_seconds:8.2f} s "
          f"(ran {loop_queries} queries in {loop_subset_seconds:.2f} s, extrapolated x{args.queries / loop_queries:g})")
    print(f"speed-up: {loop_seconds / ours_seconds:.1f}x; metrics agree on the subset: {agree}")
    print(f"rank1 {ours['rank1']:.4f}  mAP {ours['mAP']:.4f}  mINP {ours['mINP']:.4f}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS_PATH.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, RESULTS_PATH)
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
