"""QRNN (Bradbury et al. 2017, "Quasi-Recurrent Neural Networks") with f-pooling: convolutional gates, no recurrent weights.

With a filter of width k over the last k inputs, w_t = [x_{t-k+1}, ..., x_t] (oldest first; zeros before t = 1):

    z_t = tanh(W_z w_t + b_z)                        candidate
    f_t = sigma(W_f w_t + b_f)                       forget gate
    h_t = f_t * h_{t-1} + (1 - f_t) * z_t,   h_0 = 0   (f-pooling)

The convolution is masked (causal): the zeros go on the left, so step t never sees t+1, and within a review
padded on the right no real step sees padding. `window=2` by default: the filter width of the paper's IMDb model
(a 4-layer densely connected QRNN, 91.4% test accuracy; its Table 1 also lists a k = 4 variant, slightly behind),
and the width Godin et al.'s replication of that result (QuasiRNN-DReLU, 2017) uses in all four layers. The
fo-pooling variant (an output gate o_t, h_t = o_t * c_t) is left out.

Parameters: `weight_ih` [2H, k*E] and `bias_ih` [2H], blocks in the order (z, f): rows 0..H-1 the candidate,
rows H..2H-1 the forget gate (`forget_block = 1`: where a forget bias goes). The columns are the window, oldest
input first: columns j*E..(j+1)*E-1 multiply x_{t-k+1+j}. Initialised as PyTorch's recurrent layers are:
uniform within +-1/sqrt(H).

`QRNNStep` is the reference, a loop over t; `QRNNScan` computes the same with the parallel scan. Same parameters,
same names: their state_dicts load into each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.cells.api import Cell
from rnnlab.models.scan import hold_padded_steps, linear_recurrence, step_by_step


def causal_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """x [B, T, E] -> [B, T, window*E]: at t, the inputs x_{t-window+1..t} side by side, zeros before the start."""
    padded = F.pad(x, (0, 0, window - 1, 0))  # window - 1 zero steps on the left
    steps = x.shape[1]
    return torch.cat([padded[:, j : j + steps] for j in range(window)], dim=-1)


class QRNNLayer(nn.Module):
    """The QRNN's parameters and initialisation; the two layers below differ only in how they run the recurrence."""

    blocks = 2  # (z, f)
    forget_block = 1

    def __init__(self, input_size: int, hidden_size: int, window: int = 2) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.hidden_size = hidden_size
        self.window = window
        self.weight_ih = nn.Parameter(torch.empty(self.blocks * hidden_size, window * input_size))
        self.bias_ih = nn.Parameter(torch.empty(self.blocks * hidden_size))
        bound = 1 / math.sqrt(hidden_size)  # as nn.RNN/LSTM/GRU do
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-activations of z and f at every step, each [B, T, H]: the masked convolution as one matmul."""
        z_logit, f_logit = F.linear(causal_windows(x, self.window), self.weight_ih, self.bias_ih).chunk(
            self.blocks, dim=-1
        )
        return z_logit, f_logit


class QRNNStep(QRNNLayer):
    """The reference: the paper's f-pooling one step at a time. x [B, T, E] -> h [B, T, H]."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return step_by_step(self.step, self.project(x), lengths)

    @staticmethod
    def step(h: torch.Tensor, z_logit: torch.Tensor, f_logit: torch.Tensor) -> torch.Tensor:
        z, f = torch.tanh(z_logit), torch.sigmoid(f_logit)
        return f * h + (1 - f) * z


class QRNNScan(QRNNLayer):
    """The same function as QRNNStep, all steps at once: h_t = f_t h_{t-1} + (1 - f_t) z_t by the parallel scan."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        z_logit, f_logit = self.project(x)
        f = torch.sigmoid(f_logit)
        not_f = torch.sigmoid(-f_logit)  # 1 - f, without the rounding of 1 - sigma near f = 1
        a, b = hold_padded_steps(f, not_f * torch.tanh(z_logit), lengths)
        return linear_recurrence(a, b)


CELL = Cell(
    name="qrnn",
    title="QRNN",
    colour="tab:olive",
    summary="z, f from a causal convolution of width 2 over x; h_t = f h_{t-1} + (1 - f) z (f-pooling): a parallel scan",
    layers={"explicit": QRNNStep, "scan": QRNNScan},
    input_blocks=2,
    recurrent_blocks=0,
    window=2,  # QRNNLayer's default filter width, which the layers above are built with
    forget_block=QRNNLayer.forget_block,
    order=60,
)
