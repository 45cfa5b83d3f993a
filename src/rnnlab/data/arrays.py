"""The on-disk format of a prepared split: flat memory-mappable arrays, one .npy file each.

Reviews are stored at full length, end to end in `tokens`; review k is
`tokens[offsets[k]:offsets[k] + lengths[k]]` with offsets the running sum of lengths. Truncation to
`max_len` happens when batches are built, so changing it never re-runs `prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIELDS = ("tokens", "lengths", "labels", "ratings")


@dataclass
class PreparedSplit:
    tokens: np.ndarray  # int32 [total tokens]
    lengths: np.ndarray  # int32 [reviews]
    labels: np.ndarray  # int8 [reviews], 1 = positive
    ratings: np.ndarray  # int8 [reviews], the 1-10 stars from the file name

    def __post_init__(self) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)[:-1]])

    def __len__(self) -> int:
        return len(self.lengths)

    def review(self, k: int) -> np.ndarray:
        start = self.offsets[k]
        return self.tokens[start : start + self.lengths[k]]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FIELDS:
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> PreparedSplit:
        folder = Path(folder)
        missing = [name for name in FIELDS if not (folder / f"{name}.npy").is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}.npy: run `dvc repro prepare` first")
        mode = "r" if mmap else None
        return cls(**{name: np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in FIELDS})
