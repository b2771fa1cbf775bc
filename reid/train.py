"""Train CSSC: config, schedule and the training loop, read top to bottom (spec "Training recipe").

Outputs in out_dir: checkpoint_last.pt (every epoch) and checkpoint_epochNNN.pt (every `checkpoint_every`
epochs) to resume from, model_final.pt (inference weights), train_log.csv and training_curve.png.
Resuming is exact: every epoch reseeds all RNGs from (seed, epoch), so the batches and augmentations of
epoch e do not depend on whether the run was interrupted before it.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import os
import random
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from reid.backbones import BACKBONE_NAMES
from reid.checkpoint import load_checkpoint, save_checkpoint, save_weights
from reid.datasets import DATASET_NAMES, load_training_sets
from reid.datasets.base import Sample, relabel_train
from reid.datasets.images import TrainImages
from reid.augment import DEGRADATION_PROBABILITIES, AugmentSettings, augment_batch
from reid.device import resolve_device
from reid.errors import ReidError
from reid.files import atomic_path
from reid.losses import cssc_loss
from reid.model import CSSC, build_model
from reid.sampler import IdentityBatchSampler

LOG_COLUMNS = ("epoch", "loss", "identity_loss", "triplet_loss", "accuracy", "lr", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str  # prcc | ltcc | celeb | market | folder
    backbone: str = "resnet50"
    pretrained: str = "imagenet"  # "imagenet", "none" (random init) or a path to a backbone state_dict
    input_size: tuple[int, int] = (384, 192)  # (height, width) pixels
    epochs: int = 120
    ids_per_batch: int = 4  # P
    images_per_id: int = 8  # K
    lr: float = 3e-4  # Adam
    weight_decay: float = 5e-4
    warmup_epochs: int = 10  # linear warm-up from warmup_start_factor x lr
    warmup_start_factor: float = 0.1
    lr_milestones: tuple[int, ...] = (30, 60)  # 0-based epochs from which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    triplet_start_epoch: int | None = None  # 0-based epoch from which the triplet loss is on; None: first milestone
    triplet_margin: float = 0.3
    label_smoothing: float = 0.1
    flip_probability: float = 0.5
    pad: int = 10  # pixels of padding before the random crop
    erasing_probability: float = 0.5
    # Surveillance-footage augmentations (reid.augment), off in the paper recipe: per-image probabilities.
    garment_recolour_probability: float = 0.0  # pose-guided new outfit colours (reid.garments)
    colour_probability: float = 0.0  # white balance, gamma, brightness, contrast
    colour_strength: float = 0.3
    downscale_probability: float = 0.0  # shrink to a random height >= min_downscale_height, enlarge back
    min_downscale_height: int = 40
    blur_probability: float = 0.0
    max_blur_sigma: float = 1.5
    jpeg_probability: float = 0.0
    min_jpeg_quality: int = 30
    # 0-based epoch from which the degradations (colour, downscale, blur, JPEG) are on; before it the
    # model learns identities on clean crops (a curriculum: degraded from the start, learning is slower).
    degrade_start_epoch: int = 0
    seed: int = 666
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler)
    cpu_bf16: bool = False  # bf16 autocast when training on a CPU with native bf16 (1.2x faster on AVX-512 BF16); ignored elsewhere
    checkpoint_every: int = 10  # epochs between kept checkpoints (checkpoint_last.pt is written every epoch)
    cache_images: bool = False  # decode every training image once into memory (see TrainImages)
    num_workers: int | None = None  # DataLoader processes when not caching; None: one per spare core, at most 4
    threads: int | None = None  # torch CPU threads; None: the cores this process may use
    # The last N training identities are not trained on; they calibrate the link probability (reid.calibration).
    calibration_ids: int = 0
    folder_train_fraction: float = 0.5  # "folder" dataset only: fraction of identities used for training
    # More folder-layout datasets whose train identities are added under fresh ids (reid.datasets.load_training_sets).
    extra_train_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "dataset": (self.dataset in DATASET_NAMES, f"one of {', '.join(DATASET_NAMES)}"),
            "backbone": (self.backbone in BACKBONE_NAMES, f"one of {', '.join(BACKBONE_NAMES)}"),
            "input_size": (all(side >= 16 for side in self.input_size), "two sides >= 16 pixels"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "ids_per_batch": (self.ids_per_batch >= 2, ">= 2 (the triplet loss needs negatives)"),
            "images_per_id": (self.images_per_id >= 2, ">= 2 (the triplet loss needs positives)"),
            "lr": (self.lr > 0, "> 0"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "warmup_epochs": (self.warmup_epochs >= 0, ">= 0"),
            "warmup_start_factor": (0 < self.warmup_start_factor <= 1, "in (0, 1]"),
            "lr_milestones": (list(self.lr_milestones) == sorted(set(self.lr_milestones)), "strictly increasing"),
            "lr_gamma": (0 < self.lr_gamma <= 1, "in (0, 1]"),
            "triplet_start_epoch": (self.triplet_start_epoch is None or self.triplet_start_epoch >= 0, ">= 0 or null"),
            "triplet_margin": (self.triplet_margin >= 0, ">= 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "flip_probability": (0 <= self.flip_probability <= 1, "in [0, 1]"),
            "pad": (self.pad >= 0, ">= 0"),
            "erasing_probability": (0 <= self.erasing_probability <= 1, "in [0, 1]"),
            "checkpoint_every": (self.checkpoint_every >= 1, ">= 1"),
            "num_workers": (self.num_workers is None or self.num_workers >= 0, ">= 0 or null"),
            "threads": (self.threads is None or self.threads >= 1, ">= 1 or null"),
            "calibration_ids": (self.calibration_ids >= 0, ">= 0"),
            "degrade_start_epoch": (self.degrade_start_epoch >= 0, ">= 0"),
            "min_downscale_height": (self.min_downscale_height >= 8, ">= 8 pixels"),
            "max_blur_sigma": (self.max_blur_sigma > 0.3, "> 0.3 pixels"),
            "min_jpeg_quality": (1 <= self.min_jpeg_quality <= 95, "in [1, 95]"),
            "colour_strength": (0 <= self.colour_strength < 1, "in [0, 1)"),
            **{key: (0 <= getattr(self, key) <= 1, "in [0, 1]") for key in (
                "garment_recolour_probability", "colour_probability", "downscale_probability",
                "blur_probability", "jpeg_probability")},
            "folder_train_fraction": (0 < self.folder_train_fraction <= 1, "in (0, 1]"),
            "extra_train_roots": (all(self.extra_train_roots), "a list of folder-layout dataset paths"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ReidError(f"config: {key} = {getattr(self, key)!r} is invalid; expected {expected}")

    @property
    def augment_settings(self) -> AugmentSettings:
        return AugmentSettings(**{field.name: getattr(self, field.name) for field in dataclasses.fields(AugmentSettings)})

    def augment_settings_at(self, epoch: int) -> AugmentSettings:
        """The augmentations of 0-based `epoch`: without the degradations before degrade_start_epoch. An
        augmentation of probability 0 draws no random numbers, so a curriculum's clean epochs are those of
        the same recipe with the degradations off."""
        if epoch >= self.degrade_start_epoch:
            return self.augment_settings
        return dataclasses.replace(self.augment_settings, **dict.fromkeys(DEGRADATION_PROBABILITIES, 0.0))

    @property
    def first_triplet_epoch(self) -> int:
        if self.triplet_start_epoch is not None:
            return self.triplet_start_epoch
        return self.lr_milestones[0] if self.lr_milestones else 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from plain values (YAML), naming any unknown key or wrongly typed value."""
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise ReidError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(hints)}")
        if "dataset" not in values:
            raise ReidError(f"{source}: missing required key 'dataset'")
        return cls(**{key: _coerce(key, value, hints[key], source) for key, value in values.items()})

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the non-None overrides applied (validated like a config file)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return TrainConfig.from_dict({**self.as_dict(), **given}, source="overrides")

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check `value` against the field's type hint; lists become tuples, ints are accepted for floats."""
    def fail() -> typing.NoReturn:
        expected = str(hint) if typing.get_origin(hint) else hint.__name__
        raise ReidError(f"{source}: {key} = {value!r} has the wrong type; expected {expected}")

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        item_type, *rest = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or any(type(item) is not item_type for item in value):
            fail()
        if rest != [Ellipsis] and len(value) != len(typing.get_args(hint)):
            fail()
        return tuple(value)
    if hint is float and type(value) in (int, float):
        return float(value)
    if type(value) is not hint:
        fail()
    return value


def load_config(path: str | os.PathLike) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ReidError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ReidError(f"config {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(values, dict):
        raise ReidError(f"config {path} must be a mapping of keys to values")
    return TrainConfig.from_dict(values, source=str(path))


def lr_factor(epoch: int, warmup_epochs: int, warmup_start_factor: float, milestones: tuple[int, ...], gamma: float) -> float:
    """Multiplier of the base lr in 0-based `epoch`: linear warm-up, then x gamma at each milestone."""
    warmup = 1.0
    if epoch < warmup_epochs:
        warmup = warmup_start_factor + (1 - warmup_start_factor) * epoch / warmup_epochs
    return warmup * gamma ** bisect.bisect_right(milestones, epoch)


@dataclass(frozen=True)
class EpochLog:
    epoch: int  # 1-based number of the finished epoch
    loss: float  # mean total loss over the epoch's batches
    identity_loss: float
    triplet_loss: float
    accuracy: float  # fraction of training images whose final logits pick the right identity
    lr: float  # learning rate used during the epoch
    seconds: float  # wall-clock time of the epoch


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    final_weights: Path  # model_final.pt, inference weights
    last_checkpoint: Path  # checkpoint_last.pt, to resume from
    history: list[EpochLog]  # every epoch so far, including those before a resume


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, and a
    bf16 training step measured 12x slower than fp32 (AVX2-only AMD EPYC)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no fast bf16 either
        return False


def _mixed_precision(device: torch.device, enabled: bool, cpu_bf16: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """(autocast dtype or None, scaler): bf16 needs no loss scaling; fp16 does. cpu_bf16 only applies on
    CPUs with native bf16."""
    if device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16():
        return torch.bfloat16, torch.amp.GradScaler("cuda", enabled=False)
    if not (enabled and device.type == "cuda"):
        return None, torch.amp.GradScaler("cuda", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def _resume(path: Path, model: CSSC, optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device) -> int:
    """Load a training checkpoint into the objects; returns the number of epochs it had finished."""
    payload = load_checkpoint(path, map_location=device)
    if "optimizer" not in payload:
        raise ReidError(f"{path} is an inference weights file; resume needs a training checkpoint (checkpoint_*.pt)")
    arch = payload["arch"]
    if (arch["backbone"], arch["num_ids"]) != (model.backbone_name, model.num_ids):
        raise ReidError(
            f"{path} holds CSSC-{arch['backbone']} with {arch['num_ids']} ids, but this run builds "
            f"CSSC-{model.backbone_name} with {model.num_ids} ids"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    return int(payload["epoch"])


def train(
    config: TrainConfig,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    resume: Path | None = None,
    device: str = "auto",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train CSSC on `config.dataset` at `data_root`, writing checkpoints, logs and the curve to `out_dir`."""
    device = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads, num_workers = machine_parallelism(config)
    if device.type == "cpu":
        torch.set_num_threads(threads)  # more threads than cores is up to 10x slower under load
    dataset = load_training_sets(config.dataset, data_root, config.extra_train_roots, config.folder_train_fraction)
    log(dataset.summary())
    train_samples, calibration_samples = split_calibration_ids(dataset.train, config.calibration_ids)
    num_train_ids = len({sample.pid for sample in train_samples})
    if calibration_samples:
        log(f"held back for calibration: {len(calibration_samples)} images of {config.calibration_ids} ids")
    masks = None
    if config.garment_recolour_probability > 0:
        from reid.garments import cached_keypoints, garment_masks

        # Keyed by all training images, so that changing calibration_ids re-uses the cache.
        keypoints = cached_keypoints([sample.path for sample in dataset.train], out_dir / "garment_keypoints.npz", log)
        row_of_path = {sample.path: row for row, sample in enumerate(dataset.train)}
        masks = garment_masks(keypoints[[row_of_path[sample.path] for sample in train_samples]], *config.input_size)
    images = TrainImages(train_samples, config.input_size, masks, cache=config.cache_images, num_workers=num_workers)
    sampler = IdentityBatchSampler([s.pid for s in train_samples], config.ids_per_batch, config.images_per_id, config.seed)

    _seed_everything(config.seed)
    pretrained = "none" if resume is not None else config.pretrained  # resumed weights replace them anyway
    model = build_model(config.backbone, num_train_ids, pretrained).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = functools.partial(
        lr_factor,
        warmup_epochs=config.warmup_epochs,
        warmup_start_factor=config.warmup_start_factor,
        milestones=config.lr_milestones,
        gamma=config.lr_gamma,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start_epoch = _resume(Path(resume), model, optimizer, scheduler, device) if resume is not None else 0
    history = [row for row in _read_log(out_dir / "train_log.csv") if row.epoch <= start_epoch]
    autocast_dtype, scaler = _mixed_precision(device, config.amp, config.cpu_bf16)
    if device.type == "cpu" and config.cpu_bf16 and autocast_dtype is None:
        log(f"cpu_bf16: this CPU has no native bf16 ({torch.backends.cpu.get_cpu_capability()}), so training runs in fp32")
    last_checkpoint = out_dir / "checkpoint_last.pt"

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        _seed_everything(config.seed + epoch)
        sampler.set_epoch(epoch)
        model.train()
        use_triplet = epoch >= config.first_triplet_epoch
        augment = config.augment_settings_at(epoch)
        lr = optimizer.param_groups[0]["lr"]
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, identity, triplet, correct (summed)
        images_seen = 0
        batches = sampler.batches()
        for pixels, masks, pids in tqdm(images.batches(batches), total=len(batches), desc=f"epoch {epoch + 1}/{config.epochs}",
                                        disable=not progress, leave=False):
            pixels = pixels.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True) if masks is not None else None
            batch_images = augment_batch(pixels, masks, augment).contiguous(memory_format=torch.channels_last)
            labels = pids.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                output = model(batch_images)
            parts = cssc_loss(output, labels, use_triplet, config.triplet_margin, config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts.total).backward()
            scaler.step(optimizer)
            scaler.update()
            correct = (output.logits[-1].argmax(dim=1) == labels).sum()
            batch = len(labels)
            sums += torch.stack([parts.total.detach() * batch, parts.identity.detach() * batch,
                                 parts.triplet.detach() * batch, correct.double()])
            images_seen += batch
        scheduler.step()

        loss, identity_loss, triplet_loss, correct = (sums / max(images_seen, 1)).tolist()
        row = EpochLog(epoch + 1, loss, identity_loss, triplet_loss, correct, lr, time.perf_counter() - started)
        history.append(row)
        log(
            f"epoch {row.epoch}/{config.epochs}  loss {row.loss:.4f} (id {row.identity_loss:.4f}, "
            f"triplet {row.triplet_loss:.4f})  acc {row.accuracy:.3f}  lr {row.lr:.2e}  {row.seconds:.1f}s"
        )
        _write_log(history, out_dir / "train_log.csv")
        _plot_curve(history, out_dir / "training_curve.png")
        arguments = (model, optimizer, scheduler, epoch + 1, config.as_dict(), list(config.input_size))
        save_checkpoint(last_checkpoint, *arguments)
        if (epoch + 1) % config.checkpoint_every == 0:
            save_checkpoint(out_dir / f"checkpoint_epoch{epoch + 1:03d}.pt", *arguments)

    extra = {"input_size": list(config.input_size), "dataset": config.dataset, "epochs": config.epochs}
    final_weights = save_weights(model, out_dir / "model_final.pt", extra=extra)
    if calibration_samples:
        from reid.calibration import calibrate_weights_file

        log(calibrate_weights_file(final_weights, calibration_samples, device).summary())
    return TrainResult(out_dir, final_weights, last_checkpoint, history)


def machine_parallelism(config: TrainConfig) -> tuple[int, int]:
    """(torch threads, DataLoader workers) from the config, or from the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = config.threads if config.threads is not None else cores
    if config.num_workers is not None:
        return threads, config.num_workers
    return threads, 0 if config.cache_images else min(4, cores - 1)


def split_calibration_ids(samples: list[Sample], calibration_ids: int) -> tuple[list[Sample], list[Sample]]:
    """(training samples relabelled 0.., samples of the last `calibration_ids` identities, never trained on)."""
    if calibration_ids == 0:
        return samples, []
    identities = sorted({sample.pid for sample in samples})
    if calibration_ids > len(identities) - 2:
        raise ReidError(f"calibration_ids = {calibration_ids} leaves fewer than 2 of {len(identities)} identities to train on")
    held_back = set(identities[-calibration_ids:])
    train, _ = relabel_train([sample for sample in samples if sample.pid not in held_back])
    return train, [sample for sample in samples if sample.pid in held_back]


def _write_log(history: list[EpochLog], path: Path) -> None:
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(LOG_COLUMNS)
        for row in history:
            writer.writerow([row.epoch, *(f"{getattr(row, column):.6g}" for column in LOG_COLUMNS[1:])])


def _read_log(path: Path) -> list[EpochLog]:
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return [
            EpochLog(int(record["epoch"]), *(float(record[column]) for column in LOG_COLUMNS[1:]))
            for record in csv.DictReader(file)
        ]


def _plot_curve(history: list[EpochLog], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row.epoch for row in history]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(epochs, [row.loss for row in history], label="total loss")
    loss_axis.plot(epochs, [row.identity_loss for row in history], label="identity loss")
    loss_axis.plot(epochs, [row.triplet_loss for row in history], label="triplet loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    accuracy_axis = loss_axis.twinx()
    accuracy_axis.plot(epochs, [row.accuracy for row in history], color="black", linestyle="--", label="accuracy")
    accuracy_axis.set_ylabel("train accuracy")
    accuracy_axis.set_ylim(0, 1)
    lines = loss_axis.get_lines() + accuracy_axis.get_lines()
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
