"""`cctrack adapt` on the bundled sample: identity figures before and after, same tracklets, same run.

Starts from bench.linking's tracking runs (the sample, and the copy whose cam_right is hue-rotated),
copies each, scores the default link (shipped model), runs `cctrack adapt` with its defaults (no ground
truth is used; the settings were fixed before this bench ran) and scores again; with --rounds R it goes on
adapting the adapted model, R rounds in all, and scores after each (what `cctrack adapt --rounds R`
does: round k starts from round k-1's model and its links; tests/test_adapt.py checks that chain). Scores as bench.linking:
multi-camera and per-camera IDF1, people kept across cameras, cross-camera link precision, ROC AUC of the
link log-odds over cross-camera tracklet pairs, and the oracle min_probability sweep (an upper bound).

    python -m bench.linking          # once, for the tracking runs
    python -m bench.adapt [--steps 200] [--rounds 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.linking import ORACLE_PROBABILITIES, REPOSITORY, ground_truth_person, link_quality, pair_auc, print_rows, relink_with
from bench.record import write_record
from cctrack import cache
from cctrack.adapt import adapt
from cctrack.config import load_config
from cctrack.evaluate import evaluate_run
from reid.adapt import AdaptSettings

FOOTAGE = ("sample", "hue_rotated_cam_right")


def scores(out_dir: Path, gt_dir: Path, overrides: list[str]) -> dict:
    table = cache.load_tracklets(out_dir, cache.load_run_info(out_dir))
    person = ground_truth_person(table, gt_dir)
    sweep = {}
    for probability in ORACLE_PROBABILITIES:
        relink_with(out_dir, overrides + [f"link.min_probability={probability}"])
        sweep[str(probability)] = float(evaluate_run(gt_dir, out_dir).multi_camera["idf1"])
    relink_with(out_dir, overrides)
    row = link_quality(out_dir, gt_dir, person, table)
    row.update(pair_auc(out_dir, table, person, overrides))
    row["oracle_min_probability_sweep"] = sweep
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPOSITORY / "bench" / "results" / "linking", help="bench.linking's output")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "adapt")
    parser.add_argument("--steps", type=int, default=AdaptSettings().steps)
    parser.add_argument("--rounds", type=int, default=1, help="score after each of this many rounds")
    args = parser.parse_args()
    gt_dir = args.runs / "gt"
    results = {}
    for name in FOOTAGE:
        source = args.runs / name
        if not (source / "cache" / "run.json").is_file():
            sys.exit(f"error: {source} has no tracking run; run `python -m bench.linking` first")
        out_dir = args.out / name
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.copytree(source, out_dir)
        before = scores(out_dir, gt_dir, [])
        rows, checkpoint = {"before": before}, None
        results[name] = {"before": before, "rounds": []}
        for number in range(1, args.rounds + 1):
            overrides = ["device=cpu", "export.video=false"] + ([f"reid.checkpoint={checkpoint}"] if checkpoint else [])
            started = time.perf_counter()
            summary = adapt(out_dir, load_config(None, overrides), AdaptSettings(steps=args.steps), show_progress=False)
            seconds = time.perf_counter() - started
            checkpoint = out_dir / f"adapted_round{number}.pt"  # the next round's base; adapt writes adapted.pt
            summary.weights.replace(checkpoint)
            after = scores(out_dir, gt_dir, [f"reid.checkpoint={checkpoint}"])
            results[name]["rounds"].append({"after": after, "adapt_seconds": seconds,
                                            "adapt_loss": [summary.first_loss, summary.last_loss],
                                            "groups": summary.groups, "known_negative_pairs": summary.known_negative_pairs})
            rows[f"after round {number}"] = after
            print(f"{name}: round {number} adapt {seconds:.0f} s, loss {summary.first_loss:.3f} -> {summary.last_loss:.3f}", flush=True)
        results[name]["after"] = results[name]["rounds"][-1]["after"]  # the last round, as before --rounds
        print(f"\n{name}")
        print_rows(rows)
    write_record(args.out.parent / "adapt.json", {"settings": {"steps": args.steps, "rounds": args.rounds}, "results": results})


if __name__ == "__main__":
    main()
