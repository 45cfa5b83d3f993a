"""The prepared IMDB splits as Lightning dataloaders: truncated to `max_len`, padded per batch, bucketed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from rnnlab.checks import one_of, positive_int
from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.base import SPLITS, SequenceDataModule
from rnnlab.data.text import PAD_ID, UNK_ID


class ReviewDataset(Dataset):
    """Reviews of one split, truncated to `max_len` tokens, ids >= `vocab_size` mapped to <unk>."""

    def __init__(self, split: PreparedSplit, max_len: int, vocab_size: int, keep: str = "last") -> None:
        self.split, self.max_len, self.vocab_size, self.keep = split, max_len, vocab_size, keep
        self.lengths = np.minimum(np.asarray(split.lengths), max_len)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, k: int) -> tuple[np.ndarray, int]:
        # A plain ndarray view: numpy ops on np.memmap slices pay for the subclass on every call.
        tokens = np.asarray(self.split.review(k))
        # Keras' pad_sequences keeps a long review's last tokens (truncating='pre'); `keep` picks the end.
        tokens = tokens[-self.max_len :] if self.keep == "last" else tokens[: self.max_len]
        return np.where(tokens < self.vocab_size, tokens, UNK_ID), int(self.split.labels[k])


def collate(items: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [B, T] padded to this batch's longest review, lengths [B], labels [B] float)."""
    lengths = np.array([len(tokens) for tokens, _ in items], dtype=np.int64)
    batch = np.full((len(items), lengths.max()), PAD_ID, dtype=np.int64)
    # One masked assignment (the reviews end to end fill each row's first `length` places) rather than a
    # copy per row: collation is a visible share of a small model's training step.
    batch[np.arange(batch.shape[1]) < lengths[:, None]] = np.concatenate([tokens for tokens, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.float32)
    return torch.from_numpy(batch), torch.from_numpy(lengths), labels


class IMDBDataModule(SequenceDataModule):
    """Binary sentiment: the prepared splits of `data_dir` (the `prepare` stage's output)."""

    task = "binary"
    collate_fn = staticmethod(collate)

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
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, bucket=bucket,
                         chunk_batches=chunk_batches, num_workers=num_workers)
        self.max_len = positive_int("max_len", max_len)
        self.keep = one_of("keep", keep, ("first", "last"))
        self.data_dir = Path(data_dir)
        tokenizer_path = self.data_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path} not found: run `dvc repro prepare` first")
        prepared_vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()
        if vocab_size is not None and positive_int("vocab_size", vocab_size) > prepared_vocab:
            raise ValueError(f"vocab_size={vocab_size} exceeds the prepared vocabulary ({prepared_vocab})")
        # The vocabulary is sorted by frequency, so its first N ids are exactly a smaller vocabulary.
        self.vocab_size = vocab_size or prepared_vocab

    @property
    def network_inputs(self) -> dict:
        return {"vocab_size": self.vocab_size}

    def setup(self, stage: str | None = None) -> None:
        for name in SPLITS:
            if name not in self.datasets:
                split = PreparedSplit.load(self.data_dir / name)
                self.datasets[name] = ReviewDataset(split, self.max_len, self.vocab_size, self.keep)

    def example_lengths(self, split: str) -> np.ndarray:
        return self.datasets[split].lengths

    def example_labels(self, split: str) -> np.ndarray:
        return np.asarray(self.datasets[split].split.labels)
