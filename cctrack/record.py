"""What a run was made of: cameras, models and config (`RunRecord`), saved as OUT_DIR/cache/run.json.

It travels beside the tracklets from tracking to the exports, and identities.json's `run` section is
written from it (the same fields as run.json).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cctrack.errors import CctrackError
from cctrack.files import write_json_atomic
from cctrack.video import Camera, list_images

CACHE_VERSION = 1  # of run.json and the cache beside it: a cache of another version is not read


@dataclass(frozen=True)
class CameraRecord:
    name: str
    path: str  # the video file or image folder, resolved
    fps: float
    frame_count: int  # frames in the source
    width: int
    height: int
    frames_processed: int  # frames read and detected (after stride and the frame / time limits)
    last_frame: int  # 1-based number of the last frame processed (0: none)
    stride: int

    def camera(self) -> Camera:
        """The source as a Camera (for drawing videos from a re-link)."""
        path = Path(self.path)
        return Camera(self.name, path, self.fps, self.frame_count, self.width, self.height,
                      list_images(path) if path.is_dir() else ())


@dataclass(frozen=True)
class ModelRecord:
    description: str
    path: str
    sha256: str
    dim: int | None = None  # descriptor length (re-id models only)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return values if self.dim is not None else {k: v for k, v in values.items() if k != "dim"}


@dataclass(frozen=True)
class RunRecord:
    video_dir: str
    cameras: tuple[CameraRecord, ...]
    detector: ModelRecord
    reid: ModelRecord | None  # None until the tracklets are embedded
    config: dict  # RunConfig.to_dict() of the settings the outputs were made with

    @property
    def camera_names(self) -> list[str]:
        return [camera.name for camera in self.cameras]

    @property
    def camera_fps(self) -> list[float]:
        """Each camera's own frames per second, in camera_names' order."""
        return [float(camera.fps) for camera in self.cameras]

    def with_reid(self, reid: ModelRecord, config: dict) -> RunRecord:
        """This run re-linked: its re-id model, and `config` for every section but the tracking ones (the
        tracklets were made with the recorded video, detector and tracker settings)."""
        tracking = {key: self.config[key] for key in ("video", "detector", "tracker") if key in self.config}
        return dataclasses.replace(self, reid=reid, config={**config, **tracking})

    def to_dict(self) -> dict:
        """The layout of run.json and of identities.json's `run` section."""
        return {
            "video_dir": self.video_dir,
            "cameras": [dataclasses.asdict(camera) for camera in self.cameras],
            "models": {"detector": self.detector.to_dict(), "reid": self.reid.to_dict() if self.reid else None},
            "config": self.config,
        }

    def save(self, path: Path) -> None:
        write_json_atomic(path, {"cache_version": CACHE_VERSION, **self.to_dict()})

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        corrupt = CctrackError(f"corrupt cache: {path} is not a cctrack run record; re-run `cctrack run`")
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, ValueError):  # not JSON, or not text
            raise corrupt from None
        if not isinstance(values, dict) or not isinstance(values.get("cameras"), list) or "cache_version" not in values:
            raise corrupt
        if values["cache_version"] != CACHE_VERSION:
            raise CctrackError(
                f"cache {path} has version {values['cache_version']!r} but this cctrack reads version {CACHE_VERSION}: "
                "re-run `cctrack run` to rebuild it, or use the cctrack that wrote it"
            )
        try:
            models = values["models"]
            return cls(
                video_dir=str(values["video_dir"]),
                cameras=tuple(CameraRecord(**camera) for camera in values["cameras"]),
                detector=ModelRecord(**models["detector"]),
                reid=ModelRecord(**models["reid"]) if models.get("reid") else None,
                config=dict(values["config"]),
            )
        except (KeyError, TypeError, AttributeError):
            raise corrupt from None
