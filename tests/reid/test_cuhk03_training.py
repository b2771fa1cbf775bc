"""CUHK03 layout, the surveillance augmentations, garment masks, link calibration and the BNNeck feature."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reid.augment import AugmentSettings, augment_batch, blur, downscale, jpeg, recolour_garments, recolour_matrices, shift_colour
from reid.calibration import (
    LinkCalibration, calibration_pairs, fit_calibration, fit_logistic, fit_monotone_curve, reentry_pairs, reentry_tracklets, roc_auc,
)
from reid.checkpoint import load_checkpoint, set_weights_extra
from reid.datasets import load_dataset
from reid.embedder import Embedder
from reid.errors import ReidError
from reid.garments import MIN_GARMENT_WIDTH, garment_masks, garment_polygons
from reid.train import TrainConfig, split_calibration_ids, train


def test_cuhk03_trains_on_both_box_sets_and_tests_view_against_view(cuhk03_root):
    dataset = load_dataset("cuhk03", cuhk03_root)
    assert dataset.num_train_ids == 8 and len(dataset.train) == 8 * 2 * 2 * 2
    assert {s.path.parent.parent.name for s in dataset.train} == {"detected", "labeled"}
    assert {s.camid for s in dataset.query} == {0} and {s.camid for s in dataset.gallery} == {1}
    assert all(s.path.parent.parent.name == "detected" for s in dataset.query + dataset.gallery)
    assert len(dataset.query) == len(dataset.gallery) == 4 * 2


def test_cuhk03_wrong_layout_names_the_missing_folder(tmp_path):
    (tmp_path / "detected").mkdir()
    with pytest.raises(ReidError, match="missing folder .*detected/train"):
        load_dataset("cuhk03", tmp_path)


def test_calibration_ids_are_held_back_from_training(cuhk03_root):
    train_samples, held_back = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 3)
    assert {s.pid for s in train_samples} == set(range(5))
    assert len({s.pid for s in held_back}) == 3 and not {s.path for s in held_back} & {s.path for s in train_samples}
    with pytest.raises(ReidError, match="calibration_ids"):
        split_calibration_ids(train_samples, 4)


def test_recolour_matrix_is_the_identity_without_a_change_and_keeps_grey_grey():
    identity = recolour_matrices(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1.0))
    assert torch.allclose(identity, torch.eye(3), atol=1e-5)
    grey = torch.tensor([0.5, 0.5, 0.5])
    turned = recolour_matrices(torch.tensor(2.0), torch.tensor(1.5), torch.tensor(1.0)) @ grey
    assert torch.allclose(turned, grey, atol=1e-4)  # no colour to rotate: saturation and hue act on colour only


def test_garment_recolouring_changes_the_garment_and_nothing_else():
    images = torch.zeros(2, 3, 16, 8)
    images[:, 0] = 0.8  # red clothes everywhere
    masks = torch.zeros(2, 2, 16, 8, dtype=torch.uint8)
    masks[:, 0, 2:8] = 255
    torch.manual_seed(0)
    out = recolour_garments(images, masks, torch.tensor([True, False]))
    assert not torch.allclose(out[0, :, 2:8], images[0, :, 2:8], atol=0.05)
    assert torch.equal(out[0, :, 8:], images[0, :, 8:]) and torch.equal(out[1], images[1])


def test_degradations_touch_only_the_chosen_images():
    torch.manual_seed(0)
    checkerboard = ((torch.arange(128)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(2, 3, 128, 64).clone()
    chosen = torch.tensor([True, False])
    for degrade in (lambda x: downscale(x, chosen, 40), lambda x: blur(x, chosen, 1.5)):
        out = degrade(checkerboard)
        assert out[0].std() < 0.8 * checkerboard[0].std()  # fine detail is lost
        assert torch.equal(out[1], checkerboard[1])
    compressed = jpeg(checkerboard, chosen, 30)
    assert 0 < (compressed[0] - checkerboard[0]).abs().mean() < 0.3 and torch.equal(compressed[1], checkerboard[1])
    shifted = shift_colour(checkerboard * 0.5, chosen, 0.3)
    assert not torch.equal(shifted[0], checkerboard[0] * 0.5) and torch.equal(shifted[1], checkerboard[1] * 0.5)


def test_batch_augmentation_repeats_exactly_under_the_same_seed():
    images = torch.randint(0, 256, (6, 3, 32, 16), dtype=torch.uint8)
    masks = torch.full((6, 2, 32, 16), 255, dtype=torch.uint8)
    settings = AugmentSettings(pad=2, garment_recolour_probability=0.5, colour_probability=0.5, downscale_probability=0.5,
                               min_downscale_height=8, blur_probability=0.5, jpeg_probability=0.5)
    runs = []
    for _ in range(2):
        torch.manual_seed(11)
        runs.append(augment_batch(images, masks, settings))
    assert runs[0].shape == (6, 3, 32, 16) and torch.equal(runs[0], runs[1])


def test_garment_polygons_follow_the_keypoints_and_fall_back_without_them():
    points = np.zeros((17, 3), np.float32)
    for index, (x, y) in {5: (0.3, 0.25), 6: (0.7, 0.25), 11: (0.35, 0.55), 12: (0.65, 0.55),
                          15: (0.35, 0.95), 16: (0.65, 0.95)}.items():
        points[index] = (x, y, 0.9)
    upper, lower = garment_polygons(points, 128, 64)
    assert upper[:, 1].min() == pytest.approx(0.25 * 128) and upper[:, 1].max() == pytest.approx(0.55 * 128)
    assert upper[:, 0].min() < 0.3 * 64 and upper[:, 0].max() > 0.7 * 64  # widened for the sleeves
    assert lower[:, 1].max() == pytest.approx(0.95 * 128)
    side_view = points.copy()
    side_view[[5, 6], 0] = 0.5  # shoulders one behind the other
    upper_side, _ = garment_polygons(side_view, 128, 64)
    assert upper_side[0, 0] < 32 and upper_side[1, 0] - upper_side[0, 0] >= MIN_GARMENT_WIDTH * 64 - 1.5
    missing = np.zeros((17, 3), np.float32)
    masks = garment_masks(np.stack([points, missing]), 128, 64)
    assert masks.shape == (2, 2, 128, 64) and masks.dtype == np.uint8
    assert masks[1, 0, 40, 32] == 255 and masks[1, 0, 5, 32] == 0  # fallback: the usual torso rows


def test_logistic_fit_recovers_a_known_model_and_auc_matches_brute_force():
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-1, 1, 20000)
    same = rng.random(20000) < 1 / (1 + np.exp(-(6 * similarity - 1)))
    slope, intercept = fit_logistic(similarity, same)
    # Class-balanced: the intercept absorbs the prior log-odds of the sample, the slope is unchanged.
    assert slope == pytest.approx(6, rel=0.1)
    scores, positive = rng.normal(size=300), rng.random(300) < 0.3
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in scores[positive] for n in scores[~positive]])
    assert roc_auc(scores, positive) == pytest.approx(brute)


def test_monotone_curve_follows_the_counts_and_never_falls():
    rng = np.random.default_rng(2)
    same = np.r_[np.ones(400, bool), np.zeros(20000, bool)]
    similarity = np.r_[rng.normal(0.5, 0.1, 400), rng.normal(0.0, 0.1, 20000)]
    centres, log_lr = fit_monotone_curve(similarity, same)
    assert list(centres) == sorted(centres) and list(log_lr) == sorted(log_lr)
    # Two normals with equal spread: the true log LR is 50 s - 12.5, about +12 at 0.5; with 20000
    # strangers and a pseudo-count of 1 a bin of 50 same-person pairs can claim at most
    # log((50 + 1) / (400 + 8) / (1 / (20000 + 8))) = 7.8.
    assert log_lr[0] < 0 < log_lr[-1] <= math.log(51 / 408 * 20008) + 1e-6
    calibration = LinkCalibration(0.0, 0.0, 400, 20000, 1.0, curve_similarity=centres, curve_log_lr=log_lr)
    inside = np.linspace(centres[0], centres[-1], 50)
    assert np.all(np.diff(calibration.log_likelihood_ratio(inside)) >= -1e-12)
    assert calibration.log_likelihood_ratio(2.0) == log_lr[-1] and calibration.log_likelihood_ratio(-2.0) == log_lr[0]


def oracle_embed(samples):
    """An embed() that sees the identity through any degradation: one random direction per person."""
    directions = np.random.default_rng(1).normal(size=(100, 16))
    pid_of_crop = iter([s.pid for s in samples])

    def embed(crops):
        vectors = np.stack([directions[next(pid_of_crop)] for _ in crops])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


def test_calibration_of_a_perfect_descriptor_separates_people(cuhk03_root):
    _, samples = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 4)
    calibration = fit_calibration(oracle_embed(samples), samples)
    assert calibration.roc_auc == 1.0 and calibration.slope > 5 and calibration.curve_log_lr[-1] > 0
    assert calibration.log_likelihood_ratio(1.0) > 0 > calibration.log_likelihood_ratio(calibration.negative_centre)
    assert calibration.reentry is not None and calibration.reentry.roc_auc == 1.0 and calibration.reentry.reentry is None
    assert calibration.reentry.positive_pairs == len({(s.pid, s.camid) for s in samples})  # two halves per view
    assert LinkCalibration.from_dict(calibration.as_dict()) == calibration
    assert LinkCalibration.from_dict(json.loads(json.dumps(calibration.as_dict()))) == calibration
    assert calibration.for_pairs(same_camera=True) is calibration.reentry and calibration.for_pairs(same_camera=False) is calibration


def test_reentry_tracklets_are_an_earlier_and_a_later_half_of_each_view_that_share_no_photo(cuhk03_root):
    _, samples = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 4)
    tracklets, pids, cameras = reentry_tracklets(samples)
    assert len(tracklets) == 2 * len({(s.pid, s.camid) for s in samples})
    for first, second in zip(tracklets[::2], tracklets[1::2]):
        names = [{samples[row].path.name for row in rows} for rows in (first, second)]
        assert not names[0] & names[1] and max(names[0]) < min(names[1])  # earlier, then later, photos
        assert {samples[row].path.parent.parent.name for row in first} == {"detected", "labeled"}  # both box sets
        assert len({(samples[row].pid, samples[row].camid) for row in first + second}) == 1
    pairs = reentry_pairs(oracle_embed(samples), samples)
    assert pairs.same.sum() == len(tracklets) // 2
    assert len(pairs.similarity) == sum(n * (n - 1) // 2 for n in np.bincount(cameras))  # every same-camera pair


def test_a_descriptor_that_renders_one_camera_alike_needs_more_similarity_to_reenter(cuhk03_root):
    # Each (person, view) has its own look: the same person's two views share half their direction, its
    # two halves of one view all of it. Across cameras, cos 0.5 is that person; in one camera it is not.
    _, samples = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 6)
    rng = np.random.default_rng(3)
    person, view = rng.normal(size=(100, 64)), rng.normal(size=(100, 2, 64))
    rows = iter([(s.pid, s.camid) for s in samples])

    def embed(crops):
        vectors = np.stack([person[pid] + view[pid, camid] for pid, camid in (next(rows) for _ in crops)])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    calibration = fit_calibration(embed, samples)
    assert calibration.reentry.negative_pairs > 0
    cross, reentry = calibration.log_likelihood_ratio(0.5), calibration.reentry.log_likelihood_ratio(0.5)
    assert cross > 0 and reentry < cross - 0.5


def test_calibration_pairs_are_the_cross_camera_tracklet_pairs_with_their_identities(cuhk03_root):
    _, samples = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 4)
    pairs = calibration_pairs(oracle_embed(samples), samples)
    pids = sorted({s.pid for s in samples})
    assert len({(s.pid, s.camid) for s in samples}) == 2 * len(pids)  # each person in both views
    assert len(pairs.similarity) == len(pids) ** 2  # every cross-camera pair, each once
    assert set(pairs.pid_a.tolist()) | set(pairs.pid_b.tolist()) == set(pids)
    assert pairs.same.sum() == len(pids)
    # The oracle's same-person pairs are the most alike (per-camera centring keeps that order).
    assert pairs.similarity[pairs.same].min() > pairs.similarity[~pairs.same].max()


@pytest.fixture(scope="module")
def calibrated_run(cuhk03_root, tmp_path_factory):
    config = TrainConfig(dataset="cuhk03", backbone="mobilenetv2", pretrained="none", input_size=(128, 64), epochs=1,
                         ids_per_batch=2, images_per_id=2, num_workers=0, cache_images=True, calibration_ids=3,
                         garment_recolour_probability=0.5, colour_probability=0.5, downscale_probability=0.5,
                         blur_probability=0.5, jpeg_probability=0.5)
    return train(config, cuhk03_root, tmp_path_factory.mktemp("run"), device="cpu", log=lambda line: None)


def test_training_ships_the_bnneck_and_a_calibration(calibrated_run):
    payload = load_checkpoint(calibrated_run.final_weights)
    assert set(payload["bnneck"]) == {"weight", "bias", "running_mean", "running_var", "eps"}
    calibration = LinkCalibration.from_dict(payload["extra"]["calibration"])
    assert calibration.positive_pairs > 0 and calibration.negative_pairs > 0
    assert (calibrated_run.out_dir / "garment_keypoints.npz").is_file()


def test_the_app_embeds_with_the_bnneck_feature_and_reads_the_calibration(calibrated_run):
    crops = [np.random.default_rng(i).integers(0, 256, (90, 40, 3), dtype=np.uint8) for i in range(4)]
    app = Embedder.from_checkpoint(calibrated_run.final_weights, device="cpu")
    paper = Embedder.from_checkpoint(calibrated_run.final_weights, device="cpu", feature="cssc")
    assert "bnneck" in app.description and app.calibration is not None and paper.calibration is None
    payload = load_checkpoint(calibrated_run.final_weights)
    with torch.inference_mode():
        raw = paper.network(app.prepare_batch(crops)).float()
    bn = payload["bnneck"]
    expected = (raw - bn["running_mean"]) / torch.sqrt(bn["running_var"] + bn["eps"]) * bn["weight"] + bn["bias"]
    expected = torch.nn.functional.normalize(expected, dim=1).numpy()
    assert np.allclose(app.embed(crops), expected, atol=1e-4)


def test_set_weights_extra_keeps_the_rest(calibrated_run, tmp_path):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(calibrated_run.final_weights.read_bytes())
    set_weights_extra(copy, note="hello")
    before, after = load_checkpoint(calibrated_run.final_weights), load_checkpoint(copy)
    assert after["extra"]["note"] == "hello" and after["extra"]["calibration"] == before["extra"]["calibration"]
    assert all(torch.equal(after["state_dict"][key], value) for key, value in before["state_dict"].items())
    with pytest.raises(ReidError, match="training checkpoint"):
        set_weights_extra(calibrated_run.last_checkpoint, note="no")


def test_a_damaged_shipped_model_is_refused(tmp_path, monkeypatch):
    import reid.pretrained as pretrained

    fake = tmp_path / "weights.pt"
    fake.write_bytes(b"not the released file")
    monkeypatch.setattr(pretrained, "DEFAULT_WEIGHTS_PATH", fake)
    with pytest.raises(ReidError, match="damaged or replaced"):
        pretrained.default_weights_path()
    monkeypatch.setattr(pretrained, "DEFAULT_WEIGHTS_PATH", tmp_path / "missing.pt")
    with pytest.raises(ReidError, match="missing"):
        pretrained.default_weights_path()


def test_the_shipped_model_loads_offline_with_its_calibration():
    from reid.pretrained import DEFAULT_WEIGHTS_SHA256, default_weights_path, sha256_of_file

    path = default_weights_path()
    assert sha256_of_file(path) == DEFAULT_WEIGHTS_SHA256 and path.stat().st_size <= 25 * 2**20
    embedder = Embedder.from_checkpoint(path, device="cpu")
    assert embedder.calibration is not None and embedder.calibration.roc_auc > 0.9
    assert math.isfinite(embedder.calibration.slope) and embedder.calibration.slope > 0
