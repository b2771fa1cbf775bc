"""`cctrack search`: where else did this person go? Rank every tracklet of a run against a query.

The query is a photo of the person (embedded with the run's own re-id model) or one of the run's
tracklets. Tracklets are ranked by cosine similarity of their descriptors (the L2-normalised mean of
their crops' embeddings, cached by the run), each centred by its camera's mean as the linker does, so
that a camera's own colour and background do not fill the list with that camera; a photo, whose camera
is unknown, is centred by the mean of the cameras' means. Results can be restricted to cameras and to a time window on the
run's shared clock (identities.json's `*_shared_seconds`: the camera layout's clock, or each video's own
without a layout).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from cctrack import cache
from cctrack.embed import IMAGENET_BASELINE, load_embedder
from cctrack.errors import CctrackError
from cctrack.link import center_per_camera
from cctrack.tracklets import crop_path


@dataclass(frozen=True)
class SearchHit:
    rank: int
    camera: str
    track_id: int
    identity: int | None  # the global identity, when the run was linked
    first_seconds: float  # shared clock
    last_seconds: float
    similarity: float
    crop: str  # relative to OUT_DIR


@dataclass(frozen=True)
class RunIndex:
    """What a search reads from a run folder, loaded once."""

    cameras: np.ndarray  # (N,) camera name per tracklet
    track_ids: np.ndarray  # (N,)
    identities: np.ndarray  # (N,) global id, 0 when unknown
    first_seconds: np.ndarray  # (N,) shared clock
    last_seconds: np.ndarray
    descriptors: np.ndarray  # (N, D) float32, L2-normalised, centred per camera as the linker compares them
    neutral_look: np.ndarray  # (D,) the mean of the cameras' mean descriptors: what a photo of unknown camera is centred by
    model_path: str
    model_description: str


def parse_tracklet_id(text: str) -> tuple[str, int]:
    camera, separator, track = text.rpartition(":")
    if not separator or not camera or not track.isdigit():
        raise CctrackError(f"tracklet {text!r}: expected camera:track, e.g. cam_left:3")
    return camera, int(track)


def parse_clock(text: str) -> float:
    """Seconds from `SS`, `MM:SS` or `HH:MM:SS` (fractions allowed)."""
    if not re.fullmatch(r"\d+(\.\d+)?|(\d+:)?\d{1,2}:\d{1,2}(\.\d+)?", text.strip()):
        raise CctrackError(f"time {text!r}: expected seconds or HH:MM:SS")
    seconds = 0.0
    for part in text.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def load_index(out_dir: Path) -> RunIndex:
    out_dir = Path(out_dir)
    record = cache.load_run_info(out_dir)
    table = cache.load_tracklets(out_dir, record)
    embeddings = cache.load_embeddings(out_dir, len(table))
    identities_path = out_dir / "identities.json"
    if embeddings is None or not identities_path.is_file():
        raise CctrackError(f"{out_dir} has no linked run to search (no embeddings or identities.json); run `cctrack link {out_dir}`")
    try:
        document = json.loads(identities_path.read_text())
        entries = {(t["camera"], t["track_id"]): (identity["id"], t["first_shared_seconds"], t["last_shared_seconds"])
                   for identity in document["identities"] for t in identity["tracklets"]}
        model = document["run"]["models"]["reid"]  # the model that made the cached embeddings
        model_path, model_description = str(model["path"]), str(model["description"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CctrackError(f"{identities_path} is not a cctrack identities.json of schema 1.2 or later; re-run `cctrack link {out_dir}`") from None
    rows = [entries.get(key, (0, first, last)) for key, first, last in zip(table.keys, table.first_frame.tolist(), table.last_frame.tolist())]
    raw = embeddings.descriptors.astype(np.float32)
    camera_index = table.camera_index.astype(np.int64)
    return RunIndex(
        cameras=table.camera,
        track_ids=table.track_id,
        identities=np.array([row[0] for row in rows], np.int64),
        first_seconds=np.array([row[1] for row in rows], np.float64),
        last_seconds=np.array([row[2] for row in rows], np.float64),
        descriptors=center_per_camera(raw, camera_index),
        neutral_look=np.mean([raw[camera_index == c].mean(axis=0) for c in np.unique(camera_index)], axis=0) if len(raw) else np.zeros(raw.shape[1], np.float32),
        model_path=model_path,
        model_description=model_description,
    )


def image_query(index: RunIndex, image_path: Path, device: str = "auto") -> np.ndarray:
    """The photo's descriptor, from the model that embedded the run."""
    image = cv2.imread(str(image_path))
    if image is None:
        raise CctrackError(f"cannot read image {image_path} (missing, or not an image)")
    if "colour histogram" in index.model_description:
        embedder = load_embedder(None, device, descriptor="colour_histogram")
    elif "ImageNet backbone" in index.model_description:
        embedder = load_embedder(IMAGENET_BASELINE, device)
    else:
        embedder = load_embedder(index.model_path, device)
    query = embedder.embed([image])[0]
    if query.shape != index.descriptors.shape[1:]:
        raise CctrackError(f"the run's model {index.model_description} gives {query.shape[0]}-d descriptors, the cache holds "
                           f"{index.descriptors.shape[1]}-d ones; re-run `cctrack link`")
    return query - index.neutral_look


def tracklet_query(index: RunIndex, tracklet: str) -> tuple[np.ndarray, int]:
    camera, track_id = parse_tracklet_id(tracklet)
    rows = np.flatnonzero((index.cameras == camera) & (index.track_ids == track_id))
    if len(rows) == 0:
        raise CctrackError(f"tracklet {tracklet} is not in this run (cameras: {', '.join(sorted(set(index.cameras.tolist())))})")
    return index.descriptors[rows[0]], int(rows[0])


def rank_tracklets(descriptors: np.ndarray, query: np.ndarray, allowed: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, similarities) of the `top` allowed tracklets most similar to `query`, best first."""
    similarity = descriptors @ (query / max(float(np.linalg.norm(query)), 1e-12)).astype(descriptors.dtype)
    candidates = np.flatnonzero(allowed)
    if len(candidates) > top:
        # argpartition: the top k of 100k in linear time; only those k are sorted.
        candidates = candidates[np.argpartition(-similarity[candidates], top - 1)[:top]]
    order = candidates[np.argsort(-similarity[candidates], kind="stable")]
    return order, similarity[order]


def search(out_dir: Path, image: Path | None = None, tracklet: str | None = None, top: int = 20,
           cameras: list[str] | None = None, between: tuple[float, float] | None = None,
           device: str = "auto") -> list[SearchHit]:
    """The run's tracklets most similar to the photo `image` or to the run's `tracklet` (camera:track)."""
    if (image is None) == (tracklet is None):
        raise CctrackError("give exactly one query: --image PHOTO or --tracklet camera:track")
    if top < 1:
        raise CctrackError(f"--top must be >= 1, got {top}")
    index = load_index(out_dir)
    allowed = np.ones(len(index.cameras), bool)
    if tracklet is not None:
        query, own_row = tracklet_query(index, tracklet)
        allowed[own_row] = False
    else:
        query = image_query(index, Path(image), device)
    if cameras:
        unknown = sorted(set(cameras) - set(index.cameras.tolist()))
        if unknown:
            raise CctrackError(f"camera {unknown[0]} is not in this run (cameras: {', '.join(sorted(set(index.cameras.tolist())))})")
        allowed &= np.isin(index.cameras, cameras)
    if between is not None:
        start, end = between
        if end < start:
            raise CctrackError(f"--between: the end ({end:g} s) is before the start ({start:g} s)")
        allowed &= (index.last_seconds >= start) & (index.first_seconds <= end)
    rows, similarity = rank_tracklets(index.descriptors, query, allowed, top)
    return [
        SearchHit(rank + 1, str(index.cameras[row]), int(index.track_ids[row]), int(index.identities[row]) or None,
                  float(index.first_seconds[row]), float(index.last_seconds[row]), float(score),
                  crop_path(str(index.cameras[row]), int(index.track_ids[row]), 0))
        for rank, (row, score) in enumerate(zip(rows, similarity))
    ]


def format_hits(hits: list[SearchHit]) -> str:
    if not hits:
        return "no tracklet matches the filters"
    lines = [f"{'rank':>4}  {'camera':<12} {'track':>5} {'identity':>8} {'first s':>8} {'last s':>8} {'similarity':>10}  crop"]
    lines += [f"{h.rank:>4}  {h.camera:<12} {h.track_id:>5} {h.identity if h.identity is not None else '-':>8} "
              f"{h.first_seconds:>8.1f} {h.last_seconds:>8.1f} {h.similarity:>10.3f}  {h.crop}" for h in hits]
    return "\n".join(lines)


def hits_json(hits: list[SearchHit]) -> str:
    return json.dumps([asdict(hit) for hit in hits], indent=2)
