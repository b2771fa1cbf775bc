"""ONNX export of a trained CSSC model's inference path (images -> pre-BN f_cssc)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from reid.checkpoint import model_from_checkpoint
from reid.errors import ReidError
from reid.files import atomic_path

ONNX_INPUT_NAME = "images"  # (batch, 3, height, width) float32, RGB, ImageNet-normalised
ONNX_OUTPUT_NAME = "features"  # (batch, feature_dim) float32, not L2-normalised


def export_onnx(
    checkpoint: str | os.PathLike,
    onnx_path: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    opset: int = 17,
) -> Path:
    """Write the eval-mode model of `checkpoint` as ONNX with a dynamic batch axis; returns the path.

    input_size (height, width) pixels defaults to the checkpoint's own input size.
    """
    model, arch = model_from_checkpoint(checkpoint, map_location="cpu")
    height, width = (int(side) for side in (input_size or arch["input_size"]))
    if height < 32 or width < 32:
        raise ReidError(f"input_size {height}x{width} is too small for export; both sides must be >= 32 pixels")
    onnx_path = Path(onnx_path)
    example = torch.zeros(2, 3, height, width)
    # The TorchScript exporter: the dynamo one needs the onnxscript package, which is not a dependency.
    with atomic_path(onnx_path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return onnx_path
