"""The runs `dvc repro` trains, and where each one's outputs live.

`pipeline.cells` x `pipeline.impls` x `pipeline.seeds` (conf/config.yaml) is the DVC matrix of train stages;
stage `train@<cell>-<impl>-<seed>` writes `<paths.train_dir>/<cell>-<impl>-<seed>/`. The stages after training
(gradients, compare) read exactly these folders and nothing else, so a folder left from an earlier pipeline
(another seed list, another machine) never enters a table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.cells import CELL_NAMES, IMPL_NAMES
from rnnlab.checks import one_of


@dataclass(frozen=True)
class PlannedRun:
    cell: str
    impl: str
    seed: int

    @property
    def name(self) -> str:  # dvc.yaml spells the same: ${item.cell}-${item.impl}-${item.seed}
        return f"{self.cell}-{self.impl}-{self.seed}"


def planned_runs(pipeline: DictConfig) -> list[PlannedRun]:
    """Every run of the pipeline section, in the article's cell order; ValueError on an unknown cell or impl."""
    for cell in pipeline.cells:
        one_of("pipeline.cells", cell, CELL_NAMES)
    for impl in pipeline.impls:
        one_of("pipeline.impls", impl, IMPL_NAMES)
    if not (pipeline.cells and pipeline.impls and pipeline.seeds):
        raise ValueError("pipeline.cells, pipeline.impls and pipeline.seeds must each list at least one value")
    return [PlannedRun(cell, impl, int(seed))
            for impl, cell, seed in itertools.product(pipeline.impls, pipeline.cells, pipeline.seeds)]


def run_folder(train_dir: str | Path, run: PlannedRun) -> Path:
    return Path(train_dir) / run.name
