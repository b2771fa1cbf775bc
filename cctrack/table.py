"""The tracklet table: every tracklet of a run in one object, one column per field (like supervision's
`Detections`). It is the one thing that flows after tracking:

    tracking -> TrackletTable.from_tracklets -> .with_descriptors (embedding) -> .with_identity (linking)
             -> identities.json, MOT files, videos, report, search (all read the table)

Row i is tracklet i, ordered by camera, then track id. A tracklet's boxes and crops are ragged: they
are flat arrays with offsets, so tracklet i owns box rows box_offsets[i]:box_offsets[i + 1] and crop
rows crop_offsets[i]:crop_offsets[i + 1]. Crop pixels are not in the table: crop k of tracklet i is
the file OUT_DIR/crop_paths(i)[k], written once by the tracking stage.

Saved as OUT_DIR/cache/tracklets.npz: the columns of `arrays()` (camera names and fps are in run.json,
cctrack.record.RunRecord), the cache version and the tracking key. The descriptor column is saved by
the embedding stage (cache/embeddings.npz) and the identity column by identities.json.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from cctrack.errors import CctrackError
from cctrack.files import atomic_path, read_cache_npz
from cctrack.record import CACHE_VERSION
from cctrack.tracklets import Tracklet, crop_path, offsets

# The columns of tracklets.npz, in the order they are written (the embeddings cache is keyed by the
# file's sha256, so equal tables must give equal bytes).
COLUMNS = ("camera_index", "track_id", "box_offsets", "frames", "boxes", "scores", "crop_offsets", "crop_frames",
           "crop_quality")
_DTYPES = {"camera_index": np.int32, "track_id": np.int64, "box_offsets": np.int64, "frames": np.int64,
           "boxes": np.float32, "scores": np.float32, "crop_offsets": np.int64, "crop_frames": np.int64,
           "crop_quality": np.float32}


@dataclass(frozen=True, eq=False)
class TrackletTable:
    """N tracklets of C cameras: B boxes and K crops in all. Built once after tracking; a stage that adds a
    column returns a new table (`with_descriptors`, `with_identity`)."""

    camera_names: tuple[str, ...]  # (C,) distinct camera names
    camera_fps: tuple[float, ...]  # (C,) frames per second of each camera's video (its own clock)
    camera_index: np.ndarray  # (N,) int32: the tracklet's camera, an index into camera_names
    track_id: np.ndarray  # (N,) int64: the tracker's id, 1-based, unique within the camera
    box_offsets: np.ndarray  # (N + 1,) int64: tracklet i owns box rows box_offsets[i]:box_offsets[i + 1], >= 1
    frames: np.ndarray  # (B,) int64: 0-based frame index of each box in its camera's video, increasing per tracklet
    boxes: np.ndarray  # (B, 4) float32: xyxy pixels
    scores: np.ndarray  # (B,) float32: detector confidence of each box
    crop_offsets: np.ndarray  # (N + 1,) int64: tracklet i owns crop rows crop_offsets[i]:crop_offsets[i + 1]
    crop_frames: np.ndarray  # (K,) int64: 0-based frame index of each crop, best crop first per tracklet
    crop_quality: np.ndarray  # (K,) float32: the score the crops were chosen by (higher is better)
    descriptors: np.ndarray | None = None  # (N, D) float32 L2-normalised re-id descriptors; None until embedded
    identity: np.ndarray | None = None  # (N,) int64 global identity 1..M; None until linked

    def __post_init__(self) -> None:
        names, fps = tuple(self.camera_names), tuple(float(value) for value in self.camera_fps)
        if len(set(names)) != len(names) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"camera_names must be distinct strings, got {names}")
        if len(fps) != len(names) or not all(math.isfinite(value) and value > 0 for value in fps):
            raise ValueError(f"camera_fps must hold one positive fps per camera, got {fps}")
        object.__setattr__(self, "camera_names", names)
        object.__setattr__(self, "camera_fps", fps)
        for name, dtype in _DTYPES.items():
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype))
        count = len(self.camera_index)
        _check_shape("camera_index", self.camera_index, (count,))
        _check_shape("track_id", self.track_id, (count,))
        _check_offsets("box_offsets", self.box_offsets, count, len(self.frames), minimum=1)
        _check_shape("boxes", self.boxes, (len(self.frames), 4))
        _check_shape("scores", self.scores, (len(self.frames),))
        _check_offsets("crop_offsets", self.crop_offsets, count, len(self.crop_frames), minimum=0)
        _check_shape("crop_quality", self.crop_quality, (len(self.crop_frames),))
        if count and (self.camera_index.min() < 0 or self.camera_index.max() >= len(names)):
            raise ValueError(f"camera_index must lie in [0, {len(names)}), got {self.camera_index.min()}..{self.camera_index.max()}")
        steps = np.diff(self.frames)
        steps[self.box_offsets[1:-1] - 1] = 1  # a new tracklet may start at any frame
        if self.frames.size and (self.frames.min() < 0 or steps.min(initial=1) <= 0):
            raise ValueError("frames must be >= 0 and increase within each tracklet")
        if self.descriptors is not None:
            object.__setattr__(self, "descriptors", np.asarray(self.descriptors, np.float32))
            if self.descriptors.ndim != 2 or len(self.descriptors) != count:
                raise ValueError(f"descriptors must have shape ({count}, D), got {self.descriptors.shape}")
        if self.identity is not None:
            object.__setattr__(self, "identity", np.asarray(self.identity, np.int64))
            _check_shape("identity", self.identity, (count,))

    def __len__(self) -> int:
        return len(self.camera_index)

    # --- building ------------------------------------------------------------------------------------

    @classmethod
    def from_tracklets(cls, tracklets: Sequence[Tracklet], camera_names: Sequence[str],
                       camera_fps: Sequence[float]) -> TrackletTable:
        """The tracking stage's tracklets (their crop pixels stay behind: write them first)."""
        names = list(camera_names)
        return cls(
            camera_names=tuple(names),
            camera_fps=tuple(camera_fps),
            camera_index=[names.index(t.camera) for t in tracklets],
            track_id=[t.track_id for t in tracklets],
            box_offsets=offsets([len(t.frames) for t in tracklets]),
            frames=_concat([t.frames for t in tracklets], (0,)),
            boxes=_concat([t.boxes for t in tracklets], (0, 4)),
            scores=_concat([t.scores for t in tracklets], (0,)),
            crop_offsets=offsets([len(t.crop_frames) for t in tracklets]),
            crop_frames=_concat([t.crop_frames for t in tracklets], (0,)),
            crop_quality=_concat([t.crop_quality for t in tracklets], (0,)),
        )

    @classmethod
    def from_spans(cls, camera_names: Sequence[str], camera_fps: Sequence[float], camera_index: Sequence[int],
                   first_frame: Sequence[int], last_frame: Sequence[int]) -> TrackletTable:
        """Tracklets known only by camera and frame span (what linking reads), for tests and benches: each
        has a box at its first and last frame (boxes all zero, no crops) and track ids 1, 2, ... per camera
        in row order."""
        camera_index = np.asarray(camera_index, np.int64)
        first_frame, last_frame = np.asarray(first_frame, np.int64), np.asarray(last_frame, np.int64)
        count = len(camera_index)
        _check_shape("first_frame", first_frame, (count,))
        _check_shape("last_frame", last_frame, (count,))
        if np.any(first_frame < 0) or np.any(last_frame < first_frame):
            raise ValueError("frames must satisfy 0 <= first_frame <= last_frame")
        box_counts = 1 + (last_frame > first_frame)
        box_offsets = offsets(box_counts)
        frames = np.empty(int(box_offsets[-1]), np.int64)
        frames[box_offsets[:-1]], frames[box_offsets[1:] - 1] = first_frame, last_frame
        order = np.argsort(camera_index, kind="stable")
        per_camera = np.arange(count) - np.searchsorted(camera_index[order], camera_index[order])
        track_id = np.empty(count, np.int64)
        track_id[order] = per_camera + 1
        return cls(tuple(camera_names), tuple(camera_fps), camera_index, track_id, box_offsets, frames,
                   np.zeros((len(frames), 4), np.float32), np.zeros(len(frames), np.float32), np.zeros(count + 1, np.int64),
                   np.zeros(0, np.int64), np.zeros(0, np.float32))

    def with_descriptors(self, descriptors: np.ndarray) -> TrackletTable:
        """This table with its (N, D) re-id descriptors (the embedding stage)."""
        return dataclasses.replace(self, descriptors=descriptors)

    def with_identity(self, identity: np.ndarray) -> TrackletTable:
        """This table with each tracklet's global identity (the linking stage)."""
        return dataclasses.replace(self, identity=identity)

    # --- columns made from columns -------------------------------------------------------------------

    @cached_property
    def first_frame(self) -> np.ndarray:
        """(N,) int64 0-based frame index of each tracklet's first box."""
        return self.frames[self.box_offsets[:-1]]

    @cached_property
    def last_frame(self) -> np.ndarray:
        """(N,) int64 0-based frame index of each tracklet's last box (inclusive)."""
        return self.frames[self.box_offsets[1:] - 1]

    @cached_property
    def box_tracklet(self) -> np.ndarray:
        """(B,) int64: the row of the tracklet each box belongs to."""
        return np.repeat(np.arange(len(self)), self.box_counts)

    @property
    def box_counts(self) -> np.ndarray:
        """(N,) int64 boxes per tracklet."""
        return np.diff(self.box_offsets)

    @property
    def crop_counts(self) -> np.ndarray:
        """(N,) int64 crops per tracklet."""
        return np.diff(self.crop_offsets)

    @property
    def camera(self) -> np.ndarray:
        """(N,) str: each tracklet's camera name."""
        return np.asarray(self.camera_names, dtype=str)[self.camera_index]

    @property
    def keys(self) -> list[tuple[str, int]]:
        """(camera, track id) of each tracklet: how a person names it (`cam_left:3`)."""
        return [(self.camera_names[camera], track) for camera, track in zip(self.camera_index.tolist(), self.track_id.tolist())]

    def box_rows(self, row: int) -> slice:
        """Tracklet `row`'s rows of frames, boxes and scores."""
        return slice(int(self.box_offsets[row]), int(self.box_offsets[row + 1]))

    def crop_rows(self, row: int) -> slice:
        """Tracklet `row`'s rows of crop_frames and crop_quality."""
        return slice(int(self.crop_offsets[row]), int(self.crop_offsets[row + 1]))

    def crop_paths(self, row: int) -> list[str]:
        """Tracklet `row`'s crop files relative to OUT_DIR, best first."""
        camera, track_id = self.camera_names[self.camera_index[row]], int(self.track_id[row])
        return [crop_path(camera, track_id, rank) for rank in range(int(self.crop_counts[row]))]

    def tracklet(self, row: int) -> Tracklet:
        """Row `row` as the tracking stage's Tracklet, without crop pixels (a tracking checkpoint reads back
        the tracklets that ended before it)."""
        boxes, crops = self.box_rows(row), self.crop_rows(row)
        return Tracklet(self.camera_names[self.camera_index[row]], int(self.track_id[row]), self.frames[boxes],
                        self.boxes[boxes], self.scores[boxes], (), self.crop_frames[crops], self.crop_quality[crops])

    # --- saving --------------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns saved in tracklets.npz (all but the camera names and fps, the descriptors and the identity)."""
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], camera_names: Sequence[str], camera_fps: Sequence[float],
                    source: Path | str) -> TrackletTable:
        """`arrays()` read back; a table that does not hold together is a corrupt cache (`source` names the file)."""
        try:
            return cls(tuple(camera_names), tuple(camera_fps), **{name: arrays[name] for name in COLUMNS})
        except ValueError as error:
            raise CctrackError(f"corrupt cache: {source} does not hold together ({error}); re-run `cctrack run`") from None

    def save(self, path: Path, tracking_key: str = "") -> None:
        """Write tracklets.npz atomically. `tracking_key` names what the tracking depended on
        (cctrack.track.checkpoint.tracking_key): a rerun with the same key re-uses the tracklets."""
        with atomic_path(path) as temporary:
            np.savez(temporary, **self.arrays(), version=np.asarray(CACHE_VERSION), tracking_key=np.asarray(tracking_key))

    @classmethod
    def load(cls, path: Path, camera_names: Sequence[str], camera_fps: Sequence[float]) -> TrackletTable:
        """Read tracklets.npz (without descriptors and identity); a missing or corrupt file is a CctrackError."""
        return cls.from_arrays(read_cache_npz(path, list(COLUMNS)), camera_names, camera_fps, path)


def _check_shape(name: str, values: np.ndarray, shape: tuple[int, ...]) -> None:
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {values.shape}")


def _check_offsets(name: str, values: np.ndarray, count: int, total: int, minimum: int) -> None:
    """Offsets of `count` parts of at least `minimum` rows each, `total` rows in all."""
    _check_shape(name, values, (count + 1,))
    if values[0] != 0 or values[-1] != total or np.diff(values).min(initial=minimum) < minimum:
        raise ValueError(f"{name} must rise from 0 to {total} by at least {minimum} per tracklet")


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape)
