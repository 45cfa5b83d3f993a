"""The adding problem's results: each cell's limit, the summary table and the figure (adding.png)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.cells import CELLS  # noqa: E402
from rnnlab.files import replacing


def limit(by_length: dict[str, dict[str, dict]]) -> int | None:
    """The smallest length at which every seed failed to reach the threshold; None: it learned at every length."""
    return min((int(T) for T, seeds in by_length.items()
                if seeds and all(row["updates_to_threshold"] is None for row in seeds.values())), default=None)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: dict[str, dict[str, dict[str, dict]]]) -> tuple[dict, dict]:
    """(per cell and length: learned, seeds that learned, medians over seeds; per cell: its limit)."""
    results = {}
    for cell, by_length in runs.items():
        results[cell] = {T: {"learned": any(r["updates_to_threshold"] is not None for r in seeds.values()),
                             "seeds_learned": sum(r["updates_to_threshold"] is not None for r in seeds.values()),
                             "seeds": len(seeds),
                             "test_mse_median": median(r["test_mse"] for r in seeds.values()),
                             "updates_to_threshold_median": median(r["updates_to_threshold"] for r in seeds.values()),
                             "baseline_mse_median": median(r["baseline_mse"] for r in seeds.values())}
                         for T, seeds in by_length.items()}
    return results, {cell: limit(by_length) for cell, by_length in runs.items()}


def sorted_lengths(runs: dict[str, dict[str, dict]]) -> list[tuple[int, dict[str, dict]]]:
    return sorted((int(T), seeds) for T, seeds in runs.items())


def plot(report: dict, path: Path) -> None:
    """Left: test MSE by length (median over seeds, each seed a faint point), the baseline dashed, each cell's limit
    an x. Right: updates to validation MSE < threshold by length, missing where no seed got there."""
    runs, limits, settings = report["runs"], report["limits"], report["settings"]
    fig, (mse_ax, updates_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    lengths = sorted({int(T) for cell_runs in runs.values() for T in cell_runs})
    for cell, cell_runs in runs.items():
        colour, title = CELLS[cell].colour, CELLS[cell].title
        rows = sorted_lengths(cell_runs)
        for ax, key in ((mse_ax, "test_mse"), (updates_ax, "updates_to_threshold")):
            points = [(T, r[key]) for T, seeds in rows for r in seeds.values() if r[key] is not None]
            ax.scatter([T for T, _ in points], [v for _, v in points], color=colour, alpha=0.3, s=14)
        medians = [(T, median(r["test_mse"] for r in seeds.values())) for T, seeds in rows]
        at_limit = dict(medians).get(limits.get(cell))
        label = f"{title} (learned at every T)" if limits.get(cell) is None else f"{title} (limit T = {limits[cell]})"
        mse_ax.plot(*zip(*[(T, m) for T, m in medians if m is not None]), marker="o", color=colour, label=label)
        if at_limit is not None:
            mse_ax.scatter([limits[cell]], [at_limit], marker="x", s=140, linewidths=2.5, color=colour, zorder=3)
        reached = [(T, median(r["updates_to_threshold"] for r in seeds.values())) for T, seeds in rows]
        reached = [(T, u) for T, u in reached if u is not None]
        if reached:
            updates_ax.plot(*zip(*reached), marker="o", color=colour, label=title)
    baseline = [(T, median(r["baseline_mse"] for cell_runs in runs.values() for r in cell_runs[str(T)].values()))
                for T in lengths]
    mse_ax.plot(*zip(*baseline), "k--", label="predict 1 (baseline)")
    mse_ax.axhline(settings["threshold"], color="grey", linestyle=":", label="threshold (on validation MSE)")
    mse_ax.set(ylabel="test MSE (x: the limit)", title="Test MSE by sequence length")
    updates_ax.axhline(settings["max_updates"], color="grey", linestyle="--", label="budget")
    updates_ax.set(ylabel=f"updates of {settings['batch_size']} to validation MSE < {settings['threshold']:g}",
                   title="Updates to learn it (missing: never within the budget)")
    for ax in (mse_ax, updates_ax):
        ax.set(xlabel="sequence length T", xscale="log", yscale="log")
        ax.set_xticks(lengths, [str(T) for T in lengths])
        ax.minorticks_off()
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    lrs = ", ".join(f"{cell} {lr:g}" for cell, lr in settings["lr"].items())
    fig.suptitle(f"Adding problem: seeds {settings['seeds']}, up to {settings['max_updates']} updates, lr {lrs}",
                 fontsize=10)
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)


def table(report: dict) -> str:
    lines = ["| cell | lr | T | seeds learned | updates to threshold | test MSE (median) | baseline MSE |",
             "|" + " --- |" * 7]
    for cell, cell_runs in report["runs"].items():
        for T, seeds in sorted_lengths(cell_runs):
            summary = report["results"][cell][str(T)]
            updates = ", ".join(str(r["updates_to_threshold"] or "-") for _, r in sorted(seeds.items()))
            mse = summary["test_mse_median"]
            lines.append(f"| {cell} | {report['settings']['lr'][cell]:g} | {T} | {summary['seeds_learned']}/"
                         f"{summary['seeds']} | {updates} | {'-' if mse is None else f'{mse:.4f}'} | "
                         f"{summary['baseline_mse_median']:.4f} |")
    limits = ", ".join(f"{cell} {T or 'none'}" for cell, T in report["limits"].items())
    return "\n".join(lines) + f"\nlimit (smallest T at which every seed failed): {limits}\n"
