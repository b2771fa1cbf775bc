"""Which training recipe to ship: CUHK03 val against the app's own figures, in the same run.

A recipe (augmentations, epochs, schedule) is judged by what the app does with it, not by CUHK03 val
alone. For the shipped weights and for each finished training run (`reid train --out RUN`), this bench
reports:

- CUHK03 detected val, `reid eval`'s protocol (100 unseen ids, query one view, gallery the other,
  flip-averaged f_cssc): rank-1 and mAP;
- the link calibration the run fitted on its held-back training identities, whose crops are degraded
  like surveillance video (downscale, blur, JPEG, a colour look per camera): its ROC AUC and its
  strongest evidence (top log LR);
- the app, on bench.linking's cached tracking runs of the sample and of its hue-rotated copy (the same
  tracklets for every model): ROC AUC of the link log-odds over cross-camera tracklet pairs, multi-camera
  IDF1 at the default settings, cross-camera links right / wrong, and the oracle (best IDF1 over a
  min_probability sweep chosen on the ground truth: an upper bound);
- how the run's recipe differs from the shipped one, and its training minutes (train_log.csv; the
  machine may have been shared, see the run's log).

    python -m bench.linking                          # once: the tracking runs re-linked here
    python -m bench.recipes runs/cuhk03_light runs/cuhk03_plain
    python -m bench.recipes runs/cuhk03_strong16 runs/cuhk03_plain runs/soup_strong16_plain.pt   # a `reid average` of two
    python -m bench.recipes runs/cuhk03_plain10 runs/soup_shipped_plain10.pt   # the shipped weights as an ingredient
    python -m bench.recipes runs/swa_curriculum24_e20_e24.pt   # two checkpoints of one run (its minutes once)
    python -m bench.recipes runs/soup_curriculum_branch.pt   # a run and its branch (their shared epochs once)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from bench.backbones import epoch_seconds, run_config, wall_minutes
from bench.linking import descriptor_quality, ground_truth_person, relink_with
from bench.record import write_record
from cctrack import cache
from cctrack.embed import load_embedder
from reid.checkpoint import load_checkpoint
from reid.errors import ReidError
from reid.evaluate import evaluate_checkpoint
from reid.pretrained import DEFAULT_WEIGHTS_PATH
from reid.train import TrainConfig, load_config

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results"
SHIPPED_CONFIG = REPOSITORY / "configs" / "cssc_cuhk03_mobilenetv2.yaml"
FOOTAGE = ("sample", "hue_rotated_cam_right")  # bench.linking's tracking runs
# Settings that say how a run was executed, not what it learned.
EXECUTION_KEYS = {"threads", "num_workers", "checkpoint_every", "cache_images"}


def recipe_changes(config: TrainConfig, shipped: TrainConfig) -> dict:
    """{setting: [shipped value, this run's value]} for every training setting that differs."""
    ours, theirs = config.as_dict(), shipped.as_dict()
    return {key: [theirs[key], value] for key, value in ours.items() if value != theirs[key] and key not in EXECUTION_KEYS}


def app_figures(weights: Path, linking_dir: Path) -> dict:
    """bench.linking's figures for these weights on each cached tracking run (folders left as the default makes them)."""
    figures = {}
    for name in FOOTAGE:
        out_dir = linking_dir / name
        if not (out_dir / "identities.json").is_file():
            raise ReidError(f"{out_dir} has no tracking run: run `python -m bench.linking` first")
        table = cache.load_tracklets(out_dir, cache.load_run_info(out_dir))
        person = ground_truth_person(table, linking_dir / "gt")
        figures[name] = descriptor_quality(out_dir, linking_dir / "gt", person, table, [f"reid.checkpoint={weights}"])
        relink_with(out_dir, [])
    return figures


def recipe_row(weights: Path, changes: dict, minutes: float, data_root: Path, linking_dir: Path) -> dict:
    val = evaluate_checkpoint(weights, "cuhk03", data_root, device="cpu")["standard"]
    calibration = load_embedder(weights, "cpu").calibration
    return {
        "weights": str(weights.relative_to(REPOSITORY) if weights.is_relative_to(REPOSITORY) else weights),
        "changes_from_shipped": changes,
        "train_minutes": minutes,
        "val_rank1": 100 * val["rank1"],
        "val_mAP": 100 * val["mAP"],
        "calibration_auc": calibration.roc_auc,
        "calibration_top_log_lr": max(calibration.curve_log_lr),
        "app": app_figures(weights, linking_dir),
    }


def candidate_row(candidate: Path, shipped: TrainConfig, data_root: Path, linking_dir: Path) -> dict:
    """The row of a finished run's folder, or of a weights file `reid average` made from finished runs
    (its training minutes are theirs together)."""
    if candidate.is_dir():
        changes = recipe_changes(run_config(candidate), shipped)
        return recipe_row((candidate / "model_final.pt").resolve(), changes, wall_minutes(candidate), data_root, linking_dir)
    ingredients = (load_checkpoint(candidate).get("extra") or {}).get("averaged_from")
    if not ingredients:
        raise ReidError(f"{candidate} is neither a training run's folder nor a weights file made by `reid average`")
    runs = [Path(entry["file"]).parent for entry in ingredients]

    def changes_of(run: Path) -> dict:  # the shipped weights' folder holds their log, not a run's checkpoints
        return {} if run.resolve() == DEFAULT_WEIGHTS_PATH.parent.resolve() else recipe_changes(run_config(run), shipped)

    changes = {"average_of": {entry["file"]: {"share": entry["share"], **changes_of(run)} for run, entry in zip(runs, ingredients)}}
    return recipe_row(candidate.resolve(), changes, shared_wall_minutes(runs), data_root, linking_dir)


def shared_wall_minutes(runs: list[Path]) -> float:
    """The training minutes of several runs together, each epoch counted once.

    Checkpoints of one run (weight averaging along its trajectory) cost that run once, and a run resumed
    from another's checkpoint (a branch) starts its train_log.csv with that run's own rows, copied: the
    epochs they share were trained once, so identical rows count once."""
    rows: dict[str, float] = {}
    for run in runs:
        rows.update(epoch_seconds(run))
    return sum(rows.values()) / 60


def print_rows(rows: dict[str, dict]) -> None:
    print(f"{'recipe':<12}{'minutes':>8}{'val r1':>8}{'mAP':>7}{'cal AUC':>9}{'top LR':>8}"
          f"{'AUC':>7}{'IDF1':>7}{'oracle':>8}{'hue AUC':>9}{'IDF1':>7}{'oracle':>8}")
    for name, row in rows.items():
        cells = ""
        for footage in FOOTAGE:
            app = row["app"][footage]
            cells += (f"{app['cross_camera_pair_auc']:{9 if cells else 7}.3f}{app['multi_camera_idf1']:7.3f}"
                      f"{max(app['oracle_min_probability_sweep'].values()):8.3f}")
        print(f"{name:<12}{row['train_minutes']:8.1f}{row['val_rank1']:8.1f}{row['val_mAP']:7.1f}"
              f"{row['calibration_auc']:9.3f}{row['calibration_top_log_lr']:8.2f}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+",
                        help="finished `reid train --out` folders of candidate recipes, or weights files `reid average` made of them")
    parser.add_argument("--data-root", type=Path, default=REPOSITORY.parent / "shared" / "data" / "CUHK03")
    parser.add_argument("--linking", type=Path, default=RESULTS / "linking", help="bench.linking's --out")
    parser.add_argument("--out", type=Path, default=RESULTS / "recipes.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    shipped = load_config(SHIPPED_CONFIG)
    rows = {"shipped": recipe_row(DEFAULT_WEIGHTS_PATH, {}, wall_minutes(DEFAULT_WEIGHTS_PATH.parent),
                                  args.data_root, args.linking)}
    for candidate in args.runs:
        rows[candidate.stem if candidate.is_file() else candidate.name] = candidate_row(candidate, shipped, args.data_root, args.linking)
    print_rows(rows)
    write_record(args.out, {
        "val_protocol": "CUHK03 detected val (reid eval): 100 ids, query view 0, gallery view 1, flip-averaged f_cssc",
        "app_protocol": "bench.linking's tracklets of the sample and its hue-rotated copy, default link settings",
        "results": rows,
    })


if __name__ == "__main__":
    main()
