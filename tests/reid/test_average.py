"""Weight averaging of CSSC runs (reid average): the weighted mean, re-measured BatchNorm, a calibrated file or none."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from reid.average import average_payloads, remeasure_batchnorm
from reid.checkpoint import BNNeckFeature, load_checkpoint, model_from_payload, save_weights
from reid.cli import app
from reid.datasets import load_dataset
from reid.embedder import Embedder
from reid.errors import ReidError
from reid.model import build_model
from reid.train import split_calibration_ids

runner = CliRunner()


def trained_like_weights(path, seed: int, input_size=(128, 64)):
    """A weights file with a BNNeck, as `reid train` writes (random weights: no training needed here)."""
    torch.manual_seed(seed)
    model = build_model("mobilenetv2", num_ids=5, pretrained="none")
    with torch.no_grad():
        model.bnneck.running_mean.normal_()
        model.bnneck.weight.uniform_(0.5, 1.5)
    return save_weights(model, path, extra={"input_size": list(input_size)})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return trained_like_weights(folder / "a.pt", 0), trained_like_weights(folder / "b.pt", 1)


def test_the_average_is_the_share_weighted_mean_of_weights_and_bnneck(two_runs):
    first, second = (load_checkpoint(path) for path in two_runs)
    averaged = average_payloads([first, second], [str(path) for path in two_runs], mix=[3, 1])
    assert averaged["arch"]["num_ids"] == 0 and averaged["arch"]["input_size"] == [128, 64]
    floats = [key for key, value in first["state_dict"].items() if value.is_floating_point()]
    assert len(floats) > 100
    assert all(torch.allclose(averaged["state_dict"][key], 0.75 * first["state_dict"][key] + 0.25 * second["state_dict"][key],
                              atol=1e-6) for key in floats)
    assert torch.allclose(averaged["bnneck"]["weight"], 0.75 * first["bnneck"]["weight"] + 0.25 * second["bnneck"]["weight"])
    assert [entry["share"] for entry in averaged["extra"]["averaged_from"]] == [0.75, 0.25]
    model, _ = model_from_payload(averaged, "averaged")  # loads strictly as an inference model
    assert not model.training


def test_only_one_architecture_averages_and_shares_must_be_positive(two_runs, tmp_path):
    first, second = (load_checkpoint(path) for path in two_runs)
    names = [str(path) for path in two_runs]
    other_size = load_checkpoint(trained_like_weights(tmp_path / "c.pt", 2, input_size=(256, 128)))
    with pytest.raises(ReidError, match="only one architecture"):
        average_payloads([first, other_size], [names[0], "c.pt"])
    with pytest.raises(ReidError, match="one positive share"):
        average_payloads([first, second], names, mix=[1, 0])
    with pytest.raises(ReidError, match="one positive share"):
        average_payloads([first, second], names, mix=[1])
    with pytest.raises(ReidError, match="at least two"):
        average_payloads([first], names[:1])


def test_remeasured_batchnorm_describes_the_average_on_the_training_images(two_runs, cuhk03_root):
    samples = load_dataset("cuhk03", cuhk03_root).train
    averaged = average_payloads([load_checkpoint(path) for path in two_runs], [str(path) for path in two_runs])
    remeasured = remeasure_batchnorm(averaged, samples, "cpu")
    assert remeasured["extra"]["batchnorm_images"] == 64
    changed = [key for key in averaged["state_dict"] if key.endswith("running_mean")
               and not torch.allclose(averaged["state_dict"][key], remeasured["state_dict"][key])]
    assert len(changed) > 10  # the averaged statistics were replaced by measured ones
    # The BNNeck now standardises the average's own features: over those images each channel has mean `bias`.
    model, arch = model_from_payload(remeasured, "remeasured")
    bnneck = BNNeckFeature(model, **remeasured["bnneck"])
    embedder = Embedder(bnneck, dim=arch["feature_dim"], input_size=(128, 64), description="", weights_path=cuhk03_root,
                        device="cpu", half=False)
    with torch.no_grad():
        features = bnneck(embedder.prepare_batch([cv2.imread(str(sample.path)) for sample in samples]))
    assert torch.allclose(features.mean(dim=0), remeasured["bnneck"]["bias"], atol=1e-3)
    assert all(not module.training for module in model.modules() if isinstance(module, nn.BatchNorm2d))


def test_reid_average_writes_a_calibrated_model_or_nothing(two_runs, cuhk03_root, tmp_path):
    def average(weights, out):
        return runner.invoke(app, ["average", *map(str, weights), "--out", str(out), "--dataset", "cuhk03",
                                   "--data-root", str(cuhk03_root), "--calibration-ids", "3", "--device", "cpu"])

    out = tmp_path / "soup" / "model_final.pt"
    result = average(two_runs, out)
    assert result.exit_code == 0, result.output
    embedder = Embedder.from_checkpoint(out, device="cpu")
    assert "bnneck" in embedder.description and embedder.calibration is not None
    extra = load_checkpoint(out)["extra"]
    assert [len(entry["sha256"]) for entry in extra["averaged_from"]] == [64, 64]
    # Held-back identities are never used to measure BatchNorm: 5 of 8 ids, 8 images each.
    train, _ = split_calibration_ids(load_dataset("cuhk03", cuhk03_root).train, 3)
    assert extra["batchnorm_images"] == len(train) == 40

    refused = tmp_path / "refused.pt"
    result = average([two_runs[0], trained_like_weights(tmp_path / "big.pt", 3, input_size=(256, 128))], refused)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "only one architecture" in result.output
    assert not refused.exists() and list(tmp_path.glob(".*tmp*")) == []
