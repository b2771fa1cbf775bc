"""Atomic file writing, hashing and cache reading: an output either exists complete or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cctrack.errors import CctrackError

# A disk that cannot take this much more is too full for the next video frame or crop.
SPACE_PROBE_BYTES = 64 * 1024


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that pick a format by suffix still
    work); it replaces `path` only if the block finishes without an error. A path that cannot be written
    (a folder in the way, no permission, a full disk) is a CctrackError naming it."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except FileExistsError:  # from mkdir: a file where the folder should be
        raise CctrackError(f"cannot write {path}: {path.parent} is a file, not a folder") from None
    except OSError as error:
        raise CctrackError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: Path, document: Any) -> None:
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_failure(path: Path, symptom: str) -> CctrackError:
    """The error for a writer that fails without saying why (OpenCV's video writer): when a probe write
    beside `path` fails too, its cause (a full disk) is the cause; otherwise `symptom` is."""
    probe = Path(path).parent / f".space-test-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(bytes(SPACE_PROBE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        return CctrackError(f"cannot write {path}: {error.strerror or error}")
    finally:
        probe.unlink(missing_ok=True)
    return CctrackError(f"cannot write {path}: {symptom}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_writable_folder(folder: Path) -> Path:
    """Create `folder` if needed and prove we can write in it, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CctrackError(f"output folder {folder} is not writable: {error.strerror or error}") from None
    return folder


def read_cache_npz(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The arrays `keys` of a cache file (.npz); a missing or unreadable file is a CctrackError saying so."""
    if not Path(path).is_file():
        raise CctrackError(f"cache file missing: {path} (run `cctrack run` first)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise CctrackError(f"corrupt cache: cannot read {path} ({type(error).__name__}); re-run `cctrack run`") from None
