"""The per-camera work on a Ray cluster: `cctrack run VIDEO_DIR --out OUT --ray auto|local|ADDRESS`.

The work splits into pieces: one per camera, or with `--chunk-seconds S` one per S-second chunk of each
camera. A piece is one Ray task: it reads its frames from the video's path (every node must see it, e.g.
a shared file system), detects, tracks, cuts the crops, stores them as the in-process run does (JPEG) and
embeds them. The driver collects each piece's tracklets, crop bytes and crop embeddings (small), stitches
the chunks of each camera, writes crops and caches, then links and exports centrally, as `cctrack run`
does in one process: one camera per piece gives exactly the in-process tracklets and identities.

Chunks. Chunk k owns the frames [s_k, s_k+1) and starts reading `overlap_seconds` earlier, so that its
tracker is warm at s_k. At each border, chunk k's tracklets are matched to those of chunks < k over the
frames both read: mean box IoU over their shared frames (>= STITCH_MIN_IOU), appearance breaking close
calls; a matched pair becomes one tracklet (the earlier chunk's boxes before s_k, the later one's from
s_k), and what the later chunk saw before s_k is dropped.

Faults. Ray retries a piece whose worker dies (`max_retries`); a piece that fails on bad input fails the
run with the local path's one-line error, naming the camera. Each finished piece is saved in
OUT_DIR/cache/pieces/ under the run's tracking key, so a restarted driver re-runs only the missing ones.

Nothing here imports Ray until a run asks for it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cctrack import cache
from cctrack.config import RunConfig
from cctrack.embed import TrackletEmbeddings, embed_tracklets, load_embedder, tracklet_descriptors
from cctrack.errors import CctrackError
from cctrack.files import atomic_path, write_bytes_atomic
from cctrack.progress import progress_bar
from cctrack.table import TrackletTable
from cctrack.track import CameraTracks
from cctrack.track.tracker import assign, iou_matrix
from cctrack.tracklets import Tracklet, crop_path, offsets, spread_in_time
from cctrack.video import Camera, frames_available

PIECES_FOLDER = Path("cache") / "pieces"
STITCH_MIN_IOU = 0.5  # mean IoU over shared frames for two chunks' tracklets to be one person
STITCH_APPEARANCE_WEIGHT = 0.1  # cost per unit of (1 - cosine) of the tracklets' descriptors
# Set in a worker's environment, the first attempt of every piece dies (os._exit) once this file does not
# exist yet, creating it: how the tests show that Ray retries a dead worker's piece and nothing else.
KILL_FIRST_ATTEMPT_ENV = "CCTRACK_TEST_KILL_FIRST_ATTEMPT"


@dataclass(frozen=True)
class RaySettings:
    address: str = "auto"  # auto: the cluster this node joined (`ray start`), else a local one; local; or an address
    chunk_seconds: float | None = None  # None: one piece per camera
    overlap_seconds: float = 3.0  # each chunk reads this much before its start, to stitch on
    max_retries: int = 3  # per piece, when its worker dies

    def __post_init__(self) -> None:
        if self.chunk_seconds is not None and not self.chunk_seconds > 0:
            raise CctrackError(f"--chunk-seconds must be > 0, got {self.chunk_seconds}")
        if not self.overlap_seconds >= 0:
            raise CctrackError(f"the chunk overlap must be >= 0 seconds, got {self.overlap_seconds}")


@dataclass(frozen=True)
class Piece:
    """Frames [read_from, own_to) of one camera; the piece decides about [own_from, own_to)."""

    camera: Camera
    index: int  # the chunk's number in its camera
    read_from: int
    own_from: int
    own_to: int
    stride: int
    chunks: int = 1  # how many pieces its camera was cut into

    @property
    def lead_in_frames(self) -> int:
        """Frames it processes before own_from (read_from and own_from are multiples of the stride)."""
        return (self.own_from - self.read_from) // self.stride


@dataclass
class PieceTracklets:
    """A piece's (or a stitched camera's) tracklets, with each crop's JPEG bytes and embedding."""

    tracklets: list[Tracklet]  # without crop pixels
    jpegs: list[list[bytes]]
    embeddings: list[np.ndarray]  # per tracklet (crops, D) float32; (crops, 0) when not embedded
    frames_processed: int
    last_frame: int


def plan_pieces(cameras: list[Camera], config: RunConfig, chunk_seconds: float | None, overlap_seconds: float) -> list[Piece]:
    """Every camera's pieces, in camera order; chunk borders on multiples of the frame stride."""
    stride = config.video.stride
    pieces = []
    for camera in cameras:
        available = frames_available(camera, config.video.max_frames, config.video.max_seconds)
        if chunk_seconds is None:
            pieces.append(Piece(camera, 0, 0, 0, available, stride))
            continue
        length = max(stride, round(chunk_seconds * camera.fps / stride) * stride)
        overlap = int(np.ceil(overlap_seconds * camera.fps / stride)) * stride
        starts = range(0, available, length)
        for index, own_from in enumerate(starts):
            pieces.append(Piece(camera, index, max(0, own_from - overlap), own_from, min(own_from + length, available), stride,
                                len(starts)))
    return pieces


def track_piece(piece: Piece, config: RunConfig, embed: bool, whole_camera: bool) -> PieceTracklets:
    """One Ray task: detect, track, crop (JPEG) and embed one piece. A whole-camera piece filters short
    tracklets as the in-process run does; a chunk keeps them for stitching."""
    _die_on_first_attempt(piece)
    from cctrack.detect import PersonDetector
    from cctrack.device import resolve_device
    from cctrack.track import track_cameras

    device = resolve_device(config.device)
    detector = PersonDetector(config.detector, device)
    tracks = track_cameras([piece.camera], detector, config.tracker, crops_per_tracklet=config.tracklets.crops_per_tracklet,
                           min_boxes=config.tracklets.min_boxes if whole_camera else 1, max_frames=piece.own_to,
                           stride=config.video.stride, show_progress=False, first_frame=piece.read_from)[0]
    jpegs = [[cache.encode_crop(crop) for crop in tracklet.crops] for tracklet in tracks.tracklets]
    embeddings = [np.zeros((len(j), 0), np.float32) for j in jpegs]
    if embed and jpegs:
        embedder = load_embedder(config.reid.checkpoint, device, config.reid.half, config.reid.batch_size, config.reid.descriptor,
                                 config.reid.runtime)
        # The decoded JPEG, as `cctrack run` embeds what it reads back from OUT_DIR/crops.
        decoded = [[cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in tracklet_jpegs] for tracklet_jpegs in jpegs]
        result = embed_tracklets(decoded, embedder, show_progress=False)
        embeddings = [result.crop_embeddings[a:b] for a, b in zip(result.crop_offsets[:-1], result.crop_offsets[1:])]
    tracklets = [Tracklet(t.camera, t.track_id, t.frames, t.boxes, t.scores, (), t.crop_frames, t.crop_quality) for t in tracks.tracklets]
    return PieceTracklets(tracklets, jpegs, embeddings, tracks.frames_processed, tracks.last_frame)


def _die_on_first_attempt(piece: Piece) -> None:
    marker_folder = os.environ.get(KILL_FIRST_ATTEMPT_ENV)
    if marker_folder:
        marker = Path(marker_folder) / f"{piece.camera.name}.{piece.index}"
        if not marker.exists():
            marker.touch()
            os._exit(1)


def stitch(pieces: list[Piece], results: list[PieceTracklets], min_boxes: int, crops_per_tracklet: int) -> PieceTracklets:
    """One camera's chunks (in time order) as one piece; track ids renumbered 1.. by first frame."""
    if len(results) == 1:
        return results[0]
    stitched = PieceTracklets([], [], [], 0, -1)
    for piece, result in zip(pieces, results):
        stitched = _join(stitched, result, piece, crops_per_tracklet)
    keep = [i for i, t in enumerate(stitched.tracklets) if len(t.frames) >= min_boxes and len(t.crop_frames)]
    order = sorted(keep, key=lambda i: (stitched.tracklets[i].first_frame, stitched.tracklets[i].last_frame))
    tracklets = [_renumbered(stitched.tracklets[i], number) for number, i in enumerate(order, start=1)]
    return PieceTracklets(tracklets, [stitched.jpegs[i] for i in order], [stitched.embeddings[i] for i in order],
                          stitched.frames_processed, stitched.last_frame)


def _join(before: PieceTracklets, after: PieceTracklets, piece: Piece, crops_per_tracklet: int) -> PieceTracklets:
    """`before` (frames < piece.own_from) continued by `after`, the result of `piece`."""
    border = piece.own_from
    pairs = _stitch_pairs(before, after, border)
    matched_after = {j for _, j in pairs}
    tracklets, jpegs, embeddings = list(before.tracklets), list(before.jpegs), list(before.embeddings)
    for i, j in pairs:
        tracklets[i], jpegs[i], embeddings[i] = _merged(before, i, after, j, border, crops_per_tracklet)
    for j in range(len(after.tracklets)):
        part = None if j in matched_after else _from(after, j, border)
        if part is not None:
            tracklets.append(part[0])
            jpegs.append(part[1])
            embeddings.append(part[2])
    frames_processed = before.frames_processed + after.frames_processed - piece.lead_in_frames
    return PieceTracklets(tracklets, jpegs, embeddings, frames_processed, after.last_frame)


def _stitch_pairs(before: PieceTracklets, after: PieceTracklets, border: int) -> list[tuple[int, int]]:
    """(index in before, index in after) of the same person, by IoU over the frames both read."""
    candidates_after = [j for j, t in enumerate(after.tracklets) if t.first_frame < border]
    if not candidates_after:
        return []
    earliest = min(after.tracklets[j].first_frame for j in candidates_after)
    candidates_before = [i for i, t in enumerate(before.tracklets) if t.last_frame >= earliest]
    if not candidates_before:
        return []
    cost = np.full((len(candidates_before), len(candidates_after)), 1e6)
    for row, i in enumerate(candidates_before):
        a = before.tracklets[i]
        for column, j in enumerate(candidates_after):
            b = after.tracklets[j]
            shared, a_index, b_index = np.intersect1d(a.frames, b.frames[b.frames < border], return_indices=True)
            if len(shared) == 0:
                continue
            mean_iou = float(np.mean(np.diag(iou_matrix(a.boxes[a_index], b.boxes[b_index]))))
            if mean_iou >= STITCH_MIN_IOU:
                cost[row, column] = (1.0 - mean_iou) + STITCH_APPEARANCE_WEIGHT * (1.0 - _cosine(before.embeddings[i], after.embeddings[j]))
    pairs, _, _ = assign(cost, max_cost=1e5)
    return [(candidates_before[row], candidates_after[column]) for row, column in pairs]


def _cosine(first: np.ndarray, second: np.ndarray) -> float:
    if first.shape[1] == 0 or second.shape[1] == 0 or not len(first) or not len(second):
        return 1.0  # no appearance: IoU alone decides
    a, b = first.mean(axis=0), second.mean(axis=0)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _merged(before: PieceTracklets, i: int, after: PieceTracklets, j: int, border: int, crops_per_tracklet: int):
    a, b = before.tracklets[i], after.tracklets[j]
    later = b.frames >= border
    crops = [(float(q), int(f), (jpeg, embedding)) for q, f, jpeg, embedding
             in zip(a.crop_quality, a.crop_frames, before.jpegs[i], before.embeddings[i])]
    crops += [(float(q), int(f), (jpeg, embedding)) for q, f, jpeg, embedding
              in zip(b.crop_quality, b.crop_frames, after.jpegs[j], after.embeddings[j]) if f >= border]
    chosen = spread_in_time(crops, crops_per_tracklet)
    tracklet = Tracklet(a.camera, a.track_id, np.concatenate([a.frames, b.frames[later]]),
                        np.concatenate([a.boxes, b.boxes[later]]), np.concatenate([a.scores, b.scores[later]]), (),
                        np.array([f for _, f, _ in chosen], np.int64), np.array([q for q, _, _ in chosen], np.float32))
    return tracklet, [c[0] for _, _, c in chosen], _stack([c[1] for _, _, c in chosen], before.embeddings[i])


def _from(result: PieceTracklets, j: int, border: int):
    """Tracklet j of a later chunk from `border` on, or None when nothing of it (or of its crops) is left."""
    t = result.tracklets[j]
    keep, keep_crops = t.frames >= border, t.crop_frames >= border
    if not keep.any() or not keep_crops.any():
        return None
    tracklet = Tracklet(t.camera, t.track_id, t.frames[keep], t.boxes[keep], t.scores[keep], (), t.crop_frames[keep_crops],
                        t.crop_quality[keep_crops])
    jpegs = [jpeg for jpeg, kept in zip(result.jpegs[j], keep_crops) if kept]
    return tracklet, jpegs, result.embeddings[j][keep_crops]


def _stack(rows: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, like.shape[1]), np.float32)


def _renumbered(tracklet: Tracklet, track_id: int) -> Tracklet:
    return Tracklet(tracklet.camera, track_id, tracklet.frames, tracklet.boxes, tracklet.scores, (), tracklet.crop_frames,
                    tracklet.crop_quality)


def track_on_ray(cameras: list[Camera], config: RunConfig, settings: RaySettings, out_dir: Path, key: str, embed: bool,
                 show_progress: bool) -> tuple[list[CameraTracks], list[np.ndarray] | None]:
    """Every camera's tracklets, made by Ray tasks, stitched, with their crops written to OUT_DIR/crops;
    and each tracklet's crop embeddings (in the returned order) when `embed`."""
    ray = _connect(settings.address)
    pieces = plan_pieces(cameras, config, settings.chunk_seconds, settings.overlap_seconds)
    whole_camera = settings.chunk_seconds is None
    store = PieceStore(Path(out_dir) / PIECES_FOLDER, key)
    results: dict[int, PieceTracklets] = {}
    for number, piece in enumerate(pieces):
        saved = store.load(piece)
        if saved is not None:
            results[number] = saved
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and config.device != "cpu" else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=settings.max_retries, runtime_env=_worker_environment())(track_piece)
    config_ref = ray.put(config)
    running = {task.remote(piece, config_ref, embed, whole_camera): number
               for number, piece in enumerate(pieces) if number not in results}
    with progress_bar(len(pieces), "track (ray)", "piece", show_progress) as bar:
        bar.update(len(results))
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                number = running.pop(done[0])
                try:
                    results[number] = ray.get(done[0])
                except Exception as error:
                    raise _piece_error(pieces[number], error) from None
                store.save(pieces[number], results[number])
                bar.update(1)
        finally:  # a failed piece or Ctrl-C: the others stop too (what finished is saved)
            for reference in running:
                ray.cancel(reference, force=True)
    tracks, embeddings = [], []
    for camera in cameras:
        numbers = [n for n, piece in enumerate(pieces) if piece.camera.name == camera.name]
        camera_result = stitch([pieces[n] for n in numbers], [results[n] for n in numbers], config.tracklets.min_boxes,
                               config.tracklets.crops_per_tracklet)
        for tracklet, jpegs in zip(camera_result.tracklets, camera_result.jpegs):
            for rank, jpeg in enumerate(jpegs):
                write_bytes_atomic(Path(out_dir) / crop_path(tracklet.camera, tracklet.track_id, rank), jpeg)
        tracks.append(CameraTracks(camera, camera_result.tracklets, camera_result.frames_processed,
                                   camera_result.last_frame, config.video.stride))
        embeddings += camera_result.embeddings
    return tracks, embeddings if embed else None


def worker_embeddings(embeddings: list[np.ndarray], description: str, sha256: str) -> TrackletEmbeddings:
    """The pieces' crop embeddings as the cache stores a run's (cctrack.cache.save_embeddings)."""
    crop_offsets = offsets([len(e) for e in embeddings])
    crop_embeddings = np.concatenate(embeddings).astype(np.float32) if embeddings else np.zeros((0, 0), np.float32)
    return TrackletEmbeddings(crop_embeddings, crop_offsets, tracklet_descriptors(crop_embeddings, crop_offsets),
                              description, sha256)


def _connect(address: str):
    """Ray, initialised: `auto` joins the cluster this node is part of, else starts a local instance."""
    try:
        import ray
    except ImportError:
        raise CctrackError('--ray needs Ray: pip install -e ".[ray]"') from None
    if ray.is_initialized():
        return ray
    options = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(**options)
        elif address == "auto":
            try:
                ray.init(address="auto", **options)
            except ConnectionError:
                print("ray: no cluster found on this node; starting a local one", file=sys.stderr, flush=True)
                ray.init(**options)
        else:
            ray.init(address=address, **options)
    except ConnectionError as error:
        raise CctrackError(f"cannot connect to the Ray cluster at {address}: {error}") from None
    return ray


def _worker_environment() -> dict:
    """Workers import cctrack from this checkout when their node has it (else from their install), stay
    offline, and see the test's fault switch."""
    variables = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
    if os.environ.get(KILL_FIRST_ATTEMPT_ENV):
        variables[KILL_FIRST_ATTEMPT_ENV] = os.environ[KILL_FIRST_ATTEMPT_ENV]
    return {"env_vars": variables}


def _piece_error(piece: Piece, error: Exception) -> CctrackError:
    cause = getattr(error, "cause", None) or error
    where = f"camera {piece.camera.name}"
    if piece.chunks > 1:
        where += f" (chunk {piece.index + 1} of {piece.chunks}, frames {piece.own_from}-{piece.own_to - 1})"
    if isinstance(cause, CctrackError):
        return CctrackError(f"{where}: {cause}")
    return CctrackError(f"{where}: the Ray task failed: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")


class PieceStore:
    """Finished pieces in OUT_DIR/cache/pieces, named by the run's tracking key and the piece's frames."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key

    def path(self, piece: Piece) -> Path:
        name = f"{self.key}|{piece.camera.name}|{piece.read_from}|{piece.own_from}|{piece.own_to}|{piece.stride}"
        return self.folder / f"{piece.camera.name}.{piece.index}.{hashlib.sha256(name.encode()).hexdigest()[:16]}.npz"

    def save(self, piece: Piece, result: PieceTracklets) -> None:
        arrays = TrackletTable.from_tracklets(result.tracklets, [piece.camera.name], [piece.camera.fps]).arrays()
        flat = [jpeg for tracklet_jpegs in result.jpegs for jpeg in tracklet_jpegs]
        arrays.update({
            "jpeg_offsets": offsets([len(jpeg) for jpeg in flat]),
            "jpeg_bytes": np.frombuffer(b"".join(flat), np.uint8),
            "embeddings": np.concatenate(result.embeddings) if result.embeddings else np.zeros((0, 0), np.float32),
            "frames_processed": np.asarray(result.frames_processed),
            "last_frame": np.asarray(result.last_frame),
        })
        with atomic_path(self.path(piece)) as temporary:
            np.savez(temporary, **arrays)

    def load(self, piece: Piece) -> PieceTracklets | None:
        path = self.path(piece)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            table = TrackletTable.from_arrays(arrays, [piece.camera.name], [piece.camera.fps], path)
            tracklets = [table.tracklet(row) for row in range(len(table))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, CctrackError):
            return None  # damaged: the piece runs again
        jpeg_offsets, data = arrays["jpeg_offsets"], arrays["jpeg_bytes"].tobytes()
        jpegs_flat = [data[a:b] for a, b in zip(jpeg_offsets[:-1], jpeg_offsets[1:])]
        counts = offsets([len(t.crop_frames) for t in tracklets])
        jpegs = [jpegs_flat[a:b] for a, b in zip(counts[:-1], counts[1:])]
        embeddings = arrays["embeddings"]
        per_tracklet = [embeddings[a:b] if embeddings.shape[0] else np.zeros((b - a, 0), np.float32)
                        for a, b in zip(counts[:-1], counts[1:])]
        return PieceTracklets(tracklets, jpegs, per_tracklet, int(arrays["frames_processed"]), int(arrays["last_frame"]))

    def clear(self) -> None:
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                path.unlink(missing_ok=True)
            self.folder.rmdir()
