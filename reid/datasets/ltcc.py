"""LTCC (Long-Term Cloth-Changing): `train/`, `query/`, `test/` (the gallery) of `PID_OUTFIT_cCAM_*.png`.

Camera `cCAM` is 1-based in the names and 0-based here; outfits are numbered per person, so clothes ids
are assigned to (pid, outfit) pairs over all three splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.datasets.base import ReidDataset, Sample, outfit_ids, parse_names, relabel_train, require_root

LTCC_NAME = re.compile(r"(\d+)_(\d+)_c(\d+)_.*\.png", re.IGNORECASE)
LTCC_EXPECTED = "PID_OUTFIT_cCAM_*.png"
SPLIT_FOLDERS = {"train": "train", "query": "query", "gallery": "test"}


def load_ltcc(root: str | Path) -> ReidDataset:
    root = require_root(root, "LTCC")
    records = {
        split: [
            (path, int(match[1]), match[2], int(match[3]) - 1)
            for path, match in parse_names(root / folder, LTCC_NAME, "LTCC", LTCC_EXPECTED)
        ]
        for split, folder in SPLIT_FOLDERS.items()
    }
    outfit_of = outfit_ids([(pid, outfit) for split in records.values() for _, pid, outfit, _ in split])
    samples = {
        split: [Sample(path, pid, camid, outfit_of[(pid, outfit)]) for path, pid, outfit, camid in split_records]
        for split, split_records in records.items()
    }
    train, num_train_ids = relabel_train(samples["train"])
    return ReidDataset(train, samples["query"], samples["gallery"], num_train_ids, "ltcc")
