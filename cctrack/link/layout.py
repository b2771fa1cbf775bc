"""The camera layout: when and where a person seen by one camera can be seen next.

It is optional and lives in the app's YAML config under `layout:`. Every key is optional:

    layout:
      cameras:                      # per-camera clock corrections
        entrance:
          time_offset_seconds: 0.0  # added to frame / fps to put this camera on the shared clock
          fps: 25.0                 # overrides the fps read from the video (a wrong header)
        hall:
          time_offset_seconds: -2.5
      connections:                  # present: ONLY these camera pairs can be linked directly
        - from: entrance
          to: hall
          min_transit_seconds: 5    # leaving `from` at t, a person shows up in `to` within
          max_transit_seconds: 60   #   [t + min, t + max]; max null or left out: no upper bound
          both_ways: true           # default true: hall -> entrance with the same bounds
      reentry:                      # leaving a camera and coming back to the same camera
        min_gap_seconds: 0
        max_gap_seconds: null       # null: no upper bound

Transit is measured from the end of the earlier tracklet to the start of the later one, on the shared
clock. Two tracklets of different cameras that overlap in time have transit 0: only cameras joined with
min_transit_seconds 0 (overlapping views) can show one person at the same moment. Without `connections`
every pair of cameras connects with no bounds, so a layout can be used for clock corrections alone.
Two tracklets of the same camera that overlap in time are always different people (see cctrack.link).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cctrack.errors import CctrackError

_TOP_KEYS = ("cameras", "connections", "reentry")
_CAMERA_KEYS = ("time_offset_seconds", "fps")
_CONNECTION_KEYS = ("from", "to", "min_transit_seconds", "max_transit_seconds", "both_ways")
_REENTRY_KEYS = ("min_gap_seconds", "max_gap_seconds")


@dataclass(frozen=True)
class CameraLayout:
    """Clock corrections and the allowed moves between cameras, as arrays indexed by camera.

    camera_names: (C,) names, in the order of TrackletTable.camera_names.
    time_offset_seconds: (C,) float64, added to frame / fps to get the shared clock.
    fps_override: (C,) float64 frames per second; NaN keeps the video's own fps.
    connected: (C, C) bool, [from, to]: a person can go from camera `from` to camera `to`;
        the diagonal is same-camera re-entry.
    min_transit_seconds, max_transit_seconds: (C, C) float64 bounds of that move; max may be inf.
    """

    camera_names: tuple[str, ...]
    time_offset_seconds: np.ndarray
    fps_override: np.ndarray
    connected: np.ndarray
    min_transit_seconds: np.ndarray
    max_transit_seconds: np.ndarray

    @classmethod
    def open(cls, camera_names: Sequence[str]) -> "CameraLayout":
        """No layout: shared clock as recorded, every move allowed at any time."""
        count = len(camera_names)
        return cls(
            camera_names=tuple(camera_names),
            time_offset_seconds=np.zeros(count),
            fps_override=np.full(count, np.nan),
            connected=np.ones((count, count), bool),
            min_transit_seconds=np.zeros((count, count)),
            max_transit_seconds=np.full((count, count), np.inf),
        )

    @classmethod
    def from_dict(cls, config: Any, camera_names: Sequence[str]) -> "CameraLayout":
        """Validate the `layout:` mapping of the YAML config; CctrackError names the bad key."""
        names = tuple(camera_names)
        config = {} if config is None else config
        _check_keys(config, _TOP_KEYS, "layout")
        layout = cls.open(names)
        index = {name: position for position, name in enumerate(names)}

        cameras = config.get("cameras") or {}
        if not isinstance(cameras, dict):
            raise CctrackError(f"layout.cameras must be a mapping of camera name to settings, got {cameras!r}")
        for name, camera in cameras.items():
            position = _camera_position(name, index)
            where = f"layout.cameras.{name}"
            _check_keys(camera, _CAMERA_KEYS, where)
            layout.time_offset_seconds[position] = _number(camera, "time_offset_seconds", where, 0.0)
            fps = _number(camera, "fps", where, math.nan)
            if not math.isnan(fps) and fps <= 0:
                raise CctrackError(f"{where}.fps must be positive, got {fps:g}")
            layout.fps_override[position] = fps

        reentry = config.get("reentry") or {}
        _check_keys(reentry, _REENTRY_KEYS, "layout.reentry")
        shortest_gap = _number(reentry, "min_gap_seconds", "layout.reentry", 0.0)
        longest_gap = _number(reentry, "max_gap_seconds", "layout.reentry", math.inf)
        _check_bounds(shortest_gap, longest_gap, "same-camera re-entry")
        np.fill_diagonal(layout.min_transit_seconds, shortest_gap)
        np.fill_diagonal(layout.max_transit_seconds, longest_gap)

        if "connections" in config:
            connections = config["connections"] or []
            if not isinstance(connections, list):
                raise CctrackError(f"layout.connections must be a list, got {connections!r}")
            off_diagonal = ~np.eye(len(names), dtype=bool)
            layout.connected[off_diagonal] = False
            for number, connection in enumerate(connections):
                layout._add_connection(connection, f"layout.connections[{number}]", index)
        return layout

    def _add_connection(self, connection: Any, where: str, index: dict[str, int]) -> None:
        _check_keys(connection, _CONNECTION_KEYS, where)
        for key in ("from", "to"):
            if key not in connection:
                raise CctrackError(f"{where} needs '{key}' (a camera name)")
        source, target = connection["from"], connection["to"]
        source_position, target_position = _camera_position(source, index), _camera_position(target, index)
        if source_position == target_position:
            raise CctrackError(f"{where} connects '{source}' to itself; use layout.reentry for that")
        shortest = _number(connection, "min_transit_seconds", where, 0.0)
        longest = _number(connection, "max_transit_seconds", where, math.inf)
        _check_bounds(shortest, longest, f"{source}->{target}")
        both_ways = connection.get("both_ways", True)
        if not isinstance(both_ways, bool):
            raise CctrackError(f"{where}.both_ways must be true or false, got {both_ways!r}")
        moves = [(source_position, target_position)]
        if both_ways:
            moves.append((target_position, source_position))
        for move in moves:
            if self.connected[move]:
                names = self.camera_names
                raise CctrackError(f"layout lists the connection {names[move[0]]}->{names[move[1]]} twice")
            self.connected[move] = True
            self.min_transit_seconds[move] = shortest
            self.max_transit_seconds[move] = longest

    def camera_clock(self, video_fps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(fps, time_offset_seconds), each (C,) float64: shared time = frame / fps + offset."""
        video_fps = np.asarray(video_fps, dtype=np.float64)
        if video_fps.shape != self.fps_override.shape:
            raise CctrackError(f"layout has {len(self.camera_names)} cameras but {len(video_fps)} fps values were given")
        fps = np.where(np.isnan(self.fps_override), video_fps, self.fps_override)
        return fps, self.time_offset_seconds

    def move_bounds(self) -> dict[str, np.ndarray] | None:
        """Flat (C * C,) tables indexed by source * C + target, or None when the layout gates nothing.

        "min" / "max": transit bounds in seconds, min inf where the move is not allowed;
        "simultaneous": bool, symmetric: may the two cameras see one person at the same moment.
        """
        if self.connected.all() and (self.min_transit_seconds == 0).all() and np.isinf(self.max_transit_seconds).all():
            return None
        zero_transit = self.connected & (self.min_transit_seconds == 0)
        return {"min": np.where(self.connected, self.min_transit_seconds, np.inf).reshape(-1),
                "max": self.max_transit_seconds.reshape(-1), "simultaneous": (zero_transit | zero_transit.T).reshape(-1)}

    def longest_gap_seconds(self) -> float:
        """The longest time between two tracklets that any allowed move spans (inf if unbounded)."""
        allowed = self.max_transit_seconds[self.connected]
        return float(allowed.max()) if allowed.size else 0.0


def _check_keys(mapping: Any, known: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, dict):
        raise CctrackError(f"{where} must be a mapping, got {mapping!r}")
    for key in mapping:
        if key not in known:
            raise CctrackError(f"unknown key {where}.{key} (known: {', '.join(known)})")


def _camera_position(name: Any, index: dict[str, int]) -> int:
    if name not in index:
        raise CctrackError(f"layout names unknown camera '{name}' (known: {', '.join(index)})")
    return index[name]


def _number(mapping: dict, key: str, where: str, default: float) -> float:
    """mapping[key] as a finite float; None or missing gives the default."""
    value = mapping.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CctrackError(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


def _check_bounds(shortest: float, longest: float, move: str) -> None:
    if shortest < 0 or longest < 0:
        raise CctrackError(f"negative transit bound for {move}: min {shortest:g}, max {longest:g}")
    if shortest > longest:
        raise CctrackError(f"contradictory transit bounds for {move}: min {shortest:g} > max {longest:g}")
