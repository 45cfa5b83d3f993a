"""What a cell module declares: one `Cell`, and the implementations its layers may come in.

A cell is one module that defines `CELL = Cell(...)` (rnnlab/cells/rnn.py is the smallest example; the README's
"Adding a cell" has a minimal file). Everything else — the model, the pipeline, compare, the claims, the figures,
the benchmark — reads the registry built from these declarations (rnnlab/cells/__init__.py), never a table of
its own.

A layer is what `Cell.layers[impl](input_size, hidden_size)` builds: ONE layer in ONE direction, an nn.Module
taking x [B, T, input_size] to the hidden states of every step [B, T, hidden_size], causal (step t reads steps
<= t only) and starting from a zero state. The encoder stacks layers, runs the backward direction on each
review reversed within its own length, and zeroes the padding; so a layer need not know about padding at all.
If its forward also takes a keyword `lengths` [B], the encoder passes it (the fused layers pack on CUDA with it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the declarations themselves need no torch; the layers they name do
    from torch import nn

DEFAULT_ORDER = 50  # a new cell sorts after the article's three (10, 20, 30), before the bag (90)


@dataclass(frozen=True)
class Implementation:
    name: str  # the config value: model.impl=<name>
    marker: str  # its matplotlib marker in every figure
    summary: str


@dataclass(frozen=True)
class Cell:
    name: str  # the config value: model.cell=<name>
    title: str  # for tables and figures
    colour: str  # its colour in every figure (a matplotlib colour)
    summary: str  # its equations, in one line
    # impl name -> factory(input_size, hidden_size) -> one layer in one direction (module docstring). Empty for a
    # cell without recurrence (the bag): the network then has no encoder and the cell's one impl is `plain`.
    layers: Mapping[str, Callable[[int, int], nn.Module]] = field(default_factory=dict, compare=False)
    # For the FLOP accounting, the parameter counts and the initialisations, in blocks of H rows:
    input_blocks: int = 0  # blocks of W_ih reading the input (rnn 1, lstm 4, gru 3)
    recurrent_blocks: int | None = None  # blocks of W_hh reading h_{t-1}; None: as many as input_blocks; 0: gates
    #                                      read x_t only (then there is no W_hh to initialise orthogonally)
    window: int = 1  # input steps each input block reads (1; a QRNN's convolution width)
    forget_block: int | None = None  # index of the forget-gate block that model.forget_bias sets (lstm: 1)
    article: bool = False  # the article's claims are about the cells marked so (rnn, lstm, gru) and no other
    order: int = DEFAULT_ORDER  # sort key in every table and figure; ties alphabetically

    def __post_init__(self) -> None:
        if self.recurrent_blocks is None:  # frozen: set through object.__setattr__, once, here
            object.__setattr__(self, "recurrent_blocks", self.input_blocks)
        object.__setattr__(self, "layers", dict(self.layers))

    @property
    def gates(self) -> int:
        """The weight blocks per layer: W_ih is [gates * H, window * E] (the older name of input_blocks)."""
        return self.input_blocks

    @property
    def recurrent(self) -> bool:
        """Whether it runs over time at all: a cell with layers. The bag has none."""
        return bool(self.layers)

    @property
    def impls(self) -> tuple[str, ...]:
        """The implementations `model.impl` may name for this cell, in the registry's order."""
        from rnnlab.cells import PLAIN, impl_rank  # the registry knows the order of implementations

        return tuple(sorted(self.layers, key=impl_rank)) if self.recurrent else (PLAIN,)


# Every implementation a cell's `layers` may name, in the order tables and figures show them.
IMPLEMENTATIONS: dict[str, Implementation] = {impl.name: impl for impl in (
    Implementation("fused", "o", "PyTorch's nn.RNN / nn.LSTM / nn.GRU (oneDNN on CPU, cuDNN on GPU)"),
    Implementation("explicit", "s", "the cells written out from their equations, one step at a time (each "
                                    "cell's file in rnnlab/cells/; the loop: models/explicit.py, models/scan.py)"),
    Implementation("sequence", "D", "the explicit cells, each layer's whole sequence run by one C++ kernel on CPU "
                                    "(rnnlab/models/sequence.py)"),
    Implementation("scan", "^", "a parallel scan over time: cells linear in their state, gates from x_t only"),
    Implementation("plain", "X", "a cell without recurrence: ordinary layers, nothing run step by step "
                                 "(rnnlab/models/network.py)"),
)}
PLAIN = "plain"  # the one implementation of a cell without recurrence
