"""Candidate pairs for linking: which tracklets are worth comparing, and their k most similar partners.

Blocking keeps this sub-quadratic in practice: tracklets are compared only with cameras the layout joins,
inside the time window, in fixed-size blocks of matrix products (no N x N matrix is ever held).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cctrack.device import resolve_device
from cctrack.link.layout import CameraLayout
from cctrack.link.settings import LinkSettings
from cctrack.table import TrackletTable


def tracklet_seconds(table: TrackletTable, layout: CameraLayout) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) (N,) float64 on the shared clock; end is exclusive: the last frame's end."""
    fps, offset = layout.camera_clock(table.camera_fps)
    camera_fps, camera_offset = fps[table.camera_index], offset[table.camera_index]
    start = table.first_frame / camera_fps + camera_offset
    end = (table.last_frame + 1) / camera_fps + camera_offset
    return start, end


def candidate_pairs(
    table: TrackletTable,
    embeddings: np.ndarray,
    start_seconds: np.ndarray,
    end_seconds: np.ndarray,
    settings: LinkSettings,
    layout: CameraLayout,
    device: str | torch.device = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gate-passing kNN pairs: (a, b) (P,) int64 row indices with a < b, distance (P,) float64; the
    similarity blocks are computed on `device`.

    Blocking: the tracklets of one camera, by start time, are scored only against the tracklets of
    cameras the layout joins to it (each camera pair once, from the lower camera index) that lie within
    the time window, in blocks of block_size x block_size.
    """
    count = len(table)
    if count < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    device = resolve_device(device)
    window = min(math.inf if settings.max_gap_seconds is None else settings.max_gap_seconds, layout.longest_gap_seconds())
    tracklet = {name: torch.from_numpy(values).to(device) for name, values in (
        ("embedding", embeddings), ("camera", table.camera_index.astype(np.int64)), ("first", table.first_frame),
        ("last", table.last_frame), ("start", start_seconds), ("end", end_seconds))}
    moves = layout.move_bounds()
    moves = None if moves is None else {name: torch.from_numpy(values).to(device) for name, values in moves.items()}
    keep = min(settings.neighbours_per_tracklet, count - 1)
    best_similarity = torch.full((count, keep), -math.inf, device=device)
    best_partner = torch.full((count, keep), -1, dtype=torch.int64, device=device)

    by_start = np.lexsort((np.arange(count), start_seconds))
    camera_by_start = table.camera_index[by_start]
    joined = layout.connected | layout.connected.T
    for camera in range(len(layout.camera_names)):
        row_ids = by_start[camera_by_start == camera]
        column_ids = by_start[joined[camera][camera_by_start] & (camera_by_start >= camera)]
        column_latest_end = np.maximum.accumulate(end_seconds[column_ids]) if len(column_ids) else column_ids
        for block_start in range(0, len(row_ids), settings.block_size):
            rows = row_ids[block_start:block_start + settings.block_size]
            # Columns within the window of some row: ending after min(start) - window, starting by max(end) + window.
            low = int(np.searchsorted(column_latest_end, start_seconds[rows].min() - window, side="left"))
            high = int(np.searchsorted(start_seconds[column_ids], end_seconds[rows].max() + window, side="right"))
            for column_start in range(low, high, settings.block_size):
                columns = column_ids[column_start:min(high, column_start + settings.block_size)]
                row_tensor, column_tensor = torch.from_numpy(rows).to(device), torch.from_numpy(columns).to(device)
                similarity = tracklet["embedding"][row_tensor] @ tracklet["embedding"][column_tensor].T
                allowed = _allowed_pairs(tracklet, row_tensor, column_tensor, moves, len(layout.camera_names), window)
                similarity.masked_fill_(~allowed, -math.inf)
                _keep_most_similar(best_similarity, best_partner, row_tensor, similarity, column_tensor)
                _keep_most_similar(best_similarity, best_partner, column_tensor, similarity.T, row_tensor)

    best_similarity, best_partner = best_similarity.cpu().numpy(), best_partner.cpu().numpy()
    found = np.isfinite(best_similarity)
    a, b = np.broadcast_to(np.arange(count)[:, None], found.shape)[found], best_partner[found]
    pair_key, first = np.unique(np.minimum(a, b) * count + np.maximum(a, b), return_index=True)
    distance = np.clip(1.0 - best_similarity[found][first].astype(np.float64), 0.0, 2.0)
    return pair_key // count, pair_key % count, distance


def _allowed_pairs(tracklet: dict, rows: torch.Tensor, columns: torch.Tensor, moves: dict | None,
                   camera_count: int, window: float) -> torch.Tensor:
    """(R, K) bool: may tracklets rows[i] and columns[j] be one person, judged on this pair alone."""
    def pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return tracklet[name][rows][:, None], tracklet[name][columns][None, :]

    (row_camera, column_camera), (row_first, column_first), (row_last, column_last) = pair("camera"), pair("first"), pair("last")
    (row_start, column_start), (row_end, column_end) = pair("start"), pair("end")
    frames_overlap = (column_first <= row_last) & (row_first <= column_last)
    scored_elsewhere = columns[None, :] <= rows[:, None]  # a same-camera pair is met twice: score it once
    allowed = ~((row_camera == column_camera) & (frames_overlap | scored_elsewhere))
    gap_forward = column_start - row_end  # seconds from the row's end to the column's start
    gap_backward = row_start - column_end
    if moves is not None:
        forward, backward = row_camera * camera_count + column_camera, column_camera * camera_count + row_camera
        in_transit_window = ((gap_forward >= moves["min"][forward]) & (gap_forward <= moves["max"][forward])) | (
            (gap_backward >= moves["min"][backward]) & (gap_backward <= moves["max"][backward]))
        simultaneous = (gap_forward < 0) & (gap_backward < 0)
        allowed &= torch.where(simultaneous, moves["simultaneous"][forward], in_transit_window)
    if math.isfinite(window):
        allowed &= torch.maximum(gap_forward, gap_backward) <= window
    return allowed


def _keep_most_similar(best_similarity: torch.Tensor, best_partner: torch.Tensor, targets: torch.Tensor,
                       similarity: torch.Tensor, partners: torch.Tensor) -> None:
    """Merge each target row's top partners in `similarity` (T, S) into its running top-k."""
    top_similarity, top_column = similarity.topk(min(best_similarity.shape[1], similarity.shape[1]), dim=1)
    merged_similarity = torch.cat([best_similarity[targets], top_similarity], dim=1)
    merged_partner = torch.cat([best_partner[targets], partners[top_column]], dim=1)
    kept_similarity, kept_column = merged_similarity.topk(best_similarity.shape[1], dim=1)
    best_similarity[targets] = kept_similarity
    best_partner[targets] = merged_partner.gather(1, kept_column)
