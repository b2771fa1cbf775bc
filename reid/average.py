"""Weight averaging ("model soup") of CSSC weights files fine-tuned from the same ImageNet start.

Runs that start from the same pretrained weights and differ only in their recipe (e.g. one trained on
surveillance-degraded crops, one on clean crops) stay in one basin of the loss, so the average of their
weights is a model in its own right, often better than either on both kinds of images (Wortsman et al.,
"Model soups", ICML 2022; "Robust fine-tuning of zero-shot models", CVPR 2022). Training cost is the sum
of the runs'; embedding cost is one model's.

Averaging weights does not average what BatchNorm saw: the running statistics of the ingredients describe
their own activations, not the soup's. So they are measured again on training images (as SWA does), and
the BNNeck's statistics, which put the app's feature on its scale, with them. The soup's link calibration
is fitted anew by the caller (reid.calibration): an ingredient's calibration is not the soup's.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid.checkpoint import WEIGHTS_FORMAT, bnneck_state, load_checkpoint, model_from_payload
from reid.datasets.base import Sample
from reid.datasets.images import read_bgr_uint8
from reid.errors import ReidError
from reid.model import is_training_head_key
from reid.pretrained import sha256_of_file

ARCH_KEYS = ("backbone", "feature_dim", "input_size")
BATCHNORM_BATCH = 64  # the training batch (P x K = 16 x 4): batch statistics as training saw them
BATCHNORM_SEED = 0


def _inference_weights(payload: dict) -> dict[str, torch.Tensor]:
    state = payload["state_dict"] if payload["format"] == WEIGHTS_FORMAT else payload["model"]
    return {key: value for key, value in state.items() if not is_training_head_key(key)}


def average_payloads(payloads: Sequence[dict], names: Sequence[str], mix: Sequence[float] | None = None) -> dict:
    """An inference weights payload whose weights and BNNeck are the `mix`-weighted average of `payloads`
    (weights files or training checkpoints of one architecture); `mix` defaults to equal shares. BatchNorm
    statistics are averaged too: re-measure them (remeasure_batchnorm) before using the result."""
    if len(payloads) < 2:
        raise ReidError(f"averaging needs at least two weights files, got {len(payloads)}")
    shares = np.full(len(payloads), 1.0 / len(payloads)) if mix is None else np.asarray(mix, dtype=np.float64)
    if len(shares) != len(payloads) or not np.all(np.isfinite(shares)) or np.any(shares <= 0):
        raise ReidError(f"--mix needs one positive share per weights file ({len(payloads)}), got {list(mix or [])}")
    shares = shares / shares.sum()
    first_arch = {key: payloads[0]["arch"][key] for key in ARCH_KEYS}
    states, bnnecks = [], []
    for payload, name in zip(payloads, names):
        arch = {key: payload["arch"][key] for key in ARCH_KEYS}
        if arch != first_arch:
            raise ReidError(f"{name} is a {arch}, not a {first_arch} like {names[0]}: only one architecture averages")
        bnneck = bnneck_state(payload, name)
        if bnneck is None:
            raise ReidError(f"{name} has no BNNeck statistics (an untrained model?); average trained CSSC weights")
        states.append(_inference_weights(payload))
        bnnecks.append(bnneck)
    keys = states[0].keys()
    for state, name in zip(states[1:], names[1:]):
        if state.keys() != keys or any(state[key].shape != states[0][key].shape for key in keys):
            raise ReidError(f"{name} does not have the layers of {names[0]}: only one architecture averages")

    def mean(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if not tensors[0].is_floating_point():  # BatchNorm's num_batches_tracked: a count, not a weight
            return tensors[0].clone()
        total = sum(share * tensor.double() for share, tensor in zip(shares, tensors))
        return total.to(tensors[0].dtype)

    return {
        "format": WEIGHTS_FORMAT,
        "arch": {**payloads[0]["arch"], "num_ids": 0},
        "state_dict": {key: mean([state[key] for state in states]) for key in keys},
        "bnneck": {**{key: mean([bnneck[key] for bnneck in bnnecks]) for key in ("weight", "bias", "running_mean", "running_var")},
                   "eps": float(bnnecks[0]["eps"])},
        "extra": {
            "input_size": list(payloads[0]["arch"]["input_size"]),
            "averaged_from": [{"file": name, "share": float(share)} for name, share in zip(names, shares)],
        },
    }


def remeasure_batchnorm(payload: dict, samples: Sequence[Sample], device: str | torch.device = "cpu") -> dict:
    """`payload` with every BatchNorm's running statistics measured on `samples` (shuffled batches of
    BATCHNORM_BATCH or all of them if fewer, fixed seed; a last partial batch is left out) and the BNNeck's running mean and variance set to those of its features."""
    from reid.embedder import Embedder

    batch_size = min(BATCHNORM_BATCH, len(samples))
    if batch_size < 2:
        raise ReidError(f"measuring BatchNorm statistics needs at least 2 training images, got {len(samples)}")
    model, arch = model_from_payload(payload, "averaged weights")
    embedder = Embedder(model, dim=arch["feature_dim"], input_size=tuple(arch["input_size"]),
                        description="averaged weights", weights_path=Path("averaged"), device=device, half=False)
    network = embedder.network
    batchnorms = [module for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    order = list(range(len(samples)))
    random.Random(BATCHNORM_SEED).shuffle(order)
    batches = [order[start : start + batch_size] for start in range(0, len(order) - batch_size + 1, batch_size)]
    for module in batchnorms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over all batches
        module.train()
    with torch.no_grad():
        for batch in batches:
            network(embedder.prepare_batch([read_bgr_uint8(samples[row].path) for row in batch]))
    network.eval()
    features = []
    with torch.no_grad():
        for batch in batches:
            features.append(network(embedder.prepare_batch([read_bgr_uint8(samples[row].path) for row in batch])).double().cpu())
    stacked = torch.cat(features)
    state = {key: value.detach().cpu().clone() for key, value in network.state_dict().items()}
    bnneck = dict(payload["bnneck"])
    bnneck["running_mean"] = stacked.mean(dim=0).to(bnneck["running_mean"].dtype)
    bnneck["running_var"] = stacked.var(dim=0).to(bnneck["running_var"].dtype)
    return {**payload, "state_dict": state, "bnneck": bnneck,
            "extra": {**payload["extra"], "batchnorm_images": len(batches) * batch_size}}


def average_weights_files(paths: Sequence[str | os.PathLike], batchnorm_samples: Sequence[Sample],
                          mix: Sequence[float] | None = None, device: str | torch.device = "cpu") -> dict:
    """The averaged, BatchNorm-remeasured inference payload of the weights files at `paths`."""
    names = [str(path) for path in paths]
    payload = average_payloads([load_checkpoint(path) for path in paths], names, mix)
    for entry, path in zip(payload["extra"]["averaged_from"], paths):
        entry["sha256"] = sha256_of_file(Path(path))
    return remeasure_batchnorm(payload, batchnorm_samples, device)
