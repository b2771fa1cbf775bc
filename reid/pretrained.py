"""The re-id model cctrack ships: CSSC-MobileNetV2 trained on CUHK03 (model card in the README).

It is trained by `reid train --config configs/cssc_cuhk03_mobilenetv2.yaml` and carries its own link
calibration. The file is checked against its sha256 at load, so a damaged or replaced file fails loudly
instead of giving quietly wrong identities.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from reid.errors import ReidError

DEFAULT_WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "cssc_cuhk03_mobilenetv2.pt"
DEFAULT_WEIGHTS_SHA256 = "44b8fa02ac4f1775315acc8abb4773507acb853dbc8ff58243ae5a9bbc81da47"
# Weights carry CUHK03's terms: trained on images of real people released for non-commercial research.
DEFAULT_WEIGHTS_TERMS = "CUHK03 research-use terms (non-commercial)"


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_weights_path() -> Path:
    """The shipped weights file, after checking that it is the one that was released."""
    if not DEFAULT_WEIGHTS_PATH.is_file():
        raise ReidError(f"the shipped re-id weights are missing: {DEFAULT_WEIGHTS_PATH} (reinstall cctrack)")
    found = sha256_of_file(DEFAULT_WEIGHTS_PATH)
    if found != DEFAULT_WEIGHTS_SHA256:
        raise ReidError(
            f"the shipped re-id weights {DEFAULT_WEIGHTS_PATH} are damaged or replaced: sha256 {found[:12]}..., "
            f"expected {DEFAULT_WEIGHTS_SHA256[:12]}... (reinstall cctrack)"
        )
    return DEFAULT_WEIGHTS_PATH
