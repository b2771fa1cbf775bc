"""The run cache in OUT_DIR: what detection, tracking and embedding produced, so `cctrack link` can
re-link with other settings without redoing them.

    OUT_DIR/cache/run.json          cameras, config, detector
    OUT_DIR/cache/tracklets.npz     the tracklet table (cctrack.table): frames, boxes, scores, crop frames
    OUT_DIR/cache/embeddings.npz    per-crop embeddings, tracklet descriptors, the re-id model's identity
    OUT_DIR/crops/<camera>/<track id>_<k>.jpg   the crops (k = 0 is the best one, the representative)
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.embed import TrackletEmbeddings
from cctrack.files import atomic_path, read_cache_npz, sha256_of, write_bytes_atomic
from cctrack.record import RunRecord
from cctrack.table import TrackletTable
from cctrack.tracklets import Tracklet, crop_path

CROP_JPEG_QUALITY = 95


def cache_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "cache"


def save_tracklets(out_dir: Path, table: TrackletTable, record: RunRecord, tracking_key: str = "") -> None:
    """Cache the tracklet table and the run record (write the crops first, `write_crops`: a cached table
    means finished tracking). `tracking_key` names what the tracking depended on
    (cctrack.track.checkpoint.tracking_key): a rerun with the same key re-uses the tracklets."""
    table.save(cache_dir(out_dir) / "tracklets.npz", tracking_key)
    record.save(cache_dir(out_dir) / "run.json")


def write_crops(out_dir: Path, tracklet: Tracklet) -> None:
    """A tracklet's crops as OUT_DIR/crops/<camera>/<track id>_<rank>.jpg (`load_crops` reads them back:
    runs and re-links embed the same decoded pixels)."""
    for rank, crop in enumerate(tracklet.crops):
        path = Path(out_dir) / crop_path(tracklet.camera, tracklet.track_id, rank)
        # Encoded here and written by Python, so a failed write says why (cv2.imwrite only says False).
        write_bytes_atomic(path, encode_crop(crop, path))


def encode_crop(crop: np.ndarray, path: Path | str = "a crop") -> bytes:
    """The JPEG bytes a crop is stored as (`path` names it in the error)."""
    encoded, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    if not encoded:
        raise CctrackError(f"cannot write {path}: OpenCV cannot encode a {crop.shape} crop as JPEG")
    return jpeg.tobytes()


def load_run_info(out_dir: Path) -> RunRecord:
    path = cache_dir(out_dir) / "run.json"
    if not path.is_file():
        raise CctrackError(f"no cache in {out_dir}: {path} is missing (run `cctrack run` first)")
    return RunRecord.load(path)


def load_tracklets(out_dir: Path, record: RunRecord) -> TrackletTable:
    """The cached tracklet table of the run `record` describes (crop pixels: `load_crops`)."""
    return TrackletTable.load(cache_dir(out_dir) / "tracklets.npz", record.camera_names, record.camera_fps)


def cached_tracking_key(out_dir: Path) -> str:
    """The tracking key the cached tracklets were made with ("" when none, or from a cctrack before keys)."""
    path = cache_dir(out_dir) / "tracklets.npz"
    if not (path.is_file() and (cache_dir(out_dir) / "run.json").is_file()):
        return ""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["tracking_key"]) if "tracking_key" in data.files else ""
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return ""


def load_crops(out_dir: Path, table: TrackletTable) -> list[list[np.ndarray]]:
    """Every tracklet's crops, all in memory (see `StoredCrops` to read them one tracklet at a time)."""
    stored = StoredCrops(out_dir, table)
    return [stored[i] for i in range(len(stored))]


class StoredCrops(Sequence):
    """Each tracklet's crops, read from OUT_DIR/crops only when asked for: memory stays flat in the
    number of tracklets (cctrack.embed.embed_tracklets reads them one tracklet at a time)."""

    def __init__(self, out_dir: Path, table: TrackletTable) -> None:
        self.out_dir = Path(out_dir)
        self.table = table
        self.crop_counts = table.crop_counts.tolist()

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> list[np.ndarray]:
        images = []
        for path in (self.out_dir / relative for relative in self.table.crop_paths(index)):
            image = cv2.imread(str(path))
            if image is None:
                raise CctrackError(f"corrupt cache: crop {path} is missing or unreadable; re-run `cctrack run`")
            images.append(image)
        return images


def tracklets_key(out_dir: Path) -> str:
    """sha256 of the cached tracklets.npz: embeddings are re-used only for the tracklets they were made of."""
    path = cache_dir(out_dir) / "tracklets.npz"
    return sha256_of(path) if path.is_file() else ""


def save_embeddings(out_dir: Path, embeddings: TrackletEmbeddings) -> None:
    with atomic_path(cache_dir(out_dir) / "embeddings.npz") as temporary:
        np.savez(
            temporary,
            crop_embeddings=embeddings.crop_embeddings,
            crop_offsets=embeddings.crop_offsets,
            descriptors=embeddings.descriptors,
            model=np.asarray(embeddings.model),
            model_sha256=np.asarray(embeddings.model_sha256),
            tracklets_sha256=np.asarray(tracklets_key(out_dir)),
        )


def load_embeddings(out_dir: Path, tracklet_count: int) -> TrackletEmbeddings | None:
    """The cached embeddings, or None when there are none yet, or when they were made of other tracklets
    (an earlier run's, or a cache of unknown origin)."""
    path = cache_dir(out_dir) / "embeddings.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            key = str(data["tracklets_sha256"]) if "tracklets_sha256" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        key = None  # unreadable: read_cache_npz below says so
    else:
        if key != tracklets_key(out_dir):
            return None
    arrays = read_cache_npz(path, ["crop_embeddings", "crop_offsets", "descriptors", "model", "model_sha256"])
    descriptors = arrays["descriptors"]
    if descriptors.ndim != 2 or len(descriptors) != tracklet_count or arrays["crop_embeddings"].shape[1:] != descriptors.shape[1:]:
        raise CctrackError(
            f"corrupt cache: {path} holds {descriptors.shape} descriptors for {tracklet_count} tracklets; delete it to re-embed"
        )
    return TrackletEmbeddings(
        crop_embeddings=arrays["crop_embeddings"],
        crop_offsets=arrays["crop_offsets"],
        descriptors=descriptors,
        model=str(arrays["model"]),
        model_sha256=str(arrays["model_sha256"]),
    )
