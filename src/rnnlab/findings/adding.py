"""Where each cell stops learning: the adding problem at growing sequence lengths (the DVC stage `adding`).

Every cell of `pipeline.cells` is trained at every length of `findings.adding.lengths` through the project's
own recipe (`rnnlab.train.train`, recorded in MLflow under the experiment "adding"), each run composed from
conf/ as `experiment=adding model=<cell> data.seq_len=<T>`: the same budget (conf/experiment/adding.yaml) at
every length. The test MSE is that of the checkpoint with the best validation accuracy. A cell has learned the
task when its MSE falls well below the baseline of always predicting 1 (MSE ≈ 1/6); at the baseline it has
learned nothing it could carry across T steps.

    python -m rnnlab.findings.adding
    python -m rnnlab.findings.adding 'findings.adding.lengths=[20,40]' 'findings.adding.overrides=["trainer.max_epochs=2"]'

Writes <paths.findings_dir>/adding.json (per cell and length: test MSE, test accuracy within 0.04, the
baseline's MSE and accuracy, best validation accuracy, fit time, MLflow run id) and adding.png (test MSE
against length, log scale, baseline dashed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from rnnlab.cells import CELLS  # noqa: E402
from rnnlab.cli import UserError, build, hydra_app  # noqa: E402
from rnnlab.module import TOLERANCE  # noqa: E402
from rnnlab.params import CONFIG_DIR  # noqa: E402
from rnnlab.train import train  # noqa: E402

# The sweep's budget, the same for every cell and length. findings.adding.overrides come after it, so they win.
EXPERIMENT_CONFIG = "experiment=adding"


def compose_run(cell: str, seq_len: int, overrides: list[str]) -> DictConfig:
    """One run's config, composed from conf/ (inside a Hydra app, with the app's own search path)."""
    run_overrides = [EXPERIMENT_CONFIG, f"model={cell}", f"data.seq_len={seq_len}", *overrides]
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=run_overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=run_overrides)


def baseline(cfg: DictConfig) -> dict[str, float]:
    """Always predicting 1, the target's mean, on this configuration's test set."""
    datamodule = build(cfg.data, "data")
    datamodule.setup("test")
    error = datamodule.datasets["test"].tensors[2] - 1.0
    return {"baseline_mse": float((error**2).mean()), "baseline_acc": float((error.abs() < TOLERANCE).float().mean())}


def run_one(cell: str, seq_len: int, overrides: list[str]) -> dict:
    cfg = compose_run(cell, seq_len, overrides)
    result = train(cfg)
    return {"test_mse": result.metrics["test_mse"], "test_acc": result.metrics["test_acc"], **baseline(cfg),
            "best_val_acc": result.metrics["best_val_acc"], "fit_time_s": result.metrics["fit_time_s"],
            "mlflow_run_id": result.run_id}


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


def sweep(cells: list[str], lengths: list[int], overrides: list[str], out_dir: Path) -> dict:
    """Train every cell at every length, then write adding.json and adding.png into `out_dir`."""
    start = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    for cell in cells:
        for seq_len in lengths:
            results.setdefault(cell, {})[str(seq_len)] = run_one(cell, seq_len, overrides)
    wall_s = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"overrides": [EXPERIMENT_CONFIG, *overrides], "tolerance": TOLERANCE,
                "threads": torch.get_num_threads(), "wall_time_s": wall_s}
    report = {"settings": settings, "results": results}
    (out_dir / "adding.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, out_dir / "adding.png")
    return report


@hydra_app("adding")
def main(cfg: DictConfig) -> None:
    settings = cfg.findings.adding
    lengths = list(settings.lengths)
    if not lengths or any(not isinstance(T, int) or T < 2 for T in lengths):
        raise UserError(f"findings.adding.lengths={lengths} must list integers >= 2")
    unknown = [cell for cell in cfg.pipeline.cells if cell not in CELLS]
    if unknown:
        raise UserError(f"pipeline.cells lists unknown cells {unknown}: choose from {' | '.join(CELLS)}")
    # The runs go where the stage's own config sends them (params.yaml's logger.tracking_uri, else the default).
    overrides = [f"seed={cfg.seed}", *settings.get("overrides", [])]
    if cfg.logger.get("tracking_uri"):
        overrides.insert(0, f"logger.tracking_uri={cfg.logger.tracking_uri}")
    torch.set_num_threads(settings.threads)  # these matrices are too small to gain from more threads
    out_dir = Path(cfg.paths.findings_dir)
    report = sweep(list(cfg.pipeline.cells), lengths, list(overrides), out_dir)
    print(table(report["results"]), end="")
    print(f"wrote {out_dir / 'adding.json'} and {out_dir / 'adding.png'} ({report['settings']['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
