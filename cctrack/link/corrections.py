"""A person's corrections to the linking: `corrections.yaml` -> must-link, cannot-link and alone rows.

    same:      [[cam_left:3, cam_right:7], ...]   one person (must-link)
    different: [[cam_left:5, cam_right:2], ...]   two people (cannot-link)
    alone:     [cam_right:9, ...]                 never linked to anyone

Tracklets are named `camera:track_id` (the per-camera id of tracks/<camera>.txt). The linker applies them
inside its clustering (cctrack.link.cluster), so no threshold or model can undo them. Corrections that
contradict each other, or the cannot-link rule that one camera does not see one person twice at once,
are refused here, naming the entries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import yaml

from cctrack.errors import CctrackError
from cctrack.table import TrackletTable

TrackletKey = tuple[str, int]  # (camera, track id)


@dataclass(frozen=True)
class Corrections:
    """The entries of a corrections file, as written: tracklet keys in file order."""

    same: tuple[tuple[TrackletKey, TrackletKey], ...] = ()
    different: tuple[tuple[TrackletKey, TrackletKey], ...] = ()
    alone: tuple[TrackletKey, ...] = ()
    source: str = "corrections"  # the file, for error messages

    def __bool__(self) -> bool:
        return bool(self.same or self.different or self.alone)


@dataclass(frozen=True)
class LinkConstraints:
    """Corrections as rows of a TrackletTable: must_link and cannot_link (K, 2) int64, alone (A,) int64."""

    must_link: np.ndarray
    cannot_link: np.ndarray
    alone: np.ndarray

    @staticmethod
    def none() -> LinkConstraints:
        empty = np.zeros((0, 2), np.int64)
        return LinkConstraints(empty, empty, np.zeros(0, np.int64))


def load_corrections(path: Path) -> Corrections:
    """Read a corrections file; raise CctrackError with one line for bad YAML or a bad shape."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise CctrackError(f"cannot read corrections {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CctrackError(f"corrections {path} is not valid YAML{where}") from None
    if document is None:
        return Corrections(source=str(path))
    if not isinstance(document, dict):
        raise CctrackError(f"corrections {path} must be a mapping with keys same, different, alone")
    unknown = sorted(set(map(str, document)) - {"same", "different", "alone"})
    if unknown:
        raise CctrackError(f"corrections {path}: unknown key {unknown[0]!r} (expected same, different, alone)")

    def pairs(key: str) -> tuple:
        entries = document.get(key) or []
        if not isinstance(entries, list):
            raise CctrackError(f"corrections {path}: {key} must be a list of [camera:track, camera:track] pairs")
        result = []
        for number, entry in enumerate(entries):
            if not isinstance(entry, list) or len(entry) != 2:
                raise CctrackError(f"corrections {path}: {key}[{number}] must be a pair [camera:track, camera:track], got {entry!r}")
            result.append((_parse_key(entry[0], path, f"{key}[{number}]"), _parse_key(entry[1], path, f"{key}[{number}]")))
        return tuple(result)

    alone = document.get("alone") or []
    if not isinstance(alone, list):
        raise CctrackError(f"corrections {path}: alone must be a list of camera:track")
    return Corrections(
        same=pairs("same"),
        different=pairs("different"),
        alone=tuple(_parse_key(entry, path, f"alone[{number}]") for number, entry in enumerate(alone)),
        source=str(path),
    )


def _parse_key(text, path: Path, entry: str) -> TrackletKey:
    camera, _, track = str(text).rpartition(":")
    if not isinstance(text, str) or not camera or not track.strip().isdigit():
        raise CctrackError(f"corrections {path}: {entry} names {text!r}, expected camera:track_id like cam_left:3")
    return camera.strip(), int(track)


def key_text(key: TrackletKey) -> str:
    return f"{key[0]}:{key[1]}"


def resolve_corrections(corrections: Corrections, table: TrackletTable) -> LinkConstraints:
    """Rows of the table's tracklets the corrections name, after checking that every tracklet exists and
    that the corrections can all hold at once."""
    keys = table.keys
    row_of = {key: row for row, key in enumerate(keys)}

    def row(key: TrackletKey, entry: str) -> int:
        if key not in row_of:
            what = "camera" if key[0] not in table.camera_names else "tracklet"
            raise CctrackError(f"{corrections.source}: {entry} names {key_text(key)}, an unknown {what} "
                               f"(cameras: {', '.join(table.camera_names)})")
        return row_of[key]

    same = [(row(a, _entry('same', n, a, b)), row(b, _entry('same', n, a, b))) for n, (a, b) in enumerate(corrections.same)]
    different = [(row(a, _entry('different', n, a, b)), row(b, _entry('different', n, a, b)))
                 for n, (a, b) in enumerate(corrections.different)]
    alone = [row(key, f"alone[{n}] {key_text(key)}") for n, key in enumerate(corrections.alone)]
    _check_consistent(corrections, keys, table, same, different, alone)
    return LinkConstraints(
        must_link=np.array(same, np.int64).reshape(-1, 2),
        cannot_link=np.array(different, np.int64).reshape(-1, 2),
        alone=np.array(alone, np.int64),
    )


def _entry(key: str, number: int, a: TrackletKey, b: TrackletKey) -> str:
    return f"{key}[{number}] [{key_text(a)}, {key_text(b)}]"


def _check_consistent(corrections: Corrections, keys: list[TrackletKey], table: TrackletTable,
                      same: list[tuple[int, int]], different: list[tuple[int, int]], alone: list[int]) -> None:
    # The `same` pairs as a graph: the chain of entries that puts two tracklets in one person is its path.
    edges: dict[int, list[tuple[int, int]]] = {}
    for number, (a, b) in enumerate(same):
        edges.setdefault(a, []).append((b, number))
        edges.setdefault(b, []).append((a, number))

    def chain(start: int, goal: int) -> list[int] | None:
        """The `same` entries joining start to goal (breadth first: the shortest chain), None if none."""
        via: dict[int, tuple[int, int] | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                numbers = []
                while via[node] is not None:
                    node, number = via[node]
                    numbers.append(number)
                return numbers[::-1]
            for other, number in edges.get(node, []):
                if other not in via:
                    via[other] = (node, number)
                    queue.append(other)
        return None

    def entries(numbers: list[int]) -> str:
        return " and ".join(_entry("same", n, *corrections.same[n]) for n in sorted(numbers))

    for number, row in enumerate(alone):
        if row in edges:
            raise CctrackError(f"{corrections.source}: alone[{number}] {key_text(keys[row])} contradicts "
                               f"{entries([edges[row][0][1]])}")
    for number, (a, b) in enumerate(different):
        path = [] if a == b else chain(a, b)
        if path is not None:
            tail = "a tracklet cannot differ from itself" if a == b else f"contradicts {entries(path)}"
            raise CctrackError(f"{corrections.source}: {_entry('different', number, *corrections.different[number])} {tail}")
    # One camera does not see one person twice at once: no two frame-overlapping tracklets of a camera
    # may end up in one `same` group.
    seen: set[int] = set()
    for start in edges:
        if start in seen:
            continue
        group = [start]
        seen.add(start)
        for node in group:
            for other, _ in edges[node]:
                if other not in seen:
                    seen.add(other)
                    group.append(other)
        group.sort(key=lambda r: (table.camera_index[r], table.first_frame[r]))
        for earlier, later in pairwise(group):
            if (table.camera_index[earlier] == table.camera_index[later]
                    and table.first_frame[later] <= table.last_frame[earlier]):
                raise CctrackError(
                    f"{corrections.source}: {entries(chain(earlier, later))} put {key_text(keys[earlier])} and "
                    f"{key_text(keys[later])} in one person, but camera {keys[earlier][0]} sees both at once "
                    f"(frames {table.first_frame[later] + 1}-{min(table.last_frame[earlier], table.last_frame[later]) + 1})"
                )
