"""ONNX export: ONNX Runtime must reproduce the torch model's embeddings for any batch size."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from reid.checkpoint import model_from_checkpoint, save_weights
from reid.errors import ReidError
from reid.export import export_onnx
from reid.model import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = build_model("mobilenetv2", num_ids=3, pretrained="imagenet")
    return save_weights(model, tmp_path_factory.mktemp("export") / "cssc_mobilenet.pt", extra={"input_size": [128, 64]})


def test_onnx_runtime_matches_torch_for_batches_of_1_and_3(checkpoint, tmp_path):
    onnx_path = export_onnx(checkpoint, tmp_path / "models" / "cssc.onnx")
    assert onnx_path == tmp_path / "models" / "cssc.onnx" and not [p for p in onnx_path.parent.iterdir() if ".tmp" in p.name]
    onnx.checker.check_model(str(onnx_path))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "images" and session.get_outputs()[0].name == "features"
    model, _ = model_from_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(4)
    for batch in (1, 3):
        images = torch.randn(batch, 3, 128, 64, generator=generator)
        with torch.no_grad():
            expected = model(images).numpy()
        (actual,) = session.run(None, {"images": images.numpy()})
        assert actual.shape == (batch, 1280)
        relative_error = np.abs(actual - expected).max() / np.abs(expected).max()
        assert relative_error < 1e-4, relative_error


def test_input_size_override_and_bad_inputs(checkpoint, tmp_path):
    onnx_path = export_onnx(checkpoint, tmp_path / "wide.onnx", input_size=(96, 48))
    dims = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [dim.dim_value for dim in dims[1:]] == [3, 96, 48]
    with pytest.raises(ReidError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "missing.onnx")
    with pytest.raises(ReidError, match="too small"):
        export_onnx(checkpoint, tmp_path / "tiny.onnx", input_size=(16, 8))
