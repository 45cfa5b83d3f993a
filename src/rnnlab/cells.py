"""The article's three recurrent cells and the three ways rnnlab runs them, described once.

Everything that names, orders, sizes or colours cells (the model, compare, the claims, plots, the benchmark and
the notebook) reads these tables, so a new cell or implementation is added here and nowhere else by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str  # the config value: model.cell=<name>
    title: str  # for tables and figures
    gates: int  # weight blocks per layer: W_ih is [gates * H, E] and W_hh [gates * H, H]
    colour: str  # its colour in every figure
    summary: str  # the article's equations, in one line


CELLS: dict[str, Cell] = {cell.name: cell for cell in (
    Cell("rnn", "simple RNN", 1, "tab:blue", "h_t = tanh(W x_t + U h_{t-1} + b)"),
    Cell("lstm", "LSTM", 4, "tab:orange", "gates f, i, g, o; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)"),
    Cell("gru", "GRU", 3, "tab:green", "gates z, r; h_t = (1 - z) h_{t-1} + z h~ (the article's z)"),
)}
CELL_NAMES = tuple(CELLS)  # the article's order


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
)}
IMPL_NAMES = tuple(IMPLEMENTATIONS)


def cell_rank(name: str) -> tuple[int, str]:
    """Sort key: the article's order, unknown names last (alphabetically)."""
    return (CELL_NAMES.index(name), "") if name in CELLS else (len(CELL_NAMES), name)
