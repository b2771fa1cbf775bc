"""Which engine runs the person detector, and the exported models the non-torch engines load.

`torch` runs the ultralytics .pt weights as they are. `onnx` (ONNX Runtime) and `openvino` run an ultralytics
export of the same weights, made offline on first use and cached, one per network input shape and batch
size (static shapes: OpenVINO's CPU plugin runs them faster than dynamic ones). The export is loaded back
through ultralytics, so letterboxing, score threshold and NMS are the ones torch runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from cctrack.errors import CctrackError
from cctrack.files import ensure_writable_folder, sha256_of, write_json_atomic

os.environ.setdefault("YOLO_OFFLINE", "True")
# ultralytics pip-installs a missing export requirement unless told not to; cctrack never installs anything.
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# Importing openvino reports usage to Google Analytics (openvino_telemetry) unless the user opted out;
# without that package openvino falls back to its own no-op stub. cctrack runs offline and sends nothing.
if "openvino" not in sys.modules:
    sys.modules.setdefault("openvino_telemetry", None)

RUNTIMES = ("auto", "torch", "onnx", "openvino")
RUNTIME_PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",)}

# The CPU defaults, by bench/results/detector.json (python -m bench.detector, 2026-11-30, 2 cores, 960 px;
# ms/frame, fastest of 5 passes, sample 320x576 / full 768x576 view, batch 1): OpenVINO fp32 65.2 / 85.4,
# ONNX Runtime 74.0 / 101.0, PyTorch 74.7 / 98.6, all at PyTorch's recall (0.902 / 0.456) and the same
# tracks. Batch 8 gains OpenVINO nothing (64.8 / 87.9) and slows PyTorch by 10-12% (medians); batch 1 also
# letterboxes each camera to its own shape. OpenVINO in bf16 (detector.half) is faster still but changes
# tracks (README, Detector runtime).
CPU_RUNTIME = "openvino"
CPU_BATCH_SIZE = 1
# On a GPU torch runs (the exports are CPU builds) on frames batched across cameras: the earlier default,
# not measured here (no GPU).
GPU_BATCH_SIZE = 8

EXPORTS_FOLDER_NAME = "cctrack-exports"
MANIFEST_NAME = "cctrack-export.json"
MODEL_NAMES = {"onnx": "model.onnx", "openvino": "model_openvino_model"}  # the names ultralytics gives and loads by


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """`runtime` (one of RUNTIMES, as DetectorSettings checks) for `device`: `auto` -> the measured fastest on
    the CPU, torch elsewhere; an exported runtime must be installed and run on the CPU."""
    if runtime == "auto":
        runtime = CPU_RUNTIME if device.type == "cpu" else "torch"
    if runtime == "torch":
        return runtime
    if device.type != "cpu":
        raise CctrackError(f"detector.runtime={runtime} runs on the CPU; on {device} use detector.runtime=torch (or auto)")
    missing = [package for package in RUNTIME_PACKAGES[runtime] if importlib.util.find_spec(package) is None]
    if missing:
        raise CctrackError(f"detector.runtime={runtime} needs {' and '.join(missing)}: pip install {' '.join(missing)}")
    return runtime


def default_batch_size(device: torch.device) -> int:
    return CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE


def network_input_shape(frame_shapes: set[tuple[int, int]], image_size: int, stride: int) -> tuple[int, int]:
    """(height, width) in pixels that one batch of frames is letterboxed to, as ultralytics' predictor does for
    a .pt model: frames of one size are scaled so the longer side is `image_size`, then padded to a multiple
    of `stride` ("rect"); a batch of mixed sizes is padded to a square."""
    if len(frame_shapes) != 1:
        return image_size, image_size
    ((height, width),) = frame_shapes
    scale = min(image_size / height, image_size / width)
    resized_height, resized_width = max(round(height * scale), 1), max(round(width * scale), 1)
    return resized_height + (image_size - resized_height) % stride, resized_width + (image_size - resized_width) % stride


@dataclass(frozen=True)
class ExportKey:
    """What one exported model is made for: the weights (by content), the engine, the network input shape
    (pixels, after letterboxing) and the number of frames per call."""

    weights_sha256: str
    runtime: str  # "onnx" | "openvino"
    input_height: int
    input_width: int
    batch_size: int

    def folder_name(self, weights_stem: str) -> str:
        return f"{weights_stem}-{self.weights_sha256[:16]}-{self.input_height}x{self.input_width}-b{self.batch_size}-{self.runtime}"


def exports_folder(weights: Path, kind: str = "detector") -> Path:
    """Beside the weights when that folder can be written, else the user's cache folder (per `kind`)."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cctrack" / kind
    for candidate in (weights.parent / EXPORTS_FOLDER_NAME, user_cache):
        try:
            return ensure_writable_folder(candidate)
        except CctrackError:
            continue
    raise CctrackError(f"cannot cache the exported {kind}: neither {weights.parent} nor {user_cache} is writable")


def exported_model(weights: Path, key: ExportKey) -> Path:
    """The path ultralytics loads for `key` (a .onnx file or an OpenVINO folder), exported first when the
    cache has no intact copy. A cached export whose files do not match its manifest is made again."""
    folder = exports_folder(weights) / key.folder_name(weights.stem)
    if not _intact(folder):
        _export(weights, key, folder)
    return folder / MODEL_NAMES[key.runtime]


def _intact(folder: Path) -> bool:
    """Every file the manifest lists is there with its sha256 (the manifest is written last)."""
    try:
        files = json.loads((folder / MANIFEST_NAME).read_text())["files"]
        return bool(files) and all(sha256_of(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _export(weights: Path, key: ExportKey, folder: Path) -> None:
    """Export into a hidden staging folder beside `folder`, then rename it into place: a half-written export
    never carries the final name."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # ultralytics writes the export beside the file it loaded, so it loads a copy inside the staging folder.
        shutil.copyfile(weights, staging / "model.pt")
        _ultralytics_export(staging / "model.pt", key, weights.name)
        (staging / "model.pt").unlink()
        files = sorted(path for path in staging.rglob("*") if path.is_file())
        write_json_atomic(staging / MANIFEST_NAME, {
            "weights": weights.name, "weights_sha256": key.weights_sha256, "runtime": key.runtime,
            "input_height": key.input_height, "input_width": key.input_width, "batch_size": key.batch_size,
            "files": {str(path.relative_to(staging)): sha256_of(path) for path in files},
        })
        if folder.exists():
            shutil.rmtree(folder)  # not intact (checked by the caller)
        try:
            os.rename(staging, folder)
        except OSError:
            if not _intact(folder):  # another process may have put its complete copy there first
                raise
    except OSError as error:
        raise CctrackError(f"cannot write the exported detector {folder}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ultralytics_export(weights_copy: Path, key: ExportKey, weights_name: str) -> None:
    from ultralytics import YOLO

    options = {"simplify": False} if key.runtime == "onnx" else {}  # no onnxslim needed: ONNX Runtime folds the graph itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converters' deprecation notes (torch.jit.trace) are not the user's to act on
            YOLO(str(weights_copy)).export(format=key.runtime, imgsz=(key.input_height, key.input_width),
                                           batch=key.batch_size, dynamic=False, device="cpu", **options)
    except Exception as error:  # ultralytics and the converters raise many types; the user needs one line
        raise CctrackError(f"cannot export detector {weights_name} to {key.runtime} ({key.input_height}x"
                           f"{key.input_width}, batch {key.batch_size}): {first_line(error)}") from None


def run_openvino_in_full_precision(network: Any, model_folder: Path) -> None:
    """Recompile the OpenVINO model that ultralytics loaded into `network` (a YOLO that has predicted once)
    with f32 inference. OpenVINO's CPU plugin otherwise runs f32 models in bf16 on CPUs that have it:
    faster, but it moves boxes enough to change tracks (README, Detector runtime)."""
    import openvino as ov

    autobackend = network.predictor.model
    backend = getattr(autobackend, "backend", autobackend)  # ultralytics 8.4 keeps each runtime in a backend
    if not hasattr(backend, "ov_compiled_model"):
        raise CctrackError("this ultralytics version loads OpenVINO models in a way cctrack does not know; "
                           "use detector.runtime=torch or onnx")
    core = ov.Core()
    backend.ov_compiled_model = core.compile_model(core.read_model(next(model_folder.glob("*.xml"))), "CPU",
                                                   {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})


@contextlib.contextmanager
def keeping_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after ultralytics calls: its device selection (first predict,
    export) sets it process-wide to cores - 1 for training, 1 on a 2-core machine, which would also slow
    the re-id embedder and the linker that run after the detector."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def first_line(error: Exception) -> str:
    """An exception as one line: the first line of its message, or its type when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
