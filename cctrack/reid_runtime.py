"""Which engine runs the re-id network: PyTorch, or OpenVINO / ONNX Runtime on an ONNX export of it.

On the CPU the exported network embeds about 1.8x faster than PyTorch at the app's batch (one tracklet,
8 crops), with the same features to within 1e-5 (`python -m bench.embed_runtime`,
bench/results/embed_runtime.json). But `cctrack run` embeds in a worker thread while the detector runs, and
there OpenVINO's re-id threads and the OpenVINO detector's fight over the cores: 800 frames of the sample
took 108 s against 62 s with PyTorch's re-id (62 s without embedding at all; with OpenVINO's re-id on one
thread, 63 s: no faster than PyTorch). Embedding is under 1% of a run's time, so `reid.runtime: auto` is
PyTorch; `openvino` or `onnx` pay where nothing else runs, e.g. `cctrack link` re-embedding with another
model. Only the network moves: the Embedder still resizes and normalises crops and L2-normalises what comes back. The
ONNX file (dynamic batch) is exported offline on first use and cached beside the weights in
`cctrack-exports/` (else in ~/.cache/cctrack/reid), named by the weights' sha256, the input size and the
feature; it is written under a temporary name, and an export that no longer loads is made again.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from cctrack.detector_runtime import exports_folder, first_line
from cctrack.errors import CctrackError
from cctrack.files import atomic_path, sha256_of

RUNTIMES = ("auto", "torch", "onnx", "openvino")
RUNTIME_PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}


def resolve_runtime(runtime: str, device: torch.device, half: bool | None) -> str:
    """`runtime` for `device`: auto -> torch (see above); an exported runtime must be installed and run on
    the CPU in full precision."""
    if runtime not in RUNTIMES:
        raise CctrackError(f"reid.runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime in ("auto", "torch"):
        return "torch"
    if half:
        raise CctrackError(f"reid.runtime={runtime} runs in full precision; unset reid.half or use reid.runtime=torch")
        return runtime
    if device.type != "cpu":
        raise CctrackError(f"reid.runtime={runtime} runs on the CPU; on {device} use reid.runtime=torch (or auto)")
    if importlib.util.find_spec(RUNTIME_PACKAGES[runtime]) is None:
        raise CctrackError(f"reid.runtime={runtime} needs {RUNTIME_PACKAGES[runtime]}: pip install {RUNTIME_PACKAGES[runtime]}")
    return runtime


class ExportedNetwork:
    """Stands in for the Embedder's torch network: (B, 3, H, W) float tensor -> (B, D) float tensor."""

    def __init__(self, run) -> None:
        self._run = run

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self._run(np.ascontiguousarray(images.float().numpy()))))


def use_exported_network(embedder, runtime: str) -> None:
    """Replace `embedder.network` (a reid.Embedder on the CPU) by its export run with `runtime`."""
    if runtime == "torch":
        return
    path = onnx_export(embedder)
    try:
        embedder.network = _load(path, runtime)
    except Exception:  # a truncated or foreign file at the cached name: export once more
        path.unlink(missing_ok=True)
        path = onnx_export(embedder)
        try:
            embedder.network = _load(path, runtime)
        except Exception as error:  # the runtimes raise many types; the user needs one line
            raise CctrackError(f"cannot load the exported re-id model {path}: {first_line(error)} "
                               "(use reid.runtime=torch)") from None


def onnx_export(embedder) -> Path:
    """The cached ONNX file of `embedder.network`, exported first when missing."""
    weights = Path(embedder.weights_path)
    height, width = embedder.input_size
    feature = "bnneck" if "bnneck" in embedder.description else "pooled"
    name = f"{weights.stem}-{sha256_of(weights)[:16]}-{height}x{width}-{feature}.onnx"
    path = exports_folder(weights, "reid") / name
    if path.is_file():
        return path
    network = embedder.network
    try:
        with atomic_path(path) as temporary, warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's to act on
            torch.onnx.export(network.float().to(memory_format=torch.contiguous_format), torch.zeros(2, 3, height, width),
                              str(temporary), input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    except CctrackError:
        raise
    except Exception as error:
        raise CctrackError(f"cannot export the re-id model {weights.name} to ONNX: {first_line(error)} (use reid.runtime=torch)") from None
    finally:
        network.to(memory_format=torch.channels_last)
    return path


def _load(path: Path, runtime: str) -> ExportedNetwork:
    if runtime == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ExportedNetwork(lambda images: session.run(None, {"images": images})[0])
    import openvino

    core = openvino.Core()
    # f32: OpenVINO's CPU plugin otherwise runs in bf16 where the CPU has it.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return ExportedNetwork(lambda images: compiled(images)[0])
