"""The adding problem (Hochreiter & Schmidhuber, 1997, experiment 4): a synthetic long-range memory task.

Each example is `seq_len` steps of two features: a value drawn uniformly from [0, 1), and a marker that is 1
at exactly two steps and 0 elsewhere. The target is the sum of the two marked values. We use the variant of
Le, Jaitly & Hinton (2015) and Arjovsky et al. (2016), the one most later work reports: the first marker is
drawn uniformly from the first half (t < seq_len // 2), the second from the second half. (H&S's original
draws values from [-1, 1], puts both markers before T/2, the first among the first ten steps, and scales
the target to 0.5 + (X1 + X2) / 4.) Here the first marked value must be carried over at least half the sequence.

The target, a sum of two independent U(0, 1), has mean 1 and variance 1/6: always predicting 1 scores an MSE
of 1/6 ≈ 0.167 (the trivial baseline) and gets about 8% of examples within H&S's tolerance of 0.04.

The data are generated in memory from `seed`, the same on every call and every DDP process; train, val and
test come from independent streams, so changing one split's size leaves the other two unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnlab.checks import positive_int
from rnnlab.data.base import SPLITS, SequenceDataModule


def adding_examples(count: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features [count, seq_len, 2] float32: value, marker; targets [count] float32: sum of the marked values)."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (one marker in each half), got {seq_len}")
    values = rng.random((count, seq_len), dtype=np.float32)
    half = seq_len // 2
    rows = np.arange(count)
    first, second = rng.integers(0, half, count), rng.integers(half, seq_len, count)
    markers = np.zeros((count, seq_len), dtype=np.float32)
    markers[rows, first] = markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets


class AddingDataModule(SequenceDataModule):
    """Regression: batches shaped like IMDB's, (features [B, T, 2] float, lengths [B] all T, targets [B] float)."""

    task = "regression"

    def __init__(
        self,
        seq_len: int = 100,
        train_size: int = 10000,
        val_size: int = 1000,
        test_size: int = 1000,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        if positive_int("seq_len", seq_len) < 2:
            raise ValueError(f"seq_len={seq_len} must be at least 2: one marker in each half")
        self.seq_len = seq_len
        self.sizes = {name: positive_int(f"{name}_size", size)
                      for name, size in zip(SPLITS, (train_size, val_size, test_size))}

    @property
    def network_inputs(self) -> dict:
        return {"input_size": 2}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for name, seed in zip(SPLITS, np.random.SeedSequence(self.seed).spawn(len(SPLITS))):
            features, targets = adding_examples(self.sizes[name], self.seq_len, np.random.default_rng(seed))
            lengths = torch.full((len(targets),), self.seq_len, dtype=torch.long)
            self.datasets[name] = TensorDataset(torch.from_numpy(features), lengths, torch.from_numpy(targets))

    def example_lengths(self, split: str) -> np.ndarray:
        # All equal: the sampler's bucketing reduces to a seeded shuffle (sequential order for evaluation).
        return np.full(self.sizes[split], self.seq_len)
