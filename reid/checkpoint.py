"""Saving and loading CSSC weights and training checkpoints.

Two formats, both plain dicts that load with `torch.load(path, weights_only=True)` (tensors, dicts, lists,
tuples, Counter, str, int, float, bool, None only; numpy values are converted to tensors / numbers):

- "cssc-weights-v1" (inference): {"format", "arch", "state_dict" (no training heads), "extra", and when the
  model was trained: "bnneck" (the BNNeck's weight, bias, running_mean, running_var, eps), which gives the
  app a feature on a usable scale (see BNNeckFeature)}
- "cssc-checkpoint-v1" (resume training): {"format", "arch", "model", "optimizer", "scheduler", "epoch",
  "config", "rng"}

arch = {"backbone": str, "num_ids": int, "feature_dim": int, "input_size": [height, width] pixels}.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reid.errors import ReidError
from reid.files import atomic_path
from reid.model import CSSC, build_model, inference_state_dict, is_training_head_key

WEIGHTS_FORMAT = "cssc-weights-v1"
CHECKPOINT_FORMAT = "cssc-checkpoint-v1"
DEFAULT_INPUT_SIZE = (384, 192)  # (height, width) pixels, the paper's input


def architecture(model: CSSC, input_size: Sequence[int] = DEFAULT_INPUT_SIZE) -> dict[str, Any]:
    """The `arch` entry describing `model`: enough to rebuild it with build_model."""
    height, width = (int(side) for side in input_size)
    return {
        "backbone": model.backbone_name,
        "num_ids": model.num_ids,
        "feature_dim": model.feature_dim,
        "input_size": [height, width],
    }


def save_weights(model: CSSC, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write an inference weights file; extra["input_size"] ([h, w]) sets the input size, the rest of
    `extra` is kept under "extra". Training heads are left out (the file is for embedding)."""
    extra = dict(extra or {})
    input_size = extra.pop("input_size", DEFAULT_INPUT_SIZE)
    payload = {
        "format": WEIGHTS_FORMAT,
        "arch": architecture(model, input_size),
        "state_dict": inference_state_dict(model),
        "extra": extra,
    }
    if hasattr(model, "bnneck"):
        payload["bnneck"] = {**{key: value.detach().cpu() for key, value in model.bnneck.state_dict().items()
                                if key != "num_batches_tracked"}, "eps": float(model.bnneck.eps)}
    return _save_atomically(payload, Path(path))


def set_weights_extra(path: str | os.PathLike, **values: Any) -> Path:
    """Add or replace entries of a weights file's "extra" (rewritten atomically)."""
    payload = load_checkpoint(path)
    if payload["format"] != WEIGHTS_FORMAT:
        raise ReidError(f"{path} is a training checkpoint; extra values go into an inference weights file")
    payload["extra"] = {**(payload.get("extra") or {}), **values}
    return _save_atomically(payload, Path(path))


class BNNeckFeature(nn.Module):
    """f_cssc through the trained BNNeck (running statistics): every channel standardised, so that the
    component all crops share (raw features of random people have cosine ~0.99) no longer dominates."""

    def __init__(self, model: nn.Module, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                 running_var: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.model = model
        scale = weight / torch.sqrt(running_var + eps)
        self.register_buffer("scale", scale.float())
        self.register_buffer("shift", (bias - running_mean * scale).float())
        self.feature_dim = model.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) * self.scale + self.shift


def bnneck_state(payload: dict, path: str | os.PathLike) -> dict | None:
    """The BNNeck statistics of a loaded weights file or training checkpoint, or None if it has none."""
    if payload["format"] == CHECKPOINT_FORMAT:
        prefix = "bnneck."
        state = {key[len(prefix):]: value for key, value in payload["model"].items()
                 if key.startswith(prefix) and key != "bnneck.num_batches_tracked"}
        return {**state, "eps": 1e-5} if state else None
    state = payload.get("bnneck")
    if state is None:
        return None
    keys = ("weight", "bias", "running_mean", "running_var")
    if not isinstance(state, dict) or any(not isinstance(state.get(key), torch.Tensor) for key in keys):
        raise ReidError(f"checkpoint {path} has a malformed 'bnneck' entry")
    return state


def save_checkpoint(
    path: str | os.PathLike,
    model: CSSC,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    config: dict,
    input_size: Sequence[int] = DEFAULT_INPUT_SIZE,
) -> Path:
    """Write everything needed to resume training after `epoch` (incl. torch/numpy/python RNG states)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": architecture(model, input_size),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "config": config,
        "rng": capture_rng_state(),
    }
    return _save_atomically(payload, Path(path))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a weights file or training checkpoint; returns its dict."""
    path = Path(path)
    if not path.is_file():
        raise ReidError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            # A plain pickle.dump file makes torch warn about its pickle protocol before failing below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # zip, pickle and EOF errors all mean the same thing to the user
        # Only the exception's type: torch's own text runs over many lines and suggests weights_only=False,
        # which would run whatever code a foreign pickle holds.
        raise ReidError(
            f"checkpoint {path} is corrupt or truncated, or not a cctrack/reid weights file ({type(error).__name__})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") not in (WEIGHTS_FORMAT, CHECKPOINT_FORMAT):
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ReidError(
            f"checkpoint {path} has unknown format {found!r}; expected {WEIGHTS_FORMAT} or {CHECKPOINT_FORMAT}"
        )
    arch = payload.get("arch")
    required = {"backbone": str, "num_ids": int, "feature_dim": int, "input_size": list}
    if not isinstance(arch, dict) or any(not isinstance(arch.get(key), kind) for key, kind in required.items()):
        raise ReidError(f"checkpoint {path} has a missing or malformed 'arch' entry: {arch!r}")
    weights_key = "state_dict" if payload["format"] == WEIGHTS_FORMAT else "model"
    if not isinstance(payload.get(weights_key), dict):
        raise ReidError(f"checkpoint {path} has no '{weights_key}' state_dict")
    return payload


def model_from_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", for_training: bool = False
) -> tuple[CSSC, dict]:
    """Rebuild the CSSC model saved in `path` (weights loaded strictly); returns (model, arch).

    for_training=False gives the inference-only model (training heads dropped) in eval mode; True keeps the
    identity heads (needs a training checkpoint, or a weights file of a num_ids=0 model) in train mode.
    """
    return model_from_payload(load_checkpoint(path, map_location), path, map_location, for_training)


def model_from_payload(
    payload: dict, path: str | os.PathLike, map_location: str | torch.device = "cpu", for_training: bool = False
) -> tuple[CSSC, dict]:
    """model_from_checkpoint for a payload already read by load_checkpoint (`path` names it in errors)."""
    arch = payload["arch"]
    state_dict = payload["state_dict"] if payload["format"] == WEIGHTS_FORMAT else payload["model"]
    if for_training and payload["format"] == WEIGHTS_FORMAT and arch["num_ids"] > 0:
        raise ReidError(
            f"{path} is an inference weights file without identity heads; resume from a training checkpoint"
        )
    if not for_training:
        state_dict = {key: value for key, value in state_dict.items() if not is_training_head_key(key)}
    num_ids = arch["num_ids"] if for_training else 0
    model = build_model(arch["backbone"], num_ids=num_ids, pretrained="none")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        summary = " ".join(str(error).split())
        raise ReidError(f"checkpoint {path} does not match a CSSC-{arch['backbone']} model: {summary[:400]}") from error
    model.to(map_location)
    model.train(for_training)
    return model, arch


def capture_rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as weights_only-loadable values."""
    numpy_state = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": numpy_state[0],
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_version, "state": list(python_state), "gauss_next": python_gauss},
    }


def restore_rng_state(rng: dict[str, Any]) -> None:
    """Inverse of capture_rng_state (CUDA states only restored when CUDA is available)."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    numpy_rng = rng["numpy"]
    np.random.set_state(
        (
            numpy_rng["bit_generator"],
            numpy_rng["keys"].numpy().astype(np.uint32),
            numpy_rng["position"],
            numpy_rng["has_gauss"],
            numpy_rng["cached_gaussian"],
        )
    )
    python_rng = rng["python"]
    random.setstate((python_rng["version"], tuple(python_rng["state"]), python_rng["gauss_next"]))


def _plain(value: Any, where: str) -> Any:
    """Convert to the types torch.load(weights_only=True) accepts, or fail naming the offending entry."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        converted = {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
        # Counter is weights_only-safe and MultiStepLR needs its milestones to stay one.
        return Counter(converted) if isinstance(value, Counter) else converted
    if isinstance(value, tuple):
        return tuple(_plain(item, f"{where}[{index}]") for index, item in enumerate(value))
    if isinstance(value, (list, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(items)]
    raise ReidError(f"cannot store {where} in a checkpoint: {type(value).__name__} is not a plain value")


def save_payload(payload: dict, path: str | os.PathLike) -> Path:
    """Write a weights file or checkpoint dict (e.g. one read by load_checkpoint, then changed) atomically."""
    return _save_atomically(payload, Path(path))


def _save_atomically(payload: dict, path: Path) -> Path:
    with atomic_path(path) as temporary:
        torch.save(_plain(payload, "checkpoint"), temporary)
    return path
