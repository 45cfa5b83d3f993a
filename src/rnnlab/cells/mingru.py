"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate see the input only.

    z_t  = sigma(W_z x_t + b_z)                      update gate
    h~_t = g(W_h x_t + b_h)                          candidate state
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t,   h_0 = 0

with g(v) = v + 0.5 for v >= 0 and sigma(v) for v < 0. The paper trains minGRU through a log-space scan, which
needs h~ > 0: g is its positive, continuous replacement for the identity (it is what the paper's log-space
version uses; its plain version uses h~ = W_h x_t). We keep g in both layers here, so the two compute the same
function even though our scan (rnnlab.models.scan) runs in linear space and would take any sign.

No recurrent weights: h_{t-1} enters only through the gate's linear mix, which is what makes the recurrence
h_t = a_t h_{t-1} + b_t (a_t = 1 - z_t, b_t = z_t h~_t) and so a parallel scan.

Parameters: `weight_ih` [2H, E] and `bias_ih` [2H], blocks in the order (z, h~): rows 0..H-1 the update gate,
rows H..2H-1 the candidate. Initialised as PyTorch's recurrent layers are: uniform within +-1/sqrt(H).

`MinGRUStep` is the reference, a loop over t; `MinGRUScan` computes the same with the parallel scan. They hold
the same parameters under the same names, so their state_dicts load into each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.cells.api import Cell
from rnnlab.models.scan import hold_padded_steps, linear_recurrence, step_by_step


def positive_candidate(v: torch.Tensor) -> torch.Tensor:
    """g(v) = v + 0.5 for v >= 0, sigma(v) below: positive, continuous (both 0.5 at 0), linear for large v."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


class MinGRULayer(nn.Module):
    """minGRU's parameters and initialisation; the two layers below differ only in how they run the recurrence."""

    blocks = 2  # (z, h~)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.blocks * hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.empty(self.blocks * hidden_size))
        bound = 1 / math.sqrt(hidden_size)  # as nn.RNN/LSTM/GRU do
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-activations of z and h~ at every step, each [B, T, H]: one matmul over all steps."""
        z_logit, candidate_logit = F.linear(x, self.weight_ih, self.bias_ih).chunk(self.blocks, dim=-1)
        return z_logit, candidate_logit


class MinGRUStep(MinGRULayer):
    """The reference: the paper's equations one step at a time. x [B, T, E] -> h [B, T, H]."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return step_by_step(self.step, self.project(x), lengths)

    @staticmethod
    def step(h: torch.Tensor, z_logit: torch.Tensor, candidate_logit: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(z_logit)
        return (1 - z) * h + z * positive_candidate(candidate_logit)


class MinGRUScan(MinGRULayer):
    """The same function as MinGRUStep, all steps at once: h_t = a_t h_{t-1} + b_t by the parallel scan."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        z_logit, candidate_logit = self.project(x)
        z = torch.sigmoid(z_logit)
        keep = torch.sigmoid(-z_logit)  # 1 - z, without the rounding of 1 - sigma near z = 1
        a, b = hold_padded_steps(keep, z * positive_candidate(candidate_logit), lengths)
        return linear_recurrence(a, b)


CELL = Cell(
    name="mingru",
    title="minGRU",
    colour="tab:purple",
    summary="z, h~ from x_t only; h_t = (1 - z) h_{t-1} + z h~, a linear recurrence run as a parallel scan",
    layers={"explicit": MinGRUStep, "scan": MinGRUScan},
    input_blocks=2,
    recurrent_blocks=0,
    order=40,
)
