"""torchreid's own CMC/mAP evaluators on a saved problem, run by bench.metrics with a torchreid venv's python.

Needs only numpy and an installed torchreid (its `reid/metrics/rank.py` is loaded by file, so torch need not
be installed: the package's __init__ pulls in torch, its rank.py does not). The Cython evaluator is
`rank_cy` (torchreid's rank_cylib/rank_cy.pyx, built): from the package when its build made one, else from
--cython-dir. Prints one JSON object: per evaluator, the seconds of each timed run and rank-1 / mAP.

    <venv>/bin/python bench/torchreid_rank.py PROBLEM_DIR [--cython-dir DIR] [--repeats 3] [--python-queries 500]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

MAX_RANK = 50  # torchreid's evaluate_rank default, what its engine uses


def load_rank_module():
    """torchreid's installed reid/metrics/rank.py (0.2.x layout) or metrics/rank.py (source layout)."""
    package = importlib.util.find_spec("torchreid")
    if package is None:
        raise SystemExit("torchreid is not installed in this python")
    root = Path(package.submodule_search_locations[0])
    path = next((candidate for candidate in (root / "reid" / "metrics" / "rank.py", root / "metrics" / "rank.py")
                 if candidate.exists()), None)
    if path is None:
        raise SystemExit(f"no metrics/rank.py under {root}")
    spec = importlib.util.spec_from_file_location("torchreid_rank", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec.loader.exec_module(module)
    return module, path, [str(warning.message) for warning in caught]


def timed_runs(function, repeats: int) -> tuple[list[float], tuple]:
    function()  # warm-up
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem", type=Path, help="folder with distmat.npy, q_pids.npy, g_pids.npy, q_camids.npy, g_camids.npy")
    parser.add_argument("--cython-dir", type=Path, default=None, help="folder holding a built rank_cy extension")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python-queries", type=int, default=500, help="queries the pure-Python evaluator runs")
    arguments = parser.parse_args()
    problem = {name: np.load(arguments.problem / f"{name}.npy") for name in ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")}
    rank, rank_path, import_warnings = load_rank_module()
    report = {"torchreid_rank_py": str(rank_path), "import_warnings": import_warnings,
              "package_cython_available": bool(rank.IS_CYTHON_AVAI)}

    evaluate_cy = rank.evaluate_cy if rank.IS_CYTHON_AVAI else None
    if evaluate_cy is None and arguments.cython_dir is not None:
        sys.path.insert(0, str(arguments.cython_dir))
        from rank_cy import evaluate_cy
        report["cython_from"] = str(arguments.cython_dir)
    if evaluate_cy is not None:
        seconds, (cmc, mean_ap) = timed_runs(lambda: evaluate_cy(*problem.values(), MAX_RANK, False), arguments.repeats)
        report["cython"] = {"seconds": seconds, "queries": len(problem["q_pids"]), "rank1": float(cmc[0]), "mAP": float(mean_ap)}

    subset = arguments.python_queries
    subset_problem = (problem["distmat"][:subset], problem["q_pids"][:subset], problem["g_pids"],
                      problem["q_camids"][:subset], problem["g_camids"])
    seconds, (cmc, mean_ap) = timed_runs(lambda: rank.evaluate_py(*subset_problem, MAX_RANK, False), arguments.repeats)
    report["python"] = {"seconds": seconds, "queries": len(subset_problem[1]), "rank1": float(cmc[0]), "mAP": float(mean_ap)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
