"""Annotated videos: boxes with identity labels in stable colours, per camera and as a mosaic of all cameras."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cctrack.errors import CctrackError
from cctrack.files import atomic_path
from cctrack.progress import progress_bar
from cctrack.video import Camera, frames_to_process, read_frames

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


@dataclass(frozen=True)
class TrackDrawing:
    """One tracklet to draw: where it is and what it is called."""

    camera: str
    frames: np.ndarray  # (T,) 0-based frame indices
    boxes: np.ndarray  # (T, 4) xyxy pixels
    colour_key: int  # same key -> same colour in every camera (the global identity when linked)
    label: str


def identity_colour(key: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for an id (golden-ratio walk around the hue circle)."""
    hue = (key * GOLDEN_RATIO_CONJUGATE) % 1.0
    hsv = np.uint8([[[int(hue * 179), 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_boxes(frame: np.ndarray, items: list[tuple[np.ndarray, int, str]]) -> np.ndarray:
    """Draw (box, colour key, label) items on a copy of the frame."""
    canvas = frame.copy()
    for box, key, label in items:
        colour = identity_colour(key)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y0 - text_height - baseline - 2, 0)
        cv2.rectangle(canvas, (x0, top), (x0 + text_width + 4, top + text_height + baseline + 2), colour, -1)
        cv2.putText(canvas, label, (x0 + 2, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def mosaic_frame(frames: list[np.ndarray | None], names: list[str], height: int, widths: list[int]) -> np.ndarray:
    """All cameras side by side at a common height; a camera without a frame is black."""
    tiles = []
    for frame, name, width in zip(frames, names, widths):
        tile = np.zeros((height, width, 3), np.uint8) if frame is None else cv2.resize(frame, (width, height))
        cv2.putText(tile, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    return np.hstack(tiles)


def write_annotated_videos(
    cameras: list[Camera],
    drawings: list[TrackDrawing],
    videos_dir: Path,
    max_frames: int | None = None,
    stride: int = 1,
    mosaic: bool = True,
    show_progress: bool = True,
) -> list[Path]:
    """`<videos_dir>/<camera>.mp4` for every camera and `mosaic.mp4`, written in one pass over the sources."""
    by_camera: dict[str, dict[int, list[tuple[np.ndarray, int, str]]]] = {c.name: defaultdict(list) for c in cameras}
    for drawing in drawings:
        per_frame = by_camera[drawing.camera]
        for frame_index, box in zip(drawing.frames, drawing.boxes):
            per_frame[int(frame_index)].append((box, drawing.colour_key, drawing.label))
    height = max(camera.height for camera in cameras)
    tile_widths = [int(round(camera.width * height / camera.height)) for camera in cameras]
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    paths = [Path(videos_dir) / f"{camera.name}.mp4" for camera in cameras]
    total = max(frames_to_process(camera, max_frames, stride) for camera in cameras)
    with contextlib.ExitStack() as stack:
        writers = []
        for camera, path in zip(cameras, paths):
            temporary = stack.enter_context(atomic_path(path))
            writers.append(_open_writer(temporary, fourcc, camera.fps / stride, (camera.width, camera.height)))
        mosaic_writer = None
        if mosaic:
            temporary = stack.enter_context(atomic_path(Path(videos_dir) / "mosaic.mp4"))
            mosaic_writer = _open_writer(temporary, fourcc, cameras[0].fps / stride, (sum(tile_widths), height))
        streams = [read_frames(camera, max_frames, stride) for camera in cameras]
        bar = stack.enter_context(progress_bar(total, "video", "frame", show_progress))
        for _ in range(total):
            annotated: list[np.ndarray | None] = []
            for camera, stream, writer in zip(cameras, streams, writers):
                item = next(stream, None)
                if item is None:
                    annotated.append(None)
                    continue
                frame_index, frame = item
                canvas = draw_boxes(frame, by_camera[camera.name].get(frame_index, []))
                writer.write(canvas)
                annotated.append(canvas)
            if mosaic_writer is not None:
                mosaic_writer.write(mosaic_frame(annotated, [c.name for c in cameras], height, tile_widths))
            bar.update(1)
        for writer in writers + ([mosaic_writer] if mosaic_writer is not None else []):
            writer.release()
    return paths + ([Path(videos_dir) / "mosaic.mp4"] if mosaic else [])


def _open_writer(path: Path, fourcc: int, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise CctrackError(f"cannot write video {path} (OpenCV has no mp4v encoder here)")
    return writer
