"""Process-wide settings that make training faster on a CPU without changing its results.

`CPUSettings` (a callback in conf/callbacks/default.yaml) applies them in every training process; the
benchmark (`python -m rnnlab.bench`) measures what each one is worth. They stay on for the rest of the
process: they are process-wide by nature, and nothing in rnnlab switches them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pytorch_lightning as pl
import torch

# mallopt() parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse rather than hand it back to the kernel; False if not glibc.

    By default glibc gives every large block its own mmap and unmaps it on free, so each training step
    page-faults its activations, oneDNN's LSTM workspace and their gradients in afresh, the kernel zeroing
    every page. The resident size then stays at the peak of a step instead.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # Blocks up to 1 GiB come from the heap, and freed memory is given back only past 2 GiB.
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30) and mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))


def apply_training_settings() -> None:
    """Flush denormals, skip deterministic mode's NaN-filling, keep freed memory.

    Call it before the process's first parallel op where possible: torch.set_flush_denormal sets the calling
    thread only, and OpenMP's worker threads copy the setting when they start, at that first op (in a
    training process: the first training batch, after the callbacks' setup).
    """
    # Vanishing gradients end as denormal floats, which x86 CPUs process many times slower than normal ones.
    torch.set_flush_denormal(True)
    # `trainer.deterministic` also makes torch fill every new tensor with NaN, oneDNN's LSTM workspace
    # included. Every such tensor is written before it is read, so results are unchanged; deterministic
    # algorithms stay on.
    torch.utils.deterministic.fill_uninitialized_memory = False
    keep_freed_memory()


class CPUSettings(pl.Callback):
    """Applies `apply_training_settings` in every training process (DDP workers included) before its first batch."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu":
            apply_training_settings()
