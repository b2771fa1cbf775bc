"""Re-id dataset parsers: each turns a dataset's folder layout into a `ReidDataset` of `Sample`s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reid.datasets.base import UNKNOWN_CLOTHES, ReidDataset, Sample
from reid.datasets.celeb import load_celeb
from reid.datasets.cuhk03 import load_cuhk03
from reid.datasets.folder import DEFAULT_TRAIN_FRACTION, FIRST_PER_CAMERA, FOLDER_PROTOCOLS, load_folder
from reid.datasets.ltcc import load_ltcc
from reid.datasets.market import load_market
from reid.datasets.prcc import load_prcc
from reid.errors import ReidError

DATASET_LOADERS = {
    "prcc": load_prcc, "ltcc": load_ltcc, "celeb": load_celeb, "market": load_market, "cuhk03": load_cuhk03,
}
DATASET_NAMES = (*DATASET_LOADERS, "folder")


def load_dataset(
    name: str,
    root: str | Path,
    folder_train_fraction: float = DEFAULT_TRAIN_FRACTION,
    folder_protocol: str = FIRST_PER_CAMERA,
    folder_query_camera: str | None = None,
) -> ReidDataset:
    """Parse dataset `name` at `root`; the `folder_*` options only apply to the "folder" layout."""
    if name == "folder":
        return load_folder(root, folder_train_fraction, folder_protocol, folder_query_camera)
    if name not in DATASET_LOADERS:
        raise ReidError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    return DATASET_LOADERS[name](root)


def load_training_sets(
    name: str,
    root: str | Path,
    extra_roots: Sequence[str | Path] = (),
    folder_train_fraction: float = DEFAULT_TRAIN_FRACTION,
) -> ReidDataset:
    """Dataset `name` at `root`, with the train identities of each folder-layout dataset in `extra_roots` appended.

    Each extra root is parsed like `--dataset folder` (its train/ folder, or the same train fraction). Its
    identities, cameras and outfits get fresh ids after those already taken, so that a person, camera or
    outfit of one root is never confused with another root's; query and gallery stay those of `root`.
    """
    dataset = load_dataset(name, root, folder_train_fraction)
    train, num_train_ids = list(dataset.train), dataset.num_train_ids
    everything = dataset.train + dataset.query + dataset.gallery
    camera_offset = 1 + max((s.camid for s in everything), default=-1)
    clothes_offset = 1 + max((s.clothes_id for s in everything), default=-1)
    for extra_root in extra_roots:
        extra = load_folder(extra_root, folder_train_fraction).train
        if not extra:
            raise ReidError(f"extra training root {extra_root} has no training identities")
        train += [
            Sample(s.path, s.pid + num_train_ids, s.camid + camera_offset, s.clothes_id + clothes_offset)
            for s in extra
        ]
        num_train_ids += len({s.pid for s in extra})
        camera_offset += 1 + max(s.camid for s in extra)
        clothes_offset += 1 + max(s.clothes_id for s in extra)
    return ReidDataset(train, dataset.query, dataset.gallery, num_train_ids, dataset.name)


__all__ = [
    "DATASET_NAMES", "DEFAULT_TRAIN_FRACTION", "FOLDER_PROTOCOLS", "ReidDataset", "Sample", "UNKNOWN_CLOTHES",
    "load_dataset", "load_folder", "load_training_sets",
]
