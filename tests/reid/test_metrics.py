"""reid.metrics.evaluate against a plain per-query loop and hand-checked cases; reid.evaluate protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reid.metrics
from reid.datasets import ReidDataset, Sample
from reid.errors import ReidError
from reid.evaluate import evaluate_protocols, squared_euclidean
from reid.metrics import evaluate


def loop_reference(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, mode="standard"):
    """The protocol written out one query and one gallery item at a time (ties: wrong items first)."""
    cmc_hits = {1: 0, 5: 0, 10: 0}
    average_precisions, inverse_negative_penalties = [], []
    for query in range(distmat.shape[0]):
        ranking = []
        # np.lexsort sorts by the last key first: distance, then same-pid items after wrong ones.
        for gallery_index in np.lexsort((g_pids == q_pids[query], distmat[query])):
            same_pid = g_pids[gallery_index] == q_pids[query]
            same_camera = g_camids[gallery_index] == q_camids[query]
            same_clothes = mode == "cloth_changing" and g_clothes[gallery_index] == q_clothes[query]
            if same_pid and (same_camera or same_clothes):
                continue
            ranking.append(bool(same_pid))
        if not any(ranking):
            continue
        first = ranking.index(True)
        for k in cmc_hits:
            cmc_hits[k] += first < k
        hits, precisions, last = 0, [], 0
        for position, is_match in enumerate(ranking, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / position)
                last = position
        average_precisions.append(sum(precisions) / len(precisions))
        inverse_negative_penalties.append(hits / last)
    valid = len(average_precisions)
    return {
        "rank1": cmc_hits[1] / valid,
        "rank5": cmc_hits[5] / valid,
        "rank10": cmc_hits[10] / valid,
        "mAP": float(np.mean(average_precisions)),
        "mINP": float(np.mean(inverse_negative_penalties)),
        "num_valid_queries": valid,
    }


def random_problem(seed: int, num_queries: int = 60, num_gallery: int = 300, num_ids: int = 25):
    rng = np.random.default_rng(seed)
    return dict(
        distmat=rng.random((num_queries, num_gallery)),  # continuous values: no ties
        q_pids=rng.integers(0, num_ids, num_queries),
        g_pids=rng.integers(0, num_ids, num_gallery),
        q_camids=rng.integers(0, 4, num_queries),
        g_camids=rng.integers(0, 4, num_gallery),
        q_clothes=rng.integers(0, 3, num_queries),
        g_clothes=rng.integers(0, 3, num_gallery),
    )


def assert_same_metrics(ours: dict, reference: dict) -> None:
    assert ours["num_valid_queries"] == reference["num_valid_queries"]
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12), key


@pytest.mark.parametrize("mode", ["standard", "cloth_changing"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_on_random_data(mode, seed):
    problem = random_problem(seed)
    assert_same_metrics(evaluate(**problem, mode=mode), loop_reference(**problem, mode=mode))


@pytest.mark.parametrize("mode", ["standard", "cloth_changing"])
def test_ties_rank_wrong_items_first_like_the_reference(mode):
    problem = random_problem(11)
    problem["distmat"] = np.round(problem["distmat"] * 20)  # integer distances: many ties
    assert_same_metrics(evaluate(**problem, mode=mode), loop_reference(**problem, mode=mode))


def test_chunked_run_equals_single_chunk(monkeypatch):
    problem = random_problem(7, num_queries=37, num_ids=5)  # many same-pid items per query
    whole = evaluate(**problem, mode="cloth_changing")
    monkeypatch.setattr(reid.metrics, "MAX_ELEMENTS_PER_CHUNK", 300 * 4)  # 4 queries per chunk, last one short
    chunked = evaluate(**problem, mode="cloth_changing")
    assert_same_metrics(chunked, whole)


def test_torch_inputs_give_the_same_numbers_as_numpy():
    problem = random_problem(3)
    as_torch = {name: torch.from_numpy(values) for name, values in problem.items()}
    as_torch["distmat"] = as_torch["distmat"].float()
    assert_same_metrics(evaluate(**as_torch, mode="standard"), evaluate(**problem, mode="standard"))


# Hand-checked case. Query: pid 1, camera 0, clothes 0. Gallery sorted by distance:
#   0: pid 1 cam 0 clothes 0  -> same pid and camera: dropped in both modes
#   1: pid 2 cam 1 clothes 5
#   2: pid 1 cam 1 clothes 0  -> same pid and clothes: dropped in cloth-changing mode only
#   3: pid 3 cam 1 clothes 7
#   4: pid 1 cam 2 clothes 1
TINY = dict(
    distmat=np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]),
    q_pids=np.array([1]),
    g_pids=np.array([1, 2, 1, 3, 1]),
    q_camids=np.array([0]),
    g_camids=np.array([0, 1, 1, 1, 2]),
    q_clothes=np.array([0]),
    g_clothes=np.array([0, 5, 0, 7, 1]),
)


def test_hand_checked_standard():
    # Kept ranking: pid2, pid1, pid3, pid1 -> first match at 2; AP = (1/2 + 2/4) / 2; mINP = 2 / 4.
    result = evaluate(**TINY, mode="standard")
    assert (result["rank1"], result["rank5"], result["rank10"]) == (0.0, 1.0, 1.0)
    assert result["mAP"] == pytest.approx(0.5)
    assert result["mINP"] == pytest.approx(0.5)
    assert result["num_valid_queries"] == 1


def test_hand_checked_cloth_changing():
    # Kept ranking: pid2, pid3, pid1 -> first match at 3; AP = 1/3; mINP = 1/3.
    result = evaluate(**TINY, mode="cloth_changing")
    assert (result["rank1"], result["rank5"]) == (0.0, 1.0)
    assert result["mAP"] == pytest.approx(1 / 3)
    assert result["mINP"] == pytest.approx(1 / 3)


def test_perfect_ranking_scores_one():
    result = evaluate(
        distmat=np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]]),
        q_pids=[5, 6], g_pids=[5, 6, 7], q_camids=[0, 0], g_camids=[1, 1, 1],
    )
    assert result["rank1"] == result["mAP"] == result["mINP"] == 1.0


def test_queries_without_a_valid_match_are_skipped():
    problem = dict(TINY)
    problem["distmat"] = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    problem["q_pids"] = np.array([1, 9])  # pid 9 is not in the gallery
    problem["q_camids"] = np.array([0, 0])
    problem["q_clothes"] = np.array([0, 0])
    result = evaluate(**problem)
    assert result["num_valid_queries"] == 1 and result["num_queries"] == 2
    assert result["mAP"] == pytest.approx(0.5)


def test_no_valid_query_is_an_error():
    with pytest.raises(ReidError, match="no query has a valid gallery match"):
        evaluate(np.array([[0.1]]), [1], [1], [0], [0])


def test_cloth_changing_without_clothes_is_an_error():
    with pytest.raises(ReidError, match="needs q_clothes and g_clothes"):
        evaluate(TINY["distmat"], TINY["q_pids"], TINY["g_pids"], TINY["q_camids"], TINY["g_camids"],
                 mode="cloth_changing")


def test_unknown_mode_and_bad_shapes_are_errors():
    with pytest.raises(ReidError, match="unknown evaluation mode 'market'"):
        evaluate(**TINY, mode="market")
    with pytest.raises(ReidError, match="g_pids/g_camids must have 5 entries"):
        evaluate(TINY["distmat"], [1], [1, 2], [0], [0, 1, 1, 1, 2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_tensors_stay_on_the_gpu_and_agree_with_cpu():
    problem = random_problem(5)
    on_gpu = {name: torch.from_numpy(values).cuda() for name, values in problem.items()}
    assert_same_metrics(evaluate(**on_gpu, mode="cloth_changing"), evaluate(**problem, mode="cloth_changing"))


# ---------------------------------------------------------------- protocols (reid.evaluate) on constructed features


def samples(rows: list[tuple[int, int, int]]) -> list[Sample]:
    return [Sample(Path(f"{index}.jpg"), pid, camid, clothes) for index, (pid, camid, clothes) in enumerate(rows)]


def test_prcc_protocol_scores_camera_b_and_c_queries_separately():
    identities = [1, 2, 3]
    dataset = ReidDataset(
        train=[], num_train_ids=0, name="prcc",
        gallery=samples([(pid, 0, 2 * pid) for pid in identities]),
        query=samples([(pid, 1, 2 * pid) for pid in identities] + [(pid, 2, 2 * pid + 1) for pid in identities]),
    )
    one_hot = torch.eye(3)
    # Camera B queries look exactly like their gallery image; camera C queries like the next person's.
    query_features = torch.cat([one_hot, one_hot.roll(1, dims=0)])
    results = evaluate_protocols(dataset, query_features, one_hot)
    assert results["standard"]["rank1"] == 1.0 and results["standard"]["num_valid_queries"] == 3
    assert results["cloth_changing"]["rank1"] == 0.0 and results["cloth_changing"]["num_valid_queries"] == 3


def test_ltcc_protocols_share_one_distance_matrix():
    dataset = ReidDataset(
        train=[], num_train_ids=0, name="ltcc",
        query=samples([(1, 0, 10)]),
        gallery=samples([(1, 1, 10), (2, 1, 20), (1, 2, 11)]),
    )
    gallery_features = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.5], [1.0, 2.0]]), dim=1)
    query_features = F.normalize(torch.tensor([[1.0, 0.0]]), dim=1)
    results = evaluate_protocols(dataset, query_features, gallery_features)
    # General: the same-outfit image from another camera counts. Cloth-changing: it is removed, pid 2 comes first.
    assert results["standard"]["rank1"] == 1.0 and results["standard"]["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert results["cloth_changing"]["rank1"] == 0.0 and results["cloth_changing"]["mAP"] == pytest.approx(1 / 2)


def test_squared_euclidean_is_two_minus_two_cosine():
    generator = torch.Generator().manual_seed(0)
    query, gallery = (F.normalize(torch.randn(count, 8, generator=generator), dim=1) for count in (4, 6))
    assert torch.allclose(squared_euclidean(query, gallery), torch.cdist(query, gallery) ** 2, atol=1e-5)
