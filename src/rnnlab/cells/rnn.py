"""The simple (Elman) RNN: h_t = tanh(W x_t + U h_{t-1} + b). One of the article's three cells."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnlab.cells.api import Cell
from rnnlab.models.explicit import ExplicitCell
from rnnlab.models.fused import FusedRNN
from rnnlab.models.sequence import SequenceEngine


class RNNCell(ExplicitCell):
    """`impl=explicit`: the step, with nn.RNN's parameters (names, shapes, initialisation)."""

    gates = 1

    def step(self, x_proj, h):
        return torch.tanh(x_proj + F.linear(h, self.weight_hh, self.bias_hh))


class SequenceRNNCell(SequenceEngine, RNNCell):
    """`impl=sequence`: the same step in the C++ kernel."""

    cell = "rnn"  # the kernel's name for this gate maths


CELL = Cell(
    name="rnn",
    title="simple RNN",
    colour="tab:blue",
    summary="h_t = tanh(W x_t + U h_{t-1} + b)",
    layers={"fused": FusedRNN, "explicit": RNNCell, "sequence": SequenceRNNCell},
    input_blocks=1,
    article=True,
    order=10,
)
