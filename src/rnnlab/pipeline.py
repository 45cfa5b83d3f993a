"""The runs `dvc repro` trains, and where each one's outputs live.

`pipeline.cells` x `pipeline.impls` x `pipeline.seeds` (conf/config.yaml) is the DVC matrix of train stages;
stage `train@<cell>-<impl>-<seed>` writes `<paths.train_dir>/<cell>-<impl>-<seed>/`. The cells without
recurrence (`pipeline.baselines`, e.g. the bag of embeddings) have one implementation, `plain`, so they train
once per seed, not once per implementation: `pipeline.baselines` x `pipeline.seeds` is the matrix of stage
`baseline@<cell>-<seed>`, which writes `<paths.train_dir>/<cell>-plain-<seed>/` (DVC's matrix is a full product,
so the two lists are kept apart). The parallel-scan cells (`pipeline.scan_cells`: minGRU, minLSTM, QRNN) have no
fused or sequence kernel, only `explicit` (the step reference) and `scan`; they train with `scan`, once per seed:
`pipeline.scan_cells` x `pipeline.seeds` is the matrix of stage `scan@<cell>-<seed>`, which writes
`<paths.train_dir>/<cell>-scan-<seed>/`. The stages after training (gradients, timing, compare) read exactly these
folders and nothing else, so a folder left from an earlier pipeline (another seed list, another machine) never
enters a table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.cells import BASELINE_NAMES, CELL_NAMES, CELLS, IMPL_NAMES, PLAIN, SCAN_CELL_NAMES
from rnnlab.checks import one_of

SCAN = "scan"  # the one implementation the pipeline trains a parallel-scan cell with


@dataclass(frozen=True)
class PlannedRun:
    cell: str
    impl: str
    seed: int

    @property
    def name(self) -> str:  # dvc.yaml spells the same: ${item.cell}-${item.impl}-${item.seed}
        return f"{self.cell}-{self.impl}-{self.seed}"

    @property
    def stage(self) -> str:
        """The dvc.yaml stage that trains it: baseline@ and scan@ name the cell and seed (one implementation)."""
        if self.impl in (PLAIN, SCAN):
            return f"{'baseline' if self.impl == PLAIN else 'scan'}@{self.cell}-{self.seed}"
        return f"train@{self.name}"


def planned_runs(pipeline: DictConfig) -> list[PlannedRun]:
    """Every run of the pipeline section: the recurrent cells' (per implementation, in the article's cell order),
    then the parallel-scan cells' (impl scan), then the baselines'; ValueError on an unknown cell or impl, or a
    cell in another list than its own."""
    baselines = list(pipeline.get("baselines") or [])  # absent in configs older than the baselines
    scan_cells = list(pipeline.get("scan_cells") or [])  # absent in configs older than the scan cells
    for impl in pipeline.impls:
        one_of("pipeline.impls", impl, IMPL_NAMES)
    for cell in pipeline.cells:
        if cell in BASELINE_NAMES:
            raise ValueError(f"pipeline.cells lists {cell}, which has no recurrence (one implementation, {PLAIN}): "
                             f"list it in pipeline.baselines")
        one_of("pipeline.cells", cell, CELL_NAMES)
        if cell in SCAN_CELL_NAMES:  # trained once per seed with scan, as stage scan@<cell>-<seed>
            raise ValueError(f"pipeline.cells lists {cell}, a parallel-scan cell (implementations "
                             f"{', '.join(CELLS[cell].impls)}): list it in pipeline.scan_cells")
        lacking = [impl for impl in pipeline.impls if impl not in CELLS[cell].impls]
        if lacking:
            raise ValueError(f"pipeline.cells lists {cell}, which has no implementation {', '.join(lacking)} "
                             f"(it has {', '.join(CELLS[cell].impls)}): take {', '.join(lacking)} out of "
                             f"pipeline.impls")
    for cell in scan_cells:
        if cell in BASELINE_NAMES:
            raise ValueError(f"pipeline.scan_cells lists {cell}, which has no recurrence: list it in "
                             f"pipeline.baselines")
        if cell in CELL_NAMES and cell not in SCAN_CELL_NAMES:
            raise ValueError(f"pipeline.scan_cells lists {cell}, a cell without a parallel scan (it has "
                             f"{', '.join(CELLS[cell].impls)}): list it in pipeline.cells")
        one_of("pipeline.scan_cells", cell, SCAN_CELL_NAMES)
    for cell in baselines:
        if cell in CELL_NAMES:
            where = "pipeline.scan_cells" if cell in SCAN_CELL_NAMES else "pipeline.cells"
            raise ValueError(f"pipeline.baselines lists {cell}, a recurrent cell: list it in {where}")
        one_of("pipeline.baselines", cell, BASELINE_NAMES)
    if not (pipeline.cells and pipeline.impls and pipeline.seeds):
        raise ValueError("pipeline.cells, pipeline.impls and pipeline.seeds must each list at least one value")
    recurrent = [PlannedRun(cell, impl, int(seed))
                 for impl, cell, seed in itertools.product(pipeline.impls, pipeline.cells, pipeline.seeds)]
    scanned = [PlannedRun(cell, SCAN, int(seed)) for cell in scan_cells for seed in pipeline.seeds]
    return recurrent + scanned + [PlannedRun(cell, PLAIN, int(seed)) for cell in baselines for seed in pipeline.seeds]


def run_folder(train_dir: str | Path, run: PlannedRun) -> Path:
    return Path(train_dir) / run.name
