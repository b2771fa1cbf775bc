"""EfficientNet-Lite0 backbone: the shipped ImageNet weights, the TF conventions they need, CSSC on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reid.backbones import build_backbone
from reid.checkpoint import model_from_checkpoint, save_checkpoint, save_weights
from reid.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from reid.efficientnet_lite import (
    EfficientNetLite0,
    SamePaddingConv2d,
    efficientnet_lite0_offline_weights_path,
    efficientnet_lite_keys,
    same_padding,
)
from reid.errors import ReidError
from reid.losses import cssc_loss
from reid.model import build_model
from reid.train import load_config

REPOSITORY = Path(__file__).resolve().parents[2]

IMAGENET_MINIBUS = 654
IMAGENET_BUSES = {654, 779, 874}  # minibus, school bus, trolleybus


def shipped_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_offline_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imagenet_network() -> EfficientNetLite0:
    network = EfficientNetLite0().eval()
    network.load_state_dict(efficientnet_lite_keys(shipped_state_dict()), strict=True)
    return network


def photo(name: str) -> Path:
    """A real photo that ships with ultralytics (a dependency): assets/bus.jpg, assets/zidane.jpg."""
    spec = importlib.util.find_spec("ultralytics")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / name


def imagenet_normalised(image: Image.Image) -> torch.Tensor:
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255
    return (pixels - torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1)) / torch.tensor(IMAGENET_STD_RGB).view(3, 1, 1)


def center_crop_224(path: Path) -> torch.Tensor:
    """ImageNet evaluation preprocessing: short side to 256, centre 224 x 224 crop."""
    image = Image.open(path)
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    return imagenet_normalised(image.crop((left, top, left + 224, top + 224)))


def test_same_padding_is_tensorflows():
    # TF "SAME": output ceil(size / stride), the odd pixel of padding after (bottom / right).
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(28, 5, 2) == (1, 2)
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(8, 5, 1) == (2, 2) and same_padding(7, 3, 1) == (1, 1)
    conv = SamePaddingConv2d(4, 4, 5, stride=1, groups=4)
    reference = nn.Conv2d(4, 4, 5, padding=2, groups=4, bias=False)
    reference.weight = conv.weight
    images = torch.randn(2, 4, 9, 6)
    assert torch.allclose(conv(images), reference(images))
    conv.stride = (2, 2)
    expected = nn.functional.conv2d(nn.functional.pad(images, (1, 2, 2, 2)), conv.weight, stride=2, groups=4)
    assert conv(images).shape == (2, 4, 5, 3) and torch.allclose(conv(images), expected)


def test_shipped_weights_load_strictly_every_tensor_used(imagenet_network):
    shipped = efficientnet_lite_keys(shipped_state_dict())
    loaded = imagenet_network.state_dict()
    assert loaded.keys() == shipped.keys() and len(shipped) == 296
    assert all(torch.equal(loaded[key], shipped[key]) for key in shipped)
    # The CSSC backbone uses every shipped tensor except the ImageNet classifier.
    stages = build_backbone("efficientnet_lite0", pretrained="imagenet")
    backbone_tensors = [t for part in (stages.shared, stages.first, stages.second, stages.fusion)
                        for t in part.state_dict().values()]
    assert len(backbone_tensors) == len(shipped) - 2
    assert torch.equal(stages.fusion[0].weight, shipped["head_conv.weight"])


def test_unfitting_weights_are_refused_with_the_reason(tmp_path):
    state_dict = shipped_state_dict()
    without_head = {key: value for key, value in state_dict.items() if not key.startswith("_conv_head")}
    torch.save(without_head, tmp_path / "missing.pth")
    with pytest.raises(ReidError, match=r"missing \['head_conv.weight'\], unexpected \[\]"):
        build_backbone("efficientnet_lite0", pretrained=str(tmp_path / "missing.pth"))
    torch.save({**state_dict, "_blocks.0._se_reduce.weight": torch.zeros(8, 32, 1, 1)}, tmp_path / "se.pth")
    with pytest.raises(ReidError, match="unexpected EfficientNet-Lite0 weight name '_blocks.0._se_reduce.weight'"):
        build_backbone("efficientnet_lite0", pretrained=str(tmp_path / "se.pth"))
    torch.save({**state_dict, "_conv_head.weight": torch.zeros(1280, 192, 1, 1)}, tmp_path / "shape.pth")
    with pytest.raises(ReidError, match="size mismatch for head_conv.weight"):
        build_backbone("efficientnet_lite0", pretrained=str(tmp_path / "shape.pth"))


def test_imagenet_prediction_on_a_real_photo(imagenet_network):
    with torch.no_grad():
        probabilities = imagenet_network(center_crop_224(photo("bus.jpg"))[None]).softmax(dim=1)[0]
    top3 = probabilities.topk(3).indices.tolist()
    assert top3[0] == IMAGENET_MINIBUS and probabilities[IMAGENET_MINIBUS] > 0.5
    assert IMAGENET_BUSES & set(top3[1:])


def _pytorch_conventions(network: EfficientNetLite0) -> EfficientNetLite0:
    """The same weights with symmetric kernel // 2 padding and ImageNet mean/std inputs fed straight in."""
    changed = EfficientNetLite0().eval()
    changed.load_state_dict(network.state_dict())
    changed.input_rescale = nn.Identity()
    for module in changed.modules():
        if isinstance(module, SamePaddingConv2d):
            module.forward = lambda inputs, conv=module: nn.functional.conv2d(
                inputs, conv.weight, None, conv.stride, conv.kernel_size[0] // 2, 1, conv.groups)
    return changed


def _batchnorm_mismatch(network: nn.Module, images: torch.Tensor) -> float:
    """Mean over BN layers and channels of |batch mean - running mean| / running std (0: inputs like training)."""
    mismatches = []

    def record(module, inputs, output):
        batch_mean = inputs[0].mean(dim=(0, 2, 3))
        mismatches.append(((batch_mean - module.running_mean).abs() / (module.running_var + module.eps).sqrt()).mean())

    hooks = [m.register_forward_hook(record) for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        network(images)
    for hook in hooks:
        hook.remove()
    return float(torch.stack(mismatches).mean())


def test_tensorflow_conventions_fit_the_weights_better(imagenet_network):
    rng = np.random.default_rng(0)
    crops = []
    for name in ("bus.jpg", "zidane.jpg"):
        image = Image.open(photo(name))
        for _ in range(4):
            side = int(rng.integers(224, min(image.size) + 1))
            left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
            crops.append(imagenet_normalised(image.crop((left, top, left + side, top + side)).resize((224, 224))))
    images = torch.stack(crops)
    assert _batchnorm_mismatch(imagenet_network, images) < 0.9 * _batchnorm_mismatch(
        _pytorch_conventions(imagenet_network), images)


def test_stage_shapes_at_128x64():
    stages = build_backbone("efficientnet_lite0", pretrained="none")
    assert (stages.first_channels, stages.second_channels, stages.feature_dim) == (192, 320, 1280)
    feature_map = torch.randn(2, 3, 128, 64)
    shapes = []
    for part in (stages.shared, stages.first, stages.second, stages.fusion):
        feature_map = part(feature_map)
        shapes.append(tuple(feature_map.shape))
    # Output stride 16 after `shared`, and stride 1 from there on (the last-stride-1 trick).
    assert shapes == [(2, 112, 8, 4), (2, 192, 8, 4), (2, 320, 8, 4), (2, 1280, 8, 4)]


def test_cssc_forward_and_backward():
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", num_ids=4, pretrained="imagenet").train()
    assert model.backbone_name == "efficientnet_lite0" and model.feature_dim == 1280
    output = model(torch.randn(8, 3, 128, 64))
    assert [tuple(f.shape) for f in output.features] == [(8, 192), (8, 320), (8, 192), (8, 320), (8, 1280)]
    assert all(tuple(logits.shape) == (8, 4) for logits in output.logits)
    cssc_loss(output, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), use_triplet=True).total.backward()
    assert model.shared[1].weight.grad is not None and model.shared[1].weight.grad.abs().sum() > 0  # the stem conv



def test_comparison_configs_differ_only_in_the_backbone():
    configs = REPOSITORY / "configs"
    efficientnet = load_config(configs / "compare_backbones_efficientnet_lite0.yaml")
    mobilenet = load_config(configs / "compare_backbones_mobilenetv2.yaml")
    assert efficientnet.backbone == "efficientnet_lite0" and efficientnet.epochs == 3
    assert efficientnet.with_overrides(backbone="mobilenetv2") == mobilenet


def test_checkpoint_round_trips(tmp_path):
    torch.manual_seed(1)
    model = build_model("efficientnet_lite0", num_ids=4, pretrained="none")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    cssc_loss(model(torch.randn(4, 3, 128, 64)), torch.tensor([0, 1, 2, 3]), use_triplet=False).total.backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[4])

    path = save_checkpoint(tmp_path / "last.pt", model, optimizer, scheduler, 1, {"lr": 1e-3}, (128, 64))
    restored, arch = model_from_checkpoint(path, for_training=True)
    assert arch["backbone"] == "efficientnet_lite0" and arch["num_ids"] == 4
    for (name, tensor), restored_tensor in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(tensor, restored_tensor), name

    weights = save_weights(model, tmp_path / "final.pt", extra={"input_size": [128, 64]})
    inference, arch = model_from_checkpoint(weights)
    assert arch["feature_dim"] == 1280 and not inference.training
    images = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(images), inference(images), atol=1e-6)
