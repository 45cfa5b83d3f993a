"""Length-bucketed batches: reviews of similar length share a batch, so padding (wasted compute) is small.

Training: each epoch the reviews are shuffled, cut into chunks of `chunk_batches` batches, each chunk sorted by
length and cut into batches, and the batch order shuffled; the randomness of SGD survives, the padding mostly
does not. Under DDP every process builds the same batch list (same seed and epoch) and takes every
`num_replicas`-th batch; the list is padded by repeating batches so all ranks step in lockstep (DDP averages
gradients at every step). A repeated batch trains again but is no new review: `examples_per_step` weights it 0,
so that a count of the reviews trained (samples/s, rnnlab.run.timing) counts each once, as evaluation does.

Evaluation: every example exactly once, under any number of ranks. The examples are sorted by length, ties in a
seeded random order in which the labels (when given) alternate in proportion, then cut into batches, and the
batch order is shuffled with a fixed seed. So the first k batches, all that `limit_val_batches=k` or
`limit_test_batches=k` reads, are a fair sample: random lengths, both labels (sorting by length alone kept the
prepared split's order among equal lengths, one label after the other). The order is the same in every epoch
and every run, so limited evaluations compare on the same reviews. Ranks take every `num_replicas`-th batch
with no padding: their shares may differ by one batch, which evaluation allows (its metrics are summed over
ranks once, at the epoch's end; no collective runs per step). Each rank gets at least one batch (Lightning
skips the epoch-end synchronisation on a rank without one, and the others would wait for it forever): a split
with fewer batches than ranks is cut into smaller batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

EVALUATION_SEED = 0  # one evaluation order for every run: limited evaluations of different runs read the same reviews


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
        labels: np.ndarray | None = None,
    ) -> None:
        """`shuffle`: training's order (a new one per epoch) rather than evaluation's. `labels`: class labels to
        spread evenly over the evaluation batches (None for a regression task)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != len(self.lengths):
            raise ValueError(f"{len(self.labels)} labels for {len(self.lengths)} lengths")
        if not shuffle and len(self.lengths) < num_replicas:
            raise ValueError(f"{len(self.lengths)} examples cannot give each of {num_replicas} ranks one to evaluate")
        self.batch_size, self.shuffle, self.chunk_batches = batch_size, shuffle, chunk_batches
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        # Training, once an epoch's iteration has begun: per step, the reviews all ranks together train in it for
        # the first time this epoch (the batches `pad` repeats weigh 0). The same list on every rank.
        self.examples_per_step: list[int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch, so each epoch shuffles differently but reproducibly."""
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        """Every batch of this epoch, for all ranks (training's padded to a multiple of the ranks)."""
        if not self.shuffle:
            return self.evaluation_batches()
        return self.pad(self.training_batches())

    def training_batches(self) -> list[np.ndarray]:
        """This epoch's training batches, every example once, before `pad`."""
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.chunk_batches
        batches = []
        for start in range(0, len(order), chunk):
            members = order[start : start + chunk]
            members = members[np.argsort(self.lengths[members], kind="stable")]
            batches += [members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size)]
        return [batches[k] for k in rng.permutation(len(batches))]

    def evaluation_batches(self) -> list[np.ndarray]:
        """Every example once, in batches of similar length, in a fixed shuffled order (module docstring)."""
        rng = np.random.default_rng(EVALUATION_SEED)
        order = self.labels_interleaved(rng)
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches = np.split(order, self.evaluation_cuts())
        return [batches[k] for k in rng.permutation(len(batches))]

    def evaluation_cuts(self) -> list[int]:
        """Where the sorted examples are cut into evaluation batches: every `batch_size`, or, when that would
        leave a rank without a batch, into `num_replicas` nearly equal batches."""
        n_examples = len(self.lengths)
        if -(-n_examples // self.batch_size) >= self.num_replicas:
            return list(range(self.batch_size, n_examples, self.batch_size))
        return [k * n_examples // self.num_replicas for k in range(1, self.num_replicas)]

    def labels_interleaved(self, rng: np.random.Generator) -> np.ndarray:
        """A random order of the examples in which each label's examples are spread evenly: the k-th of a label's
        n sits near position k/n, so any stretch of the order holds the labels in their overall proportions."""
        order = rng.permutation(len(self.lengths))
        if self.labels is None:
            return order
        position = np.empty(len(order))
        for label in np.unique(self.labels):
            members = order[self.labels[order] == label]
            position[members] = (np.arange(len(members)) + rng.random()) / len(members)
        return np.argsort(position, kind="stable")

    def pad(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Repeat the first batches so every rank gets the same number (as DistributedSampler repeats samples):
        DDP training steps in lockstep."""
        # cyclically: with fewer batches than ranks, some batches are repeated more than once
        return batches + [batches[k % len(batches)] for k in range(-len(batches) % self.num_replicas)]

    def counted_per_step(self, batches: list[np.ndarray]) -> list[int]:
        """Per step over the padded `batches` of all ranks, the examples of the step's batches that `pad` did not
        repeat: summed over the steps taken, each example trained is counted once, whatever the number of ranks."""
        repeated = -len(batches) % self.num_replicas
        sizes = [len(batch) for batch in batches] + [0] * repeated
        return [sum(sizes[step : step + self.num_replicas]) for step in range(0, len(sizes), self.num_replicas)]

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            batches = self.training_batches()
            self.examples_per_step = self.counted_per_step(batches)
            batches = self.pad(batches)
        else:
            batches = self.evaluation_batches()
        for batch in batches[self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        n_examples = len(self.lengths)
        if not self.shuffle:
            return len(range(self.rank, len(self.evaluation_cuts()) + 1, self.num_replicas))
        chunk = self.batch_size * self.chunk_batches  # chunked cutting can leave one short batch per chunk
        n = sum(-(-min(chunk, n_examples - s) // self.batch_size) for s in range(0, n_examples, chunk))
        n += -n % self.num_replicas
        return len(range(self.rank, n, self.num_replicas))
