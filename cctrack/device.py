"""Where the networks and matrix products run."""

from __future__ import annotations

from cctrack.errors import CctrackError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda:0' when a GPU is present, else 'cpu'; anything else is passed through."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise CctrackError(f"device {device!r} is not a torch device name (auto, cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CctrackError(f"device {device!r} asked for, but no CUDA GPU is available")
    return device
