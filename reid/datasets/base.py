"""What every dataset parser returns, and the small helpers they share.

Parsers read identities, cameras and outfits from file NAMES (and, where the layout puts them there, from
the name of the immediate identity / camera folder), never by pattern-matching the full path: a user's
`/data/c3_backup/...` must not change a camera id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reid.errors import ReidError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
UNKNOWN_CLOTHES = -1  # clothes_id of datasets without outfit labels (Celeb-reID)


@dataclass(frozen=True)
class Sample:
    path: Path  # image file
    pid: int  # identity; train samples are relabelled 0..num_train_ids-1, query/gallery keep the dataset's ids
    camid: int  # camera, 0-based
    clothes_id: int  # outfit id, unique over (pid, outfit) across all splits; UNKNOWN_CLOTHES when not labelled


@dataclass(frozen=True)
class ReidDataset:
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    num_train_ids: int
    name: str  # "prcc", "ltcc", "celeb", "market" or "folder"

    def summary(self) -> str:
        """One line: images and identities per split."""
        parts = [f"{self.name}: train {len(self.train)} images / {self.num_train_ids} ids"]
        for split_name, samples in (("query", self.query), ("gallery", self.gallery)):
            parts.append(f"{split_name} {len(samples)} images / {len({s.pid for s in samples})} ids")
        return ", ".join(parts)


def require_root(root: str | Path, dataset_name: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ReidError(f"{dataset_name} data root not found: {root}")
    return root


def require_folder(folder: Path, dataset_name: str, expected: str) -> Path:
    """`folder` must exist; `expected` describes what belongs in it, for the error message."""
    if not folder.is_dir():
        raise ReidError(f"{dataset_name} layout: missing folder {folder} (expected {expected})")
    return folder


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (other files such as Thumbs.db are ignored)."""
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def subfolders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir())


def match_name(pattern: re.Pattern[str], path: Path, dataset_name: str, expected: str) -> re.Match[str]:
    """Match the file NAME of `path`; a non-matching image file is a layout error, not something to skip."""
    match = pattern.fullmatch(path.name)
    if match is None:
        raise ReidError(f"{dataset_name} layout: file name {path.name!r} in {path.parent} does not match {expected}")
    return match


def parse_names(folder: Path, pattern: re.Pattern[str], dataset_name: str, expected: str) -> list[tuple[Path, re.Match[str]]]:
    """Every image directly in `folder` with its file-name match; the folder must exist and hold at least one."""
    require_folder(folder, dataset_name, f"{folder.name}/{expected}")
    parsed = [(path, match_name(pattern, path, dataset_name, expected)) for path in image_files(folder)]
    if not parsed:
        raise ReidError(f"{dataset_name} layout: no images matching {expected} in {folder}")
    return parsed


def relabel_train(samples: list[Sample]) -> tuple[list[Sample], int]:
    """Map the train pids to 0..n-1 (sorted by original pid) for the classifiers; returns (samples, n)."""
    label_of = {pid: label for label, pid in enumerate(sorted({sample.pid for sample in samples}))}
    relabelled = [Sample(s.path, label_of[s.pid], s.camid, s.clothes_id) for s in samples]
    return relabelled, len(label_of)


def token_ids(tokens: list[str]) -> dict[str, int]:
    """Ids for name tokens: the number itself when every token is a decimal number, else 0.. in sorted order."""
    unique = sorted(set(tokens))
    if all(token.isdigit() for token in unique) and len({int(token) for token in unique}) == len(unique):
        return {token: int(token) for token in unique}
    return {token: index for index, token in enumerate(unique)}


def outfit_ids(outfits: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Dense clothes ids 0.. for (pid, outfit-in-that-person) pairs, in sorted order."""
    return {outfit: index for index, outfit in enumerate(sorted(set(outfits)))}
