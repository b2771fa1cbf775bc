"""PRCC: `rgb/train/<pid>/<A|B|C>_*.jpg`, `rgb/test/<A|B|C>/<pid>/*.jpg` (`rgb/val` is not used).

Three cameras A, B, C (camid 0, 1, 2). In train the camera is the file-name prefix; in test it is the
camera folder. A and B show a person in the same outfit, C in a different one, so clothes_id =
2 * pid + (1 if camera C else 0). The identity is the `<pid>` folder name (a number). The data root may
be the folder holding `rgb/` or `rgb/` itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.datasets.base import (
    ReidDataset,
    Sample,
    image_files,
    match_name,
    relabel_train,
    require_folder,
    require_root,
    subfolders,
)
from reid.errors import ReidError

CAMERAS = ("A", "B", "C")
CLOTH_CHANGING_CAMERA = "C"  # the only camera where people wear their second outfit
TRAIN_NAME = re.compile(r"([ABC])_.*\.(jpg|jpeg|png)", re.IGNORECASE)
TRAIN_EXPECTED = "<A|B|C>_*.jpg"


def _pid(folder: Path) -> int:
    if not folder.name.isdigit():
        raise ReidError(f"PRCC layout: identity folder {folder} is not named by a number")
    return int(folder.name)


def _sample(path: Path, pid: int, camera: str) -> Sample:
    camera = camera.upper()
    return Sample(path, pid, CAMERAS.index(camera), 2 * pid + (camera == CLOTH_CHANGING_CAMERA))


def _train(train_folder: Path) -> list[Sample]:
    samples = [
        _sample(path, _pid(identity), match_name(TRAIN_NAME, path, "PRCC", TRAIN_EXPECTED)[1])
        for identity in subfolders(train_folder)
        for path in image_files(identity)
    ]
    if not samples:
        raise ReidError(f"PRCC layout: no images matching <pid>/{TRAIN_EXPECTED} in {train_folder}")
    return samples


def _test_camera(test_folder: Path, camera: str) -> list[Sample]:
    camera_folder = require_folder(test_folder / camera, "PRCC", f"test/{camera}/<pid>/*.jpg")
    samples = [
        _sample(path, _pid(identity), camera) for identity in subfolders(camera_folder) for path in image_files(identity)
    ]
    if not samples:
        raise ReidError(f"PRCC layout: no images matching <pid>/*.jpg in {camera_folder}")
    return samples


def load_prcc(root: str | Path) -> ReidDataset:
    root = require_root(root, "PRCC")
    rgb = root / "rgb" if (root / "rgb").is_dir() else root
    train_folder = require_folder(rgb / "train", "PRCC", "rgb/train/<pid>/<A|B|C>_*.jpg")
    test_folder = require_folder(rgb / "test", "PRCC", "rgb/test/<A|B|C>/<pid>/*.jpg")
    train, num_train_ids = relabel_train(_train(train_folder))
    gallery = _test_camera(test_folder, "A")
    query = _test_camera(test_folder, "B") + _test_camera(test_folder, "C")
    return ReidDataset(train, query, gallery, num_train_ids, "prcc")
