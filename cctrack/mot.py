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
from cctrack.table import TrackletTable

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


def camera_rows(table: TrackletTable, ids: np.ndarray, camera: int) -> np.ndarray:
    """(K, 7) rows `frame, id, x, y, w, h, conf` of the boxes of camera `camera` (an index into
    table.camera_names), each under its tracklet's entry of `ids` (N,), sorted by frame, then id."""
    boxes = np.flatnonzero(table.camera_index[table.box_tracklet] == camera)
    box_ids = np.asarray(ids, np.int64)[table.box_tracklet[boxes]]
    frames = table.frames[boxes] + 1
    x0, y0, x1, y1 = table.boxes[boxes].T
    order = np.lexsort((box_ids, frames))
    columns = (frames, box_ids, x0, y0, x1 - x0, y1 - y0, table.scores[boxes])
    return np.stack([np.asarray(column, np.float64)[order] for column in columns], axis=1).reshape(-1, 7)


def write_mot_files(folder: Path, table: TrackletTable, ids: np.ndarray) -> list[Path]:
    """`<folder>/<camera>.txt` for every camera of the table (an empty file for a camera with nobody in
    it), each box under its tracklet's entry of `ids` (N,): table.track_id, or table.identity."""
    return [write_mot_txt(Path(folder) / f"{name}.txt", camera_rows(table, ids, camera))
            for camera, name in enumerate(table.camera_names)]
