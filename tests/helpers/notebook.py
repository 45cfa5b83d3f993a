"""notebooks/compare.ipynb run by a real kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers.project import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "compare.ipynb"


def execute(cwd: Path, probe: str | None = None) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel started in `cwd`; a failing cell raises CellExecutionError.

    `probe`, if given, is run as one extra last cell, to read back what the notebook computed.
    """
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if probe:
        notebook.cells.append(nbformat.v4.new_code_cell(probe))
    NotebookClient(notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook
