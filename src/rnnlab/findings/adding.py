"""Where each cell stops learning: the adding problem at growing sequence lengths.

Every cell is trained at every length through the project's own path (the Hydra config composed with
`experiment=adding model=<cell> data.seq_len=T`, then `rnnlab.train.train`, recorded in MLflow under the
experiment "adding"), with the same settings at every length. The test MSE is that of the checkpoint with
the best validation accuracy. A cell has learned the task when its MSE falls well below the baseline of
always predicting 1 (MSE ≈ 1/6); at the baseline it has learned nothing it could carry across T steps.

    python -m rnnlab.findings.adding --lengths 10 25 50 100 200 400 --out data/findings
    python -m rnnlab.findings.adding --lengths 20 40 trainer.max_epochs=2   # any Hydra override goes after

Writes adding.json (per cell and length: test MSE, test accuracy within 0.04, the baseline's MSE and accuracy,
best validation accuracy, fit time) and adding.png (test MSE against length, log scale, baseline dashed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from rnnlab.module import TOLERANCE  # noqa: E402
from rnnlab.params import CONFIG_DIR  # noqa: E402
from rnnlab.tracking import resolve_tracking_uri  # noqa: E402
from rnnlab.train import train  # noqa: E402

CELLS = ("rnn", "lstm", "gru")
EXPERIMENT = "adding"
# The sweep's budget, the same for every cell and length: conf/experiment/adding.yaml.
# Command-line overrides come after it, so they win.
EXPERIMENT_CONFIG = "experiment=adding"


def compose_run(cell: str, seq_len: int, tracking_uri: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[
            EXPERIMENT_CONFIG, f"model={cell}", f"data.seq_len={seq_len}", f"logger.tracking_uri={tracking_uri}",
            f"logger.experiment_name={EXPERIMENT}", f"logger.run_name=adding-T{seq_len}-{cell}", *overrides,
        ])


def baseline(cfg) -> dict[str, float]:
    """Always predicting 1, the target's mean, on this configuration's test set."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    error = datamodule.datasets["test"].tensors[2] - 1.0
    return {"baseline_mse": float((error**2).mean()), "baseline_acc": float((error.abs() < TOLERANCE).float().mean())}


def latest_run(tracking_uri: str, run_name: str):
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{run_name}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return run


def run_one(cell: str, seq_len: int, tracking_uri: str, overrides: list[str]) -> dict:
    cfg = compose_run(cell, seq_len, tracking_uri, overrides)
    best_val_acc = train(cfg)
    run = latest_run(tracking_uri, cfg.logger.run_name)
    metrics = run.data.metrics
    return {"test_mse": metrics["test_mse"], "test_acc": metrics["test_acc"], **baseline(cfg),
            "best_val_acc": best_val_acc, "fit_time_s": metrics["fit_time_s"], "mlflow_run_id": run.info.run_id}


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    lengths = sorted({int(T) for by_length in results.values() for T in by_length})
    for cell, by_length in results.items():
        ax.plot(lengths, [by_length[str(T)]["test_mse"] for T in lengths], marker="o", label=cell)
    any_cell = next(iter(results.values()))
    ax.plot(lengths, [any_cell[str(T)]["baseline_mse"] for T in lengths], "k--", label="predict 1 (baseline)")
    ax.set(xlabel="sequence length T", ylabel="test MSE", xscale="log", yscale="log",
           title="Adding problem: test MSE by sequence length")
    ax.set_xticks(lengths, [str(T) for T in lengths])
    ax.minorticks_off()
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| cell | T | test MSE | test acc (<0.04) | baseline MSE | fit time (s) |", "|" + " --- |" * 6]
    for cell, by_length in results.items():
        for T, row in by_length.items():
            lines.append(f"| {cell} | {T} | {row['test_mse']:.4f} | {row['test_acc']:.3f} | "
                         f"{row['baseline_mse']:.4f} | {row['fit_time_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 25, 50, 100, 200, 400])
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--out", type=Path, default=Path("data/findings"))
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these matrices are too small to gain from more, and on a "
                             "busy machine a second thread slowed training several-fold)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_epochs=2")
    args = parser.parse_intermixed_args(argv)
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    for cell in args.cells:
        for seq_len in args.lengths:
            results.setdefault(cell, {})[str(seq_len)] = run_one(cell, seq_len, tracking_uri, args.overrides)
    wall_s = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"overrides": [EXPERIMENT_CONFIG, *args.overrides], "tolerance": TOLERANCE,
                "threads": args.threads, "tracking_uri": tracking_uri, "wall_time_s": wall_s}
    (args.out / "adding.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    plot(results, args.out / "adding.png")
    print(table(results), end="")
    print(f"wrote {args.out / 'adding.json'} and {args.out / 'adding.png'} ({wall_s:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
