"""CUHK03 (Li et al., CVPR 2014) as laid out in `../shared/data/CUHK03/`:
`{detected,labeled}/{train,val}/PPPP_KK.jpg`.

`PPPP` is the identity, numbered from 0000 in each split folder (train and val hold different people);
`KK` 00-04 are one camera view and 05-09 the other view of the same camera pair, so camid = KK // 5.
`detected` boxes come from a pedestrian detector, `labeled` boxes were drawn by hand: the same photos
with two box sets. Nobody changes clothes, so each identity is one outfit.

Train: both box sets of `train/` (the same person framed two ways, as a tracker and a human would), so an
identity has up to 20 images. Test: `val/` with the chosen box set (default `detected`, closest to what a
tracker crops); queries are view 0, the gallery is view 1 ("query one view, gallery the other").
The images carry CUHK's terms: non-commercial research use.
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.datasets.base import ReidDataset, Sample, parse_names, relabel_train, require_root

CUHK03_NAME = re.compile(r"(\d+)_(\d+)\.jpg", re.IGNORECASE)
CUHK03_EXPECTED = "PPPP_KK.jpg"
BOX_SETS = ("detected", "labeled")
IMAGES_PER_VIEW = 5  # KK 00-04: view 0, 05-09: view 1


def _split(root: Path, box_set: str, split: str) -> list[Sample]:
    folder = root / box_set / split
    return [
        # clothes_id = pid: one outfit per person (train pids are relabelled below, test pids kept).
        Sample(path, int(match[1]), int(match[2]) // IMAGES_PER_VIEW, int(match[1]))
        for path, match in parse_names(folder, CUHK03_NAME, "CUHK03", CUHK03_EXPECTED)
    ]


def load_cuhk03(root: str | Path, test_boxes: str = "detected") -> ReidDataset:
    """Train on both box sets of train/; test on val/ with `test_boxes` boxes (view 0 queries, view 1 gallery)."""
    root = require_root(root, "CUHK03")
    if test_boxes not in BOX_SETS:
        raise ValueError(f"test_boxes must be one of {BOX_SETS}, got {test_boxes!r}")
    train, num_train_ids = relabel_train([sample for box_set in BOX_SETS for sample in _split(root, box_set, "train")])
    test = _split(root, test_boxes, "val")
    query = [sample for sample in test if sample.camid == 0]
    gallery = [sample for sample in test if sample.camid == 1]
    return ReidDataset(train, query, gallery, num_train_ids, "cuhk03")
