"""Figures: a run's learning curves, and the comparison of cells (accuracy against training time)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rnnlab.cells import CELLS, IMPLEMENTATIONS  # noqa: E402


def plot_learning_curves(history: dict[str, list[float]], title: str, path: Path, loss_name: str = "BCE") -> None:
    """Train and validation loss, and validation accuracy, by epoch. loss_name: BCE (IMDB), MSE (adding)."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in ("train_loss", "val_loss"):
        values = history.get(name, [])
        loss_ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    values = history.get("val_acc", [])
    acc_ax.plot(range(1, len(values) + 1), values, marker="o", color="tab:green", label="val_acc")
    loss_ax.set(xlabel="epoch", ylabel=f"{loss_name} loss", title=f"{title}: loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    fig.savefig(path, dpi=100)
    plt.close(fig)
