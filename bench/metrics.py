"""Benchmark reid.metrics.evaluate against torchreid's evaluators and a per-query loop on one 5k x 20k problem.

Peers, all on the same distance matrix, protocol "standard" (drop gallery items of the query's id AND camera):
- torchreid's Cython `evaluate_cy`: what `evaluate_rank` runs by default when its rank_cylib is built (a
  source install of KaiyangZhou/deep-person-reid builds it). The PyPI sdist torchreid 0.2.5 ships rank_cylib
  without rank_cy.pyx, so `pip install torchreid` cannot build it and falls back, with a warning, to:
- torchreid's pure-Python `evaluate_py` (eval_market1501): a Python loop over queries.
- the per-query numpy loop in this file (the reference the metrics are checked against).
torchreid runs in its own venv (--torchreid-python; it needs only numpy there, see bench/torchreid_rank.py),
in a subprocess; its Cython build can come from --torchreid-cython-dir. Loops run on --loop-queries queries
and are scaled to all queries (each query costs the same: one row of the same gallery); the JSON says so.
evaluate also runs on CUDA tensors when a GPU is present. Results go to bench/results/metrics.json.

    python -m bench.metrics [--queries 5000] [--gallery 20000] [--loop-queries 500] [--repeats 5]
        [--torchreid-python /tmp/torchreid-venv/bin/python --torchreid-cython-dir /tmp/torchreid-cy]

The torchreid venv used for bench/results/metrics.json:
    python3 -m venv /tmp/torchreid-venv && /tmp/torchreid-venv/bin/pip install numpy cython torchreid==0.2.5 --no-deps
    # rank_cy.pyx from KaiyangZhou/deep-person-reid torchreid/metrics/rank_cylib/, built with cythonize in
    # /tmp/torchreid-cy (setup.py: Extension("rank_cy", ["rank_cy.pyx"], include_dirs=[numpy.get_include()]))
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a plain script from a checkout, installed or not
from bench.record import header, timed  # noqa: E402
from cctrack.files import write_json_atomic  # noqa: E402
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


def torchreid_peers(arrays: list[np.ndarray], python: Path, cython_dir: Path | None, repeats: int,
                    python_queries: int) -> dict:
    """torchreid's Cython and pure-Python evaluators (bench/torchreid_rank.py) run by `python`, a torchreid venv."""
    names = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")
    with tempfile.TemporaryDirectory() as problem:
        for name, array in zip(names, arrays):
            np.save(Path(problem) / f"{name}.npy", array.astype(np.float32 if name == "distmat" else np.int64))
        command = [str(python), str(REPO_ROOT / "bench" / "torchreid_rank.py"), problem, "--repeats", str(repeats),
                   "--python-queries", str(python_queries)]
        if cython_dir is not None:
            command += ["--cython-dir", str(cython_dir)]
        finished = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(finished.stdout)
    report["command"] = " ".join(command[:2] + ["PROBLEM_DIR"] + command[3:])
    return report


def spread(seconds: list[float], scale: float = 1.0) -> dict:
    """median / min / max of timed runs, times `scale` (the extrapolation from a subset of queries)."""
    return {"median": round(statistics.median(seconds) * scale, 3), "min": round(min(seconds) * scale, 3),
            "max": round(max(seconds) * scale, 3), "runs": len(seconds)}


def time_evaluate(tensors: list[torch.Tensor], repeats: int) -> tuple[dict, dict]:
    device = tensors[0].device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    result = evaluate(*tensors)  # also the warm-up
    seconds = timed(lambda: evaluate(*tensors), repeats, warmups=0, synchronize=synchronize)
    return spread(seconds["all"]), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--ids", type=int, default=1500)
    parser.add_argument("--loop-queries", type=int, default=500, help="queries the per-query loops really run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up (peers: 3)")
    parser.add_argument("--torchreid-python", type=Path, default=None,
                        help="python of a venv with torchreid installed (numpy only needed; see module docstring)")
    parser.add_argument("--torchreid-cython-dir", type=Path, default=None,
                        help="folder with torchreid's rank_cy built, when the installed package has none")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()

    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(args.queries, args.gallery, args.ids)
    cpu_tensors = [distmat, q_pids, g_pids, q_camids, g_camids]
    evaluate_cpu, ours = time_evaluate(cpu_tensors, args.repeats)
    rows = {"evaluate (cpu)": {"seconds": evaluate_cpu, "queries_run": args.queries}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torchreid's evaluators run on one core: the same budget
    rows["evaluate (cpu, 1 thread)"] = {"seconds": time_evaluate(cpu_tensors, args.repeats)[0], "queries_run": args.queries}
    torch.set_num_threads(threads)
    print(f"evaluate (vectorised, cpu):   median {evaluate_cpu['median']:.3f} s "
          f"[{evaluate_cpu['min']:.3f}-{evaluate_cpu['max']:.3f}] for {args.queries} x {args.gallery}")
    if torch.cuda.is_available():
        evaluate_cuda, _ = time_evaluate([tensor.cuda() for tensor in cpu_tensors], args.repeats)
        rows["evaluate (cuda)"] = {"seconds": evaluate_cuda, "queries_run": args.queries}
        print(f"evaluate (vectorised, cuda):  median {evaluate_cuda['median']:.3f} s")
    cuda_note = "measured" if torch.cuda.is_available() else "no GPU: the CUDA row was not run"

    loop_queries = min(args.loop_queries, args.queries)
    scale = args.queries / loop_queries
    arrays = [t.numpy() for t in cpu_tensors]
    loop_subset = (arrays[0][:loop_queries], arrays[1][:loop_queries], arrays[2], arrays[3][:loop_queries], arrays[4])
    loop_seconds = timed(lambda: per_query_loop(*loop_subset), 3)["all"]
    loop_result = per_query_loop(*loop_subset)
    ours_subset = evaluate(*(torch.from_numpy(array) for array in loop_subset))
    agree = all(abs(ours_subset[key] - loop_result[key]) < 1e-9 for key in loop_result)
    rows["per-query numpy loop (this file)"] = {"seconds": spread(loop_seconds, scale), "queries_run": loop_queries,
                                                "extrapolated_x": scale, "metrics_agree_with_evaluate": agree}

    if args.torchreid_python is not None:
        peers = torchreid_peers(arrays, args.torchreid_python, args.torchreid_cython_dir, 3, loop_queries)
        if "cython" in peers:
            cython = peers["cython"]
            rows["torchreid Cython evaluate_cy"] = {
                "seconds": spread(cython["seconds"]), "queries_run": cython["queries"],
                "rank1_difference": cython["rank1"] - ours["rank1"], "mAP_difference": cython["mAP"] - ours["mAP"]}
        python_peer = peers["python"]
        rows["torchreid pure-Python evaluate_py"] = {"seconds": spread(python_peer["seconds"], args.queries / python_peer["queries"]),
                                                     "queries_run": python_peer["queries"],
                                                     "extrapolated_x": args.queries / python_peer["queries"],
                                                     "rank1_difference_on_subset": python_peer["rank1"] - ours_subset["rank1"],
                                                     "mAP_difference_on_subset": python_peer["mAP"] - ours_subset["mAP"]}
        peer_note = {key: peers[key] for key in ("command", "torchreid_rank_py", "import_warnings",
                                                 "package_cython_available", "cython_from") if key in peers}
    else:
        peer_note = "not run: pass --torchreid-python"

    for name, row in rows.items():
        row["time_over_evaluate_cpu"] = round(row["seconds"]["median"] / evaluate_cpu["median"], 2)
        print(f"{name:<36} median {row['seconds']['median']:8.3f} s [{row['seconds']['min']:.3f}-{row['seconds']['max']:.3f}]"
              f"  ({row['queries_run']} queries run)  time / evaluate(cpu) {row['time_over_evaluate_cpu']:.2f}")
    result = {
        **header("cpu"),
        "problem": {"queries": args.queries, "gallery": args.gallery, "ids": args.ids, "mode": "standard",
                    "torchreid_max_rank": 50},
        "timing": f"wall clock; one warm-up, then {args.repeats} runs of evaluate and 3 of each peer; median [min-max]; "
                  "loops run on a subset of queries are scaled to all queries (each query costs the same)",
        "cuda": cuda_note,
        "peers": {
            "torchreid Cython evaluate_cy": "torchreid's rank_cylib/rank_cy.pyx (KaiyangZhou/deep-person-reid), what "
                                            "evaluate_rank(use_cython=True), the default, runs once built; `pip install "
                                            "torchreid` (0.2.5, the PyPI sdist) ships rank_cylib without rank_cy.pyx and "
                                            "cannot build it, so this one was built from the repository's file",
            "torchreid pure-Python evaluate_py": "torchreid 0.2.5's rank.py eval_market1501, what `pip install torchreid` "
                                                 "users get (it warns that Cython is unavailable)",
            "per-query numpy loop (this file)": "this file's reference loop, checked equal to evaluate",
        },
        "torchreid": peer_note,
        "rows": rows,
        "metrics": {key: value if isinstance(value, int) else round(value, 6) for key, value in ours.items()},
    }
    print(f"rank1 {ours['rank1']:.4f}  mAP {ours['mAP']:.4f}  mINP {ours['mINP']:.4f}")
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
