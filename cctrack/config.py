"""The run configuration: a YAML file with one section per stage (and `device`, shared by all stages),
loaded into typed dataclasses.

Every value can be overridden from the command line as `--set section.key=value` or `--set device=cpu`
(YAML syntax for the value); the CLI's own flags arrive as typed values under the same keys. Unknown
sections or keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cctrack.detect import DetectorSettings
from cctrack.errors import CctrackError
from cctrack.link import LinkSettings
from cctrack.track.tracker import TrackerSettings

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


@dataclass(frozen=True)
class VideoSettings:
    max_frames: int | None = None  # per camera, counted from the first frame; None = all
    max_seconds: float | None = None  # per camera, seconds of its own video (floor(seconds x fps) frames); None = all
    stride: int = 1  # process every stride-th frame
    image_fps: float = 25.0  # frame rate of image-sequence cameras without a seqinfo.ini
    # Tracking saves a checkpoint every this many seconds of video (all cameras at once): a killed or
    # Ctrl-C'd run resumes from it when run again. 0 = no checkpoints. Not part of what tracking depends on.
    checkpoint_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"video.max_frames must be >= 1 or null, got {self.max_frames}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"video.max_seconds must be > 0 or null, got {self.max_seconds}")
        if self.stride < 1:
            raise ValueError(f"video.stride must be >= 1, got {self.stride}")
        if self.image_fps <= 0:
            raise ValueError(f"video.image_fps must be > 0, got {self.image_fps}")
        if not 0 <= self.checkpoint_seconds < float("inf"):
            raise ValueError(f"video.checkpoint_seconds must be a finite number >= 0, got {self.checkpoint_seconds}")


@dataclass(frozen=True)
class TrackletSettings:
    crops_per_tracklet: int = 8  # best crops kept per tracklet for re-id
    min_boxes: int = 3  # shorter tracklets are dropped before linking and from the outputs (tracker noise)
    # Where the tracker lost a person and found them again (within tracker.lost_track_seconds), fill the
    # processed frames between with boxes interpolated between the two detections (confidence 0), so
    # that the outputs keep the person instead of blinking out (cctrack.tracklets.fill_gaps).
    fill_gaps: bool = True

    def __post_init__(self) -> None:
        if self.crops_per_tracklet < 1:
            raise ValueError(f"tracklets.crops_per_tracklet must be >= 1, got {self.crops_per_tracklet}")
        if self.min_boxes < 1:
            raise ValueError(f"tracklets.min_boxes must be >= 1, got {self.min_boxes}")


@dataclass(frozen=True)
class ReidSettings:
    # A CSSC checkpoint or weights file from `reid train`; None = the shipped CSSC-MobileNetV2 (CUHK03);
    # "imagenet" = the untrained ImageNet MobileNetV2 backbone (the old baseline, for comparisons).
    checkpoint: str | None = None
    # "reid": the network above; "colour_histogram": the colour baseline (for comparisons, see bench/pipeline.py).
    descriptor: str = "reid"
    half: bool | None = None  # fp16 on GPU; None = on when the device is a GPU
    batch_size: int = 128  # crops per forward pass
    # The engine: auto = PyTorch (cctrack.reid_runtime says why); or torch, onnx (ONNX Runtime), openvino (an
    # export of the same network, 1.8x faster on the CPU when nothing else runs).
    runtime: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"reid.batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in ("auto", "torch", "onnx", "openvino"):
            raise ValueError(f"reid.runtime must be one of auto, torch, onnx, openvino, got {self.runtime!r}")
        if self.descriptor not in ("reid", "colour_histogram"):
            raise ValueError(f"reid.descriptor must be 'reid' or 'colour_histogram', got {self.descriptor!r}")


@dataclass(frozen=True)
class ExportSettings:
    video: bool = True  # annotated video per camera
    mosaic: bool = True  # side-by-side video of all cameras
    link: bool = True  # run the embedding and cross-camera stages (off = per-camera tracking only)


@dataclass(frozen=True)
class RunConfig:
    # Where the detector, the re-id embedder and the linker run, resolved once by cctrack.device:
    # "auto" = a CUDA GPU when present, else the CPU; or cpu, cuda, cuda:1, ...
    device: str = "auto"
    video: VideoSettings = field(default_factory=VideoSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    tracklets: TrackletSettings = field(default_factory=TrackletSettings)
    reid: ReidSettings = field(default_factory=ReidSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    layout: dict | None = None  # camera layout, validated against the cameras by cctrack.link.CameraLayout

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TOP_LEVEL_SETTINGS = ("device",)  # RunConfig fields that are one value, not a section
_ONE_DEVICE = "the device is one top-level setting for every stage: write `device: cpu` at the top of the config, or pass --device"
# Keys of earlier versions, with what to write instead (an old config gets a pointer, not just "unknown key").
REMOVED_KEYS = {
    "detector.device": _ONE_DEVICE,
    "reid.device": _ONE_DEVICE,
    "link.device": _ONE_DEVICE,
    "export.crops": "crops are always written: linking, `cctrack link`, `cctrack adapt` and `cctrack export-dataset` read them",
}


def load_config(path: Path | None = None, overrides: list[str] | None = None, flags: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (None = configs/default.yaml if present, else built-in defaults), apply the
    `section.key=value` texts of --set (YAML values), then `flags`: typed values by the same keys
    ("video.stride", "device"), None meaning not given (the CLI's own options)."""
    raw: dict = {}
    if path is not None or DEFAULT_CONFIG_PATH.is_file():
        raw = _read_yaml(Path(path) if path is not None else DEFAULT_CONFIG_PATH)
    for override in overrides or []:
        key, separator, text = override.partition("=")
        if not separator:
            raise CctrackError(f"bad override {override!r}: expected section.key=value or device=..., e.g. detector.image_size=1280")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise CctrackError(f"bad override {override!r}: value is not valid YAML") from None
        _set_value(raw, key.strip(), value, override)
    for key, value in (flags or {}).items():
        if value is not None:
            _set_value(raw, key, value, key)
    return config_from_dict(raw)


def _set_value(raw: dict, key: str, value: Any, given: str) -> None:
    parts = key.split(".")
    if parts[0] == "layout":
        raise CctrackError("the camera layout is set in the config file, not by --set")
    if key in TOP_LEVEL_SETTINGS:
        raw[key] = value
        return
    if len(parts) != 2 or not all(parts) or parts[0] in TOP_LEVEL_SETTINGS:
        raise CctrackError(f"bad override {given!r}: expected section.key=value or device=..., e.g. detector.image_size=1280")
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise CctrackError(f"config section {parts[0]!r} must be a mapping")
    section[parts[1]] = value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise CctrackError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CctrackError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CctrackError(f"config {path} must be a mapping of sections")
    return raw


def config_from_dict(raw: dict) -> RunConfig:
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    values: dict[str, Any] = {}
    for name, section in raw.items():
        if name not in sections:
            raise CctrackError(f"config: unknown section {name!r} (known: {', '.join(sections)})")
        if name == "layout":
            if section is not None and not isinstance(section, dict):
                raise CctrackError("config: layout must be a mapping")
            values[name] = section
            continue
        if name in TOP_LEVEL_SETTINGS:
            values[name] = _coerce(name, typing.get_type_hints(RunConfig)[name], section)
            continue
        settings_type = typing.get_type_hints(RunConfig)[name]
        values[name] = _settings_from_dict(name, settings_type, section or {})
    return RunConfig(**values)


def _settings_from_dict(section: str, settings_type: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise CctrackError(f"config: section {section!r} must be a mapping")
    hints = typing.get_type_hints(settings_type)
    known = [f.name for f in dataclasses.fields(settings_type)]
    kwargs = {}
    for key, value in raw.items():
        if f"{section}.{key}" in REMOVED_KEYS:
            raise CctrackError(f"config: {section}.{key} was removed: {REMOVED_KEYS[f'{section}.{key}']}")
        if key not in known:
            raise CctrackError(f"config: unknown key {section}.{key} (known: {', '.join(known)})")
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    try:
        return settings_type(**kwargs)
    except (ValueError, TypeError) as error:
        raise CctrackError(f"config: {error}") from None


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Check `value` against a simple annotation (int, float, bool, str, X | None, tuple[...], dict)."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union else (annotation,)
    if value is None:
        if type(None) in allowed:
            return None
        raise CctrackError(f"config: {key} must not be null")
    for option in allowed:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str) and _is_float_text(value):
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        if origin is str and isinstance(value, str):
            return value
        if origin in (tuple, list) and isinstance(value, (list, tuple)):
            return tuple(value) if origin is tuple else list(value)
        if origin is dict and isinstance(value, dict):
            return value
    names = " or ".join(getattr(option, "__name__", str(option)) for option in allowed)
    raise CctrackError(f"config: {key} must be {names}, got {value!r}")


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
