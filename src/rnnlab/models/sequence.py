"""`model.impl=sequence`: the explicit cells, each layer's whole sequence run by one C++ kernel on CPU.

A classic cell's file (rnnlab/cells/rnn.py, lstm.py, gru.py) makes its sequence layer as
`class SequenceRNNCell(SequenceEngine, RNNCell)` with `cell = "rnn"`, the kernel's name for its gate maths.
The cells keep their explicit layers' parameters (names, gate order, initialisation: weights copy across all three
implementations) and its equations, which stay the readable reference; only the engine differs:

- forward: `sequence_kernel.cpp` runs the recurrence, each thread alone over its own rows of the batch for all
  T steps (rows never interact, so the threads meet once per sequence, not once per step); a step is two small
  matmuls with weights packed once per sequence, x_t W_ih^T and h_{t-1} W_hh^T, and one pass of the gate maths;
- backward: the kernel runs the recurrence back in the same way, with the gradients of x and of the biases on
  the way; then each thread's share of each weight's gradient is one large matmul over all its rows' steps.

The kernel is compiled on first use, once per machine and CPU kind (seconds; then cached in torch's extensions
folder, $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions), with g++ and ninja (a project dependency), and
calls the MKL inside PyTorch's x86 builds. Where it cannot run (no compiler, not x86, a CUDA tensor, a dtype
other than float32/float64) the cells run explicit.py's forward instead, which computes the same, slower, and
say so in a RuntimeWarning. On GPU use impl=fused, the default: cuDNN.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

KERNEL_SOURCE = Path(__file__).with_name("sequence_kernel.cpp")
KERNEL_DTYPES = (torch.float32, torch.float64)


def cpu_identity() -> str:
    """A short digest of this CPU's instruction sets: the kernel is compiled for the CPU it runs on
    (-march=native), so each kind of CPU gets its own build, even where several share one cache folder."""
    flags = platform.machine()
    try:
        flags += next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return hashlib.sha256(flags.encode()).hexdigest()[:10]


@functools.cache
def load_kernel() -> str | None:
    """Compile (first use) or load the kernel into torch.ops.rnnlab_sequence. None if it is ready, else why not."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"it needs the MKL of PyTorch's x86 builds, and this is {platform.machine()}"
    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:  # pip's ninja (a project dependency) is next to this interpreter
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        # -fopenmp: at::parallel_for is a template, compiled here; at run time it uses the OpenMP that PyTorch
        # loaded (same soname). -fno-trapping-math lets the compiler vectorise the float-to-int step of exp.
        cpp_extension.load(name=f"rnnlab_sequence_{cpu_identity()}", sources=[str(KERNEL_SOURCE)],
                           extra_cflags=["-O3", "-march=native", "-std=c++20", "-fopenmp", "-fno-math-errno",
                                         "-fno-trapping-math"],
                           extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    except Exception as e:  # a missing compiler or ninja, a failed build, a symbol not found: all mean the same
        return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    return None


def kernel_unavailable(x: torch.Tensor) -> str | None:
    """Why the kernel cannot run on x, or None if it can."""
    if x.device.type != "cpu":
        return f"the kernel runs on CPU only, and this input is on {x.device.type}"
    if x.dtype not in KERNEL_DTYPES:
        return f"the kernel handles float32 and float64, not {x.dtype}"
    problem = load_kernel()
    return None if problem is None else f"the C++ kernel could not be built or loaded ({problem})"


class SequenceFunction(torch.autograd.Function):
    """One layer in one direction over the whole sequence: x [B, T, E] -> hidden states [B, T, H]."""

    @staticmethod
    def forward(ctx, cell: str, x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
        x, weight_ih, weight_hh = x.contiguous(), weight_ih.contiguous(), weight_hh.contiguous()
        out, c, saved = torch.ops.rnnlab_sequence.forward(cell, x, weight_ih, bias_ih.contiguous(), weight_hh,
                                                          bias_hh.contiguous())
        ctx.cell = cell
        ctx.save_for_backward(x, weight_ih, weight_hh, out, c, saved)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight_ih, weight_hh, out, c, saved = ctx.saved_tensors
        grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh = torch.ops.rnnlab_sequence.backward(
            ctx.cell, grad_out.contiguous(), x, out, c, saved, weight_ih, weight_hh, ctx.needs_input_grad[1])
        return None, grad_x if ctx.needs_input_grad[1] else None, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


class SequenceEngine:
    """Mixed in before an explicit cell's class: runs its layer (its parameters, its equations) through SequenceFunction."""

    cell: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of every step, [B, T, H]."""
        reason = kernel_unavailable(x)
        if reason is not None:  # Python shows each such warning once
            warnings.warn(f"model.impl=sequence: {reason}; running the explicit cells instead (the same results, "
                          "slower)", RuntimeWarning, stacklevel=2)
            return super().forward(x)
        return SequenceFunction.apply(self.cell, x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
