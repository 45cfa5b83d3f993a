"""DVC stage `compare`: the cells side by side, and the article's claims judged on the runs.

    python -m rnnlab.compare data/train --gradients data/findings/gradients.json --out data/compare

Reads every `metrics.json` under the train folder (one per cell x impl x seed: DVC's train matrix).
Writes, in --out:
    table.md              accuracy, training time and throughput per cell and implementation (mean ± sd)
    claims.md             each of the article's four claims: figures, 95% intervals, verdict
    summary.json          the same as DVC metrics
    accuracy_vs_time.png  one point per run
    learning_curves.csv   validation accuracy by epoch, one column per cell (fused, mean over seeds)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from rnnlab.findings.claims import judge_all
from rnnlab.plots import plot_accuracy_vs_time

CELL_ORDER = {"rnn": 0, "lstm": 1, "gru": 2}


class CompareError(Exception):
    pass


def load_runs(train_dir: Path) -> list[dict]:
    paths = sorted(train_dir.glob("*/metrics.json"))
    if not paths:
        raise CompareError(f"no */metrics.json under {train_dir}: run the train stages first")
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise CompareError(f"{path} is not valid JSON ({e})") from e
    return sorted(runs, key=lambda r: (r["impl"], CELL_ORDER.get(r["cell"], 9), r["seed"]))


def load_optional(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path and path.is_file() else None


def mean_sd(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def markdown_table(runs: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["cell"], run["impl"])].append(run)
    fastest = min(np.mean([r["fit_time_s"] for r in group]) for group in groups.values())
    lines = ["| cell | impl | seeds | test accuracy | training time (s) | vs fastest | train samples/s | epochs | parameters |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (cell, impl), group in groups.items():
        times = [r["fit_time_s"] for r in group]
        lines.append(
            f"| {cell} | {impl} | {len(group)} | {mean_sd([r['test_acc'] for r in group], '{:.4f}')} "
            f"| {mean_sd(times, '{:.0f}')} | {np.mean(times) / fastest:.2f}x "
            f"| {np.mean([r['train_samples_per_s'] for r in group]):.0f} | {group[0]['epochs']} "
            f"| {group[0]['n_params']:,} |"
        )
    devices = sorted({str(r.get("device")) for r in runs})
    return "\n".join(lines) + f"\n\nDevice: {'; '.join(devices)}\n"


def interval(summary: dict | None, fmt: str = "{:.4f}") -> str:
    if not summary or summary.get("ci95") is None:
        return "n/a"
    low, high = summary["ci95"]
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def claims_markdown(report: dict) -> str:
    lines = ["# The article's claims, measured", ""]
    for impl, result in report["implementations"].items():
        lines += [f"## Implementation: {impl}", "", "| cell | seeds | test accuracy (mean, 95% CI) "
                  "| training time s (mean, 95% CI) |", "| --- | --- | --- | --- |"]
        for cell, figures in result["cells"].items():
            acc, time = figures["test_acc"], figures["fit_time_s"]
            lines.append(f"| {cell} | {acc['n']} | {acc['mean']:.4f} {interval(acc)} "
                         f"| {time['mean']:.0f} {interval(time, '{:.0f}')} |")
        a = result["a_rnn_fastest_least_accurate"]
        b = result["b_lstm_gru_similar_accuracy"]
        c = result["c_lstm_twice_gru_time"]
        lines += ["", f"- **(a) RNN fastest but least accurate:** {a['verdict']}."]
        for other, diff in a.get("rnn_minus_other_time_s", {}).items():
            acc_diff = a["rnn_minus_other_acc"][other]
            lines.append(f"  rnn − {other}: time {diff['diff']:+.0f} s {interval(diff, '{:+.0f}')}, "
                         f"accuracy {acc_diff['diff']:+.4f} {interval(acc_diff, '{:+.4f}')}")
        if "lstm_minus_gru_acc" in b:
            diff = b["lstm_minus_gru_acc"]
            lines.append(f"- **(b) LSTM ≈ GRU in accuracy:** {b['verdict']}; lstm − gru "
                         f"{diff['diff']:+.4f} {interval(diff, '{:+.4f}')}")
        else:
            lines.append(f"- **(b) LSTM ≈ GRU in accuracy:** {b['verdict']}")
        if "lstm_over_gru_time" in c:
            ratio = c["lstm_over_gru_time"]
            lines.append(f"- **(c) LSTM ≈ 2x GRU's time:** {c['verdict']}; per-seed ratio "
                         f"{ratio['mean']:.2f} {interval(ratio, '{:.2f}')}")
        else:
            lines.append(f"- **(c) LSTM ≈ 2x GRU's time:** {c['verdict']}")
        lines.append("")
    d = report["d_rnn_gradients_vanish"]
    lines.append(f"## (d) RNN gradients vanish, LSTM/GRU gradients survive: {d['verdict']}")
    if "trained_reach" in d:
        lines.append("")
        lines.append("Steps back from the end before |d loss / d x_t| falls below 1e-3 of its end value "
                     "(trained; at initialisation): " + ", ".join(
                         f"{cell} {d['trained_reach'][cell]} ({d['init_reach'].get(cell)})" for cell in d["trained_reach"]))
    elif "why" in d:
        lines.append(f"\n{d['why']}")
    if "adding_learned_up_to" in d:
        lines.append("")
        lines.append("Adding problem, longest sequence length learned (test MSE < 10% of always predicting 1): "
                     + ", ".join(f"{cell} {T or 'none'}" for cell, T in d["adding_learned_up_to"].items()))
    lines += ["", f"Device(s): {'; '.join(report['devices'])}", ""]
    return "\n".join(lines)


def write_learning_curves(runs: list[dict], path: Path) -> None:
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for run in runs:
        if run["impl"] == "fused":
            curves[run["cell"]].append(run["history"]["val_acc"])
    cells = sorted(curves, key=lambda c: CELL_ORDER.get(c, 9))
    epochs = max((len(c) for seeds in curves.values() for c in seeds), default=0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *cells])
        for epoch in range(epochs):
            row = []
            for cell in cells:
                values = [seed[epoch] for seed in curves[cell] if epoch < len(seed)]
                row.append(round(float(np.mean(values)), 5) if values else "")
            writer.writerow([epoch + 1, *row])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path, help="folder of train stage outputs (<run>/metrics.json)")
    parser.add_argument("--gradients", type=Path, help="gradients.json of the gradient-decay stage")
    parser.add_argument("--adding", type=Path, help="adding.json of the adding-problem sweep")
    parser.add_argument("--out", type=Path, default=Path("data/compare"))
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.train_dir)
    except CompareError as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return 1
    report = judge_all(runs, load_optional(args.gradients), load_optional(args.adding))
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs)
    (args.out / "table.md").write_text(table)
    (args.out / "claims.md").write_text(claims_markdown(report))
    summary = {"runs": len(runs), **{f"{r['cell']}-{r['impl']}-{r['seed']}": {
        k: r[k] for k in ("test_acc", "fit_time_s", "train_samples_per_s")} for r in runs}, "claims": report}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_accuracy_vs_time(runs, args.out / "accuracy_vs_time.png")
    write_learning_curves(runs, args.out / "learning_curves.csv")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
