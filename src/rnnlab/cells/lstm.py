"""The LSTM (Hochreiter & Schmidhuber, 1997) with a forget gate (Gers et al., 2000). One of the article's cells."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnlab.cells.api import Cell
from rnnlab.models.explicit import ExplicitCell
from rnnlab.models.fused import FusedLSTM
from rnnlab.models.sequence import SequenceEngine


class LSTMCell(ExplicitCell):
    """`impl=explicit`: the step, with nn.LSTM's parameters (names, shapes, gate order i, f, g, o).

    f: forget gate, how much of the old cell state c_{t-1} to keep
    i: input gate, how much of the candidate g to write
    g: gain (candidate) values, tanh of the input and the previous state
    o: output gate, how much of tanh(c_t) to expose as h_t
    The additive update of c is what lets gradients survive over long spans.
    """

    gates = 4

    def initial_state(self, x):
        h = x.new_zeros(x.shape[0], self.hidden_size)
        return h, h.clone()

    def step(self, x_proj, state):
        h, c = state
        i, f, g, o = (x_proj + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=-1)  # PyTorch's order
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c

    @staticmethod
    def output(state):
        return state[0]


class SequenceLSTMCell(SequenceEngine, LSTMCell):
    """`impl=sequence`: the same step in the C++ kernel."""

    cell = "lstm"  # the kernel's name for this gate maths


CELL = Cell(
    name="lstm",
    title="LSTM",
    colour="tab:orange",
    summary="gates f, i, g, o; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)",
    layers={"fused": FusedLSTM, "explicit": LSTMCell, "sequence": SequenceLSTMCell},
    input_blocks=4,
    forget_block=1,  # gate order i, f, g, o: model.forget_bias sets rows H..2H of the bias
    article=True,
    order=20,
)
