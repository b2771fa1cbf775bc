"""Which torch device and dtype to run on: one rule for training, evaluation and the app."""

from __future__ import annotations

import torch

from reid.errors import ReidError


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda if available else cpu; anything else must name a usable torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ReidError(f"unknown device {device!r}: {error}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ReidError(f"device {device!r} requested but CUDA is not available")
    return resolved


def resolve_dtype(half: bool | str | None, device: torch.device) -> torch.dtype:
    """None: fp16 on CUDA, fp32 elsewhere. True/"fp16": fp16 (CUDA only). "bf16": bfloat16. False/"fp32": fp32."""
    if half is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if half is False or half == "fp32":
        return torch.float32
    if half == "bf16":
        return torch.bfloat16
    if half is True or half == "fp16":
        if device.type != "cuda":
            raise ReidError(f"fp16 inference needs a CUDA device, not {device}; use half='bf16' or half=False")
        return torch.float16
    raise ReidError(f"half must be None, True, False, 'fp16', 'bf16' or 'fp32', got {half!r}")
