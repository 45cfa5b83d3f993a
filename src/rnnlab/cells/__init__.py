"""The registry of cells: every cell rnnlab knows, and the ways it runs them, gathered from the cells' own files.

A cell is one module defining `CELL = Cell(...)` (rnnlab/cells/api.py says what a Cell declares). The registry
imports every module of this package that defines one (a module without CELL, such as a layer a cell's file
uses, is skipped), then each module named in the environment variable RNNLAB_CELLS (comma-separated import
paths: how a test or a user's own package adds a cell without touching rnnlab). Everything that names, orders,
sizes or colours cells (the model, compare, the claims, plots, the benchmark and the notebook) reads the tables
built here, so a new cell is its own file and nothing else edited by hand.

A cell without layers has no recurrence (the bag of embeddings): nothing to run step by step, so it has one
implementation, `plain`; the pipeline trains it once per seed (`pipeline.baselines`), and what is about
recurrence (the article's claims, gradient decay, the adding problem, the benchmark of recurrent kernels) leaves
it out.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path

from rnnlab import PACKAGE_DIR
from rnnlab.cells.api import IMPLEMENTATIONS, PLAIN, Cell, Implementation

__all__ = ["ARTICLE_CELLS", "BASELINE_NAMES", "CELL_NAMES", "CELLS", "IMPLEMENTATIONS", "IMPL_NAMES", "PLAIN",
           "SCAN_CELL_NAMES", "Cell", "Implementation", "cell_rank", "impl_rank", "load_cells", "run_impl"]

EXTRA_CELLS_VARIABLE = "RNNLAB_CELLS"


def impl_rank(name: str) -> tuple[int, str]:
    """Sort key: the order of IMPLEMENTATIONS, unknown names last (alphabetically)."""
    return (list(IMPLEMENTATIONS).index(name), "") if name in IMPLEMENTATIONS else (len(IMPLEMENTATIONS), name)


def package_cell_modules() -> list[str]:
    """The import paths of this package's modules (each may or may not define a CELL)."""
    return [f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__)
            if not module.ispkg and module.name != "api"]


def extra_cell_modules() -> list[str]:
    """The modules RNNLAB_CELLS names, in its order."""
    return [name.strip() for name in os.environ.get(EXTRA_CELLS_VARIABLE, "").split(",") if name.strip()]


def load_cells(modules: Iterable[str], *, required: Iterable[str] = ()) -> dict[str, Cell]:
    """The cells these modules define, by name, in their `order` (ties alphabetically).

    A module without CELL is skipped, unless it is in `required` (RNNLAB_CELLS names a module to add a cell, so
    one without is a mistake). ValueError naming the module for a CELL that is not a Cell, a name already taken,
    or a layer of an implementation rnnlab does not know."""
    required = set(required)
    found: dict[str, tuple[Cell, str]] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"cell module {module_name}: cannot be imported ({e})") from e
        cell = getattr(module, "CELL", None)
        if cell is None:
            if module_name in required:
                raise ValueError(f"cell module {module_name}: defines no CELL")
            continue
        if not isinstance(cell, Cell):
            raise ValueError(f"cell module {module_name}: CELL is a {type(cell).__name__}, not a "
                             "rnnlab.cells.api.Cell")
        if cell.name in found:
            raise ValueError(f"cell module {module_name}: cell name {cell.name!r} is already defined by "
                             f"{found[cell.name][1]}")
        unknown = [impl for impl in cell.layers if impl not in IMPLEMENTATIONS or impl == PLAIN]
        if unknown:
            known = " | ".join(impl for impl in IMPLEMENTATIONS if impl != PLAIN)
            raise ValueError(f"cell module {module_name}: cell {cell.name!r} has layers for unknown "
                             f"implementations {unknown}: choose from {known}")
        found[cell.name] = (cell, module_name)
    return {cell.name: cell for cell, _ in sorted(found.values(), key=lambda pair: (pair[0].order, pair[0].name))}


def command_name() -> str | None:
    """The rnnlab command this process runs (`python -m rnnlab.train`: train; rnnlab.bench: bench), else None."""
    main = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if main is None or PACKAGE_DIR not in main.parents:
        return None
    return main.parent.name if main.stem == "__main__" else main.stem


def registered_cells() -> dict[str, Cell]:
    """Every cell; a bad cell module stops an rnnlab command with its one `<command>: error:` line, as any other
    bad input does (imported as a library, the ValueError is the caller's)."""
    try:
        return load_cells([*package_cell_modules(), *extra_cell_modules()], required=extra_cell_modules())
    except ValueError as e:
        command = command_name()
        if command is None:
            raise
        print(f"{command}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


CELLS: dict[str, Cell] = registered_cells()
CELL_NAMES = tuple(name for name, cell in CELLS.items() if cell.recurrent)  # the recurrent cells, in order
BASELINE_NAMES = tuple(name for name, cell in CELLS.items() if not cell.recurrent)  # cells without recurrence
ARTICLE_CELLS = tuple(name for name, cell in CELLS.items() if cell.article)  # what the article's claims are about
SCAN_CELL_NAMES = tuple(name for name, cell in CELLS.items() if "scan" in cell.impls)  # parallel-scan cells
# The implementations of a recurrent cell that some registered cell has (scan only once a scan cell exists).
IMPL_NAMES = tuple(impl for impl in IMPLEMENTATIONS
                   if impl != PLAIN and any(impl in cell.layers for cell in CELLS.values()))


def cell_rank(name: str) -> tuple[int, str]:
    """Sort key: the registry's order (each cell's `order`), unknown names last (alphabetically)."""
    return (list(CELLS).index(name), "") if name in CELLS else (len(CELLS), name)


def run_impl(cell: str, preferred: str) -> str:
    """The implementation a run of `cell` uses where a config asks for `preferred` for every cell (the search's,
    the adding problem's, the benchmark's model.impl=sequence): `preferred` if the cell has it, else its parallel
    scan, else its first implementation. The runs record what they used, so nothing is labelled as what it is not."""
    impls = CELLS[cell].impls
    if preferred in impls:
        return preferred
    return "scan" if "scan" in impls else impls[0]
