"""The arithmetic side of the training benchmark: the machine's matmul peak and the useful work of a cell."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils import benchmark

from rnnlab.cells import CELLS


def fastest_seconds(work: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` timed calls of work(). Other processes can only slow a call down, so
    the fastest is the truest.

    Timed by torch.utils.benchmark.Timer with the threads training uses (its own default is one). Its
    timeit(1) makes two untimed warm-up calls before the timed one (first calls pick kernels and allocate
    buffers), so work() runs 3 * repeats times in all.
    """
    timer = benchmark.Timer(stmt="work()", globals={"work": work}, num_threads=torch.get_num_threads())
    return min(timer.timeit(1).raw_times[0] for _ in range(repeats))


def sgemm_peak(size: int = 4096, repeats: int = 4) -> float:
    """GFLOP/s of a large fp32 matmul with the threads training uses (torch.get_num_threads()), the fastest
    of `repeats` (see fastest_seconds). The ceiling a recurrent layer, which is mostly matmuls, can approach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return 2 * size**3 / fastest_seconds(lambda: torch.mm(a, b, out=out), repeats) / 1e9


def gpu_matmul_peaks(size: int = 8192, repeats: int = 4) -> dict[str, float]:
    """GFLOP/s of a large matmul on the GPU in fp32 (TF32 off), TF32 (cuDNN's default for recurrent layers) and
    bf16, the fastest of `repeats` each (see fastest_seconds: torch's Timer synchronizes the GPU around a call)."""
    device = torch.device("cuda")
    saved = torch.backends.cuda.matmul.allow_tf32
    peaks = {}
    try:
        for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
            out = torch.empty(size, size, device=device, dtype=dtype)
            peaks[name] = 2 * size**3 / fastest_seconds(lambda: torch.mm(a, b, out=out), repeats) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return peaks


def flops_per_token(cell: str, embedding_dim: int, hidden_size: int) -> int:
    """Forward + backward matmul FLOPs one real token costs a one-layer, one-direction cell.

    Forward, each of the cell's input blocks multiplies its window of inputs [window*E] by W_ih's block
    [H, window*E], and each recurrent block [H] by W_hh's block [H, H]: 2*H*(input_blocks*window*E +
    recurrent_blocks*H) FLOPs (a multiply and an add each); for the classic cells, g blocks of each: 2*g*H*(E+H). Backward needs two matmuls of the same size per forward one
    (gradients for the inputs/state and for the weights), hence 3x. Elementwise gate maths, the embedding
    and the decoder are left out: this is the part that can run near the matmul peak.
    """
    spec = CELLS[cell]
    return 3 * 2 * hidden_size * (spec.input_blocks * spec.window * embedding_dim + spec.recurrent_blocks * hidden_size)


def recurrent_step_gflops(batch: int, hidden: int, gates: int, steps: int = 400, repeats: int = 5,
                          device: str = "cpu") -> float:
    """GFLOP/s of the recurrence's own matmul: a chain of `steps` [batch, H] x [H, gates*H] products, each
    taking the previous one's output, as h_t needs h_{t-1}. The fastest chain of `repeats` (see fastest_seconds).

    These products are small (at B=128, H=128, g=4: 17 MFLOP each) and cannot be batched over time, so
    they run far below the large-matmul peak: thread start-up and synchronisation cost as much as the maths.
    """
    weight = torch.randn(hidden, gates * hidden, device=device) / hidden**0.5
    state = torch.randn(batch, gates * hidden, device=device)

    def chain() -> torch.Tensor:
        out = state
        for _ in range(steps):
            out = torch.mm(out[:, :hidden], weight)
        return out

    return 2 * batch * hidden * gates * hidden * steps / fastest_seconds(chain, repeats) / 1e9


def matmul_ceiling_gflops(cell: str, embedding_dim: int, hidden_size: int, peak: float, step_rate: float) -> float:
    """The useful GFLOP/s a one-layer cell would reach if its matmuls ran at their own ceilings and nothing
    else (gate maths, the embedding, the optimizer) took any time.

    Of the FLOPs per token (see flops_per_token), two products per step are sequential: the forward h_{t-1} W_hh
    and the backward dgates_t W_hh, 4*g*H^2 for g recurrent blocks, at `step_rate` (none for a cell whose gates
    read x_t only). The rest batch over all
    time steps (x W_ih and its two gradients, the W_hh gradient) and can run at the sgemm `peak`.
    """
    g, E, H = CELLS[cell].recurrent_blocks, embedding_dim, hidden_size
    sequential = 4 * g * H * H
    batched = flops_per_token(cell, E, H) - sequential
    return flops_per_token(cell, E, H) / (batched / peak + (sequential / step_rate if sequential else 0.0))
