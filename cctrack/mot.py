"""MOTChallenge text files: `frame,id,x,y,w,h,conf,wx,wy,wz` per line, 1-based frames, boxes in pixels.

One reader and one writer for every MOT file cctrack reads or writes (tracks/, global/, ground truth),
so all of them have one number format: boxes to 3 decimals, confidence to 4 significant digits.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cctrack.errors import CctrackError
from cctrack.files import write_text_atomic
from cctrack.tracklets import Tracklet

MOT_COLUMNS = 10  # frame, id, x, y, w, h, conf, wx, wy, wz


def read_mot_txt(path: str | Path) -> np.ndarray:
    """Read a MOTChallenge text file into (K, C) float64 rows, C >= 6 (``frame, id, x, y, w, h, ...``).

    Frames are 1-based integers; boxes x, y, w, h in pixels. An empty file gives a (0, 10) array.
    A malformed line raises CctrackError naming the file and the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise CctrackError(f"MOT file not found: {path}")
    rows: list[list[float]] = []
    column_count: int | None = None
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        fields = [field for field in text.replace(",", " ").split()]
        where = f"{path}:{line_number}"
        if len(fields) < 6:
            raise CctrackError(f"{where}: expected at least 6 values 'frame,id,x,y,w,h', got {len(fields)}")
        if column_count is not None and len(fields) != column_count:
            raise CctrackError(f"{where}: {len(fields)} values, but earlier lines have {column_count}")
        column_count = len(fields)
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise CctrackError(f"{where}: not a number in '{text}'") from None
        if not all(math.isfinite(value) for value in values[:6]):
            raise CctrackError(f"{where}: frame, id and box must be finite numbers, got '{text}'")
        frame, _, _, _, width, height = values[:6]
        if frame < 1 or frame != int(frame):
            raise CctrackError(f"{where}: frame must be a 1-based integer, got {fields[0]}")
        if values[1] != int(values[1]):
            raise CctrackError(f"{where}: id must be an integer, got {fields[1]}")
        if width < 0 or height < 0:
            raise CctrackError(f"{where}: box width and height must be >= 0, got {fields[4]} x {fields[5]}")
        rows.append(values)
    if not rows:
        return np.zeros((0, MOT_COLUMNS), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def write_mot_txt(path: str | Path, rows: np.ndarray) -> Path:
    """Write (K, >=6) rows ``frame, id, x, y, w, h[, conf, wx, wy, wz]`` as a MOTChallenge file, atomically.

    Missing trailing columns are filled with conf 1 and world coordinates -1.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or not 6 <= rows.shape[1] <= MOT_COLUMNS:
        raise CctrackError(f"MOT rows must be (K, 6..{MOT_COLUMNS}), got shape {rows.shape}")
    full = np.tile(np.array([0, 0, 0, 0, 0, 0, 1, -1, -1, -1], dtype=np.float64), (len(rows), 1))
    full[:, : rows.shape[1]] = rows
    lines = [
        f"{int(r[0])},{int(r[1])},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},{r[6]:.4g},{r[7]:g},{r[8]:g},{r[9]:g}\n"
        for r in full
    ]
    path = Path(path)
    write_text_atomic(path, "".join(lines))
    return path


def tracklet_rows(tracklets: list[Tracklet], ids: list[int]) -> np.ndarray:
    """(K, 7) rows `frame, id, x, y, w, h, conf` of the tracklets' boxes, each under its id, sorted by frame then id."""
    rows = [
        (int(frame) + 1, int(identity), float(x0), float(y0), float(x1 - x0), float(y1 - y0), float(score))
        for tracklet, identity in zip(tracklets, ids)
        for frame, (x0, y0, x1, y1), score in zip(tracklet.frames, tracklet.boxes, tracklet.scores)
    ]
    rows.sort(key=lambda row: (row[0], row[1]))
    return np.asarray(rows, np.float64).reshape(-1, 7)


def write_mot_files(folder: Path, camera_names: list[str], tracklets: list[Tracklet], ids: list[int]) -> list[Path]:
    """`<folder>/<camera>.txt` for every camera (empty file for a camera with nobody in it)."""
    paths = []
    for name in camera_names:
        selected = [(t, i) for t, i in zip(tracklets, ids) if t.camera == name]
        paths.append(write_mot_txt(Path(folder) / f"{name}.txt", tracklet_rows([t for t, _ in selected], [i for _, i in selected])))
    return paths
