"""The adding problem's results: each row's limit and how far its seeds missed there, the summary table and the
figure (adding.png). A row is a cell, or a variant of one (findings.adding.variants: drawn in its cell's colour,
dashed, with squares); the table and the legend say which implementation each row ran (settings.impls: a
parallel-scan cell runs its scan where the others run the configured one)."""

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
    """(per row and length: learned, seeds that learned, medians over seeds, each seed's best validation MSE; per
    row: its limit)."""
    results = {}
    for cell, by_length in runs.items():
        results[cell] = {T: {"learned": any(r["updates_to_threshold"] is not None for r in seeds.values()),
                             "seeds_learned": sum(r["updates_to_threshold"] is not None for r in seeds.values()),
                             "seeds": len(seeds),
                             "test_mse_median": median(r["test_mse"] for r in seeds.values()),
                             "updates_to_threshold_median": median(r["updates_to_threshold"] for r in seeds.values()),
                             "baseline_mse_median": median(r["baseline_mse"] for r in seeds.values()),
                             "best_val_mse": {seed: r["best_val_mse"] for seed, r in seeds.items()}}
                         for T, seeds in by_length.items()}
    return results, {cell: limit(by_length) for cell, by_length in runs.items()}


def margin(best_val_mse: float | None, threshold: float) -> float | None:
    """How far a best validation MSE is above the threshold, relative to it: 0.013 vs 0.01 -> 0.3 (None: the run
    diverged, no MSE)."""
    return None if best_val_mse is None else best_val_mse / threshold - 1


def limit_margins(runs: dict[str, dict[str, dict[str, dict]]], limits: dict[str, int | None], threshold: float,
                  knife_edge: float) -> dict[str, dict | None]:
    """Per row with a limit: each seed's best validation MSE at the limit and its margin over the threshold; the
    closest seed's margin, and `borderline` when it is within `knife_edge` of the threshold (a clean limit
    otherwise). None: no limit."""
    margins = {}
    for name, T in limits.items():
        if T is None:
            margins[name] = None
            continue
        seeds = {seed: {"best_val_mse": row["best_val_mse"], "margin": margin(row["best_val_mse"], threshold)}
                 for seed, row in runs[name][str(T)].items()}
        closest = min((s["margin"] for s in seeds.values() if s["margin"] is not None), default=None)
        margins[name] = {"T": T, "seeds": seeds, "closest_margin": closest,
                         "borderline": closest is not None and closest <= knife_edge}
    return margins


def row_cell(report: dict, name: str) -> str:
    """The cell a row runs: a variant's own (settings.variants), else the row is the cell."""
    return report["settings"].get("variants", {}).get(name, {}).get("cell", name)


def row_impl(report: dict, name: str) -> str:
    """The implementation a row's runs took; an older adding.json did not record it."""
    return report["settings"].get("impls", {}).get(name, "not recorded")


def limit_text(report: dict, name: str) -> str:
    """'50 (best validation MSE 0.0580 +480%, 0.0130 +30% vs 0.01: a clean limit)', 'none', or ': borderline'."""
    T = report["limits"][name]
    if T is None:
        return "none"
    found = report.get("limit_margins", {}).get(name)
    if not found:  # an older report: no margins
        return str(T)
    seeds = ", ".join("diverged" if s["margin"] is None else f"seed {seed} {s['best_val_mse']:.4f} {s['margin']:+.0%}"
                      for seed, s in found["seeds"].items())
    verdict = (f"borderline: within {report['settings']['knife_edge']:.0%} of it" if found["borderline"]
               else "a clean limit")
    return f"{T} (best validation MSE {seeds} vs {report['settings']['threshold']:g}: {verdict})"


def sorted_lengths(runs: dict[str, dict[str, dict]]) -> list[tuple[int, dict[str, dict]]]:
    return sorted((int(T), seeds) for T, seeds in runs.items())


def plot(report: dict, path: Path) -> None:
    """Left: test MSE by length (median over seeds, each seed a faint point), the baseline dashed, each cell's limit
    an x. Right: updates to validation MSE < threshold by length, missing where no seed got there."""
    runs, limits, settings = report["runs"], report["limits"], report["settings"]
    fig, (mse_ax, updates_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    lengths = sorted({int(T) for cell_runs in runs.values() for T in cell_runs})
    for cell, cell_runs in runs.items():
        base = row_cell(report, cell)
        colour, title = CELLS[base].colour, CELLS[cell].title if cell in CELLS else cell
        if cell in settings.get("impls", {}):
            title = f"{title} [{settings['impls'][cell]}]"
        style, marker = ("-", "o") if base == cell else ("--", "s")  # a variant: dashed, squares
        rows = sorted_lengths(cell_runs)
        for ax, key in ((mse_ax, "test_mse"), (updates_ax, "updates_to_threshold")):
            points = [(T, r[key]) for T, seeds in rows for r in seeds.values() if r[key] is not None]
            ax.scatter([T for T, _ in points], [v for _, v in points], color=colour, alpha=0.3, s=14)
        medians = [(T, median(r["test_mse"] for r in seeds.values())) for T, seeds in rows]
        at_limit = dict(medians).get(limits.get(cell))
        if limits.get(cell) is None:
            label = f"{title} (learned at every T)"
        else:
            borderline = (report.get("limit_margins", {}).get(cell) or {}).get("borderline")
            label = f"{title} (limit T = {limits[cell]}{', borderline' if borderline else ''})"
        mse_ax.plot(*zip(*[(T, m) for T, m in medians if m is not None]), marker=marker, color=colour, linestyle=style,
                    label=label)
        if at_limit is not None:
            mse_ax.scatter([limits[cell]], [at_limit], marker="x", s=140, linewidths=2.5, color=colour, zorder=3)
        reached = [(T, median(r["updates_to_threshold"] for r in seeds.values())) for T, seeds in rows]
        reached = [(T, u) for T, u in reached if u is not None]
        if reached:
            updates_ax.plot(*zip(*reached), marker=marker, color=colour, linestyle=style, label=title)
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


def seed_outcome(row: dict, threshold: float) -> str:
    """A run in the table: the updates it needed, or how far above the threshold its best validation MSE stayed."""
    if row["updates_to_threshold"] is not None:
        return str(row["updates_to_threshold"])
    if row["best_val_mse"] is None:
        return "diverged"
    return f"never ({row['best_val_mse']:.4f}, {margin(row['best_val_mse'], threshold):+.0%})"


def grid_text(report: dict, name: str) -> str:
    """'0.01 of [0.0003 ... 0.0333] (1 extension): bracketed' or '...: still at the top edge'."""
    grid = report.get("lr_grid", {}).get(name)
    if not grid:
        return f"{report['settings']['lr'][name]:g}"
    where = "bracketed" if grid["bracketed"] else f"still at the {grid['edge']} edge"
    lrs = ", ".join(f"{lr:g}" for lr in grid["lrs"])
    return f"{grid['chosen']:g} of [{lrs}] ({grid['extensions']} extension{'s' * (grid['extensions'] != 1)}): {where}"


def table(report: dict) -> str:
    threshold = report["settings"]["threshold"]
    header = ("| row | impl | lr | T | seeds learned | updates to threshold (never: best validation MSE, margin) | "
              "test MSE (median) | baseline MSE |")
    lines = [header, "|" + " --- |" * 8]
    for cell, cell_runs in report["runs"].items():
        for T, seeds in sorted_lengths(cell_runs):
            summary = report["results"][cell][str(T)]
            updates = ", ".join(seed_outcome(r, threshold) for _, r in sorted(seeds.items()))
            mse = summary["test_mse_median"]
            lines.append(f"| {cell} | {row_impl(report, cell)} | {report['settings']['lr'][cell]:g} | {T} | "
                         f"{summary['seeds_learned']}/{summary['seeds']} | {updates} | "
                         f"{'-' if mse is None else f'{mse:.4f}'} | {summary['baseline_mse_median']:.4f} |")
    lines.append(f"lr chosen at T = {report['settings']['lr_search']['length']}: "
                 + "; ".join(f"{name} {grid_text(report, name)}" for name in report["runs"]))
    lines.append("limit (smallest T at which every seed failed): "
                 + "; ".join(f"{name} {limit_text(report, name)}" for name in report["limits"]))
    return "\n".join(lines) + "\n"
