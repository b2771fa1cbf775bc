"""Which CSSC backbone gives the most CUHK03 val rank-1 per CPU-minute of training.

Takes training runs (`reid train --out RUN`) that differ only in `backbone` (configs/compare_backbones_*.yaml)
and, for each:
- evaluates RUN/model_final.pt with `reid eval`'s protocol (reid.evaluate.evaluate_checkpoint, CUHK03
  detected val: 100 unseen ids, query one camera view, gallery the other, flip-averaged f_cssc);
- counts the crops the run trained on (epochs x the sampler's images per epoch, recomputed from the config
  the run saved in its checkpoint);
- turns them into CPU-minutes with the backbone's training throughput measured by bench/train.py on a quiet
  machine (`--throughput`, crops/s of our step; median of repeats), not with the run's own wall time, which
  other processes on the machine inflate. A CPU-minute is a minute of this whole machine (all its cores).

    python -m bench.train --backbone mobilenetv2 --backbone efficientnet_lite0 --out bench/results/train_backbones.json
    python -m bench.backbones runs/compare_mobilenetv2 runs/compare_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from bench.record import write_record
from reid.checkpoint import load_checkpoint
from reid.datasets import load_training_sets
from reid.errors import ReidError
from reid.evaluate import evaluate_checkpoint
from reid.sampler import IdentityBatchSampler
from reid.train import TrainConfig, split_calibration_ids

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results"


def run_config(run: Path) -> TrainConfig:
    """The config a finished run trained with, as saved in its last training checkpoint."""
    payload = load_checkpoint(run / "checkpoint_last.pt")
    config = TrainConfig.from_dict(payload["config"], source=str(run / "checkpoint_last.pt"))
    if payload["epoch"] != config.epochs or not (run / "model_final.pt").is_file():
        raise ReidError(f"{run} has not finished: {payload['epoch']} of {config.epochs} epochs, model_final.pt missing?")
    return config


def crops_trained(config: TrainConfig, data_root: Path) -> int:
    """Crops the run's training steps saw: the P x K sampler's batches, summed over the run's epochs."""
    dataset = load_training_sets(config.dataset, data_root, config.extra_train_roots, config.folder_train_fraction)
    train_samples, _ = split_calibration_ids(dataset.train, config.calibration_ids)
    sampler = IdentityBatchSampler([s.pid for s in train_samples], config.ids_per_batch, config.images_per_id, config.seed)
    total = 0
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        total += sum(len(batch) for batch in sampler.batches())
    return total


def epoch_seconds(run: Path) -> dict[str, float]:
    """Each row of the run's train_log.csv, as written (it starts with the epoch), to its seconds."""
    lines = (run / "train_log.csv").read_text().splitlines()
    column = lines[0].split(",").index("seconds")
    return {line: float(line.split(",")[column]) for line in lines[1:]}


def wall_minutes(run: Path) -> float:
    """The run's own training time (train_log.csv), shared with whatever else ran on the machine."""
    return sum(epoch_seconds(run).values()) / 60


def same_schedule(configs: dict[Path, TrainConfig]) -> None:
    """Refuse runs whose configs differ in anything but the backbone: the comparison would not be fair."""
    first_run, first = next(iter(configs.items()))
    for run, config in configs.items():
        differing = [key for key, value in config.as_dict().items() if key != "backbone" and value != first.as_dict()[key]]
        if differing:
            raise ReidError(f"{run} and {first_run} differ in {', '.join(differing)}, not only in the backbone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="finished `reid train --out` folders")
    parser.add_argument("--data-root", type=Path, default=REPOSITORY.parent / "shared" / "data" / "CUHK03")
    parser.add_argument("--throughput", type=Path, default=RESULTS / "train_backbones.json",
                        help="bench/train.py --backbone ... results (crops/s of our training step per backbone)")
    parser.add_argument("--out", type=Path, default=RESULTS / "backbones.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    configs = {run: run_config(run) for run in args.runs}
    same_schedule(configs)
    throughput = json.loads(args.throughput.read_text())
    rows = {}
    for run, config in configs.items():
        measured = throughput["results"].get(f"ours_{config.backbone}")
        if measured is None:
            raise ReidError(f"{args.throughput} has no training throughput for {config.backbone}")
        crops_per_second = measured["crops_per_second_median"]
        crops = crops_trained(config, args.data_root)
        cpu_minutes = crops / crops_per_second / 60
        metrics = evaluate_checkpoint(run / "model_final.pt", "cuhk03", args.data_root, device="cpu")["standard"]
        rows[config.backbone] = {
            "run": str(run),
            "rank1": 100 * metrics["rank1"],
            "mAP": 100 * metrics["mAP"],
            "train_crops_per_second": crops_per_second,
            "crops_trained": crops,
            "cpu_minutes": cpu_minutes,
            "rank1_per_cpu_minute": 100 * metrics["rank1"] / cpu_minutes,
            "wall_minutes_shared_machine": wall_minutes(run),
        }
    print(f"{'backbone':<20}{'rank-1':>8}{'mAP':>8}{'crops/s':>9}{'CPU-min':>9}{'rank-1/CPU-min':>16}{'wall min':>10}")
    for backbone, row in rows.items():
        print(f"{backbone:<20}{row['rank1']:8.1f}{row['mAP']:8.1f}{row['train_crops_per_second']:9.1f}"
              f"{row['cpu_minutes']:9.1f}{row['rank1_per_cpu_minute']:16.2f}{row['wall_minutes_shared_machine']:10.1f}")
    winner = max(rows, key=lambda backbone: rows[backbone]["rank1_per_cpu_minute"])
    print(f"most rank-1 per CPU-minute: {winner}")
    schedule = next(iter(configs.values()))
    write_record(args.out, {
        "protocol": "CUHK03 detected val (reid eval): 100 ids, query view 0, gallery view 1, flip-averaged f_cssc",
        "schedule": {key: value for key, value in schedule.as_dict().items() if key != "backbone"},
        "throughput": {"source": str(args.throughput.relative_to(REPOSITORY) if args.throughput.is_relative_to(REPOSITORY)
                                     else args.throughput), "command": throughput["command"],
                       "setup": throughput["setup"]},
        "cpu_minutes": "crops trained / training crops per second (whole machine, quiet), in minutes",
        "results": rows,
        "winner": winner,
    })


if __name__ == "__main__":
    main()
