"""The run cache in OUT_DIR: what detection, tracking and embedding produced, so `cctrack link` can
re-link with other settings without redoing them.

    OUT_DIR/cache/run.json          cameras, config, detector
    OUT_DIR/cache/tracklets.npz     every tracklet's frames, boxes, scores and crop frames (ragged arrays)
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
from cctrack.files import atomic_path, sha256_of, write_bytes_atomic
from cctrack.embed import TrackletEmbeddings
from cctrack.record import CACHE_VERSION, RunRecord
from cctrack.tracklets import Tracklet, crop_path, offsets

CROP_JPEG_QUALITY = 95


def cache_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "cache"


def save_tracklets(out_dir: Path, tracklets: list[Tracklet], record: RunRecord, tracking_key: str = "") -> None:
    """Write the crops each tracklet still carries (JPEG; those of tracklets that ended before the last
    tracking checkpoint are written already) and the cache. `tracking_key` names what the tracking
    depended on (cctrack.track.checkpoint.tracking_key): a rerun with the same key re-uses the tracklets."""
    for tracklet in tracklets:
        write_crops(out_dir, tracklet)
    arrays = tracklet_arrays(tracklets, record.camera_names)
    arrays["version"] = np.asarray(CACHE_VERSION)
    arrays["tracking_key"] = np.asarray(tracking_key)
    with atomic_path(cache_dir(out_dir) / "tracklets.npz") as temporary:
        np.savez(temporary, **arrays)
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


def tracklet_arrays(tracklets: list[Tracklet], camera_names: list[str]) -> dict[str, np.ndarray]:
    """Tracklets (without crop pixels) as flat arrays with offsets: the layout of tracklets.npz."""
    return {
        "camera_index": np.asarray([camera_names.index(t.camera) for t in tracklets], np.int32),
        "track_id": np.asarray([t.track_id for t in tracklets], np.int64),
        "box_offsets": offsets([len(t.frames) for t in tracklets]),
        "frames": _concat([t.frames for t in tracklets], np.int64, (0,)),
        "boxes": _concat([t.boxes for t in tracklets], np.float32, (0, 4)),
        "scores": _concat([t.scores for t in tracklets], np.float32, (0,)),
        "crop_offsets": offsets([len(t.crop_frames) for t in tracklets]),
        "crop_frames": _concat([t.crop_frames for t in tracklets], np.int64, (0,)),
        "crop_quality": _concat([t.crop_quality for t in tracklets], np.float32, (0,)),
    }


def tracklets_from_arrays(arrays: dict[str, np.ndarray], camera_names: list[str], source: Path | str) -> list[Tracklet]:
    """`tracklet_arrays` read back (crops empty), checked for consistency; `source` names the file in errors."""
    count = len(arrays["track_id"])
    box_offsets, crop_offsets = arrays["box_offsets"], arrays["crop_offsets"]
    if len(box_offsets) != count + 1 or len(crop_offsets) != count + 1 or box_offsets[-1] != len(arrays["frames"]):
        raise CctrackError(f"corrupt cache: {source} has inconsistent array lengths; re-run `cctrack run`")
    if count and (arrays["camera_index"].max() >= len(camera_names) or arrays["camera_index"].min() < 0):
        raise CctrackError(f"corrupt cache: {source} names a camera that run.json does not have")
    tracklets = []
    for i in range(count):
        boxes_slice = slice(box_offsets[i], box_offsets[i + 1])
        crops_slice = slice(crop_offsets[i], crop_offsets[i + 1])
        tracklets.append(
            Tracklet(
                camera=camera_names[arrays["camera_index"][i]],
                track_id=int(arrays["track_id"][i]),
                frames=arrays["frames"][boxes_slice],
                boxes=arrays["boxes"][boxes_slice],
                scores=arrays["scores"][boxes_slice],
                crops=(),
                crop_frames=arrays["crop_frames"][crops_slice],
                crop_quality=arrays["crop_quality"][crops_slice],
            )
        )
    return tracklets


def load_run_info(out_dir: Path) -> RunRecord:
    path = cache_dir(out_dir) / "run.json"
    if not path.is_file():
        raise CctrackError(f"no cache in {out_dir}: {path} is missing (run `cctrack run` first)")
    return RunRecord.load(path)


TRACKLET_ARRAYS = ["camera_index", "track_id", "box_offsets", "frames", "boxes", "scores", "crop_offsets", "crop_frames", "crop_quality"]


def load_tracklets(out_dir: Path, record: RunRecord) -> list[Tracklet]:
    """The cached tracklets, without their crop pixels (see `load_crops`)."""
    path = cache_dir(out_dir) / "tracklets.npz"
    return tracklets_from_arrays(_load_npz(path, TRACKLET_ARRAYS), record.camera_names, path)


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


def load_crops(out_dir: Path, tracklets: list[Tracklet]) -> list[list[np.ndarray]]:
    """Every tracklet's crops, all in memory (see `StoredCrops` to read them one tracklet at a time)."""
    stored = StoredCrops(out_dir, tracklets)
    return [stored[i] for i in range(len(stored))]


class StoredCrops(Sequence):
    """Each tracklet's crops, read from OUT_DIR/crops only when asked for: memory stays flat in the
    number of tracklets (cctrack.embed.embed_tracklets reads them one tracklet at a time)."""

    def __init__(self, out_dir: Path, tracklets: list[Tracklet]) -> None:
        self.out_dir = Path(out_dir)
        self.tracklets = tracklets
        self.crop_counts = [len(t.crop_frames) for t in tracklets]

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int) -> list[np.ndarray]:
        tracklet = self.tracklets[index]
        images = []
        for rank in range(len(tracklet.crop_frames)):
            path = self.out_dir / crop_path(tracklet.camera, tracklet.track_id, rank)
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
        key = None  # unreadable: _load_npz below says so
    else:
        if key != tracklets_key(out_dir):
            return None
    arrays = _load_npz(path, ["crop_embeddings", "crop_offsets", "descriptors", "model", "model_sha256"])
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


def _load_npz(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CctrackError(f"cache file missing: {path} (run `cctrack run` first)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise CctrackError(f"corrupt cache: cannot read {path} ({type(error).__name__}); re-run `cctrack run`") from None


def _concat(parts: list[np.ndarray], dtype: type, empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)
