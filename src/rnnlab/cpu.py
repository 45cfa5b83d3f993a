"""Process-wide settings that make training faster on a CPU, applied by `SentimentClassifier.setup()`.

Each was measured on the project's 2-core Xeon (AVX-512, MKL); `python -m rnnlab.bench` re-measures them.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

# mallopt() parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse rather than hand it back to the kernel; False if not glibc.

    By default glibc gives every large block (over 128 KB to 32 MB, adaptively) its own mmap and unmaps it
    on free, so each training step page-faults its activations, oneDNN's LSTM workspace and their gradients
    in afresh, the kernel zeroing every page. Measured here (8 bucketed batches of 128): 5-28% of the step
    time, most for the LSTM (E=H=128: 3.0 s -> 2.2 s; E=H=32: 0.56 s -> 0.42 s), 4-15% for the GRU. The
    resident size then stays at the peak of a step.
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
    thread only, and OpenMP's worker threads copy the setting when they start, at that first op. In
    `python -m rnnlab.train` they start at the first training batch, after setup(). Measured here: one matmul
    before it left the worker unflushed and an LSTM (E=H=128) step on 267 tokens took 1.7 s instead of 0.35 s.
    """
    # Vanishing gradients end as denormal floats, which x86 CPUs process ~10-50x slower: measured here, an
    # LSTM (E=H=128) batch took 2.1 s with them and 0.23 s flushed to zero.
    torch.set_flush_denormal(True)
    # `trainer.deterministic` also makes torch fill every new tensor with NaN, oneDNN's LSTM workspace
    # included: 26% of an LSTM (E=H=128) step here. Every such tensor is written before it is read, so
    # results are unchanged; deterministic algorithms stay on.
    torch.utils.deterministic.fill_uninitialized_memory = False
    keep_freed_memory()  # results unchanged too
