"""Folder of identities: `<root>/<pid>/<cam>_<clothes>_<anything>.jpg` (or .jpeg / .png).

This is the layout cctrack writes when it exports tracklet crops, and the simplest way to bring your own
data. The identity is the folder name; the camera and the outfit are the first two `_`-separated tokens
of the file name (`c2_o1_f000123.jpg`: camera "c2", outfit "o1"). Names made only of digits keep their
value as the id ("17" -> 17); otherwise ids are 0.. in sorted order of the names. Outfits are per person:
clothes ids are assigned to (pid, outfit) pairs. Camera ids are shared by all identities and splits.

Train / test split (deterministic, no randomness):
- explicit: when both `<root>/train/` and `<root>/test/` exist, they each hold identity folders as above;
  train/ identities are the training set and test/ identities the test set (train_fraction is not used,
  and no identity may be in both);
- split file: otherwise, when `<root>/split.json` exists, it lists the identity folders of each split:
  `{"train": ["0001", "0002", ...], "test": ["0101", ...]}`; every identity folder must be in exactly
  one list, and every listed name must exist (train_fraction is not used);
- by fraction: otherwise identities sorted by id; the first n_identities * train_fraction (rounded half up)
  of them are the training set (default: half; 1.0 puts everything in train, e.g. for pseudo-labelled
  tracklets, 0.0 everything in test).

Query / gallery protocol of the test identities:
- "first-per-camera" (default): in each test identity the first image (by file name) from every camera is a
  query and all its other images are gallery. A query is matched against its identity's images from the
  other cameras (and other outfits in the cloth-changing protocol), but the gallery also keeps OTHER
  people's images from the query's own camera, as distractors that share its background and lighting.
  The usual two-camera protocols (PRCC, CUHK03, VIPeR) have no such distractors, so these numbers are not
  comparable with theirs;
- "cross-camera": the usual protocol. Queries are all test images of one camera (`query_camera`, by its
  name in the file names; default the first camera in sorted order that has test images), the gallery
  is the test images of every other camera.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reid.datasets.base import (
    ReidDataset,
    Sample,
    image_files,
    match_name,
    outfit_ids,
    relabel_train,
    require_root,
    subfolders,
    token_ids,
)
from reid.errors import ReidError

FOLDER_NAME = re.compile(r"([^_]+)_([^_]+)_.+\.(jpg|jpeg|png)", re.IGNORECASE)
FOLDER_EXPECTED = "<cam>_<clothes>_<anything>.jpg"
DEFAULT_TRAIN_FRACTION = 0.5
FIRST_PER_CAMERA, CROSS_CAMERA = "first-per-camera", "cross-camera"
FOLDER_PROTOCOLS = (FIRST_PER_CAMERA, CROSS_CAMERA)
SPLIT_FOLDERS = ("train", "test")

Record = tuple[Path, str, str, str]  # image, identity folder name, camera token, outfit token


def _records(folder: Path) -> list[Record]:
    """Every image of every identity folder directly under `folder`, with its name tokens."""
    return [
        (path, identity.name, *match_name(FOLDER_NAME, path, "folder", FOLDER_EXPECTED).group(1, 2))
        for identity in subfolders(folder)
        for path in image_files(identity)
    ]


def _explicit_split(root: Path) -> tuple[list[Record], list[Record]] | None:
    """(train records, test records) from `<root>/train` and `<root>/test`; None when the root has neither."""
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(name for name in SPLIT_FOLDERS if name not in present)
        raise ReidError(f"folder layout: {root} has {present[0]}/ but no {missing}/; an explicit split needs both")
    # Identities next to train/ and test/ would silently belong to neither split.
    stray = [folder.name for folder in subfolders(root) if folder.name not in SPLIT_FOLDERS and image_files(folder)]
    if stray:
        raise ReidError(f"folder layout: {root} has train/ and test/ but also identity folder(s) {', '.join(stray[:5])}; "
                        "put each identity under train/ or test/")
    train, test = _records(root / "train"), _records(root / "test")
    shared = sorted({pid for _, pid, _, _ in train} & {pid for _, pid, _, _ in test})
    if shared:
        raise ReidError(f"folder layout: identity folder(s) {', '.join(shared[:5])} are in both train/ and test/ of {root}")
    return train, test


SPLIT_FILE = "split.json"


def _split_file(root: Path, records: list[Record]) -> set[str] | None:
    """The identity folder names of the training set from `<root>/split.json`; None when there is none."""
    path = root / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        split = json.loads(path.read_text())
        train, test = (split[name] for name in SPLIT_FOLDERS)
        if not all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in (train, test)):
            raise TypeError
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ReidError(f"folder layout: {path} must be JSON {{\"train\": [identity folder names], \"test\": [...]}}") from None
    present = {pid for _, pid, _, _ in records}
    problems = {
        "in both train and test": set(train) & set(test),
        "listed but missing": (set(train) | set(test)) - present,
        "in neither train nor test": present - set(train) - set(test),
    }
    for what, names in problems.items():
        if names:
            raise ReidError(f"folder layout: identity folder(s) {', '.join(sorted(names)[:5])} of {root} are {what} of {path.name}")
    return set(train)


def load_folder(
    root: str | Path,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    protocol: str = FIRST_PER_CAMERA,
    query_camera: str | None = None,
) -> ReidDataset:
    """Parse a folder-of-identities dataset; `protocol` and `query_camera` choose the test queries (see above)."""
    if not 0.0 <= train_fraction <= 1.0:
        raise ReidError(f"folder dataset: train_fraction must be within [0, 1], got {train_fraction}")
    if protocol not in FOLDER_PROTOCOLS:
        raise ReidError(f"folder dataset: unknown protocol {protocol!r}; expected one of {', '.join(FOLDER_PROTOCOLS)}")
    if query_camera is not None and protocol != CROSS_CAMERA:
        raise ReidError(f"folder dataset: a query camera only applies to the {CROSS_CAMERA} protocol")
    root = require_root(root, "folder")
    explicit = _explicit_split(root)
    records = explicit[0] + explicit[1] if explicit else _records(root)
    if not records:
        where = f"{root}/train or {root}/test" if explicit else str(root)
        raise ReidError(f"folder layout: no images matching <pid>/{FOLDER_EXPECTED} in {where}")
    pid_of = token_ids([pid for _, pid, _, _ in records])
    camid_of = token_ids([camera for _, _, camera, _ in records])
    outfit_of = outfit_ids([(pid_of[pid], outfit) for _, pid, _, outfit in records])
    samples = [
        Sample(path, pid_of[pid], camid_of[camera], outfit_of[(pid_of[pid], outfit)])
        for path, pid, camera, outfit in records
    ]

    split_train = None if explicit else _split_file(root, records)
    if explicit:
        train_ids = {pid_of[pid] for _, pid, _, _ in explicit[0]}
    elif split_train is not None:
        train_ids = {pid_of[name] for name in split_train}
    else:
        identities = sorted(set(pid_of.values()))
        train_ids = set(identities[: int(len(identities) * train_fraction + 0.5)])
    train, num_train_ids = relabel_train([s for s in samples if s.pid in train_ids])
    test = sorted((s for s in samples if s.pid not in train_ids), key=lambda s: (s.pid, s.path.name))
    if protocol == CROSS_CAMERA:
        query, gallery = _cross_camera(test, camid_of, query_camera)
    else:
        query, gallery = _first_per_camera(test)
    return ReidDataset(train, query, gallery, num_train_ids, "folder")


def _first_per_camera(test: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Per identity, the first image of each camera is a query; everything else is gallery."""
    query, gallery, seen_cameras = [], [], set()
    for sample in test:
        is_first_of_camera = (sample.pid, sample.camid) not in seen_cameras
        seen_cameras.add((sample.pid, sample.camid))
        (query if is_first_of_camera else gallery).append(sample)
    return query, gallery


def _cross_camera(
    test: list[Sample], camid_of: dict[str, int], query_camera: str | None
) -> tuple[list[Sample], list[Sample]]:
    """Every test image of one camera is a query; the gallery is every test image of the other cameras."""
    test_cameras = sorted({sample.camid for sample in test})
    if not test_cameras:
        return [], []
    if query_camera is None:
        query_camid = test_cameras[0]
    else:
        name_of = {camid: name for name, camid in camid_of.items()}
        if camid_of.get(query_camera) not in test_cameras:
            raise ReidError(f"folder dataset: query camera {query_camera!r} has no test images; "
                            f"cameras with test images: {', '.join(name_of[camid] for camid in test_cameras)}")
        query_camid = camid_of[query_camera]
    query = [sample for sample in test if sample.camid == query_camid]
    gallery = [sample for sample in test if sample.camid != query_camid]
    return query, gallery
