"""Annotated videos: boxes with identity labels in stable colours, per camera and as a mosaic of all cameras."""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from cctrack.files import atomic_path, write_failure
from cctrack.progress import progress_bar
from cctrack.table import TrackletTable
from cctrack.video import Camera, frames_available, read_frames

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def identity_colour(key: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for an id (golden-ratio walk around the hue circle)."""
    hue = (key * GOLDEN_RATIO_CONJUGATE) % 1.0
    hsv = np.uint8([[[int(hue * 179), 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


LABEL_FONT, LABEL_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.5
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels, exclusive ends


def label_size(label: str) -> tuple[int, int]:
    """(width, height) pixels of a label's filled background."""
    (text_width, text_height), baseline = cv2.getTextSize(label, LABEL_FONT, LABEL_SCALE, 1)
    return text_width + 4, text_height + baseline + 2


def place_labels(boxes: list[tuple[int, int, int, int]], sizes: list[tuple[int, int]], frame_shape: tuple[int, ...]) -> list[Rect]:
    """Label rectangles that never overlap each other and stay in the frame: each starts just above its
    box's top-left corner (inside the box when there is no room above) and, when taken, moves up, then
    down, a label height at a time, to the nearest free place. Boxes are served top to bottom, so the
    labels of a crowd stack in the order of their people."""
    height, width = frame_shape[:2]
    placed: list[Rect] = []
    result: list[Rect | None] = [None] * len(boxes)
    for index in sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0])):
        x0, y0 = boxes[index][0], boxes[index][1]
        label_width, label_height = sizes[index]
        left = min(max(x0, 0), max(width - label_width, 0))
        home = y0 - label_height if y0 - label_height >= 0 else max(min(y0, height - label_height), 0)
        offsets = [0] + [step * sign * label_height for step in range(1, 2 * max(height // max(label_height, 1), 1) + 1) for sign in (-1, 1)]
        choice = None
        for offset in offsets:
            top = home + offset
            if top < 0 or top + label_height > height:
                continue
            rect = (left, top, left + label_width, top + label_height)
            if not any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in placed):
                choice = rect
                break
        result[index] = choice or (left, home, left + label_width, home + label_height)  # a full frame: overlap
        placed.append(result[index])
    return result


def draw_boxes(frame: np.ndarray, items: list[tuple[np.ndarray, int, str]]) -> np.ndarray:
    """Draw (box, colour key, label) items on a copy of the frame: every box first, then every label where
    place_labels puts it, with a thin leader line to its box when it had to move away."""
    canvas = frame.copy()
    boxes = [tuple(int(round(v)) for v in box) for box, _, _ in items]
    for (box, key, label), (x0, y0, x1, y1) in zip(items, boxes):
        cv2.rectangle(canvas, (x0, y0), (x1, y1), identity_colour(key), 2)
    sizes = [label_size(label) for _, _, label in items]
    for (box, key, label), (x0, y0, _, _), rect in zip(items, boxes, place_labels(boxes, sizes, canvas.shape)):
        colour = identity_colour(key)
        home_top = y0 - (rect[3] - rect[1])
        if abs(rect[1] - home_top) > 1 and not (rect[1] <= y0 <= rect[3]):
            anchor_y = rect[3] if rect[3] <= y0 else rect[1]
            cv2.line(canvas, (rect[0], anchor_y), (x0, y0), colour, 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (rect[0], rect[1]), (rect[2] - 1, rect[3] - 1), colour, -1)
        _, text_height = cv2.getTextSize(label, LABEL_FONT, LABEL_SCALE, 1)[0]
        cv2.putText(canvas, label, (rect[0] + 2, rect[1] + text_height + 1), LABEL_FONT, LABEL_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def mosaic_frame(frames: list[np.ndarray | None], names: list[str], height: int, widths: list[int]) -> np.ndarray:
    """All cameras side by side at a common height; a camera without a frame is black."""
    tiles = []
    for frame, name, width in zip(frames, names, widths):
        tile = np.zeros((height, width, 3), np.uint8) if frame is None else cv2.resize(frame, (width, height))
        cv2.putText(tile, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    return np.hstack(tiles)


def labelled_boxes(table: TrackletTable) -> dict[str, dict[int, list[tuple[np.ndarray, int, str]]]]:
    """Per camera name, per 0-based frame: the (box, colour key, label) items `draw_boxes` draws. A linked
    table's boxes are labelled `ID <identity>` and coloured by identity, the same colour in every camera;
    an unlinked table's by track id."""
    linked = table.identity is not None
    keys = (table.identity if linked else table.track_id).tolist()
    labels = [f"ID {key}" if linked else str(key) for key in keys]
    by_camera: dict[str, dict[int, list[tuple[np.ndarray, int, str]]]] = {name: defaultdict(list) for name in table.camera_names}
    for box, frame_index, row in zip(table.boxes, table.frames.tolist(), table.box_tracklet.tolist()):
        by_camera[table.camera_names[table.camera_index[row]]][frame_index].append((box, keys[row], labels[row]))
    return by_camera


def write_annotated_videos(
    cameras: list[Camera],
    table: TrackletTable,
    videos_dir: Path,
    max_frames: int | None = None,
    stride: int = 1,
    mosaic: bool = True,
    show_progress: bool = True,
    max_seconds: float | None = None,
    clock: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Path]:
    """`<videos_dir>/<camera>.mp4` for every camera and `mosaic.mp4`, written in one pass over the sources,
    with the boxes of the table's tracklets (`labelled_boxes`).

    The mosaic lines the cameras up by time, not by frame index: at the highest camera frame rate, its
    frame k shows each camera's latest processed frame at or before shared time start + k / that rate,
    and black before the camera starts or after it ends. `clock` is (fps, time_offset_seconds) per camera,
    as CameraLayout.camera_clock gives them; None: the videos' own fps, no offsets. Every video is renamed
    into place only once it reads back with every frame written.
    """
    by_camera = labelled_boxes(table)
    clock_fps, time_offsets = clock if clock is not None else (np.array([c.fps for c in cameras]), np.zeros(len(cameras)))
    available = np.array([frames_available(camera, max_frames, max_seconds) for camera in cameras])
    start = float(time_offsets.min())
    mosaic_fps = float(clock_fps.max()) / stride
    # The 1e-9 here and below keeps float error (2.9999999999999996 ticks) from adding or dropping a frame.
    ticks = math.ceil((float((time_offsets + available / clock_fps).max()) - start) * mosaic_fps - 1e-9)
    height = max(camera.height for camera in cameras)
    tile_widths = [int(round(camera.width * height / camera.height)) for camera in cameras]
    paths = [Path(videos_dir) / f"{camera.name}.mp4" for camera in cameras]
    with contextlib.ExitStack() as stack:
        videos = [_CheckedVideo(stack, path, camera.fps / stride, (camera.width, camera.height)) for camera, path in zip(cameras, paths)]
        mosaic_video = _CheckedVideo(stack, Path(videos_dir) / "mosaic.mp4", mosaic_fps, (sum(tile_widths), height)) if mosaic else None
        streams = [read_frames(camera, max_frames, stride, max_seconds) for camera in cameras]
        latest: list[np.ndarray | None] = [None] * len(cameras)  # each camera's last annotated frame
        read = [0] * len(cameras)
        bar = stack.enter_context(progress_bar(ticks, "video", "frame", show_progress))
        for tick in range(ticks):
            tiles: list[np.ndarray | None] = []
            for position, (camera, stream, video) in enumerate(zip(cameras, streams, videos)):
                frame_index = math.floor((start + tick / mosaic_fps - time_offsets[position]) * clock_fps[position] + 1e-9)
                # Read (and write) this camera's frames up to the processed one at or before frame_index.
                while 0 <= frame_index and read[position] <= min(frame_index, available[position] - 1) // stride:
                    item = next(stream, None)
                    read[position] += 1
                    if item is not None:
                        latest[position] = draw_boxes(item[1], by_camera[camera.name].get(item[0], []))
                        video.write(latest[position])
                tiles.append(latest[position] if 0 <= frame_index < available[position] else None)
            if mosaic_video is not None:
                mosaic_video.write(mosaic_frame(tiles, [c.name for c in cameras], height, tile_widths))
            bar.update(1)
        for camera, stream, video in zip(cameras, streams, videos):
            for frame_index, frame in stream:  # frames past the last tick, if float rounding left any
                video.write(draw_boxes(frame, by_camera[camera.name].get(frame_index, [])))
        for video in videos + ([mosaic_video] if mosaic_video is not None else []):
            video.finish()
    return paths + ([Path(videos_dir) / "mosaic.mp4"] if mosaic else [])


class _CheckedVideo:
    """An mp4 written under a temporary name (see atomic_path) that counts its frames. OpenCV's writer
    reports no failed write, so `finish` proves the file reads back with every frame before it may be
    renamed into place."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self.temporary = stack.enter_context(atomic_path(path))
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        stack.callback(self.writer.release)  # also on an error, before atomic_path removes the file
        if not self.writer.isOpened():
            raise write_failure(path, "OpenCV cannot open an mp4v video writer for it")
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames_written += 1

    def finish(self) -> None:
        self.writer.release()
        capture = cv2.VideoCapture(str(self.temporary))
        try:
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            capture.set(cv2.CAP_PROP_POS_FRAMES, max(self.frames_written - 1, 0))
            last_frame_decodes = capture.read()[0]
        finally:
            capture.release()
        if frames != self.frames_written:
            raise write_failure(self.path, f"the written video reads back {frames} of its {self.frames_written} frames")
        if not last_frame_decodes:
            raise write_failure(self.path, "the last frame of the written video does not decode")
