"""Re-id ranking metrics: CMC rank-k, mAP and mINP in one vectorised pass.

The protocol (as in torchreid's `metrics/rank.py`, stated once here):
- every query ranks the whole gallery by ascending distance; when a true match and a wrong item are at
  exactly the same distance the wrong item is ranked first (the pessimistic, deterministic choice);
- gallery items that would make the task trivial are removed from that query's ranking:
  mode "standard"       drops items with the same pid AND the same camera;
  mode "cloth_changing" drops items with the same pid AND (the same camera OR the same clothes);
- a query whose remaining ranking holds no item of its pid has no valid match and is skipped;
- rank-k = fraction of valid queries whose first true match is within the first k kept items;
  AP = mean over true matches of (true matches so far / position); mINP = (number of true matches) /
  (position of the last true match); both averaged over valid queries.

Only the positions of the true matches matter, so no argsort and no Q x G gathers: each query's few
same-pid items are picked (the gallery is grouped by pid once) and sorted; the rows' distance values are
sorted (values only); a batched binary search then counts the gallery items at or before each same-pid
item. The position of a kept true match is (wrong items at or before it) + (kept true matches up to it).
It runs in chunks of queries on the distance matrix's own device (GPU tensors stay there).
"""

from __future__ import annotations

import numpy as np
import torch

from reid.errors import ReidError

EVAL_MODES = ("standard", "cloth_changing")
CMC_RANKS = (1, 5, 10)
# Bound on (queries in a chunk) x (gallery size): a chunk holds one sorted copy of its rows plus small
# per-query tensors, so 8M elements keep the extra memory of a chunk to about 32-64 MB.
MAX_ELEMENTS_PER_CHUNK = 8_000_000

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(values: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.ndim != 1:
        raise ReidError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor.to(device)


def _sorted_rows(distances: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending. On the CPU numpy's SIMD sort is several times faster than torch.sort."""
    if distances.device.type == "cpu":
        return torch.from_numpy(np.sort(distances.numpy(), axis=1))
    return torch.sort(distances, dim=1).values


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    q_clothes: ArrayLike | None = None,
    g_clothes: ArrayLike | None = None,
    mode: str = "standard",
) -> dict[str, float | int]:
    """Score a query x gallery distance matrix (smaller = more similar).

    Returns {"rank1", "rank5", "rank10", "mAP", "mINP"} as fractions in [0, 1] over the valid queries, plus
    "num_valid_queries" and "num_queries". Raises ReidError on bad shapes or NaN distances, an unknown mode,
    a cloth-changing request without clothes labels, or when no query has a valid match.
    """
    if mode not in EVAL_MODES:
        raise ReidError(f"unknown evaluation mode {mode!r}; expected one of {', '.join(EVAL_MODES)}")
    distances = distmat if isinstance(distmat, torch.Tensor) else torch.as_tensor(np.asarray(distmat))
    if distances.ndim != 2:
        raise ReidError(f"distmat must be 2-D (queries x gallery), got shape {tuple(distances.shape)}")
    if not distances.is_floating_point():
        distances = distances.double()
    elif distances.dtype in (torch.float16, torch.bfloat16):
        distances = distances.float()
    if distances.numel() and not bool(torch.isfinite(torch.stack(distances.aminmax())).all()):
        raise ReidError("distmat contains NaN or infinite distances")
    device = distances.device
    num_queries, num_gallery = distances.shape
    q_pid = _as_tensor(q_pids, device, "q_pids")
    g_pid = _as_tensor(g_pids, device, "g_pids")
    q_cam = _as_tensor(q_camids, device, "q_camids")
    g_cam = _as_tensor(g_camids, device, "g_camids")
    if len(q_pid) != num_queries or len(q_cam) != num_queries:
        raise ReidError(f"q_pids/q_camids must have {num_queries} entries (distmat rows)")
    if len(g_pid) != num_gallery or len(g_cam) != num_gallery:
        raise ReidError(f"g_pids/g_camids must have {num_gallery} entries (distmat columns)")
    cloth_changing = mode == "cloth_changing"
    if cloth_changing:
        if q_clothes is None or g_clothes is None:
            raise ReidError("mode 'cloth_changing' needs q_clothes and g_clothes")
        q_clo = _as_tensor(q_clothes, device, "q_clothes")
        g_clo = _as_tensor(g_clothes, device, "g_clothes")
        if len(q_clo) != num_queries or len(g_clo) != num_gallery:
            raise ReidError("q_clothes/g_clothes must match the distmat's rows/columns")

    max_rank = max(CMC_RANKS)
    cmc_positions = torch.arange(1, max_rank + 1, device=device)
    hits_at_rank = torch.zeros(max_rank, dtype=torch.int64, device=device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=device)
    inp_sum = torch.zeros((), dtype=torch.float64, device=device)
    num_valid = torch.zeros((), dtype=torch.int64, device=device)
    chunk_size = max(1, MAX_ELEMENTS_PER_CHUNK // max(1, num_gallery))

    # Gallery grouped by pid, so each query's same-pid items are one contiguous run of `gallery_by_pid`.
    gallery_by_pid = torch.argsort(g_pid, stable=True)
    sorted_g_pid = g_pid[gallery_by_pid].contiguous()
    q_pid = q_pid.to(sorted_g_pid.dtype)
    run_start = torch.searchsorted(sorted_g_pid, q_pid)
    run_length = torch.searchsorted(sorted_g_pid, q_pid, right=True) - run_start

    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        chunk = distances[start:stop]
        max_same_pid = int(run_length[start:stop].max())
        if max_same_pid == 0:
            continue

        # Each query's same-pid items sorted by distance (rows with fewer are padded with +inf entries).
        offsets = torch.arange(max_same_pid, device=device)
        is_same_pid = offsets < run_length[start:stop, None]
        run_index = (run_start[start:stop, None] + offsets).clamp(max=num_gallery - 1)
        same_pid_index = gallery_by_pid[run_index]
        same_pid_distance = torch.where(is_same_pid, chunk.gather(1, same_pid_index), float("inf"))
        same_pid_distance, order = torch.sort(same_pid_distance, dim=1)
        same_pid_index, is_same_pid = same_pid_index.gather(1, order), is_same_pid.gather(1, order)

        excluded = g_cam[same_pid_index] == q_cam[start:stop, None]
        if cloth_changing:
            excluded |= g_clo[same_pid_index] == q_clo[start:stop, None]
        kept_match = is_same_pid & ~excluded
        num_matches = kept_match.sum(dim=1)
        valid = num_matches > 0
        if not bool(valid.any()):
            continue

        # Items at or before each same-pid item = items with a distance <= its own (so ties count against the
        # match), found by binary search in the sorted row; minus the same-pid items among them.
        items_up_to = torch.searchsorted(_sorted_rows(chunk), same_pid_distance, right=True)
        same_pid_up_to = torch.searchsorted(same_pid_distance, same_pid_distance, right=True)
        wrong_up_to = items_up_to - same_pid_up_to
        matches_so_far = kept_match.cumsum(dim=1)
        position = wrong_up_to + matches_so_far  # 1-based rank of each kept true match

        kept_match, num_matches, position, matches_so_far = (
            kept_match[valid], num_matches[valid], position[valid], matches_so_far[valid]
        )
        first_match = torch.where(kept_match, position, num_gallery + 1).amin(dim=1)
        last_match = torch.where(kept_match, position, 0).amax(dim=1)
        hits_at_rank += (first_match[:, None] <= cmc_positions).sum(dim=0)
        precision = torch.where(kept_match, matches_so_far.double() / position.double(), 0.0)
        ap_sum += (precision.sum(dim=1) / num_matches).sum()
        inp_sum += (num_matches.double() / last_match.double()).sum()
        num_valid += len(num_matches)

    valid_count = int(num_valid)
    if valid_count == 0:
        raise ReidError("no query has a valid gallery match; check query/gallery pids and cameras")
    cmc = (hits_at_rank.double() / valid_count).tolist()
    result: dict[str, float | int] = {f"rank{k}": cmc[k - 1] for k in CMC_RANKS}
    result["mAP"] = float(ap_sum) / valid_count
    result["mINP"] = float(inp_sum) / valid_count
    result["num_valid_queries"] = valid_count
    result["num_queries"] = num_queries
    return result
