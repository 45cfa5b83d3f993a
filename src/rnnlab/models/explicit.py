"""`model.impl=explicit`: a cell written out from its equations, as a step; this is the loop over time they share.

A cell's file (rnnlab/cells/rnn.py, lstm.py, gru.py) subclasses ExplicitCell with its `gates` and its `step`.
Each classic cell holds the same parameters, with the same names and gate order, as PyTorch's fused layers
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
