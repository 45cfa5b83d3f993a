"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates see the input only, normalised.

    f_t  = sigma(W_f x_t + b_f)                      forget gate
    i_t  = sigma(W_i x_t + b_i)                      input gate
    h~_t = g(W_h x_t + b_h)                          candidate state
    f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t,   h_0 = 0

with g(v) = v + 0.5 for v >= 0 and sigma(v) for v < 0, the positive candidate of the paper's log-space version
(its plain version uses h~ = W_h x_t); see rnnlab.cells.mingru. The normalisation makes f' + i' = 1, so the state
stays a weighted average of candidates (no cell state c, no output gate: h is the state).

Computed stably: f' = f / (f + i) = sigma(log f - log i) = sigma(logsigmoid(f logit) - logsigmoid(i logit)),
and i' = 1 - f' = sigma(log i - log f); no division, and no 0/0 where both gates underflow.

Parameters: `weight_ih` [3H, E] and `bias_ih` [3H], blocks in the order (f, i, h~): rows 0..H-1 the forget gate
(`forget_block = 0`: where a forget bias goes), H..2H-1 the input gate, 2H..3H-1 the candidate. Initialised as
PyTorch's recurrent layers are: uniform within +-1/sqrt(H).

`MinLSTMStep` is the reference, a loop over t written as the paper writes it; `MinLSTMScan` computes the same
with the parallel scan. Same parameters, same names: their state_dicts load into each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.cells.mingru import positive_candidate
from rnnlab.cells.api import Cell
from rnnlab.models.scan import hold_padded_steps, linear_recurrence, step_by_step


class MinLSTMLayer(nn.Module):
    """minLSTM's parameters and initialisation; the two layers below differ only in how they run the recurrence."""

    blocks = 3  # (f, i, h~)
    forget_block = 0

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.blocks * hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.empty(self.blocks * hidden_size))
        bound = 1 / math.sqrt(hidden_size)  # as nn.RNN/LSTM/GRU do
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pre-activations of f, i and h~ at every step, each [B, T, H]: one matmul over all steps."""
        f_logit, i_logit, candidate_logit = F.linear(x, self.weight_ih, self.bias_ih).chunk(self.blocks, dim=-1)
        return f_logit, i_logit, candidate_logit


class MinLSTMStep(MinLSTMLayer):
    """The reference: the paper's equations one step at a time. x [B, T, E] -> h [B, T, H]."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return step_by_step(self.step, self.project(x), lengths)

    @staticmethod
    def step(h: torch.Tensor, f_logit: torch.Tensor, i_logit: torch.Tensor,
             candidate_logit: torch.Tensor) -> torch.Tensor:
        f, i = torch.sigmoid(f_logit), torch.sigmoid(i_logit)
        f_norm, i_norm = f / (f + i), i / (f + i)
        return f_norm * h + i_norm * positive_candidate(candidate_logit)


class MinLSTMScan(MinLSTMLayer):
    """The same function as MinLSTMStep, all steps at once: h_t = f'_t h_{t-1} + i'_t h~_t by the parallel scan."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        f_logit, i_logit, candidate_logit = self.project(x)
        log_ratio = F.logsigmoid(f_logit) - F.logsigmoid(i_logit)  # log(f / i)
        f_norm, i_norm = torch.sigmoid(log_ratio), torch.sigmoid(-log_ratio)
        a, b = hold_padded_steps(f_norm, i_norm * positive_candidate(candidate_logit), lengths)
        return linear_recurrence(a, b)


CELL = Cell(
    name="minlstm",
    title="minLSTM",
    colour="tab:red",
    summary="f, i, h~ from x_t only; h_t = f' h_{t-1} + i' h~ with f' = f/(f+i), i' = i/(f+i): a parallel scan",
    layers={"explicit": MinLSTMStep, "scan": MinLSTMScan},
    input_blocks=3,
    recurrent_blocks=0,
    forget_block=MinLSTMLayer.forget_block,
    order=50,
)
