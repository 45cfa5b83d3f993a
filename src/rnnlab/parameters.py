"""How many parameters a cell's recurrent layers hold, and the hidden size that gives a cell a chosen count.

A recurrent layer of a cell with g gates, input size I and hidden size H holds W_ih [g*H, I], W_hh [g*H, H] and
two biases [g*H] (every implementation, fused or written out, has the same four): g * H * (I + H + 2). The count
is taken from the cell's layer itself (built on the meta device), so a new cell's own parameters count too. Layer 1
reads the embedding (I = E), the layers above read the layer below (I = directions * H); each direction has its
own weights. A cell without recurrence (no gates) has none.

The parameter-matched setting (`experiment=matched`, `model.match`) gives every cell the hidden size at which its
recurrent layers hold as many parameters as a reference cell's at a reference hidden size (the LSTM's at H = 64),
the embedding, layers and directions being the same: the hidden size is solved for each cell before a run starts
(`with_matched_hidden_size`, called by rnnlab.train and by compare's check of a run's settings).
"""

from __future__ import annotations

import copy
import functools

import torch
from omegaconf import DictConfig, open_dict

from rnnlab.cells import CELL_NAMES, CELLS
from rnnlab.checks import one_of, positive_int


def recurrent_parameters(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                         bidirectional: bool = False) -> int:
    """The number of parameters in `cell`'s recurrent layers (0 for a cell without recurrence)."""
    spec = CELLS[one_of("cell", cell, CELLS)]
    if not spec.recurrent:
        return 0
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else directions * hidden_size
        total += directions * layer_parameters(cell, inputs, hidden_size)
    return total


@functools.cache
def layer_parameters(cell: str, input_size: int, hidden_size: int) -> int:
    """The parameters of one layer in one direction, counted on the layer itself: every implementation of a
    cell holds the same ones, so its first serves. Built on the meta device: shapes only, no memory, no draws."""
    spec = CELLS[cell]
    with torch.device("meta"):
        layer = spec.layers[spec.impls[0]](input_size, hidden_size)
    return sum(parameter.numel() for parameter in layer.parameters())


def matched_hidden_size(cell: str, input_size: int, target: int, num_layers: int = 1,
                        bidirectional: bool = False) -> int:
    """The hidden size H >= 1 whose recurrent parameter count is nearest `target` (the smaller H on a tie).

    The count grows with H, so the nearest is one of the two sizes around the target, found by bisection; it is
    then within one hidden unit's worth of the target: |count(H) - target| <= count(H + 1) - count(H)."""
    one_of("cell", cell, CELL_NAMES)
    positive_int("target", target)

    def count(h: int) -> int:
        return recurrent_parameters(cell, input_size, h, num_layers, bidirectional)

    low, high = 1, 2
    while count(high) < target:
        high *= 2
    while high - low > 1:  # count(low) < target <= count(high), or low = 1
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < target else (low, middle)
    if count(low) >= target:
        return low
    return low if target - count(low) <= count(high) - target else high


def with_matched_hidden_size(model: DictConfig) -> DictConfig:
    """`model` (a config's model section) with hidden_size solved for `model.match`, when it has one; else itself.

    `match: {cell: lstm, hidden_size: 64}`: the target is that cell's recurrent count at that hidden size with
    this model's embedding size, layers and directions. A cell without recurrence keeps its hidden_size (it has
    none to match)."""
    match = model.get("match")
    if match is None or (model.cell in CELLS and not CELLS[model.cell].recurrent):
        return model
    for key in ("cell", "hidden_size"):
        if key not in match:
            raise ValueError(f"model.match needs a cell and a hidden_size (the reference), not {dict(match)}")
    one_of("model.match.cell", match.cell, CELL_NAMES)
    target = recurrent_parameters(match.cell, positive_int("model.embedding_dim", model.embedding_dim),
                                  positive_int("model.match.hidden_size", match.hidden_size),
                                  model.num_layers, model.bidirectional)
    matched = copy.deepcopy(model)
    with open_dict(matched):
        matched.hidden_size = matched_hidden_size(model.cell, model.embedding_dim, target, model.num_layers,
                                                  model.bidirectional)
    return matched


def with_matched_model(cfg: DictConfig) -> DictConfig:
    """A whole config with its model section through `with_matched_hidden_size` (itself when it has no match)."""
    if cfg.model.get("match") is None:
        return cfg
    matched = copy.deepcopy(cfg)
    with open_dict(matched):
        matched.model = with_matched_hidden_size(cfg.model)
    return matched


def network_settings(model: DictConfig) -> DictConfig:
    """The model section as the module takes it: `match` says how hidden_size was chosen, it is not an argument."""
    if "match" not in model:
        return model
    settings = copy.deepcopy(model)
    with open_dict(settings):
        del settings["match"]
    return settings
