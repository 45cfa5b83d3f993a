"""What every dataset gives the training recipe: the task it poses, the network's data-dependent inputs, and
train / val / test loaders of (inputs, lengths [B], targets [B] float) in length-bucketed batches, sharded
across DDP ranks by the sampler (so `trainer.use_distributed_sampler` is off)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from rnnlab.checks import positive_int
from rnnlab.data.sampler import BucketBatchSampler

SPLITS = ("train", "val", "test")
TASKS = ("binary", "regression")


class SequenceDataModule(pl.LightningDataModule):
    task: str  # one of TASKS: which loss and metrics the LightningModule uses (rnnlab.models.recurrent_module)

    def __init__(self, *, batch_size: int, eval_batch_size: int, seed: int, bucket: bool = True,
                 chunk_batches: int = 50, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size = positive_int("batch_size", batch_size)
        self.eval_batch_size = positive_int("eval_batch_size", eval_batch_size)
        self.chunk_batches = positive_int("chunk_batches", chunk_batches)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers={num_workers!r} must be a non-negative integer")
        self.seed, self.bucket, self.num_workers = seed, bucket, num_workers
        self.datasets: dict[str, Dataset] = {}

    @property
    def network_inputs(self) -> dict[str, Any]:
        """The network's data-dependent arguments: `vocab_size` for token ids or `input_size` for features."""
        raise NotImplementedError

    def example_lengths(self, split: str) -> np.ndarray:
        """The length of every example of a set-up split, for bucketing."""
        raise NotImplementedError

    def example_labels(self, split: str) -> np.ndarray | None:
        """The class label of every example of a set-up split, spread evenly over the evaluation batches so that a
        limited evaluation is a fair sample; None where the task has no classes."""
        return None

    collate_fn = None  # torch's default collation unless a subclass pads its own batches

    def loader(self, split: str, train: bool) -> DataLoader:
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        lengths = self.example_lengths(split)
        if train and not self.bucket:  # a plain shuffle: one big chunk with nothing to sort by
            lengths = np.zeros(len(lengths), dtype=np.int64)
        sampler = BucketBatchSampler(lengths, self.batch_size if train else self.eval_batch_size, shuffle=train,
                                     chunk_batches=self.chunk_batches, seed=self.seed, num_replicas=replicas,
                                     rank=rank, labels=None if train else self.example_labels(split))
        return DataLoader(self.datasets[split], batch_sampler=sampler, collate_fn=self.collate_fn,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", train=False)
