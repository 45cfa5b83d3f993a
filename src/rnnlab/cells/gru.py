"""The GRU (Cho et al., 2014): update gate z, reset gate r, candidate h~. One of the article's three cells."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnlab.cells.api import Cell
from rnnlab.models.explicit import ExplicitCell
from rnnlab.models.fused import FusedGRU
from rnnlab.models.sequence import SequenceEngine


class GRUCell(ExplicitCell):
    """`impl=explicit`: the step, with nn.GRU's parameters (names, shapes, gate order r, z, n).

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


class SequenceGRUCell(SequenceEngine, GRUCell):
    """`impl=sequence`: the same step in the C++ kernel."""

    cell = "gru"  # the kernel's name for this gate maths


CELL = Cell(
    name="gru",
    title="GRU",
    colour="tab:green",
    summary="gates z, r; h_t = (1 - z) h_{t-1} + z h~ (the article's z)",
    layers={"fused": FusedGRU, "explicit": GRUCell, "sequence": SequenceGRUCell},
    input_blocks=3,
    article=True,
    order=30,
)
