"""A cell that exists only for the tests: the whole of what adding a cell takes, outside rnnlab.

tests/test_cell_api.py puts this folder on PYTHONPATH and names the module in RNNLAB_CELLS; nothing in rnnlab
mentions it. A leaky simple RNN: h_t = 0.5 h_{t-1} + 0.5 tanh(W x_t + U h_{t-1} + b).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnlab.cells.api import Cell
from rnnlab.models.explicit import ExplicitCell


class ToyCell(ExplicitCell):
    gates = 1  # one block of H rows in W_ih and in W_hh

    def step(self, x_proj, h):
        return 0.5 * h + 0.5 * torch.tanh(x_proj + F.linear(h, self.weight_hh, self.bias_hh))


CELL = Cell(
    name="toy",
    title="toy leaky RNN",
    colour="tab:pink",
    summary="h_t = 0.5 h_{t-1} + 0.5 tanh(W x_t + U h_{t-1} + b)",
    layers={"explicit": ToyCell},
    input_blocks=1,
)
