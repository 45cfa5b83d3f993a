"""The arithmetic side of the training benchmark: the machine's matmul peak and the useful work of a cell."""

from __future__ import annotations

import time

import torch

# Weight matrices per cell: one for the tanh RNN, r/z/n for the GRU, i/f/g/o for the LSTM.
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def sgemm_peak(size: int = 4096, repeats: int = 4) -> float:
    """GFLOP/s of a large fp32 matmul with the threads training uses (torch.get_num_threads()), best of
    `repeats` after one warm-up. The ceiling a recurrent layer, which is mostly matmuls, can approach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: MKL's first call picks kernels and allocates its buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_token(cell: str, embedding_dim: int, hidden_size: int) -> int:
    """Forward + backward matmul FLOPs one real token costs a one-layer, one-direction cell.

    Forward, each of the g gate blocks multiplies [E] by W_ih [H, E] and [H] by W_hh [H, H]: 2*g*H*(E+H)
    FLOPs (a multiply and an add each). Backward needs two matmuls of the same size per forward one
    (gradients for the inputs/state and for the weights), hence 3x. Elementwise gate maths, the embedding
    and the decoder are left out: this is the part that can run near the matmul peak.
    """
    return 3 * 2 * GATES[cell] * hidden_size * (embedding_dim + hidden_size)
