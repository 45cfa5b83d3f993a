"""A stack of recurrent layers over right-padded batches, in any implementation, padding never leaking.

The layers are the cell's own (`CELLS[cell].layers[impl]`, rnnlab/cells/): one layer in one direction each,
x [B, T, E] -> hidden states [B, T, H]. For the classic cells, `impl="fused"` runs PyTorch's
`nn.RNN`/`nn.LSTM`/`nn.GRU`; `impl="explicit"` the cells written out from their equations; `impl="sequence"` the
same cells through the C++ kernel of `sequence.py`. All see the same padded input [B, T, E] with `lengths` [B]:

- forward direction: padding comes after the real tokens, so the states at t < length are exact;
- backward direction: each sequence is reversed within its own length (padding stays at the end),
  run forwards, and reversed back, so it too starts at the last real token;
- a layer whose forward takes `lengths` gets them (on CUDA the fused layers pack the sequences with them:
  cuDNN's fast path; rnnlab/models/fused.py).

Outputs at padded positions are zeroed.

Mixed precision (`trainer.precision=bf16-mixed` or `16-mixed`): the recurrent layers run in float32 whatever the
autocast dtype, autocast off around them (their inputs cast to float32); the layers around them (the decoder)
follow autocast. PyTorch's autocast would run cuDNN's RNN in float16 even under bf16-mixed (its cuDNN-RNN rule
casts to half, not to the autocast dtype), with no gradient scaler, and gradients carried back over hundreds of
steps are what underflows first; one rule for every implementation keeps their results comparable.

The weights start as `init` says: `pytorch`, each layer's own initialisation (uniform within ±1/sqrt(H));
`keras`, what Keras's recurrent layers start from (`init_keras`); or `orthogonal`, PyTorch's initialisation with
every gate's recurrent block an orthogonal matrix (`init_orthogonal`). Each is the same in every implementation.
Both touch W_ih/W_hh/b_ih/b_hh by name: a cell whose layers hold other parameters (or no W_hh: recurrent_blocks
0) refuses them with a one-line ValueError rather than starting half-initialised.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from rnnlab.cells import CELL_NAMES, CELLS
from rnnlab.checks import one_of, positive_int

INITS = ("pytorch", "keras", "orthogonal")  # model.init
# A layer's parameters, in the order Keras's initialisers are drawn; fused layers add the suffix _l0.
LAYER_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def new_seed() -> int:
    """A seed drawn from torch's global generator: what `torch.manual_seed` decides, made private to one use."""
    return int(torch.randint(0, 2**62, (), device="cpu").item())  # on CPU also where a model is built on meta


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] True at real tokens."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x [B, T, F] within its length; padding stays in place."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


class RecurrentEncoder(nn.Module):
    def __init__(
        self,
        *,
        cell: str,
        impl: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float | None = None,
        init: str = "pytorch",
    ) -> None:
        super().__init__()
        one_of("cell", cell, CELL_NAMES)
        one_of("impl", impl, CELLS[cell].impls)
        one_of("init", init, INITS)
        if init == "orthogonal" and not CELLS[cell].recurrent_blocks:
            raise ValueError(f"init='orthogonal' sets recurrent weights W_hh, and cell {cell!r} has none (its gates "
                             "read x_t only): choose pytorch | keras")
        # Drawn before the layers exist: their own initialisation may draw differently in each implementation, so
        # Keras's and the orthogonal weights come from a generator of their own, the same for the same seed
        # whatever the impl.
        own_seed = new_seed() if init in ("keras", "orthogonal") else None
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        positive_int("num_layers", num_layers)
        self.impl = impl
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size
        self.recurrent_blocks = CELLS[cell].recurrent_blocks
        make = CELLS[cell].layers[impl]
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else self.output_size
            self.layers.append(nn.ModuleList([make(size, hidden_size) for _ in range(self.directions)]))
        # Whether the layers want the lengths (a layer's forward may take them: rnnlab/cells/api.py).
        self.pass_lengths = "lengths" in inspect.signature(self.layers[0][0].forward).parameters
        if init == "keras":
            self.init_keras(torch.Generator().manual_seed(own_seed))
        elif init == "orthogonal":
            self.init_orthogonal(torch.Generator().manual_seed(own_seed), hidden_size)
        # One config serves every cell (DVC's stages override model.cell), so a cell without a forget gate ignores it.
        if forget_bias is not None and CELLS[cell].forget_block is not None:
            self.init_forget_bias(forget_bias, hidden_size, CELLS[cell].forget_block)
        self.dropout = nn.Dropout(dropout)  # between layers, as nn.LSTM's `dropout` does

    @torch.no_grad()
    def init_keras(self, generator: torch.Generator) -> None:
        """Keras's SimpleRNN/LSTM/GRU initialisation, layer by layer and direction by direction.

        - input weights W_ih [gates*H, input]: glorot-uniform over the whole matrix, bound
          sqrt(6 / (input + gates*H)), as Keras's kernel [input, gates*H] (its transpose: same fans);
        - recurrent weights W_hh [gates*H, H]: orthogonal over the whole matrix, orthonormal columns (Keras's
          recurrent kernel [H, gates*H] has orthonormal rows: the transpose);
        - biases zero (the LSTM's forget bias is set afterwards, `init_forget_bias`: Keras's unit_forget_bias).
        """
        for weight_ih, weight_hh, bias_ih, bias_hh in self.layer_parameters():
            nn.init.xavier_uniform_(weight_ih, generator=generator)
            if weight_hh is not None:  # none where the gates read x_t only
                nn.init.orthogonal_(weight_hh, generator=generator)
            for bias in (bias_ih, bias_hh):
                if bias is not None:
                    bias.zero_()

    def layer_parameters(self):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of every layer and direction, whatever the implementation;
        None for one a layer lacks (a cell whose gates read x_t only has no weight_hh; a layer may have no biases)."""
        for directions in self.layers:
            for rnn in directions:
                found = []
                for name in LAYER_PARAMETERS:
                    parameter = getattr(rnn, name, None)
                    parameter = getattr(rnn, f"{name}_l0", None) if parameter is None else parameter
                    found.append(parameter if isinstance(parameter, nn.Parameter) else None)
                if found[0] is None or (found[1] is None and self.recurrent_blocks):
                    missing = "weight_ih" if found[0] is None else "weight_hh"
                    raise ValueError(f"model.init: a {type(rnn).__name__} layer has no parameter {missing} to "
                                     "initialise: choose init=pytorch")
                yield tuple(found)

    @torch.no_grad()
    def init_orthogonal(self, generator: torch.Generator, hidden_size: int) -> None:
        """Every gate's recurrent block W_hh[g*H:(g+1)*H] [H, H] an orthogonal matrix (for the simple RNN: the
        whole W_hh), so at the start the recurrence neither shrinks nor grows a state it carries (Saxe et al.,
        2014; Le et al., 2015 start from the identity, one orthogonal matrix). The rest as PyTorch draws it
        (uniform within ±1/sqrt(H)), here from `generator`, so no implementation's own draws matter."""
        bound = hidden_size ** -0.5
        for weight_ih, weight_hh, bias_ih, bias_hh in self.layer_parameters():
            nn.init.uniform_(weight_ih, -bound, bound, generator=generator)
            for block in weight_hh.split(hidden_size):
                nn.init.orthogonal_(block, generator=generator)
            for bias in (bias_ih, bias_hh):
                if bias is not None:
                    nn.init.uniform_(bias, -bound, bound, generator=generator)

    @torch.no_grad()
    def init_forget_bias(self, value: float, hidden_size: int, block: int) -> None:
        """Start every layer's forget gate with a total bias of `value` (PyTorch: uniform around 0).

        A bias of 1 (Gers et al., 2000; Jozefowicz et al., 2015; Keras's default, which the article used)
        keeps f near 0.73 at the start, so the cell state and its gradient survive many steps from the
        first update on. All implementations name the biases bias_ih*/bias_hh*; the forget gate is block
        `block` of them (the cell's forget_block; the LSTM's gates are i, f, g, o: block 1, rows H..2H), and its
        bias is split as value + 0 (a layer without bias_hh gets the whole value in bias_ih).
        """
        forget = slice(block * hidden_size, (block + 1) * hidden_size)
        for name, parameter in self.named_parameters():
            if ".bias_ih" in name:
                parameter[forget] = value
            elif ".bias_hh" in name:
                parameter[forget] = 0.0

    def run(self, rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return rnn(x, lengths=lengths) if self.pass_lengths else rnn(x)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, input_size], lengths [B] -> [B, T, directions * hidden_size], float32 (module docstring)."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.recur(x.float(), lengths)
        return self.recur(x, lengths)

    def recur(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for k, (forward, *backward) in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            outputs = [self.run(forward, x, lengths)]
            for rnn in backward:
                outputs.append(reverse_padded(self.run(rnn, reverse_padded(x, lengths), lengths), lengths))
            x = torch.cat(outputs, dim=-1) if backward else outputs[0]
        return x * padding_mask(lengths, x.shape[1])[:, :, None]
