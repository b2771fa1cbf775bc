"""An output folder belongs to one run: who owns it, and one command at a time.

- Owner. `cctrack run` records what it runs on (each camera's path, size and modification time) in
  OUT_DIR/cache/inputs.json before any work. A later run on other inputs refuses at once, unless told
  `--overwrite`; a run on the same inputs replaces its own earlier outputs. A folder that holds files but
  no cctrack run is never written into.
- Lock. Every command that writes into OUT_DIR (run, link, adapt) holds OUT_DIR/cctrack.lock, which
  names its process and host. A second command fails at once; a lock left by a process that no longer
  exists on this host is taken over.
- Clearing. What a run writes is a fixed set of names (RUN_OUTPUTS); clearing removes those and nothing
  else, so files a user put beside them survive. A rerun on the same inputs keeps what it can continue
  from (cctrack.pipeline: finished tracking, or its last checkpoint, and their crops).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from cctrack.errors import CctrackError
from cctrack.files import ensure_writable_folder, write_json_atomic
from cctrack.video import Camera

LOCK_NAME = "cctrack.lock"
HALF_WRITTEN_LOCK_SECONDS = 10.0  # a lock file without its holder for this long was left by a crash
INPUTS_RECORD = Path("cache") / "inputs.json"
# Everything a run (and `cctrack link`, `adapt`, `eval`) writes at the top of OUT_DIR.
CORRECTIONS_NAME = "corrections.yaml"  # a person's, never cleared: read by `cctrack run` and `cctrack link`
RUN_OUTPUTS = ("identities.json", "summary.txt", "eval.json", "adapted.pt", "adapted.previous-round.pt", "report.html",
               "tracks", "global", "videos", "crops", "cache")  # the 2nd .pt: only while `adapt --rounds` trains, or after a kill


def camera_fingerprint(camera: Camera) -> dict:
    """What identifies a camera's input without reading it all: path, bytes and modification time (for
    an image sequence: its frame count, total bytes and newest modification time)."""
    files = list(camera.image_files) if camera.is_image_sequence else [camera.path]
    stats = [path.stat() for path in files]
    return {
        "name": camera.name,
        "path": str(Path(camera.path).resolve()),
        "files": len(files),
        "bytes": sum(stat.st_size for stat in stats),
        "modified_ns": max(stat.st_mtime_ns for stat in stats),
    }


def inputs_fingerprint(cameras: list[Camera]) -> list[dict]:
    return [camera_fingerprint(camera) for camera in cameras]


def check_output_location(out_dir: Path, video_dir: Path) -> None:
    """Refuse an empty --out (an unset shell variable) and an output folder inside the video folder (its
    videos would be taken for cameras by the next run)."""
    if str(out_dir).strip() in ("", "."):
        raise CctrackError("--out is empty or '.'; name an output folder (an unset shell variable?)")
    out_resolved, video_resolved = Path(out_dir).resolve(), Path(video_dir).resolve()
    if out_resolved == video_resolved or video_resolved in out_resolved.parents:
        raise CctrackError(f"output folder {out_dir} is inside the video folder {video_dir}; choose a folder outside it")


def _recorded_inputs(out_dir: Path) -> list[dict] | None:
    """The inputs of the run in out_dir: from cache/inputs.json, else (older runs) the camera paths of
    cache/run.json; None when out_dir holds no run."""
    record = out_dir / INPUTS_RECORD
    if record.is_file():
        try:
            return json.loads(record.read_text())["inputs"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CctrackError(f"{record} is damaged; use --overwrite to replace the run in {out_dir}") from None
    legacy = out_dir / "cache" / "run.json"
    if legacy.is_file():
        try:
            return [{"name": c["name"], "path": c["path"]} for c in json.loads(legacy.read_text())["cameras"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CctrackError(f"{legacy} is damaged; use --overwrite to replace the run in {out_dir}") from None
    return None


def _same_inputs(recorded: list[dict], current: list[dict]) -> bool:
    keys = set.intersection(*(set(entry) for entry in recorded + current)) if recorded and current else set()
    return [{k: e[k] for k in sorted(keys)} for e in recorded] == [{k: e[k] for k in sorted(keys)} for e in current]


def _describe(inputs: list[dict]) -> str:
    paths = [entry["path"] for entry in inputs]
    return ", ".join(paths[:2]) + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")


def clear_run_outputs(out_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what a cctrack run wrote into out_dir (RUN_OUTPUTS) and nothing else, except the paths
    `keep` (relative to out_dir, e.g. "crops" or "cache/resume"), which a resumed run continues from."""
    kept = {Path(path) for path in keep}
    for name in RUN_OUTPUTS:
        _remove_except(Path(out_dir), Path(name), kept)


def _remove_except(root: Path, relative: Path, kept: set[Path]) -> None:
    path = root / relative
    if relative in kept:
        return
    if any(relative in k.parents for k in kept) and path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove_except(root, relative / child.name, kept)
    elif path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def refuse_foreign_folder(out_dir: Path, current: list[dict], overwrite: bool) -> list[dict] | None:
    """Refuse (unless `overwrite`) a folder of another run, or a non-empty folder that holds no run, before
    any work. current: this run's inputs_fingerprint. Returns the inputs recorded in out_dir (None: no run)."""
    recorded = _recorded_inputs(out_dir)
    # corrections.yaml is a person's, read by the run: a folder holding only it is still a new one.
    others = [p.name for p in out_dir.iterdir()
              if p.name not in (LOCK_NAME, CORRECTIONS_NAME) and not p.name.startswith(".write-test-")]
    if recorded is None and others and not overwrite:
        raise CctrackError(f"output folder {out_dir} is not empty and holds no cctrack run ({others[0]}, ...); choose a new folder")
    if recorded is not None and not _same_inputs(recorded, current) and not overwrite:
        raise CctrackError(
            f"output folder {out_dir} holds a run of other videos ({_describe(recorded)}); "
            "use --overwrite to replace it, or choose another --out folder"
        )
    return recorded


def claim_for_run(out_dir: Path, current: list[dict], recorded: list[dict] | None, keep: tuple[str, ...] = ()) -> None:
    """Make out_dir this run's, after refuse_foreign_folder and with the lock held since: clear the old run's
    outputs (`recorded` inputs), but for `keep` when the old run was of these same inputs; record the inputs."""
    same = recorded is not None and _same_inputs(recorded, current)
    clear_run_outputs(out_dir, keep if same else ())
    write_json_atomic(out_dir / INPUTS_RECORD, {"inputs": current, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# Disk a run writes (bench/long_video.py, the sample looped to 10k frames, see the README): the cache and
# crops grow with the people seen, about 45 MB per camera-hour of a busy pedestrian scene; the annotated
# videos (mp4v) with the pixels, about 0.22 bytes per pixel per second of footage (150 MB per hour of
# the 320 x 576 sample, 1.6 GB per hour of 1080p).
CACHE_BYTES_PER_CAMERA_SECOND = 45e6 / 3600
VIDEO_BYTES_PER_PIXEL_SECOND = 0.22


def space_warning(out_dir: Path, cameras: list[Camera], seconds: list[float], with_videos: bool) -> str | None:
    """A warning line when out_dir's disk has less free space than a run over `seconds` of each camera
    is likely to need, else None. An estimate: busier scenes need more."""
    needed = sum(
        camera_seconds * (CACHE_BYTES_PER_CAMERA_SECOND + (VIDEO_BYTES_PER_PIXEL_SECOND * camera.width * camera.height if with_videos else 0))
        for camera, camera_seconds in zip(cameras, seconds)
    )
    if with_videos and len(cameras) > 1:  # the mosaic holds every camera's pixels again
        needed += sum(VIDEO_BYTES_PER_PIXEL_SECOND * c.width * c.height for c in cameras) * max(seconds)
    free = shutil.disk_usage(out_dir).free
    if free >= needed:
        return None
    advice = " (--no-video writes far less)" if with_videos else ""
    return (f"warning: {out_dir} has {free / 1e6:.0f} MB free; this run may need about {needed / 1e6:.0f} MB{advice}; "
            "a full disk stops it with an error, and a rerun resumes")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def output_lock(out_dir: Path, command: str) -> Iterator[Path]:
    """Hold out_dir's lock for the block (creating out_dir): one cctrack command per output folder."""
    out_dir = ensure_writable_folder(Path(out_dir))
    lock = out_dir / LOCK_NAME
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if holder is not None and (holder.get("pid"), holder.get("host")) == (mine["pid"], mine["host"]):
                yield out_dir  # this process holds it already (adapt re-links): nested, released by the outer block
                return
            stale = holder is not None and holder.get("host") == mine["host"] and not _process_alive(int(holder.get("pid", -1)))
            half_written = holder is None and time.time() - _modified(lock) > HALF_WRITTEN_LOCK_SECONDS
            if stale or half_written:
                lock.unlink(missing_ok=True)  # a dead process's lock, or one never finished: take it over
                continue
            raise CctrackError(
                f"output folder {out_dir} is in use by `cctrack {holder.get('command')}` (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); wait for it, or delete {lock} if that process is gone"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        break
    else:
        raise CctrackError(f"could not take the lock {lock}; another cctrack command may be starting there")
    try:
        yield out_dir
    finally:
        if (_read_lock(lock) or {}).get("pid") == mine["pid"]:
            lock.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_lock(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
    except (OSError, json.JSONDecodeError):
        return None
