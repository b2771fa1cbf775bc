"""Training throughput (crops/s) of `reid train`'s step against a torchreid-style step, same run.

Both train the same CSSC-MobileNetV2 (683 ids, 128x64 input, P 16 x K 4 = 64 crops a step, Adam, the
CSSC losses) on the same CUHK03 train images, on the CPU:

- ours: images decoded once into a uint8 tensor (cache_images), batch augmentation on the device
  (flip, pad-crop, erasing, and the surveillance augmentations of configs/cssc_cuhk03_mobilenetv2.yaml),
  channels_last, bf16 autocast, torch threads = cores;
- peer: what a torchreid user runs: a DataLoader decoding JPEGs with PIL in worker processes
  (min(4, cores - 1)), per-image torchvision transforms (resize, flip, pad-crop, normalise, erasing),
  fp32, default threads.

Each is warmed up, then timed over --steps steps, --repeats times; the median and the range are reported.

With --backbone (repeatable) only our step is timed, once per backbone, same data and recipe: the training
throughput that bench/backbones.py turns into CPU-minutes per run.

    python -m bench.train [--steps 8] [--repeats 3]
    python -m bench.train --backbone mobilenetv2 --backbone efficientnet_lite0 --out bench/results/train_backbones.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cctrack.files import write_json_atomic
from reid.augment import augment_batch
from reid.backbones import BACKBONE_NAMES
from reid.datasets import load_dataset
from reid.datasets.images import ImageDataset, TrainImages
from reid.garments import cached_keypoints, garment_masks
from reid.losses import cssc_loss
from reid.model import build_model
from reid.sampler import IdentityBatchSampler
from reid.train import load_config, split_calibration_ids
from reid.transforms import build_train_transform

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIG = REPOSITORY / "configs" / "cssc_cuhk03_mobilenetv2.yaml"
RESULTS = REPOSITORY / "bench" / "results"


def timed_steps(batches, model, optimizer, autocast: bool, steps: int) -> float:
    """Seconds for `steps` training steps drawn from the iterator `batches` (images ready for the model)."""
    started = time.perf_counter()
    for _ in range(steps):
        images, labels = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            output = model(images)
        loss = cssc_loss(output, labels, True).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPOSITORY.parent / "shared" / "data" / "CUHK03")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2560, help="training images used (a prefix of the set)")
    parser.add_argument("--backbone", action="append", choices=BACKBONE_NAMES,
                        help="time only our step, on this backbone (repeatable); default: ours and peer on the config's")
    parser.add_argument("--out", type=Path, default=RESULTS / "train.json")
    args = parser.parse_args()
    config = load_config(CONFIG)
    cores = len(os.sched_getaffinity(0))
    train, _ = split_calibration_ids(load_dataset("cuhk03", args.data_root).train, config.calibration_ids)
    samples = train[: args.images]
    pids = [s.pid for s in samples]
    sampler = IdentityBatchSampler(pids, config.ids_per_batch, config.images_per_id, config.seed)
    batch_indices = sampler.batches() * 50
    num_ids = len(set(s.pid for s in train))

    keypoints = cached_keypoints([s.path for s in samples], RESULTS / "bench_train_keypoints.npz")
    ours_images = TrainImages(samples, config.input_size, garment_masks(keypoints, *config.input_size), cache=True)

    def ours_batches():
        for pixels, masks, batch_pids in ours_images.batches(batch_indices):
            yield augment_batch(pixels, masks, config.augment_settings).contiguous(memory_format=torch.channels_last), batch_pids

    transform = build_train_transform(config.input_size, config.flip_probability, config.pad, config.erasing_probability)
    peer_loader = DataLoader(ImageDataset(samples, transform), batch_sampler=batch_indices, num_workers=min(4, cores - 1))

    def peer_batches():
        for images, batch_pids, _, _ in peer_loader:
            yield images, batch_pids

    default_threads = torch.get_num_threads()
    if args.backbone:
        setups = [(f"ours_{backbone}", backbone, ours_batches, cores, True, True) for backbone in args.backbone]
    else:
        setups = [("ours", config.backbone, ours_batches, cores, True, True),
                  ("peer", config.backbone, peer_batches, default_threads, False, False)]
    results = {}
    for name, backbone, make_batches, threads, channels_last, autocast in setups:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_model(backbone, num_ids, "imagenet").train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        batches = iter(make_batches())
        timed_steps(batches, model, optimizer, autocast, 2)  # warm-up: allocator, oneDNN kernels, workers
        rates = []
        for _ in range(args.repeats):
            seconds = timed_steps(batches, model, optimizer, autocast, args.steps)
            rates.append(args.steps * config.ids_per_batch * config.images_per_id / seconds)
        results[name] = {"crops_per_second_median": statistics.median(rates), "min": min(rates), "max": max(rates),
                         "backbone": backbone, "threads": threads, "bf16": autocast, "channels_last": channels_last}
        print(f"{name}: {statistics.median(rates):6.1f} crops/s (min {min(rates):.1f}, max {max(rates):.1f})")
    backbones = ", ".join(dict.fromkeys(setup[1] for setup in setups))
    record = {
        "command": " ".join(["python -m bench.train", *sys.argv[1:]]),
        "machine": {"cores": cores, "torch_default_threads": default_threads, "device": "cpu",
                    "processor": platform.processor() or platform.machine()},
        "date": time.strftime("%Y-%m-%d"),
        "setup": f"CSSC-{backbones}, {num_ids} ids, input {list(config.input_size)}, batch "
                 f"{config.ids_per_batch}x{config.images_per_id}, {args.steps} steps x {args.repeats} repeats",
        "results": results,
    }
    if "peer" in results:
        record["ratio"] = results["ours"]["crops_per_second_median"] / results["peer"]["crops_per_second_median"]
        print(f"ours / peer: {record['ratio']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
