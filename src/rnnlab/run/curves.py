"""A run's learning curves as a figure (an MLflow artifact of every run)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.files import replacing  # noqa: E402


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
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)
