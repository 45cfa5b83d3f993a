"""DVC stage `compare`: the cells side by side — accuracy, training time, throughput — as table and plots.

    python -m rnnlab.compare data/train/rnn data/train/lstm data/train/gru --out data/compare

Reads each training stage's metrics.json. Writes table.md (markdown), summary.json (DVC metrics),
accuracy_vs_time.png and learning_curves.csv (validation accuracy by epoch, one column per cell).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from rnnlab.plots import plot_accuracy_vs_time

COLUMNS = [("cell", "cell", "{}"), ("impl", "impl", "{}"), ("test_acc", "test accuracy", "{:.4f}"),
           ("best_val_acc", "best val accuracy", "{:.4f}"), ("fit_time_s", "training time (s)", "{:.0f}"),
           ("train_samples_per_s", "train samples/s", "{:.0f}"), ("epochs", "epochs", "{}"),
           ("n_params", "parameters", "{:,}")]


def load_runs(folders: list[Path]) -> list[dict]:
    runs = []
    for folder in folders:
        path = folder / "metrics.json"
        try:
            runs.append(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise SystemExit(f"compare: error: {path} not found: run the train stage for {folder.name} first") from e
        except json.JSONDecodeError as e:
            raise SystemExit(f"compare: error: {path} is not valid JSON ({e})") from e
    return runs


def markdown_table(runs: list[dict]) -> str:
    fastest = min(r["fit_time_s"] for r in runs)
    header = [title for _, title, _ in COLUMNS] + ["time vs fastest"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        cells = [fmt.format(run[key]) for key, _, fmt in COLUMNS] + [f"{run['fit_time_s'] / fastest:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(runs: list[dict]) -> dict:
    by_cell = {r["cell"]: {k: r[k] for k in ("test_acc", "fit_time_s", "train_samples_per_s")} for r in runs}
    result: dict = {"cells": by_cell}
    if "lstm" in by_cell and "gru" in by_cell:  # the article: LSTM takes about twice GRU's time
        result["lstm_over_gru_time"] = by_cell["lstm"]["fit_time_s"] / by_cell["gru"]["fit_time_s"]
    return result


def write_learning_curves(runs: list[dict], path: Path) -> None:
    epochs = max(len(r["history"]["val_acc"]) for r in runs)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *(r["cell"] for r in runs)])
        for epoch in range(epochs):
            row = [r["history"]["val_acc"][epoch] if epoch < len(r["history"]["val_acc"]) else "" for r in runs]
            writer.writerow([epoch + 1, *row])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders holding a train stage's metrics.json")
    parser.add_argument("--out", type=Path, default=Path("data/compare"))
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs)
    (args.out / "table.md").write_text(table)
    (args.out / "summary.json").write_text(json.dumps(summary(runs), indent=2) + "\n")
    plot_accuracy_vs_time(runs, args.out / "accuracy_vs_time.png")
    write_learning_curves(runs, args.out / "learning_curves.csv")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
