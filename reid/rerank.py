"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), for `reid eval --rerank`.

Two images are likely one person when each is among the other's k nearest neighbours (k-reciprocal),
not merely when one is near the other. Each image of query + gallery is encoded as a weighted set of
its k-reciprocal neighbours (grown by the neighbours' own half-size reciprocal sets where they mostly
agree), smoothed over its k2 nearest neighbours (local query expansion); the final distance mixes the
Jaccard distance of these sets with the original one:

    d* = (1 - lambda) d_Jaccard + lambda d_original

It is transductive: a query's ranking depends on the other queries and the whole gallery, which is
why papers report it apart from the plain ranking ("w/ RR"). Cost: dense (N, N) matrices with
N = queries + gallery, so memory grows as N^2 (about 5 GB at N = 20,000).
"""

from __future__ import annotations

import torch

# The paper's settings for its Market-1501 / CUHK03 experiments.
K1 = 20
K2 = 6
LAMBDA = 0.3
EXPANSION_AGREEMENT = 2 / 3  # a neighbour's half-size set joins when this share of it is already in the set


def _reciprocal(ranks: torch.Tensor, row: int, k: int) -> torch.Tensor:
    """Indices among row's k nearest (itself included) that have row among their own k nearest."""
    forward = ranks[row, : k + 1]
    backward = ranks[forward, : k + 1]
    return forward[(backward == row).any(dim=1)]


def k_reciprocal_distances(query_features: torch.Tensor, gallery_features: torch.Tensor, k1: int = K1,
                           k2: int = K2, lambda_value: float = LAMBDA) -> torch.Tensor:
    """(Q, G) re-ranked distances between L2-normalised query and gallery rows (lower = more alike)."""
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"re-ranking needs k1 >= 1, k2 >= 1 and lambda in [0, 1], got {k1}, {k2}, {lambda_value}")
    queries = len(query_features)
    features = torch.cat([query_features, gallery_features]).float().cpu()
    count = len(features)
    k1, k2 = min(k1, count - 1), min(k2, count)
    original = (2 - 2 * features @ features.T).clamp_(min=0)
    # Scale each row into [0, 1] (the paper's code), so that lambda mixes comparable ranges.
    original = original / original.max(dim=1, keepdim=True).values.clamp_(min=1e-12)
    # Only the nearest k1 + 1 (and k2) of each row are ever read: no (N, N) index matrix.
    ranks = torch.topk(original, min(max(k1, k2) + 1, count), dim=1, largest=False, sorted=True).indices

    encoding = torch.zeros((count, count))
    half = int(round(k1 / 2))
    for row in range(count):
        neighbours = _reciprocal(ranks, row, k1)
        grown = [neighbours]
        for candidate in neighbours.tolist():
            theirs = _reciprocal(ranks, candidate, half)
            shared = torch.isin(theirs, neighbours).sum().item()
            if shared > EXPANSION_AGREEMENT * len(theirs):
                grown.append(theirs)
        members = torch.unique(torch.cat(grown))
        weights = torch.exp(-original[row, members])
        encoding[row, members] = weights / weights.sum()
    if k2 > 1:
        encoding = encoding[ranks[:, :k2]].mean(dim=1)

    gallery_encoding = encoding[queries:]
    jaccard = torch.empty((queries, count - queries))
    for row in range(queries):
        # Only the query's own neighbours (its encoding's support, a few hundred at most) can share
        # weight, so the sum of minima runs over those columns, not all N.
        support = torch.nonzero(encoding[row]).squeeze(1)
        shared = torch.minimum(encoding[row, support][None, :], gallery_encoding[:, support]).sum(dim=1)
        jaccard[row] = 1 - shared / (2 - shared)
    final = (1 - lambda_value) * jaccard + lambda_value * original[:queries, queries:]
    return final.to(query_features.device)
