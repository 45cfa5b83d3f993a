"""The network: embedding -> recurrent encoder -> pooling over time -> linear -> one output.

A cell without recurrence (`cell=bag`, the bag of embeddings: rnnlab.cells) has no encoder: the mean of the
review's embeddings over its real tokens goes straight to the linear output. Its one implementation is `plain`;
the encoder's settings (hidden_size, num_layers, bidirectional, forget_bias) and `pooling` do not apply to it (a
bag is the mean), as forget_bias does not apply to the RNN and GRU: one config serves every cell.

Token ids (IMDB) are embedded first; continuous features (the adding problem) take `input_size` instead of
`vocab_size` and go straight into the encoder. The output is a logit or, for regression, the prediction.

`init` (model.init): `pytorch` leaves every layer as PyTorch builds it; `keras` starts the network as the
article's Keras model did: embedding uniform in ±0.05, the recurrent layers as `RecurrentEncoder.init_keras`
says, the output layer glorot-uniform with bias 0; `orthogonal` leaves the embedding and output layer as PyTorch
builds them and starts every recurrent block orthogonal (`RecurrentEncoder.init_orthogonal`): it is about recurrent
weights, so a cell without recurrence refuses it.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.cells import CELLS, IMPLEMENTATIONS, PLAIN
from rnnlab.checks import fraction, one_of, positive_int
from rnnlab.data.text import PAD_ID
from rnnlab.models.encoder import INITS, RecurrentEncoder, new_seed, padding_mask

POOLINGS = ("last", "max", "mean")
KERAS_EMBEDDING_RANGE = 0.05  # Keras's Embedding: uniform(-0.05, 0.05)


class RecurrentNetwork(nn.Module):
    """One recurrent cell reading a sequence into one output. Exactly one of `vocab_size` (token ids, embedded
    first) and `input_size` (continuous features, read as they are) is given; the rest is `model.*` in conf/."""

    def __init__(
        self,
        *,
        cell: str,
        impl: str = "fused",
        embedding_dim: int = 64,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        forget_bias: float | None = None,
        init: str = "pytorch",
        vocab_size: int | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise ValueError("give exactly one of vocab_size (token ids) and input_size (continuous features)")
        self.pooling = one_of("pooling", pooling, POOLINGS)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        fraction("dropout", dropout)
        self.recurrent = CELLS[one_of("cell", cell, CELLS)].recurrent
        if impl in IMPLEMENTATIONS and impl not in CELLS[cell].impls:
            kind = ("it has no recurrence" if not self.recurrent else "a recurrent cell" if impl == PLAIN
                    else f"it has no {impl} layer")
            raise ValueError(f"impl={impl!r} does not apply to cell {cell!r} ({kind}): choose "
                             f"{' | '.join(CELLS[cell].impls)}")
        one_of("impl", impl, CELLS[cell].impls)
        if one_of("init", init, INITS) == "orthogonal" and not self.recurrent:
            raise ValueError(f"init='orthogonal' sets recurrent weights, and cell {cell!r} has none: choose pytorch | "
                             "keras")
        # Drawn first, as in the encoder: the same seed gives the same embedding and output layer in every impl.
        keras = torch.Generator().manual_seed(new_seed()) if one_of("init", init, INITS) == "keras" else None
        if input_size is None:
            self.embedding = nn.Embedding(positive_int("vocab_size", vocab_size),
                                          positive_int("embedding_dim", embedding_dim), padding_idx=PAD_ID)
            input_size = embedding_dim
        else:
            self.embedding = None  # the features are the encoder's input as they are
        if self.recurrent:
            self.encoder = RecurrentEncoder(cell=cell, impl=impl, input_size=input_size, hidden_size=hidden_size,
                                            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                                            forget_bias=forget_bias, init=init)
            features = self.encoder.output_size
        else:
            self.encoder = None  # the bag of embeddings: the mean of its inputs is the feature vector
            features = input_size
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(features, 1)
        if keras is not None:
            self.init_keras(keras)

    @torch.no_grad()
    def init_keras(self, generator: torch.Generator) -> None:
        """Keras's Embedding (uniform in ±0.05; the padding row stays zero, as PyTorch keeps it) and Dense
        (glorot-uniform, bias 0)."""
        if self.embedding is not None:
            nn.init.uniform_(self.embedding.weight, -KERAS_EMBEDDING_RANGE, KERAS_EMBEDDING_RANGE, generator=generator)
            self.embedding.weight[PAD_ID] = 0.0
        nn.init.xavier_uniform_(self.decoder.weight, generator=generator)
        self.decoder.bias.zero_()

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """states [B, T, D*H] (zero at padding) -> [B, D*H], from real tokens only."""
        if self.pooling == "mean":
            return states.sum(dim=1) / lengths[:, None].to(states.dtype)
        if self.pooling == "max":
            real = padding_mask(lengths, states.shape[1])[:, :, None]
            return states.masked_fill(~real, float("-inf")).amax(dim=1)
        # last: the forward direction's state at the last real token; the backward direction's at t = 0,
        # where it has read the whole review.
        last = states.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, states.shape[2]))[:, 0]
        if states.shape[2] == self.hidden_size:
            return last
        return torch.cat([last[:, : self.hidden_size], states[:, 0, self.hidden_size :]], dim=-1)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """inputs: tokens [B, T] (PAD_ID after each review's end) or features [B, T, input_size];
        lengths [B] -> outputs [B]."""
        x = inputs if self.embedding is None else self.embedding(inputs)
        if self.encoder is None:  # no recurrence: the mean over real tokens, padding masked out
            real = padding_mask(lengths, x.shape[1])[:, :, None]
            pooled = (x * real).sum(dim=1) / lengths[:, None].to(x.dtype)
        else:
            pooled = self.pool(self.encoder(x, lengths), lengths)
        return self.decoder(self.dropout(pooled)).squeeze(-1)
