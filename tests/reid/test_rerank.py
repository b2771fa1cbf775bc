"""k-reciprocal re-ranking (reid.rerank) and `reid eval --rerank`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from reid.cli import app
from reid.evaluate import squared_euclidean
from reid.metrics import evaluate
from reid.rerank import k_reciprocal_distances

runner = CliRunner()


def clustered_features(seed: int = 0, people: int = 40, gallery_per_person: int = 6, spread: float = 0.9):
    """Queries (one per person) and a gallery of noisy views around each person's centre, with a few
    'hub' gallery images that lie between people: close to many queries, k-reciprocal with none."""
    generator = torch.Generator().manual_seed(seed)
    dimension = 32
    centres = F.normalize(torch.randn(people, dimension, generator=generator), dim=1)

    def views(count: int) -> torch.Tensor:
        noise = spread * torch.randn(people, count, dimension, generator=generator) / dimension**0.5
        return F.normalize(centres[:, None, :] + noise, dim=2)

    query = views(1)[:, 0]
    gallery = views(gallery_per_person).reshape(-1, dimension)
    hubs = F.normalize(centres.reshape(8, people // 8, dimension).mean(dim=1), dim=1)  # each near 5 people
    gallery = torch.cat([gallery, hubs])
    query_pids = torch.arange(people)
    gallery_pids = torch.cat([torch.arange(people).repeat_interleave(gallery_per_person), -1 - torch.arange(8)])
    return query, gallery, query_pids, gallery_pids


def mean_ap(distances, query_pids, gallery_pids) -> dict:
    return evaluate(distances, query_pids, gallery_pids, torch.zeros(len(query_pids)), torch.ones(len(gallery_pids)))


def test_rerank_lifts_map_where_hubs_and_noisy_views_mislead_the_plain_ranking():
    query, gallery, query_pids, gallery_pids = clustered_features()
    plain = mean_ap(squared_euclidean(query, gallery), query_pids, gallery_pids)
    reranked = mean_ap(k_reciprocal_distances(query, gallery), query_pids, gallery_pids)
    assert plain["mAP"] < 0.9  # the case is hard enough to leave room
    assert reranked["mAP"] > plain["mAP"] + 0.03
    assert reranked["rank1"] >= plain["rank1"]


def test_rerank_with_no_jaccard_share_keeps_the_plain_order():
    """lambda = 1 leaves only the original distance, scaled per query row: the same ranking."""
    query, gallery, _, _ = clustered_features(seed=1, people=16)
    reranked = k_reciprocal_distances(query, gallery, lambda_value=1.0)
    assert reranked.shape == (len(query), len(gallery))
    assert torch.equal(torch.argsort(reranked, dim=1, stable=True),
                       torch.argsort(squared_euclidean(query, gallery), dim=1, stable=True))


@pytest.mark.parametrize("arguments", [{"k1": 0}, {"k2": 0}, {"lambda_value": 1.5}])
def test_rerank_refuses_settings_outside_their_range(arguments):
    query, gallery, _, _ = clustered_features(people=8)
    with pytest.raises(ValueError, match="re-ranking needs"):
        k_reciprocal_distances(query, gallery, **arguments)


def test_eval_cli_rerank_flag_is_reported(trained_weights, cloth_changing_root, tmp_path):
    json_path = tmp_path / "eval.json"
    result = runner.invoke(app, [
        "eval", "--checkpoint", str(trained_weights), "--dataset", "folder", "--data-root", str(cloth_changing_root),
        "--json", str(json_path), "--device", "cpu", "--num-workers", "0", "--quiet", "--rerank",
    ])
    assert result.exit_code == 0, result.output
    assert "(k-reciprocal re-ranking)" in result.stdout
    saved = json.loads(json_path.read_text())
    assert saved["rerank"] is True and 0 <= saved["protocols"]["standard"]["rank1"] <= 1


def test_rerank_works_when_there_are_fewer_images_than_neighbours():
    query, gallery, _, _ = clustered_features(people=8)
    reranked = k_reciprocal_distances(query[:2], gallery[:3])
    assert reranked.shape == (2, 3) and torch.isfinite(reranked).all()
