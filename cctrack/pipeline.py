"""The whole job: cameras -> tracklets -> embeddings -> identities -> exports, and re-linking from the cache.
From tracking on, one cctrack.table.TrackletTable carries the tracklets: embedding adds its descriptors,
linking its identities, and every export reads it.

Output folder layout:
    identities.json        who appeared where and when (schema: cctrack/identities.schema.json)
    tracks/<camera>.txt    MOTChallenge, per-camera track ids
    global/<camera>.txt    MOTChallenge, global identity ids (same person, same id in every camera)
    videos/<camera>.mp4    annotated video; videos/mosaic.mp4 all cameras side by side
    crops/<camera>/...     tracklet crops; cache/ what `cctrack link` re-uses
    corrections.yaml       written by a person, not by cctrack: same / different / alone (cctrack.link.corrections)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cctrack import cache
from cctrack.config import RunConfig
from cctrack.detect import PersonDetector
from cctrack.detector_size import (CANDIDATE_SIZES, ENOUGH_SHARE, MIDDLE_SIZE, PROBE_FRAMES, PROBE_MIN_SCORE,
                                   choose_image_size)
from cctrack.device import resolve_device
from cctrack.distributed import PIECES_FOLDER, RaySettings, track_on_ray, worker_embeddings
from cctrack.draw import write_annotated_videos
from cctrack.embed import TrackletEmbeddings, embed_tracklets, load_embedder, model_identity
from cctrack.embed_worker import BackgroundEmbedding
from cctrack.errors import CctrackError
from cctrack.export import check_crops_present, identities_document, write_identities
from cctrack.mot import write_mot_files
from cctrack.files import sha256_of, write_json_atomic, write_text_atomic
from cctrack.link.layout import CameraLayout
from cctrack.link import link_tracklets
from cctrack.link.corrections import Corrections, load_corrections, resolve_corrections
from cctrack.record import CameraRecord, ModelRecord, RunRecord
from cctrack.report import write_report
from cctrack.outdir import (CORRECTIONS_NAME, check_output_location, claim_for_run, inputs_fingerprint, output_lock,
                            refuse_foreign_folder, space_warning)
from cctrack.track import CameraTracks, track_cameras
from cctrack.track.checkpoint import RESUME_FOLDER, TrackingCheckpoint, checkpoint_key, tracking_key
from cctrack.table import TrackletTable
from cctrack.tracklets import fill_gaps
from cctrack.video import Camera, discover_cameras, frames_available


SUMMARY_FOLDERS = ("cache", "crops")  # listed as folders in the summary, after the files


@dataclass(frozen=True)
class RunSummary:
    out_dir: Path
    cameras: int
    tracklets: int
    identities: int  # 0 when linking is off
    multi_camera_identities: int
    outputs: list[Path]

    def text(self) -> str:
        lines = [
            f"cameras: {self.cameras}",
            f"tracklets: {self.tracklets}",
        ]
        if self.tracklets == 0:
            lines.append("identities: 0 (no people found)")
        elif self.identities == 0:  # every tracklet of a linked run has an identity: linking was off
            lines.append("identities: not linked (--no-link)")
        else:
            lines += [
                f"identities: {self.identities}",
                f"identities seen in more than one camera: {self.multi_camera_identities}",
            ]
        lines.append(f"outputs in {self.out_dir}:")
        lines += [f"  {path.relative_to(self.out_dir)}" for path in self.outputs]
        # The cache and the crops are written by cache.save_tracklets, not listed file by file.
        lines += [f"  {name}/" for name in SUMMARY_FOLDERS if (self.out_dir / name).is_dir()]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    """One `cctrack run` or `cctrack link`: what it was given, loaded and checked before the long work."""

    out_dir: Path
    config: RunConfig
    device: torch.device  # where every model and matrix product runs (the top-level `device` setting)
    embedder: Any  # the re-id descriptor (cctrack.embed.load_embedder); None when not linking
    corrections: Corrections
    show_progress: bool


def run(video_dir: Path, out_dir: Path, config: RunConfig, show_progress: bool = True, overwrite: bool = False,
        corrections_path: Path | None = None, ray: RaySettings | None = None, defer_videos: bool = False) -> RunSummary:
    """`cctrack run`: every stage, then every export. The output folder must be new, empty, or hold an
    earlier run of the same videos (or `overwrite`), see cctrack.outdir. Linking applies the corrections
    of `corrections_path`, else of out_dir/corrections.yaml if there. `defer_videos`: a later re-link
    draws the configured videos (`cctrack run --adapt`), so they are not drawn here, only counted in
    the free-space check."""
    out_dir = Path(out_dir)
    check_output_location(out_dir, Path(video_dir))
    corrections = corrections_of_run(out_dir, corrections_path)  # a bad file fails before the long work
    cameras = discover_cameras(Path(video_dir), image_fps=config.video.image_fps)
    configured_layout(config, [camera.name for camera in cameras])  # fail before the long work
    _check_frames_to_process(cameras, config.video.max_frames, config.video.max_seconds)
    device = resolve_device(config.device)
    # Every model is loaded before the long work, so a bad path fails at once and writes nothing.
    if show_progress and sys.stderr.isatty():  # seconds with nothing on the screen; a log keeps one error line
        print(f"loading the detector and the re-id model on {device} ...", file=sys.stderr, flush=True)
    embedder = _load_configured_embedder(config, device) if config.export.link else None
    detector = PersonDetector(config.detector, device)
    with output_lock(out_dir, "run"):
        inputs = inputs_fingerprint(cameras)
        recorded_inputs = refuse_foreign_folder(out_dir, inputs, overwrite)  # before the size probe, the first work
        detector_sha256 = sha256_of(detector.weights_path)
        config, size_record = _with_detector_size(config, cameras, inputs, detector, detector_sha256, out_dir, show_progress)
        key = tracking_key({"inputs": inputs, "settings": _tracking_settings(config),
                            "detector_sha256": detector_sha256, "device": str(device)})
        claim_for_run(out_dir, inputs, recorded_inputs, keep=_continuable(out_dir, key))
        if size_record is not None:  # a rerun or resume of this run skips the probe
            write_json_atomic(out_dir / SIZE_RECORD, size_record)
        seconds = [frames_available(c, config.video.max_frames, config.video.max_seconds) / c.fps for c in cameras]
        warning = space_warning(out_dir, cameras, seconds, config.export.video)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        record, table = _tracklets_of_run(video_dir, out_dir, cameras, config, detector, detector_sha256, key, show_progress,
                                          ray, embedder)
        if defer_videos:
            config = dataclasses.replace(config, export=dataclasses.replace(config.export, video=False))
        return _export(_Job(out_dir, config, device, embedder, corrections, show_progress), table, record)


SIZE_RECORD = Path("cache") / "detector_size.json"


def _with_detector_size(config: RunConfig, cameras: list[Camera], inputs: list[dict], detector: PersonDetector,
                        detector_sha256: str, out_dir: Path, show_progress: bool) -> tuple[RunConfig, dict | None]:
    """The config with `detector.image_size: auto` replaced by the size this footage needs (and the detector
    set to it), so that tracking, its resume key, Ray workers and the run record all see one number; and
    the record of that choice to keep in out_dir (None for a configured size). The choice of an earlier run
    in out_dir is re-used when everything the probe depends on is the same (a resumed run)."""
    if config.detector.image_size != "auto":
        return config, None
    key = _size_probe_key(inputs, config, detector_sha256, str(detector.device))
    image_size = _recorded_size(out_dir, key)
    if image_size is None:
        choice = choose_image_size(cameras, detector.count_people, config.video.max_frames, config.video.max_seconds)
        image_size = choice.image_size
        message = choice.summary()
    else:
        message = f"detector input size {image_size} px, as chosen from this footage by the earlier run in {out_dir}"
    detector.use_image_size(image_size)
    if show_progress:
        print(message, file=sys.stderr, flush=True)
    config = dataclasses.replace(config, detector=dataclasses.replace(config.detector, image_size=image_size))
    return config, {"key": key, "image_size": image_size}


def _size_probe_key(inputs: list[dict], config: RunConfig, detector_sha256: str, device: str) -> str:
    return tracking_key({"inputs": inputs, "max_frames": config.video.max_frames,
                         "max_seconds": config.video.max_seconds, "detector_sha256": detector_sha256, "device": device,
                         "min_score": config.detector.min_score, "nms_iou": config.detector.nms_iou,
                         "rule": [CANDIDATE_SIZES, PROBE_FRAMES, PROBE_MIN_SCORE, ENOUGH_SHARE, MIDDLE_SIZE]})


def _recorded_size(out_dir: Path, key: str) -> int | None:
    """The size an earlier run in out_dir chose under the same probe key, else None (none, another key,
    or an unreadable record: the probe runs again)."""
    try:
        record = json.loads((out_dir / SIZE_RECORD).read_text())
        if record.get("key") == key and record.get("image_size") in CANDIDATE_SIZES:
            return int(record["image_size"])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return None


def _tracking_settings(config: RunConfig) -> dict:
    """The settings tracking depends on (how often it checkpoints is not one of them)."""
    settings = config.to_dict()
    video = {k: v for k, v in settings["video"].items() if k != "checkpoint_seconds"}
    return {"video": video, "detector": settings["detector"], "tracker": settings["tracker"], "tracklets": settings["tracklets"]}


def _continuable(out_dir: Path, key: str) -> tuple[str, ...]:
    """What an earlier run of the same inputs left that this run continues from: its finished tracking
    (and embeddings, keyed on their own), else its last tracking checkpoint; each with its crops."""
    if cache.cached_tracking_key(out_dir) == key:
        return ("cache", "crops")
    if checkpoint_key(out_dir) == key:
        return (str(RESUME_FOLDER), "crops")
    return (str(PIECES_FOLDER),)  # the Ray path's finished pieces, named by their key


def _tracklets_of_run(video_dir: Path, out_dir: Path, cameras: list[Camera], config: RunConfig, detector: PersonDetector,
                      detector_sha256: str, key: str, show_progress: bool, ray: RaySettings | None = None,
                      embedder=None) -> tuple[RunRecord, TrackletTable]:
    """Track every camera (resuming from a checkpoint; or as Ray tasks, which also embed) and cache the
    tracklet table with its crops, or re-use the table a finished earlier run of the same key cached."""
    checkpoint = TrackingCheckpoint(out_dir, key, cameras, config.video.checkpoint_seconds,
                                    functools.partial(cache.write_crops, out_dir))
    if cache.cached_tracking_key(out_dir) == key:
        checkpoint.clear()  # left by a kill between caching the tracklets and clearing it
        record = dataclasses.replace(cache.load_run_info(out_dir), config=config.to_dict())
        if show_progress:
            print(f"tracking: re-using the finished tracking in {cache.cache_dir(out_dir)}", file=sys.stderr, flush=True)
        return record, cache.load_tracklets(out_dir, record)
    background = None
    if ray is not None:
        tracks, piece_embeddings = track_on_ray(cameras, config, ray, out_dir, key, embedder is not None, show_progress)
    else:
        tracks, background = _track_here(cameras, config, detector, checkpoint, show_progress, embedder)
        piece_embeddings = None
    record = RunRecord(
        video_dir=str(Path(video_dir).resolve()),
        cameras=tuple(
            CameraRecord(t.camera.name, str(t.camera.path.resolve()), t.camera.fps, t.camera.frame_count, t.camera.width,
                         t.camera.height, t.frames_processed, t.last_frame + 1, t.stride)
            for t in tracks
        ),
        detector=ModelRecord(f"ultralytics YOLO {detector.weights_path.name} at {config.detector.image_size} px "
                             f"({detector.runtime} runtime, batch {detector.settings.batch_size})",
                             str(detector.weights_path.resolve()), detector_sha256),
        reid=None,
        config=config.to_dict(),
    )
    tracklets = [tracklet for camera_tracks in tracks for tracklet in camera_tracks.tracklets]
    if config.tracklets.fill_gaps:
        tracklets = [fill_gaps(tracklet, config.video.stride) for tracklet in tracklets]
    for tracklet in tracklets:  # the crops still in memory (those of tracklets that ended before a checkpoint are written)
        cache.write_crops(out_dir, tracklet)
    table = TrackletTable.from_tracklets(tracklets, record.camera_names, record.camera_fps)  # what flows from here on
    cache.save_tracklets(out_dir, table, record, key)
    if piece_embeddings is not None:  # embedded by the Ray tasks: the embedding stage re-uses them
        cache.save_embeddings(out_dir, worker_embeddings(piece_embeddings, *model_identity(embedder)))
    if background is not None:  # most were embedded while tracking; the rest (alive at the end, or ended
        # before a resumed run's checkpoint) now, from the crops written; the embedding stage re-uses them
        known = {row: background[key] for row, key in enumerate(table.keys) if key in background}
        cache.save_embeddings(out_dir, embed_tracklets(cache.StoredCrops(out_dir, table), embedder, show_progress, known))
    checkpoint.clear()
    shutil.rmtree(Path(out_dir) / PIECES_FOLDER, ignore_errors=True)
    return record, table


def _track_here(cameras: list[Camera], config: RunConfig, detector: PersonDetector, checkpoint: TrackingCheckpoint,
                show_progress: bool, embedder=None) -> tuple[list[CameraTracks], dict | None]:
    """Track in this process; with an `embedder`, tracklets are embedded in the background as they end
    (cctrack.embed_worker): returns the tracks and those embeddings by (camera, track id), else None."""
    background = BackgroundEmbedding(embedder) if embedder is not None else None
    try:
        tracks = track_cameras(
            cameras,
            detector,
            config.tracker,
            crops_per_tracklet=config.tracklets.crops_per_tracklet,
            min_boxes=config.tracklets.min_boxes,
            max_frames=config.video.max_frames,
            stride=config.video.stride,
            show_progress=show_progress,
            max_seconds=config.video.max_seconds,
            checkpoint=checkpoint,
            on_tracklet_end=background.submit if background is not None else None,
        )
        return tracks, background.finish() if background is not None else None
    finally:
        if background is not None:
            background.close()


def _export(job: _Job, table: TrackletTable, record: RunRecord) -> RunSummary:
    """Every export of a run: the per-camera tracks, then identities and the rest when linking, else the
    videos labelled by track id."""
    outputs = write_mot_files(job.out_dir / "tracks", table, table.track_id)
    if job.config.export.link:
        return _embed_link_export(job, table, record)
    if job.config.export.video:
        outputs += _write_videos(job, table, record, configured_layout(job.config, record.camera_names))
    return RunSummary(job.out_dir, len(record.cameras), len(table), 0, 0, outputs)


def relink(out_dir: Path, config: RunConfig, show_progress: bool = True, corrections_path: Path | None = None) -> RunSummary:
    """`cctrack link`: embeddings (re-used when the re-id model is unchanged), identities and exports
    from the cache of an earlier `cctrack run`, with the corrections of `corrections_path`, else of
    out_dir/corrections.yaml if there."""
    out_dir = Path(out_dir)
    cache.load_run_info(out_dir)  # a folder without a run fails here, before the lock creates anything
    corrections = corrections_of_run(out_dir, corrections_path)
    with output_lock(out_dir, "link"):
        record = cache.load_run_info(out_dir)
        table = cache.load_tracklets(out_dir, record)
        check_crops_present(out_dir, table)
        configured_layout(config, record.camera_names)  # a bad layout fails before the embedding
        device = resolve_device(config.device)
        job = _Job(out_dir, config, device, _load_configured_embedder(config, device), corrections, show_progress)
        return _embed_link_export(job, table, record)


def _load_configured_embedder(config: RunConfig, device: torch.device):
    reid = config.reid
    return load_embedder(reid.checkpoint, device, reid.half, reid.batch_size, reid.descriptor, reid.runtime)


def configured_layout(config: RunConfig, camera_names: list[str]) -> CameraLayout | None:
    """The `layout:` of the config checked against the run's cameras; None when there is none."""
    return CameraLayout.from_dict(config.layout, camera_names) if config.layout is not None else None


def _embed_link_export(job: _Job, table: TrackletTable, record: RunRecord) -> RunSummary:
    """Embed the tracklets (or re-use their cached embeddings), link them, and write every export."""
    out_dir, config = job.out_dir, job.config
    table, record = _embed(job, table, record)
    layout = configured_layout(config, record.camera_names)
    result = link_tracklets(table, table.descriptors, config.link, layout, job.embedder.calibration, job.device,
                            resolve_corrections(job.corrections, table))
    table = table.with_identity(result.identity)
    transit = result.transit.summary(table.camera_names)
    if job.show_progress:
        for row in transit:
            print(f"learned transit {row['cameras'][0]} <-> {row['cameras'][1]}: about {row['typical_seconds']:g} s "
                  f"({row['range_seconds'][0]:g} to {row['range_seconds'][1]:g} s), seen in {row['matches']:g} matches",
                  file=sys.stderr, flush=True)
            for way in row.get("ways", []):
                print(f"  {way['from']} -> {way['to']}: leaving at x {way['leave_at'][0]:.2f}, y {way['leave_at'][1]:.2f}, "
                      f"entering at x {way['enter_at'][0]:.2f}, y {way['enter_at'][1]:.2f} (units of each picture)",
                      file=sys.stderr, flush=True)
    document = identities_document(record, table, result.links, asdict(config.link), layout, transit)
    write_identities(out_dir / "identities.json", document)
    (out_dir / "eval.json").unlink(missing_ok=True)  # it scored the identities just replaced
    outputs = [out_dir / "tracks" / f"{name}.txt" for name in table.camera_names] + [out_dir / "identities.json"]
    outputs += write_mot_files(out_dir / "global", table, table.identity)
    if config.export.video:
        outputs += _write_videos(job, table, record, layout)
    outputs += [write_report(out_dir), out_dir / "summary.txt"]
    summary = RunSummary(out_dir, len(record.cameras), len(table), document["summary"]["identities"],
                         document["summary"]["multi_camera_identities"], outputs)
    write_text_atomic(out_dir / "summary.txt", summary.text() + "\n")
    return summary


def _embed(job: _Job, table: TrackletTable, record: RunRecord) -> tuple[TrackletTable, RunRecord]:
    """The table with its descriptors, and the record with the re-id model that made them."""
    description, sha256 = model_identity(job.embedder)  # hashes the weights file: once per link
    # Crops are embedded as decoded from the JPEGs written (read only when not embedded yet): the pixels a
    # re-link re-embeds.
    embeddings = run_embeddings(job.out_dir, table, job.embedder, sha256, None, job.show_progress)
    weights = str(Path(job.embedder.weights_path).resolve()) if job.embedder.weights_path else ""
    runtime = getattr(job.embedder, "runtime", None)
    reid = ModelRecord(f"{description}, {runtime} runtime" if runtime else description, weights, sha256, job.embedder.dim)
    return table.with_descriptors(embeddings.descriptors), record.with_reid(reid, job.config.to_dict())


def run_embeddings(out_dir: Path, table: TrackletTable, embedder, sha256: str, crops: list[list] | None,
                   show_progress: bool) -> TrackletEmbeddings:
    """The cached embeddings when this model (weights `sha256`) made them of these tracklets, else new ones (cached)."""
    embeddings = cache.load_embeddings(out_dir, len(table))
    if embeddings is not None and embeddings.model_sha256 == sha256:
        if embeddings.dim != embedder.dim:
            raise CctrackError(
                f"cached embeddings are {embeddings.dim}-d but the re-id model {embedder.description} gives {embedder.dim}-d: "
                f"delete {cache.cache_dir(out_dir) / 'embeddings.npz'} to re-embed"
            )
        return embeddings
    embeddings = embed_tracklets(crops if crops is not None else cache.StoredCrops(out_dir, table), embedder, show_progress)
    cache.save_embeddings(out_dir, embeddings)
    return embeddings


def corrections_of_run(out_dir: Path, path: Path | None = None) -> Corrections:
    """The corrections a link of out_dir applies: `path` when given, else out_dir/corrections.yaml if there."""
    if path is not None:
        if not Path(path).is_file():
            raise CctrackError(f"corrections file {path} not found")
        return load_corrections(path)
    default = Path(out_dir) / CORRECTIONS_NAME
    return load_corrections(default) if default.is_file() else Corrections()


def cameras_of_run(record: RunRecord) -> list[Camera]:
    return [camera.camera() for camera in record.cameras]


def _check_frames_to_process(cameras: list[Camera], max_frames: int | None, max_seconds: float | None) -> None:
    for camera in cameras:
        if frames_available(camera, max_frames, max_seconds) == 0:
            raise CctrackError(f"--max-seconds {max_seconds:g} (video.max_seconds) gives no frame of camera {camera.name} ({camera.fps:g} fps)")


def _write_videos(job: _Job, table: TrackletTable, record: RunRecord, layout: CameraLayout | None) -> list[Path]:
    """Videos cover the frames the tracking run processed (its max_frames, max_seconds and stride), not a
    re-link's; the mosaic is on the layout's clock."""
    cameras = cameras_of_run(record)
    missing = [camera.path for camera in cameras if not camera.path.exists()]
    if missing:
        raise CctrackError(f"cannot draw videos: source {missing[0]} is gone (set export.video=false)")
    video_settings = record.config["video"]
    return write_annotated_videos(
        cameras,
        table,
        job.out_dir / "videos",
        max_frames=video_settings["max_frames"],
        stride=video_settings["stride"],
        mosaic=job.config.export.mosaic and len(cameras) > 1,
        show_progress=job.show_progress,
        max_seconds=video_settings.get("max_seconds"),  # absent from the caches of earlier versions
        clock=layout.camera_clock([camera.fps for camera in cameras]) if layout is not None else None,
    )
