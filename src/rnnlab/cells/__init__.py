"""The article's three recurrent cells, the floor without recurrence, and the ways rnnlab runs them, described once.

Everything that names, orders, sizes or colours cells (the model, compare, the claims, plots, the benchmark and
the notebook) reads these tables, so a new cell or implementation is added here and nowhere else by hand.

A cell with no gates has no recurrence (the bag of embeddings): nothing to run step by step, so it has one
implementation, `plain`, instead of the recurrent ones; the pipeline trains it once per seed
(`pipeline.baselines`), and what is about recurrence (the article's claims, gradient decay, the adding problem,
the benchmark of recurrent kernels) leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str  # the config value: model.cell=<name>
    title: str  # for tables and figures
    gates: int  # weight blocks per layer: W_ih is [gates * H, E] and W_hh [gates * H, H]; 0: no recurrence
    colour: str  # its colour in every figure
    summary: str  # the article's equations, in one line

    @property
    def recurrent(self) -> bool:
        return self.gates > 0

    @property
    def impls(self) -> tuple[str, ...]:
        """The implementations `model.impl` may name for this cell."""
        return IMPL_NAMES if self.recurrent else (PLAIN,)


CELLS: dict[str, Cell] = {cell.name: cell for cell in (
    Cell("rnn", "simple RNN", 1, "tab:blue", "h_t = tanh(W x_t + U h_{t-1} + b)"),
    Cell("lstm", "LSTM", 4, "tab:orange", "gates f, i, g, o; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)"),
    Cell("gru", "GRU", 3, "tab:green", "gates z, r; h_t = (1 - z) h_{t-1} + z h~ (the article's z)"),
    Cell("bag", "bag of embeddings", 0, "tab:brown",
         "no recurrence: the mean of the review's word embeddings, then the linear output (a floor for the cells)"),
)}
CELL_NAMES = tuple(name for name, cell in CELLS.items() if cell.recurrent)  # the recurrent cells, the article's order
BASELINE_NAMES = tuple(name for name, cell in CELLS.items() if not cell.recurrent)  # cells without recurrence


@dataclass(frozen=True)
class Implementation:
    name: str  # the config value: model.impl=<name>
    marker: str  # its matplotlib marker in every figure
    summary: str


IMPLEMENTATIONS: dict[str, Implementation] = {impl.name: impl for impl in (
    Implementation("fused", "o", "PyTorch's nn.RNN / nn.LSTM / nn.GRU (oneDNN on CPU, cuDNN on GPU)"),
    Implementation("explicit", "s", "the cells written out from their equations (rnnlab/models/explicit.py)"),
    Implementation("sequence", "D", "the explicit cells, each layer's whole sequence run by one C++ kernel on CPU "
                                    "(rnnlab/models/sequence.py)"),
    Implementation("plain", "X", "a cell without recurrence: ordinary layers, nothing run step by step "
                                 "(rnnlab/models/network.py)"),
)}
PLAIN = "plain"  # the one implementation of a cell without recurrence
IMPL_NAMES = tuple(name for name in IMPLEMENTATIONS if name != PLAIN)  # the implementations of a recurrent cell


def cell_rank(name: str) -> tuple[int, str]:
    """Sort key: the article's order, then the cells without recurrence, unknown names last (alphabetically)."""
    return (list(CELLS).index(name), "") if name in CELLS else (len(CELLS), name)


def impl_rank(name: str) -> tuple[int, str]:
    """Sort key: the order of IMPLEMENTATIONS, unknown names last (alphabetically)."""
    return (list(IMPLEMENTATIONS).index(name), "") if name in IMPLEMENTATIONS else (len(IMPLEMENTATIONS), name)
