"""The bag of embeddings: no recurrence, the mean of the review's word embeddings, then the linear output.

A floor for the cells (what they add over it is what recurrence buys). It has no layers: the network
(rnnlab/models/network.py) has no encoder for it, and its one implementation is `plain`.
"""

from __future__ import annotations

from rnnlab.cells.api import Cell

CELL = Cell(
    name="bag",
    title="bag of embeddings",
    colour="tab:brown",
    summary="no recurrence: the mean of the review's word embeddings, then the linear output (a floor for the cells)",
    order=90,
)
