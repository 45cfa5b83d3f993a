"""`model.impl=fused`: PyTorch's own layers (nn.RNN, nn.LSTM, nn.GRU: oneDNN on CPU, cuDNN on GPU) behind the
one-layer contract every cell's layer keeps (rnnlab/cells/api.py): x [B, T, E] -> hidden states [B, T, H].

Subclasses rather than wrappers, so the parameters keep PyTorch's names (weight_ih_l0, ...) and a layer draws
its initial weights exactly as the plain PyTorch layer does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class FusedLayer:
    """One layer, one direction, batch first; returns the hidden states only (not the final state)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # On CUDA, packed sequences are cuDNN's fast path; on CPU packing leaves oneDNN's fast path (several
        # times slower: `python -m rnnlab.bench` shows it), so CPU runs padded. The results are the same.
        if x.is_cuda and lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(super().forward(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        return super().forward(x)[0]


class FusedRNN(FusedLayer, nn.RNN):
    pass


class FusedLSTM(FusedLayer, nn.LSTM):
    pass


class FusedGRU(FusedLayer, nn.GRU):
    pass
