"""Market-1501: `bounding_box_train/`, `query/`, `bounding_box_test/` (gallery) of `0002_c1s1_000451_03.jpg`.

Usual handling: pid -1 ("junk" detections) is dropped everywhere; pid 0 (distractors) is dropped from
training and kept in the gallery, where it never matches a query. Camera `cN` is 1-based in the names and
0-based here. Nobody changes clothes, so each identity is one outfit (clothes_id = pid).
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.datasets.base import ReidDataset, Sample, parse_names, relabel_train, require_root

MARKET_NAME = re.compile(r"(-?\d+)_c(\d+)s\d+_.*\.jpg", re.IGNORECASE)
MARKET_EXPECTED = "PID_cCAMsSEQ_FRAME_BOX.jpg"
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JUNK_PID = -1
DISTRACTOR_PID = 0


def _split(folder: Path, keep_distractors: bool) -> list[Sample]:
    samples = []
    for path, match in parse_names(folder, MARKET_NAME, "Market-1501", MARKET_EXPECTED):
        pid = int(match[1])
        if pid == JUNK_PID or (pid == DISTRACTOR_PID and not keep_distractors):
            continue
        samples.append(Sample(path, pid, int(match[2]) - 1, pid))
    return samples


def load_market(root: str | Path) -> ReidDataset:
    root = require_root(root, "Market-1501")
    train, num_train_ids = relabel_train(_split(root / SPLIT_FOLDERS["train"], keep_distractors=False))
    query = _split(root / SPLIT_FOLDERS["query"], keep_distractors=False)
    gallery = _split(root / SPLIT_FOLDERS["gallery"], keep_distractors=True)
    return ReidDataset(train, query, gallery, num_train_ids, "market")
