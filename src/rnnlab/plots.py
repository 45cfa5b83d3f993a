"""Figures: a run's learning curves, and the comparison of cells (accuracy against training time)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


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


def plot_accuracy_vs_time(rows: list[dict], path: Path) -> None:
    """One point per run: training time (x, log scale) against test accuracy (y), labelled by cell."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ax.scatter(row["fit_time_s"], row["test_acc"], s=60)
        ax.annotate(f"{row['cell']} ({row['impl']})", (row["fit_time_s"], row["test_acc"]),
                    textcoords="offset points", xytext=(6, 4))
    ax.set(xlabel="training time (s, fit wall time)", ylabel="test accuracy", xscale="log",
           title="IMDB sentiment: accuracy vs training time")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
