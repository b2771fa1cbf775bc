"""Training: config validation, schedule, sampler, losses, a tiny CPU run that learns, and exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reid.augment import DEGRADATION_PROBABILITIES
from reid.checkpoint import load_checkpoint
from reid.datasets import load_dataset
from reid.errors import ReidError
from reid.evaluate import evaluate_checkpoint
from reid.losses import batch_hard_triplet_loss, cssc_loss
from reid.model import CSSCOutput
from reid.sampler import IdentityBatchSampler
from reid.train import TrainConfig, load_config, lr_factor, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["prcc", "ltcc", "celeb", "market"])
def test_shipped_paper_configs_hold_the_recipe(name):
    config = load_config(CONFIGS / f"cssc_{name}.yaml")
    assert (config.dataset, config.backbone, config.pretrained) == (name, "resnet50", "imagenet")
    assert config.input_size == (384, 192) and config.epochs == 120
    assert config.ids_per_batch * config.images_per_id == 32
    assert (config.ids_per_batch, config.images_per_id) == ((8, 4) if name == "celeb" else (4, 8))
    assert (config.lr, config.weight_decay, config.lr_milestones, config.seed) == (3e-4, 5e-4, (30, 60), 666)
    assert (config.triplet_margin, config.label_smoothing, config.erasing_probability) == (0.3, 0.1, 0.5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("dataset: prcc\nepochs: 10\nlearning_rate: 0.1\n", r"bad.yaml: unknown key\(s\) learning_rate; known keys: dataset"),
        ("dataset: prcc\ninput_size: [384]\n", r"input_size = \[384\] has the wrong type"),
        ("dataset: prcc\nepochs: ten\n", r"epochs = 'ten' has the wrong type; expected int"),
        ("dataset: prcc\nids_per_batch: 1\n", r"ids_per_batch = 1 is invalid; expected >= 2"),
        ("dataset: duke\n", r"dataset = 'duke' is invalid; expected one of prcc"),
        ("epochs: 10\n", r"missing required key 'dataset'"),
        ("- dataset\n", r"must be a mapping"),
    ],
)
def test_config_errors_name_the_bad_key(tmp_path, text, message):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(text)
    with pytest.raises(ReidError, match=message):
        load_config(config_file)


def test_missing_config_file(tmp_path):
    with pytest.raises(ReidError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_are_validated_and_lists_become_tuples():
    config = TrainConfig.from_dict({"dataset": "ltcc", "lr_milestones": [5, 9], "lr": 1})
    assert config.lr_milestones == (5, 9) and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.with_overrides(epochs=3, lr=None).epochs == 3
    with pytest.raises(ReidError, match="epochs = 0 is invalid"):
        config.with_overrides(epochs=0)


def test_paper_schedule():
    paper = dict(warmup_epochs=10, warmup_start_factor=0.1, milestones=(30, 60), gamma=0.1)
    factors = {epoch: lr_factor(epoch, **paper) for epoch in (0, 5, 9, 10, 29, 30, 59, 60, 119)}
    assert factors[0] == pytest.approx(0.1) and factors[5] == pytest.approx(0.55) and factors[9] == pytest.approx(0.91)
    assert factors[10] == factors[29] == 1.0
    assert factors[30] == pytest.approx(0.1) and factors[59] == pytest.approx(0.1)
    assert factors[60] == pytest.approx(0.01) and factors[119] == pytest.approx(0.01)
    assert TrainConfig(dataset="prcc").first_triplet_epoch == 30
    assert load_config(CONFIGS / "cssc_prcc.yaml").first_triplet_epoch == 35


# ---------------------------------------------------------------- sampler


def test_identity_sampler_batches():
    pids = [0] * 9 + [1] * 8 + [2] * 3 + [3] * 16 + [4] * 8
    sampler = IdentityBatchSampler(pids, ids_per_batch=2, images_per_id=4, seed=1)
    batches = sampler.batches()
    used = [index for batch in batches for index in batch]
    for batch in batches:
        batch_pids = [pids[index] for index in batch]
        assert len(batch) == 8 and len(set(batch_pids)) == 2
        assert all(batch_pids.count(pid) == 4 for pid in set(batch_pids))
    # Identities with >= K images: every image at most once per epoch; pid 2 (3 images) is padded by replacement.
    assert len([i for i in used if pids[i] != 2]) == len(set(i for i in used if pids[i] != 2))
    assert 2 <= len(batches) <= (2 + 2 + 1 + 4 + 2) // 2
    assert sampler.batches() == batches  # same (seed, epoch): same batches
    sampler.set_epoch(1)
    assert sampler.batches() != batches
    with pytest.raises(ReidError, match="has 5 identities, fewer than ids_per_batch=6"):
        IdentityBatchSampler(pids, ids_per_batch=6, images_per_id=4)


# ---------------------------------------------------------------- losses


def triplet_loop_reference(features: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    losses = []
    for anchor in range(len(labels)):
        distances = [float(torch.dist(features[anchor], features[other])) for other in range(len(labels))]
        positive = max(d for d, label in zip(distances, labels) if label == labels[anchor])
        negative = min(d for d, label in zip(distances, labels) if label != labels[anchor])
        losses.append(max(0.0, positive - negative + margin))
    return sum(losses) / len(losses)


def test_batch_hard_triplet_matches_loop_reference():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(12, 7, generator=generator)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    expected = triplet_loop_reference(features, labels, 0.3)
    assert float(batch_hard_triplet_loss(features, labels, 0.3)) == pytest.approx(expected, rel=1e-5)
    separated = torch.repeat_interleave(torch.eye(4) * 10, 3, dim=0)  # identities 14 apart, each one point
    assert float(batch_hard_triplet_loss(separated, labels, 0.3)) == 0.0


def test_cssc_loss_parts():
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.zeros(4, 3)  # uniform prediction: cross-entropy = log 3 whatever the smoothing
    features = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 3.0]])
    output = CSSCOutput(features=[features] * 5, logits=[logits] * 5)
    without = cssc_loss(output, labels, use_triplet=False)
    assert float(without.identity) == pytest.approx(5 * np.log(3)) and float(without.triplet) == 0.0
    with_triplet = cssc_loss(output, labels, use_triplet=True)
    assert float(with_triplet.triplet) == pytest.approx(5 * triplet_loop_reference(features, labels, 0.3))
    assert float(with_triplet.total) == pytest.approx(float(with_triplet.identity + with_triplet.triplet))


# ---------------------------------------------------------------- training runs


def chance_rank1(dataset, mode: str) -> float:
    """Expected rank-1 of a random ranking: mean over queries of (valid matches / kept gallery items)."""
    ratios = []
    for query in dataset.query:
        kept = [g for g in dataset.gallery if not (g.pid == query.pid and (
            g.camid == query.camid or (mode == "cloth_changing" and g.clothes_id == query.clothes_id)))]
        matches = sum(g.pid == query.pid for g in kept)
        if matches:
            ratios.append(matches / len(kept))
    return float(np.mean(ratios))


def test_tiny_training_learns_and_beats_chance(cloth_changing_root, tmp_path):
    config = load_config(CONFIGS / "cssc_tiny.yaml").with_overrides(epochs=2)
    lines: list[str] = []
    result = train(config, cloth_changing_root, tmp_path / "run", device="cpu", log=lines.append)

    first, last = result.history
    assert last.loss < first.loss and last.accuracy > first.accuracy
    assert lines[0].startswith("folder: train 72 images / 8 ids") and lines[2].startswith("epoch 2/2  loss")
    run = tmp_path / "run"
    for name in ("model_final.pt", "checkpoint_last.pt", "checkpoint_epoch001.pt", "checkpoint_epoch002.pt"):
        assert (run / name).is_file(), name
    assert (run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log_rows = (run / "train_log.csv").read_text().splitlines()
    assert log_rows[0] == "epoch,loss,identity_loss,triplet_loss,accuracy,lr,seconds" and len(log_rows) == 3
    assert not [p for p in run.iterdir() if ".tmp" in p.name]
    assert load_checkpoint(run / "model_final.pt")["arch"]["input_size"] == [128, 64]

    results = evaluate_checkpoint(run / "model_final.pt", "folder", cloth_changing_root, device="cpu")
    chance = chance_rank1(load_dataset("folder", cloth_changing_root), "cloth_changing")
    assert chance < 0.1
    assert results["cloth_changing"]["rank1"] > 3 * chance
    assert results["standard"]["rank1"] >= results["cloth_changing"]["rank1"] - 0.1


def test_resume_gives_identical_weights(small_train_root, tmp_path):
    config = TrainConfig(
        dataset="folder", backbone="mobilenetv2", pretrained="none", input_size=(128, 64), epochs=2,
        ids_per_batch=2, images_per_id=2, warmup_epochs=1, lr_milestones=(1,), triplet_start_epoch=1,
        num_workers=0, checkpoint_every=1, folder_train_fraction=1.0, lr=1e-3,
    )
    quiet = dict(device="cpu", log=lambda line: None)
    straight = train(config, small_train_root, tmp_path / "straight", **quiet)
    train(config.with_overrides(epochs=1), small_train_root, tmp_path / "interrupted", **quiet)
    resumed = train(config, small_train_root, tmp_path / "interrupted", resume=tmp_path / "interrupted" / "checkpoint_last.pt",
                    **quiet)

    assert [row.epoch for row in resumed.history] == [1, 2]
    assert resumed.history[1].triplet_loss > 0 and straight.history[0].triplet_loss == 0
    assert resumed.history[1].loss == straight.history[1].loss
    straight_weights = load_checkpoint(straight.final_weights)["state_dict"]
    resumed_weights = load_checkpoint(resumed.final_weights)["state_dict"]
    assert straight_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(straight_weights[key], resumed_weights[key]) for key in straight_weights)
    last = load_checkpoint(straight.last_checkpoint)
    assert last["epoch"] == 2 and last["config"]["lr_milestones"] == [1]


def test_degradations_start_at_their_epoch(small_train_root, tmp_path):
    config = TrainConfig(
        dataset="folder", backbone="mobilenetv2", pretrained="none", input_size=(128, 64), epochs=2,
        ids_per_batch=2, images_per_id=2, warmup_epochs=0, lr_milestones=(), num_workers=0,
        folder_train_fraction=1.0, lr=1e-3, degrade_start_epoch=1, **dict.fromkeys(DEGRADATION_PROBABILITIES, 1.0),
    )
    assert set(DEGRADATION_PROBABILITIES) == {"colour_probability", "downscale_probability", "blur_probability", "jpeg_probability"}
    clean = config.augment_settings_at(0)
    assert [getattr(clean, name) for name in DEGRADATION_PROBABILITIES] == [0, 0, 0, 0]
    assert clean.flip_probability == config.flip_probability and config.augment_settings_at(1) == config.augment_settings

    quiet = dict(device="cpu", log=lambda line: None)
    curriculum = train(config, small_train_root, tmp_path / "curriculum", **quiet).history
    off = config.with_overrides(**dict.fromkeys(DEGRADATION_PROBABILITIES, 0.0))
    never_degraded = train(off, small_train_root, tmp_path / "off", **quiet).history
    # The clean epoch is exactly the run without degradations; the next one trains on degraded crops.
    assert curriculum[0].loss == never_degraded[0].loss
    assert curriculum[1].loss != never_degraded[1].loss
    with pytest.raises(ReidError, match="degrade_start_epoch"):
        config.with_overrides(degrade_start_epoch=-1)


def test_resume_rejects_a_weights_file(small_train_root, tmp_path):
    config = TrainConfig(dataset="folder", backbone="mobilenetv2", pretrained="none", input_size=(128, 64), epochs=1,
                         ids_per_batch=2, images_per_id=2, num_workers=0, folder_train_fraction=1.0)
    weights = train(config, small_train_root, tmp_path / "run", device="cpu", log=lambda line: None).final_weights
    with pytest.raises(ReidError, match="is an inference weights file; resume needs a training checkpoint"):
        train(config.with_overrides(epochs=2), small_train_root, tmp_path / "run", resume=weights, device="cpu",
              log=lambda line: None)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_where_the_cpu_runs_bf16_natively(small_train_root, tmp_path, monkeypatch, native):
    import reid.train as training

    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    dtype, scaler = training._mixed_precision(torch.device("cpu"), enabled=True, cpu_bf16=True)
    assert dtype == (torch.bfloat16 if native else None) and not scaler.is_enabled()
    assert training._mixed_precision(torch.device("cpu"), enabled=True, cpu_bf16=False)[0] is None
    config = TrainConfig(dataset="folder", backbone="mobilenetv2", pretrained="none", input_size=(128, 64), epochs=1,
                         ids_per_batch=2, images_per_id=2, num_workers=0, folder_train_fraction=1.0, cpu_bf16=True)
    lines: list[str] = []
    train(config, small_train_root, tmp_path / "run", device="cpu", log=lines.append)
    assert any(line.startswith("cpu_bf16: this CPU has no native bf16") for line in lines) is not native
