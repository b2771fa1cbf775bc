"""reid.runtime: the re-id network run by OpenVINO or ONNX Runtime on a cached ONNX export gives PyTorch's
features, the same bits call after call."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cctrack.config import load_config
from cctrack.embed import load_embedder
from cctrack.errors import CctrackError
from cctrack.reid_runtime import resolve_runtime
from reid.pretrained import default_weights_path
from tests.conftest import read_sample_frames


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """People-sized crops of real frames, one tracklet's worth per call (8)."""
    frames = read_sample_frames("cam_right", 4, start=200)
    rng = np.random.default_rng(0)
    out = []
    for index in range(24):
        frame = frames[index % 4]
        height = int(rng.integers(50, 130))
        width = int(height * 0.4)
        top, left = int(rng.integers(0, frame.shape[0] - height)), int(rng.integers(0, frame.shape[1] - width))
        out.append(np.ascontiguousarray(frame[top : top + height, left : left + width]))
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A copy of the shipped weights in a folder of the test's own (its exports go beside it)."""
    folder = tmp_path_factory.mktemp("weights")
    return Path(shutil.copy(default_weights_path(), folder / "cssc.pt"))


def _embed(embedder, crops):
    return np.concatenate([embedder.embed(crops[i : i + 8]) for i in range(0, len(crops), 8)])


@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_an_exported_runtime_gives_pytorch_s_features_and_the_same_bits_each_call(runtime, weights, crops):
    reference = _embed(load_embedder(str(weights), "cpu", runtime="torch"), crops)
    exported = load_embedder(str(weights), "cpu", runtime=runtime)
    assert exported.runtime == runtime
    features = _embed(exported, crops)
    assert np.abs(features - reference).max() < 1e-4
    assert np.array_equal(features, _embed(exported, crops))
    assert (features * reference).sum(axis=1).min() > 0.9999


def test_the_export_is_cached_beside_the_weights(weights):
    first = load_embedder(str(weights), "cpu", runtime="openvino")
    assert first.runtime == "openvino"
    exports = list((weights.parent / "cctrack-exports").glob("cssc-*-128x64-bnneck.onnx"))
    assert len(exports) == 1
    made = exports[0].stat().st_mtime_ns
    load_embedder(str(weights), "cpu", runtime="openvino")
    assert exports[0].stat().st_mtime_ns == made  # loaded, not exported again


def test_a_corrupt_cached_export_is_made_again(weights, crops):
    load_embedder(str(weights), "cpu", runtime="openvino")
    (export,) = (weights.parent / "cctrack-exports").glob("cssc-*.onnx")
    export.write_bytes(export.read_bytes()[:1000])  # truncated
    embedder = load_embedder(str(weights), "cpu", runtime="openvino")
    assert export.stat().st_size > 1_000_000
    assert embedder.embed(crops[:8]).shape == (8, embedder.dim)


def test_weights_where_nothing_can_be_written_export_to_the_user_cache(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(default_weights_path(), folder / "cssc.pt")
    (folder / "cctrack-exports").write_text("a file where the exports folder would go")  # unwritable, even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert load_embedder(str(folder / "cssc.pt"), "cpu", runtime="openvino").runtime == "openvino"
    assert list((tmp_path / "cache" / "cctrack" / "reid").glob("cssc-*-128x64-bnneck.onnx"))


def test_runtime_choices_and_errors():
    cpu = torch.device("cpu")
    # PyTorch by default: in a run the re-id embeds while the OpenVINO detector runs, and two OpenVINO
    # models on the same cores slowed the run 1.7x (cctrack.reid_runtime).
    assert load_config(None).reid.runtime == "auto"
    assert resolve_runtime("auto", cpu, None) == "torch" and resolve_runtime("auto", torch.device("cuda"), None) == "torch"
    with pytest.raises(CctrackError, match="reid.runtime=openvino runs in full precision"):
        resolve_runtime("openvino", cpu, True)
    with pytest.raises(CctrackError, match="reid.runtime=onnx runs on the CPU"):
        resolve_runtime("onnx", torch.device("cuda"), None)
    with pytest.raises(CctrackError, match="reid.runtime must be one of"):
        load_config(None, ["reid.runtime=tensorrt"])
