"""Label-free fine-tuning (reid.adapt) and carrying a calibration over to the changed model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from reid.adapt import AdaptSettings, adapt_weights, known_negative_groups, masked_triplet_loss, sample_batch
from reid.calibration import LinkCalibration, transported
from reid.checkpoint import load_checkpoint
from reid.embedder import Embedder
from reid.errors import ReidError
from reid.pretrained import DEFAULT_WEIGHTS_SHA256, default_weights_path


def test_unknown_pairs_are_never_negatives():
    # Groups 0 and 1 are known to differ; group 2 is unknown to both and sits right on top of group 0.
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    known = torch.zeros(6, 6, dtype=torch.bool)
    known[:2, 2:4] = known[2:4, :2] = True
    loss, active = masked_triplet_loss(features, labels, known, margin=0.3)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)  # the look-alike of group 2 is not pushed away
    assert active.item() == pytest.approx(4 / 6)  # group 2's anchors have no known negative
    known[:2, 4:] = known[4:, :2] = True  # now 0 and 2 are known to differ: the look-alike counts
    loss, _ = masked_triplet_loss(features, labels, known, margin=0.3)
    assert loss.item() > 0.2


def test_batches_are_built_around_known_negatives():
    group = np.array([0, 1, 2, 3, 4])
    different = np.zeros((5, 5), bool)
    different[0, 1] = different[1, 0] = True
    negatives = known_negative_groups(group, different)
    assert [n.tolist() for n in negatives] == [[1], [0], [], [], []]
    crop_rows = [np.arange(3 * g, 3 * g + 3) for g in range(5)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows, labels = sample_batch(rng, crop_rows, negatives, groups_per_batch=3, crops_per_group=4)
        assert len(rows) == 12 and len(set(labels.tolist())) == 3
        assert {0, 1} <= set(labels.tolist())  # the anchor is 0 or 1, and its known negative comes along
        assert all(row // 3 == label for row, label in zip(rows, labels))


def test_a_transported_calibration_gives_the_same_evidence_at_the_same_distance_from_strangers():
    calibration = LinkCalibration(slope=12.0, intercept=-4.0, positive_pairs=10, negative_pairs=90, roc_auc=0.9,
                                  negative_centre=0.05, negative_spread=0.1,
                                  curve_similarity=(0.0, 0.2, 0.5), curve_log_lr=(-2.0, 1.0, 4.0))
    before, after = (0.02, 0.08), (0.10, 0.16)  # the changed model: strangers higher and twice as spread
    moved = transported(calibration, before, after)
    similarity = np.array([-0.1, 0.1, 0.3, 0.45, 0.7])
    same_place = after[0] + (similarity - before[0]) * after[1] / before[1]
    np.testing.assert_allclose(moved.log_likelihood_ratio(same_place), calibration.log_likelihood_ratio(similarity))
    line = LinkCalibration(**{**calibration.as_dict(), "curve_similarity": (), "curve_log_lr": ()})
    np.testing.assert_allclose(transported(line, before, after).log_likelihood_ratio(same_place),
                               line.log_likelihood_ratio(similarity))
    assert moved.negative_spread == pytest.approx(0.2) and moved.roc_auc == calibration.roc_auc
    with_reentry = replace(calibration, reentry=replace(calibration, curve_log_lr=(-3.0, 0.0, 2.0)))
    np.testing.assert_allclose(transported(with_reentry, before, after).reentry.log_likelihood_ratio(same_place),
                               with_reentry.reentry.log_likelihood_ratio(similarity))
    # Strangers within one camera moved their own way: the re-entry curve follows them, the other does not.
    within_before, within_after = (0.05, 0.1), (0.0, 0.05)
    own_way = transported(with_reentry, before, after, reentry=(within_before, within_after))
    within_place = within_after[0] + (similarity - within_before[0]) * within_after[1] / within_before[1]
    np.testing.assert_allclose(own_way.reentry.log_likelihood_ratio(within_place),
                               with_reentry.reentry.log_likelihood_ratio(similarity))
    np.testing.assert_allclose(own_way.log_likelihood_ratio(same_place), calibration.log_likelihood_ratio(similarity))
    with pytest.raises(ReidError, match="zero spread"):
        transported(calibration, (0.0, 0.0), after)


def test_the_adapted_file_keeps_the_bnneck_and_records_its_origin(tmp_path):
    rng = np.random.default_rng(0)
    crops = [[rng.integers(0, 255, (64, 32, 3), dtype=np.uint8) for _ in range(3)] for _ in range(3)]
    different = np.zeros((3, 3), bool)
    different[0, 1] = different[1, 0] = True
    out = tmp_path / "adapted.pt"
    settings = AdaptSettings(steps=1, groups_per_batch=2, crops_per_group=2)
    result = adapt_weights(default_weights_path(), crops, np.arange(3), different, out, settings, device="cpu")
    assert result.path == out and result.steps == 1
    payload = load_checkpoint(out)
    assert payload["extra"]["adapted_from"]["sha256"] == DEFAULT_WEIGHTS_SHA256
    assert payload["extra"]["adapt_settings"]["steps"] == 1
    assert "calibration" not in payload["extra"]  # the base model's calibration does not fit the new one
    assert payload["bnneck"]["running_var"].shape == (1280,)
    assert Embedder.from_checkpoint(out, device="cpu").embed(crops[0]).shape == (3, 1280)


def test_adapt_rejects_bad_input(tmp_path):
    crops = [[np.zeros((40, 20, 3), np.uint8)] * 2] * 3
    with pytest.raises(ReidError, match="group labels"):
        adapt_weights(default_weights_path(), crops, np.array([0, 2, 2]), np.zeros((3, 3), bool), tmp_path / "a.pt")
    with pytest.raises(ReidError, match="3 tracklets, 2 group labels"):
        adapt_weights(default_weights_path(), crops, np.array([0, 1]), np.zeros((3, 3), bool), tmp_path / "a.pt")
    with pytest.raises(ReidError, match="crops_per_group"):
        AdaptSettings(crops_per_group=1)
    assert not (tmp_path / "a.pt").exists()
