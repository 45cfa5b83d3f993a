"""The comparison's figure: accuracy against training time, a colour per cell and a marker per implementation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rnnlab.cells import CELLS, IMPLEMENTATIONS  # noqa: E402
from rnnlab.files import replacing


def cell_colour(cell: str) -> str:
    """The cell's colour from rnnlab.cells; grey for a name it does not define."""
    return CELLS[cell].colour if cell in CELLS else "tab:gray"


def impl_marker(impl: str) -> str:
    return IMPLEMENTATIONS[impl].marker if impl in IMPLEMENTATIONS else "^"


def plot_accuracy_vs_time(rows: list[dict], path: Path) -> None:
    """Training time (x, log scale) against test accuracy (y): each run a faint dot, and per cell and
    implementation the mean over seeds with ± 1 sd bars both ways. Colour = cell, marker = implementation."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["cell"], row["impl"]), []).append(row)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (cell, impl), runs in groups.items():
        time, accuracy = np.array([r["fit_time_s"] for r in runs]), np.array([r["test_acc"] for r in runs])
        colour, marker = cell_colour(cell), impl_marker(impl)
        ax.scatter(time, accuracy, s=12, color=colour, marker=marker, alpha=0.35)
        spread = (time.std(ddof=1), accuracy.std(ddof=1)) if len(runs) > 1 else (None, None)
        ax.errorbar(time.mean(), accuracy.mean(), xerr=spread[0], yerr=spread[1], color=colour, marker=marker,
                    markersize=8, capsize=3, linestyle="none")
        ax.annotate(f"{cell} ({impl}, n={len(runs)})", (time.mean(), accuracy.mean()), textcoords="offset points",
                    xytext=(7, 5), fontsize=8)
    ax.set(xlabel="training time (s, fit wall time)", ylabel="test accuracy", xscale="log",
           title="IMDB sentiment: accuracy vs training time (mean ± sd over seeds)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)
