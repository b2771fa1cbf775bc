"""Tracking checkpoints: a killed run resumes where it stopped, with the results of a run never stopped.

Every `every_seconds` of video (and on Ctrl-C) the tracking stage saves the state of all cameras at once,
at the end of a round of the lockstep loop: so a resumed run reads the same frames into the same detector
batches as an uninterrupted one, and its tracks, crops and tracklets are equal, not just close.

    OUT_DIR/cache/resume/state.json     the commit point: the run's key, then per camera how far it got
    OUT_DIR/cache/resume/state.<n>.npz  checkpoint n: each camera's tracker and tracks in progress
    OUT_DIR/cache/resume/ended.<n>.npz  tracklets that ended before checkpoint n and after n - 1; their
                                        crops are already written to OUT_DIR/crops/ (and out of memory)

Files are written first and state.json last (atomically), so a kill at any moment leaves the previous
checkpoint whole. The key covers what tracking depends on (inputs, settings, detector weights, device,
cctrack version): a checkpoint of anything else is never resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import sys
import threading
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cctrack import __version__
from cctrack.errors import Interrupted
from cctrack.files import atomic_path, write_json_atomic
from cctrack.table import TrackletTable
from cctrack.track.tracker import Tracker
from cctrack.tracklets import Tracklet, TrackletCollector
from cctrack.video import Camera

RESUME_FOLDER = Path("cache") / "resume"
STATE_NAME = "state.json"


@dataclass
class CameraProgress:
    """How far one camera's tracking got."""

    processed: int = 0  # frames read and detected
    last_frame: int = -1  # 0-based index of the last frame processed, -1 before the first
    finished: bool = False  # its frames ran out

    def next_frame(self, stride: int) -> int:
        return self.last_frame + stride if self.last_frame >= 0 else 0

    def seconds(self, fps: float) -> float:
        return (self.last_frame + 1) / fps


@dataclass
class SavedTracking:
    """A checkpoint as loaded: per camera, in the run's camera order."""

    number: int
    video_seconds: float
    progress: list[CameraProgress]
    trackers: list[dict[str, np.ndarray]]  # Tracker.state()
    collectors: list[dict[str, np.ndarray]]  # TrackletCollector.state()
    ended: list[list[Tracklet]]  # without crop pixels (they are in OUT_DIR/crops)
    ended_files: list[str]


def tracking_key(parts: dict) -> str:
    """sha256 naming what tracking depends on; `parts` must be JSON (inputs, settings, model hashes)."""
    text = json.dumps({"cctrack": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_key(out_dir: Path) -> str:
    """The key of the checkpoint in out_dir ("" when there is none or it cannot be read)."""
    try:
        return str(json.loads((Path(out_dir) / RESUME_FOLDER / STATE_NAME).read_text()).get("key", ""))
    except (OSError, ValueError, AttributeError):
        return ""


class TrackingCheckpoint:
    """Saves and loads the tracking stage's checkpoints in OUT_DIR/cache/resume."""

    def __init__(self, out_dir: Path, key: str, cameras: list[Camera], every_seconds: float, crop_writer) -> None:
        """crop_writer(tracklet) writes a tracklet's crops to their final place (cctrack.cache.write_crops)."""
        self.folder = Path(out_dir) / RESUME_FOLDER
        self.key = key
        self.camera_names = [camera.name for camera in cameras]
        self.camera_fps = [camera.fps for camera in cameras]
        self.every_seconds = every_seconds
        self.write_crops = crop_writer
        self.number = 0
        self.saved_seconds = 0.0
        self.ended_files: list[str] = []

    def due(self, video_seconds: float) -> bool:
        return self.every_seconds > 0 and video_seconds - self.saved_seconds >= self.every_seconds

    def load(self) -> SavedTracking | None:
        """The last checkpoint of this key, or None (none, another key's, or damaged: said on stderr)."""
        path = self.folder / STATE_NAME
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            if state.get("key") != self.key or [c["name"] for c in state["cameras"]] != self.camera_names:
                return None
            saved = self._read(state)
        except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, EOFError) as error:
            print(f"warning: tracking checkpoint {path} is damaged ({type(error).__name__}); tracking starts over",
                  file=sys.stderr, flush=True)
            return None
        self.number, self.saved_seconds, self.ended_files = saved.number, saved.video_seconds, list(saved.ended_files)
        return saved

    def _read(self, state: dict) -> SavedTracking:
        count = len(self.camera_names)
        with np.load(self.folder / state["state_file"], allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        trackers = [_section(arrays, f"c{i}.tracker.") for i in range(count)]
        collectors = [_section(arrays, f"c{i}.collector.") for i in range(count)]
        ended: list[list[Tracklet]] = [[] for _ in range(count)]
        for name in state["ended_files"]:
            with np.load(self.folder / name, allow_pickle=False) as data:
                table = TrackletTable.from_arrays(dict(data), self.camera_names, self.camera_fps, name)
            for row in range(len(table)):
                ended[table.camera_index[row]].append(table.tracklet(row))
        progress = [CameraProgress(int(c["processed"]), int(c["last_frame"]), bool(c["finished"])) for c in state["cameras"]]
        return SavedTracking(int(state["number"]), float(state["video_seconds"]), progress, trackers, collectors,
                             ended, list(state["ended_files"]))

    def save(self, video_seconds: float, progress: list[CameraProgress], trackers: list[Tracker],
             collectors: list[TrackletCollector], newly_ended: list[list[Tracklet]]) -> None:
        """Checkpoint every camera: write the crops of `newly_ended` (tracklets that ended since the last
        checkpoint), then the files, then state.json."""
        number = self.number + 1
        ended = [t for camera_tracklets in newly_ended for t in camera_tracklets]
        for tracklet in ended:
            self.write_crops(tracklet)
        ended_files = list(self.ended_files)
        if ended:
            ended_files.append(f"ended.{number}.npz")
            with atomic_path(self.folder / ended_files[-1]) as temporary:
                np.savez(temporary, **TrackletTable.from_tracklets(ended, self.camera_names, self.camera_fps).arrays())
        arrays = {}
        for i, (tracker, collector) in enumerate(zip(trackers, collectors)):
            arrays.update({f"c{i}.tracker.{k}": v for k, v in tracker.state().items()})
            arrays.update({f"c{i}.collector.{k}": v for k, v in collector.state().items()})
        state_file = f"state.{number}.npz"
        with atomic_path(self.folder / state_file) as temporary:
            np.savez(temporary, **arrays)
        write_json_atomic(self.folder / STATE_NAME, {
            "key": self.key,
            "number": number,
            "video_seconds": video_seconds,
            "cameras": [{"name": name, **asdict(p)} for name, p in zip(self.camera_names, progress)],
            "state_file": state_file,
            "ended_files": ended_files,
        })
        self.number, self.saved_seconds, self.ended_files = number, video_seconds, ended_files
        self._remove_unreferenced({STATE_NAME, state_file, *ended_files})

    def _remove_unreferenced(self, keep: set[str]) -> None:
        for path in self.folder.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Tracking finished and its tracklets are cached: the checkpoints are of no more use."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                path.unlink(missing_ok=True)
            self.folder.rmdir()


def without_crop_pixels(tracklet: Tracklet) -> Tracklet:
    """The tracklet once its crops are written: the pixels leave memory (cctrack.cache.load_crops reads them)."""
    return Tracklet(tracklet.camera, tracklet.track_id, tracklet.frames, tracklet.boxes, tracklet.scores, (),
                    tracklet.crop_frames, tracklet.crop_quality)


class StopRequest:
    """Set by the first Ctrl-C while tracking: the loop checkpoints at the end of its round and stops.
    A second Ctrl-C stops at once (KeyboardInterrupt), losing only what the last checkpoint lacks."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this round's checkpoint (Ctrl-C again to stop at once) ...", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_on_ctrl_c(enabled: bool) -> Iterator[StopRequest]:
    """Route SIGINT to a StopRequest for the block (only in the main thread, where signals arrive)."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted_at(checkpoint: TrackingCheckpoint, video_seconds: float) -> Interrupted:
    return Interrupted(
        f"interrupted: tracking saved at {video_seconds:.1f} s of video in {checkpoint.folder}; "
        "run the same command again to resume from there"
    )


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


