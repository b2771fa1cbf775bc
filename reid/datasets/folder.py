"""Folder of identities: `<root>/<pid>/<cam>_<clothes>_<anything>.jpg` (or .jpeg / .png).

This is the layout cctrack writes when it exports tracklet crops, and the simplest way to bring your own
data. The identity is the folder name; the camera and the outfit are the first two `_`-separated tokens
of the file name (`c2_o1_f000123.jpg`: camera "c2", outfit "o1"). Names made only of digits keep their
value as the id ("17" -> 17); otherwise ids are 0.. in sorted order of the names. Outfits are per person:
clothes ids are assigned to (pid, outfit) pairs.

Split rule (deterministic, no randomness): identities sorted by id; the first
n_identities * train_fraction (rounded half up) of them are the training set (default: half; 1.0 puts everything in
train, e.g. for pseudo-labelled tracklets, 0.0 everything in test). In each test identity the first image
(by file name) from every camera is a query and all its other images are gallery, so a query is matched
against the identity's images from the other cameras (and other outfits in the cloth-changing protocol).
"""

from __future__ import annotations

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


def load_folder(root: str | Path, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> ReidDataset:
    if not 0.0 <= train_fraction <= 1.0:
        raise ReidError(f"folder dataset: train_fraction must be within [0, 1], got {train_fraction}")
    root = require_root(root, "folder")
    records = [
        (path, identity.name, *match_name(FOLDER_NAME, path, "folder", FOLDER_EXPECTED).group(1, 2))
        for identity in subfolders(root)
        for path in image_files(identity)
    ]
    if not records:
        raise ReidError(f"folder layout: no images matching <pid>/{FOLDER_EXPECTED} in {root}")
    pid_of = token_ids([pid for _, pid, _, _ in records])
    camid_of = token_ids([camera for _, _, camera, _ in records])
    outfit_of = outfit_ids([(pid_of[pid], outfit) for _, pid, _, outfit in records])
    samples = [
        Sample(path, pid_of[pid], camid_of[camera], outfit_of[(pid_of[pid], outfit)])
        for path, pid, camera, outfit in records
    ]

    identities = sorted(set(pid_of.values()))
    train_ids = set(identities[: int(len(identities) * train_fraction + 0.5)])
    train, num_train_ids = relabel_train([s for s in samples if s.pid in train_ids])
    query, gallery, seen_cameras = [], [], set()
    for sample in sorted((s for s in samples if s.pid not in train_ids), key=lambda s: (s.pid, s.path.name)):
        is_first_of_camera = (sample.pid, sample.camid) not in seen_cameras
        seen_cameras.add((sample.pid, sample.camid))
        (query if is_first_of_camera else gallery).append(sample)
    return ReidDataset(train, query, gallery, num_train_ids, "folder")
