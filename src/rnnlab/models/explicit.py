"""The article's three recurrent cells written out from their equations: `model.impl=explicit`.

Each cell holds the same parameters, with the same names and gate order, as PyTorch's fused layers
(`nn.RNN`, `nn.LSTM`, `nn.GRU`), so weights copy straight across and the two implementations can be
checked against each other. Shapes: x [B, T, input_size], h and c [B, H], W_ih [gates*H, input_size],
W_hh [gates*H, H]. The input projection of every step is one matmul up front; only the recurrence
(the part that cannot be parallelised over time) loops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ExplicitCell(nn.Module):
    """Shared plumbing: parameters, PyTorch's initialisation, and the loop over time."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden_size))
        bound = 1 / math.sqrt(hidden_size)  # as nn.RNN/LSTM/GRU do
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def initial_state(self, x: torch.Tensor):
        return x.new_zeros(x.shape[0], self.hidden_size)

    def step(self, x_proj: torch.Tensor, state):
        raise NotImplementedError

    @staticmethod
    def output(state) -> torch.Tensor:
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of every step, [B, T, H]."""
        x_proj = F.linear(x, self.weight_ih, self.bias_ih)  # [B, T, gates*H], all steps at once
        state = self.initial_state(x)
        outputs = []
        # unbind, not x_proj[:, t]: the backward of T slices would write T full-size zero gradients.
        for x_t in x_proj.unbind(dim=1):
            state = self.step(x_t, state)
            outputs.append(self.output(state))
        return torch.stack(outputs, dim=1)


class RNNCell(ExplicitCell):
    """Simple (Elman) RNN: h_t = tanh(W x_t + U h_{t-1} + b)."""

    gates = 1

    def step(self, x_proj, h):
        return torch.tanh(x_proj + F.linear(h, self.weight_hh, self.bias_hh))


class LSTMCell(ExplicitCell):
    """LSTM (Hochreiter & Schmidhuber, 1997), with a forget gate (Gers et al., 2000).

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


class GRUCell(ExplicitCell):
    """GRU (Cho et al., 2014): update gate z, reset gate r, candidate h_tilde.

    The article writes h_t = (1 - z) * h_{t-1} + z * h_tilde. PyTorch's z is the complement, the share of
    the *old* state kept: h_t = (1 - z) * h_tilde + z * h_{t-1}; we use PyTorch's so weights are
    interchangeable (article z = 1 - PyTorch z). PyTorch also applies r after the recurrent matmul,
    r * (W_hn h + b_hn), where Cho et al. apply it before, W_hn (r * h).
    """

    gates = 3

    def step(self, x_proj, h):
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        h_tilde = torch.tanh(x_n + r * h_n)
        return (1 - z) * h_tilde + z * h


EXPLICIT_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
