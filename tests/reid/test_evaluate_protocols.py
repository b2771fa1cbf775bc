"""Which protocols reid.evaluate scores, decided from labels before any feature exists; the folder protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.reid.test_datasets import make_files
from reid.datasets import ReidDataset, Sample, load_dataset
from reid.errors import ReidError
from reid.evaluate import count_valid_queries, evaluate_checkpoint, evaluate_protocols, plan_protocols
from reid.metrics import evaluate


def one_outfit_root(root: Path, image: np.ndarray, cameras: tuple[str, ...] = ("c1", "c2")) -> Path:
    """4 people, 2 images per camera, each person in one outfit: the layout of the issue's failed run."""
    files = [f"p{pid}/{camera}_coat_{index}.jpg" for pid in range(4) for camera in cameras for index in range(2)]
    return make_files(root, files, image)


def one_hot_by_pid(samples: list[Sample], num_pids: int) -> torch.Tensor:
    return torch.eye(num_pids)[[sample.pid for sample in samples]]


def random_samples(generator: np.random.Generator, count: int) -> list[Sample]:
    labels = generator.integers(0, 3, size=(count, 3))
    return [Sample(Path(f"{index}.jpg"), *map(int, row)) for index, row in enumerate(labels)]


@pytest.mark.parametrize("mode", ["standard", "cloth_changing"])
def test_label_count_agrees_with_the_metric(mode):
    # Reference: reid.metrics.evaluate itself, on random distances (it raises when no query is valid).
    generator = np.random.default_rng(7)
    for _ in range(200):
        query, gallery = random_samples(generator, 4), random_samples(generator, 6)
        distances = generator.random((len(query), len(gallery)))
        q_pids, q_cams, q_clothes, g_pids, g_cams, g_clothes = (
            [getattr(s, field) for s in samples] for samples in (query, gallery) for field in ("pid", "camid", "clothes_id")
        )
        try:
            result = evaluate(distances, q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes, mode=mode)
            expected = result["num_valid_queries"]
        except ReidError as error:
            assert "no query has a valid gallery match" in str(error)
            expected = 0
        assert count_valid_queries(query, gallery, mode) == expected


def test_one_outfit_folder_scores_standard_and_says_why_cloth_changing_is_skipped(tmp_path, tiny_image):
    dataset = load_dataset("folder", one_outfit_root(tmp_path / "crops", tiny_image), folder_train_fraction=0.0)
    runnable, skipped = plan_protocols(dataset)
    assert [protocol.name for protocol in runnable] == ["standard"]
    assert skipped == {"cloth_changing": "every test identity wears one outfit, "
                                         "so no query has a gallery image of itself in other clothes"}

    results = evaluate_protocols(dataset, one_hot_by_pid(dataset.query, 4), one_hot_by_pid(dataset.gallery, 4))
    assert list(results) == ["standard"] and results.skipped == skipped
    assert results["standard"]["rank1"] == 1.0 and results["standard"]["num_valid_queries"] == 8


def test_nothing_valid_fails_before_the_checkpoint_is_read(tmp_path, tiny_image):
    # One camera and one outfit: no protocol has a valid query. The checkpoint does not exist, so the error
    # below proves the decision is made from labels, before any model or feature.
    root = one_outfit_root(tmp_path / "crops", tiny_image, cameras=("c1",))
    expected = (r"^folder: no protocol has a valid query \(standard: no query has a gallery image of itself from "
                r"another camera; cloth-changing: every test identity wears one outfit, .*\)$")
    with pytest.raises(ReidError, match=expected):
        evaluate_checkpoint(tmp_path / "missing.pt", "folder", root, device="cpu", folder_train_fraction=0.0)


def test_prcc_protocol_without_queries_is_skipped():
    gallery = [Sample(Path(f"a{pid}.jpg"), pid, 0, 2 * pid) for pid in (1, 2)]
    query = [Sample(Path(f"b{pid}.jpg"), pid, 1, 2 * pid) for pid in (1, 2)]  # no camera C queries
    dataset = ReidDataset(train=[], query=query, gallery=gallery, num_train_ids=0, name="prcc")
    results = evaluate_protocols(dataset, torch.eye(3)[[1, 2]], torch.eye(3)[[1, 2]])
    assert list(results) == ["standard"] and results.skipped == {"cloth_changing": "no queries"}


def test_cross_camera_protocol_drops_the_same_camera_distractors(cloth_changing_root):
    # Features that see the person weakly and the camera (background, light) strongly: other people seen
    # by the query's own camera look closest.
    def features(samples: list[Sample]) -> torch.Tensor:
        by_pid = 0.5 * torch.eye(17)[[s.pid for s in samples]]
        by_camera = torch.eye(3)[[s.camid for s in samples]]
        return F.normalize(torch.cat([by_pid, by_camera], dim=1), dim=1)

    def evaluate_with(protocol: str):
        dataset = load_dataset("folder", cloth_changing_root, folder_protocol=protocol)
        return evaluate_protocols(dataset, features(dataset.query), features(dataset.gallery))

    # first-per-camera keeps other people's same-camera images in the gallery, and they win every query.
    assert evaluate_with("first-per-camera")["standard"]["rank1"] == 0.0
    # cross-camera: queries all of camera c0 (8 people x 3 images), gallery c1 and c2 only.
    cross_camera = evaluate_with("cross-camera")
    assert cross_camera.skipped == {}
    assert cross_camera["standard"]["num_valid_queries"] == 24 and cross_camera["standard"]["rank1"] == 1.0
    assert cross_camera["cloth_changing"]["num_valid_queries"] == 24 and cross_camera["cloth_changing"]["rank1"] == 1.0
