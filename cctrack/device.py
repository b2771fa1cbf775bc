"""Where the networks and matrix products run: reid's rule (reid.device), so that cctrack and reid read
a device name the same way. Each command resolves the top-level `device` setting once (cctrack.pipeline,
cctrack.adapt) and hands the result to every stage."""

from __future__ import annotations

import torch

from cctrack.errors import CctrackError
from reid.device import resolve_device as reid_resolve_device
from reid.errors import ReidError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when a GPU is present, else cpu; anything else must name a usable torch device."""
    try:
        return reid_resolve_device(device)
    except ReidError as error:
        raise CctrackError(str(error)) from None
