"""Length-bucketed batches: reviews of similar length share a batch, so padding (wasted compute) is small.

Each epoch the reviews are shuffled, cut into chunks of `chunk_batches` batches, each chunk sorted by
length and cut into batches, and the batch order shuffled; the randomness of SGD survives, the padding
mostly does not. Under DDP every process builds the same batch list (same seed and epoch) and takes every
`num_replicas`-th batch; the list is padded by repeating batches so all ranks get the same number.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        chunk_batches: int = 50,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.chunk_batches = batch_size, shuffle, chunk_batches
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch, so each epoch shuffles differently but reproducibly."""
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        """Every batch of this epoch, for all ranks."""
        if not self.shuffle:  # evaluation: sorted by length, fixed
            order = np.argsort(self.lengths, kind="stable")
            return self.pad([order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)])
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.chunk_batches
        batches = []
        for start in range(0, len(order), chunk):
            members = order[start : start + chunk]
            members = members[np.argsort(self.lengths[members], kind="stable")]
            batches += [members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size)]
        return self.pad([batches[k] for k in rng.permutation(len(batches))])

    def pad(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Repeat the first batches so every rank gets the same number (as DistributedSampler repeats samples):
        DDP training steps in lockstep, and Lightning refuses a rank with no evaluation batch."""
        return batches + batches[: -len(batches) % self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches()[self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        if self.shuffle:  # chunked cutting can leave one short batch per chunk
            chunk = self.batch_size * self.chunk_batches
            n = sum(-(-min(chunk, len(self.lengths) - s) // self.batch_size) for s in range(0, len(self.lengths), chunk))
        n += -n % self.num_replicas
        return len(range(self.rank, n, self.num_replicas))
