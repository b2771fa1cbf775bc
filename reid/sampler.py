"""P x K identity sampler (spec "Training recipe"): every batch holds P identities with K images each.

Per epoch: shuffle each identity's images and cut them into chunks of K, dropping the incomplete last
chunk (an identity with fewer than K images is sampled with replacement up to K, giving one chunk); then,
while at least P identities still have chunks, draw P of them at random and take one chunk from each.
The draw depends only on (seed, epoch), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from reid.errors import ReidError


class IdentityBatchSampler(Sampler[list[int]]):
    """Batch sampler for DataLoader(batch_sampler=...): yields lists of P * K dataset indices."""

    def __init__(self, pids: Sequence[int], ids_per_batch: int, images_per_id: int, seed: int = 0) -> None:
        if ids_per_batch < 1 or images_per_id < 1:
            raise ReidError(f"ids_per_batch and images_per_id must be >= 1, got {ids_per_batch} x {images_per_id}")
        pid_array = np.asarray(pids)
        self.indices_of_pid = [np.flatnonzero(pid_array == pid) for pid in np.unique(pid_array)]
        if len(self.indices_of_pid) < ids_per_batch:
            raise ReidError(
                f"the training set has {len(self.indices_of_pid)} identities, fewer than ids_per_batch={ids_per_batch}"
            )
        self.ids_per_batch = ids_per_batch
        self.images_per_id = images_per_id
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches."""
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks_of_identity: list[list[np.ndarray]] = []
        for indices in self.indices_of_pid:
            if len(indices) < self.images_per_id:
                indices = rng.choice(indices, size=self.images_per_id, replace=True)
            shuffled = rng.permutation(indices)
            num_chunks = len(shuffled) // self.images_per_id
            chunks_of_identity.append(
                [shuffled[i * self.images_per_id : (i + 1) * self.images_per_id] for i in range(num_chunks)]
            )
        available = [identity for identity, chunks in enumerate(chunks_of_identity) if chunks]
        batches = []
        while len(available) >= self.ids_per_batch:
            chosen = rng.choice(len(available), size=self.ids_per_batch, replace=False)
            picked = [available[position] for position in chosen]
            batches.append([int(index) for identity in picked for index in chunks_of_identity[identity].pop()])
            available = [identity for identity in available if chunks_of_identity[identity]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
