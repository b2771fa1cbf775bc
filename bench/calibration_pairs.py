"""Where the shipped model's appearance evidence tops out, and why: the tail of its calibration pairs.

Rebuilds the pairs the shipped link calibration was fitted on (reid.calibration.calibration_pairs: the
60 held-back CUHK03 training identities, crops degraded like surveillance video, tracklets of 8 crops,
per-camera centred BNNeck features, every cross-camera pair) and reports how many same- and
different-person pairs lie above each similarity, the same-person quantiles, and the most alike
strangers with their identities. When strangers reach the similarities of most same-person pairs, no
honest calibration can give those similarities more evidence.

    python -m bench.calibration_pairs [--weights reid/weights/...pt] [--calibration-ids 60]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from bench.record import write_record
from reid.calibration import calibration_pairs
from reid.datasets import load_dataset
from reid.embedder import Embedder
from reid.pretrained import DEFAULT_WEIGHTS_PATH
from reid.train import split_calibration_ids

REPOSITORY = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
MOST_ALIKE = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_PATH)
    parser.add_argument("--data-root", type=Path, default=REPOSITORY.parent / "shared" / "data" / "CUHK03")
    parser.add_argument("--calibration-ids", type=int, default=60, help="the last N training ids (the shipped config's)")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "calibration_pairs.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    _, samples = split_calibration_ids(load_dataset("cuhk03", args.data_root).train, args.calibration_ids)
    embedder = Embedder.from_checkpoint(args.weights, device="cpu", feature="bnneck")
    pairs = calibration_pairs(embedder.embed, samples)
    same, similarity = pairs.same, pairs.similarity
    positives = np.sort(similarity[same])
    above = {str(t): {"same": int((similarity[same] > t).sum()), "different": int((similarity[~same] > t).sum())}
             for t in THRESHOLDS}
    strangers = np.flatnonzero(~same)
    alike = strangers[np.argsort(-similarity[strangers], kind="stable")[:MOST_ALIKE]]
    most_alike = [{"similarity": float(similarity[k]), "pids": [int(pairs.pid_a[k]), int(pairs.pid_b[k])],
                   "above_share_of_same_person_pairs": float((positives < similarity[k]).mean())} for k in alike]
    print(f"{int(same.sum())} same-person and {int((~same).sum())} different-person pairs")
    print(f"{'cosine >':>9}{'same':>7}{'different':>11}")
    for threshold, counts in above.items():
        print(f"{threshold:>9}{counts['same']:7d}{counts['different']:11d}")
    print("most alike strangers:", ", ".join(f"{row['pids'][0]}/{row['pids'][1]} {row['similarity']:.3f}" for row in most_alike))
    write_record(args.out, {
        "weights": str(args.weights.relative_to(REPOSITORY) if args.weights.is_relative_to(REPOSITORY) else args.weights),
        "pairs": {"same": int(same.sum()), "different": int((~same).sum())},
        "same_person_quantiles": {str(q): float(np.quantile(positives, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)},
        "pairs_above": above,
        "most_alike_strangers": most_alike,
        "calibration_summary": embedder.calibration.summary() if embedder.calibration else None,
    })


if __name__ == "__main__":
    main()
