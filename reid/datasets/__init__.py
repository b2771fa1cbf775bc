"""Re-id dataset parsers: each turns a dataset's folder layout into a `ReidDataset` of `Sample`s."""

from __future__ import annotations

from pathlib import Path

from reid.datasets.base import UNKNOWN_CLOTHES, ReidDataset, Sample
from reid.datasets.celeb import load_celeb
from reid.datasets.folder import DEFAULT_TRAIN_FRACTION, load_folder
from reid.datasets.ltcc import load_ltcc
from reid.datasets.market import load_market
from reid.datasets.prcc import load_prcc
from reid.errors import ReidError

DATASET_LOADERS = {"prcc": load_prcc, "ltcc": load_ltcc, "celeb": load_celeb, "market": load_market}
DATASET_NAMES = (*DATASET_LOADERS, "folder")


def load_dataset(name: str, root: str | Path, folder_train_fraction: float = DEFAULT_TRAIN_FRACTION) -> ReidDataset:
    """Parse dataset `name` at `root`; `folder_train_fraction` only applies to the "folder" layout."""
    if name == "folder":
        return load_folder(root, folder_train_fraction)
    if name not in DATASET_LOADERS:
        raise ReidError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    return DATASET_LOADERS[name](root)


__all__ = ["DATASET_NAMES", "DEFAULT_TRAIN_FRACTION", "ReidDataset", "Sample", "UNKNOWN_CLOTHES", "load_dataset"]
