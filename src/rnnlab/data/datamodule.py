"""The prepared IMDB splits as Lightning dataloaders: truncated to `max_len`, padded per batch, bucketed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.sampler import BucketBatchSampler
from rnnlab.data.text import PAD_ID, UNK_ID


class ReviewDataset(Dataset):
    """Reviews of one split, truncated to `max_len` tokens, ids >= `vocab_size` mapped to <unk>."""

    def __init__(self, split: PreparedSplit, max_len: int, vocab_size: int, keep: str = "last") -> None:
        self.split, self.max_len, self.vocab_size, self.keep = split, max_len, vocab_size, keep
        self.lengths = np.minimum(np.asarray(split.lengths), max_len)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, k: int) -> tuple[np.ndarray, int]:
        # A plain ndarray view: numpy ops on np.memmap slices pay for the subclass (~2x slower per review).
        tokens = np.asarray(self.split.review(k))
        # Keras' pad_sequences keeps a long review's last tokens (truncating='pre'); `keep` picks the end.
        tokens = tokens[-self.max_len :] if self.keep == "last" else tokens[: self.max_len]
        return np.where(tokens < self.vocab_size, tokens, UNK_ID), int(self.split.labels[k])


def collate(items: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [B, T] padded to this batch's longest review, lengths [B], labels [B] float)."""
    lengths = np.array([len(tokens) for tokens, _ in items], dtype=np.int64)
    batch = np.full((len(items), lengths.max()), PAD_ID, dtype=np.int64)
    # One masked assignment (the reviews end to end fill each row's first `length` places) rather than a
    # copy per row: 0.75 ms instead of 2.7 ms for a batch of 128, ~3% of a small model's training step.
    batch[np.arange(batch.shape[1]) < lengths[:, None]] = np.concatenate([tokens for tokens, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.float32)
    return torch.from_numpy(batch), torch.from_numpy(lengths), labels


class IMDBDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/prepared",
        max_len: int = 400,
        vocab_size: int | None = None,
        keep: str = "last",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        bucket: bool = True,
        chunk_batches: int = 50,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_len < 1 or batch_size < 1 or eval_batch_size < 1:
            raise ValueError("max_len, batch_size and eval_batch_size must be positive")
        if keep not in ("first", "last"):
            raise ValueError(f"unknown keep {keep!r}: choose first | last")
        self.data_dir = Path(data_dir)
        tokenizer_path = self.data_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path} not found: run `dvc repro prepare` first")
        prepared_vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()
        if vocab_size is not None and vocab_size > prepared_vocab:
            raise ValueError(f"data.vocab_size {vocab_size} exceeds the prepared vocabulary ({prepared_vocab})")
        # The vocabulary is sorted by frequency, so its first N ids are exactly a smaller vocabulary.
        self.vocab_size = vocab_size or prepared_vocab
        self.max_len, self.keep = max_len, keep
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.bucket, self.chunk_batches = bucket, chunk_batches
        self.num_workers, self.seed = num_workers, seed
        self.datasets: dict[str, ReviewDataset] = {}

    @property
    def model_inputs(self) -> dict:
        """The model's data-dependent arguments: token ids from this vocabulary, a binary label."""
        return {"vocab_size": self.vocab_size}

    def setup(self, stage: str | None = None) -> None:
        for name in ("train", "val", "test"):
            if name not in self.datasets:
                split = PreparedSplit.load(self.data_dir / name)
                self.datasets[name] = ReviewDataset(split, self.max_len, self.vocab_size, self.keep)

    def loader(self, name: str, train: bool) -> DataLoader:
        dataset = self.datasets[name]
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        batch_size = self.batch_size if train else self.eval_batch_size
        # Without bucketing: a plain shuffle, as one big chunk with sorting switched off.
        lengths = dataset.lengths if self.bucket or not train else np.zeros(len(dataset), dtype=np.int64)
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=train, chunk_batches=self.chunk_batches,
                                     seed=self.seed, num_replicas=replicas, rank=rank)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", train=False)
