"""Celeb-reID: `train/`, `query/`, `gallery/` of `PID_x_y.jpg`.

The images are web photos with no camera labels. As in the usual Celeb-reID protocol, every image counts
as its own camera: camid is the image's running index over train, query and gallery, so the "same pid AND
same camera" rule never removes a gallery item and every same-pid gallery image is a valid match. No
outfit labels either: clothes_id is UNKNOWN_CLOTHES, and only the standard protocol applies.
"""

from __future__ import annotations

import re
from itertools import count
from pathlib import Path

from reid.datasets.base import UNKNOWN_CLOTHES, ReidDataset, Sample, parse_names, relabel_train, require_root

CELEB_NAME = re.compile(r"(\d+)_\d+_\d+\.jpg", re.IGNORECASE)
CELEB_EXPECTED = "PID_x_y.jpg"
SPLITS = ("train", "query", "gallery")


def load_celeb(root: str | Path) -> ReidDataset:
    root = require_root(root, "Celeb-reID")
    image_camera = count()
    samples = {
        split: [
            Sample(path, int(match[1]), next(image_camera), UNKNOWN_CLOTHES)
            for path, match in parse_names(root / split, CELEB_NAME, "Celeb-reID", CELEB_EXPECTED)
        ]
        for split in SPLITS
    }
    train, num_train_ids = relabel_train(samples["train"])
    return ReidDataset(train, samples["query"], samples["gallery"], num_train_ids, "celeb")
