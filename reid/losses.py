"""CSSC losses (spec "Losses"): label-smoothed cross-entropy on the 5 logits, batch-hard triplet on the 5
raw features once enabled, all with weight 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid.model import CSSCOutput


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor  # scalar, what is back-propagated
    identity: torch.Tensor  # scalar, sum of the 5 cross-entropies
    triplet: torch.Tensor  # scalar, sum of the 5 triplet losses (0 while disabled)


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean over anchors of relu(hardest positive distance - hardest negative distance + margin), Euclidean."""
    squared_norms = features.pow(2).sum(dim=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2 * features @ features.T
    distances = squared.clamp(min=1e-12).sqrt()  # clamp keeps the gradient finite on the zero diagonal
    same_identity = labels[:, None] == labels[None, :]
    hardest_positive = torch.where(same_identity, distances, 0.0).amax(dim=1)
    hardest_negative = torch.where(same_identity, float("inf"), distances).amin(dim=1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def cssc_loss(
    output: CSSCOutput,
    labels: torch.Tensor,
    use_triplet: bool,
    triplet_margin: float = 0.3,
    label_smoothing: float = 0.1,
) -> LossParts:
    """Losses of one training batch, computed in float32 whatever precision the forward pass used."""
    identity = sum(
        F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing) for logits in output.logits
    )
    if use_triplet:
        triplet = sum(batch_hard_triplet_loss(features.float(), labels, triplet_margin) for features in output.features)
    else:
        triplet = torch.zeros((), device=labels.device)
    return LossParts(total=identity + triplet, identity=identity, triplet=triplet)
