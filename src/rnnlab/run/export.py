"""The train stage's outputs for DVC: the best checkpoint, the resolved config, the metrics; each file whole. A run
whose training diverged has outputs too (`export_diverged`): a failed run is a result that compare counts."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from rnnlab.files import copy_atomically, write_atomically
from rnnlab.run.plan import RunPlan
from rnnlab.run.result import TrainResult, stored_result
from rnnlab.run.tags import TIMING

log = logging.getLogger(__name__)


RUN_SCORES = ("best_val_acc", "fit_time_s", "train_samples_per_s", "epochs", "n_params")  # with test_*: scores.json


def export(folder: Path, result: TrainResult, cfg: DictConfig, run: mlflow.entities.Run, checkpoint: Path,
           config_path: Path) -> None:
    """The DVC stage's outputs: the best checkpoint, the resolved config, the metrics and per-epoch history."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"cell": cfg.model.cell, "impl": cfg.model.impl, "seed": cfg.seed, **result.metrics,
               "device": run.data.tags.get("device"), "timing": run.data.tags.get(TIMING),  # rnnlab.run.load
               "mlflow_run_id": result.run_id, "history": result.history}
    # DVC's metrics: the numbers alone (metrics.json, the run's record that compare reads, holds names and lists)
    scores = {name: value for name, value in result.metrics.items() if name in RUN_SCORES or name.startswith("test_")}
    # Each file lands whole or not at all: a kill mid-export never leaves a half-written output for DVC or compare.
    copy_atomically(checkpoint, folder / "model.ckpt")
    copy_atomically(config_path, folder / "config.yaml")
    write_atomically(folder / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_atomically(folder / "scores.json", json.dumps(scores, indent=2) + "\n")


def export_diverged(folder: Path, cfg: DictConfig, run: mlflow.entities.Run, reason: str,
                    history: dict[str, list[float]], checkpoint: Path, config_path: Path) -> None:
    """A diverged run's outputs: the same files, its record marked `diverged` (the reason) in place of a test's
    metrics (rnnlab.comparison.runs reads it so), its history up to the divergence, and the model as the training
    left it (DVC wants every output; no one tests or serves a diverged run's model)."""
    folder.mkdir(parents=True, exist_ok=True)
    n_params = run.data.params.get("model.n_params")
    summary = {"cell": cfg.model.cell, "impl": cfg.model.impl, "seed": cfg.seed, "diverged": reason,
               "epochs": len(history.get("train_loss", [])), "n_params": int(n_params) if n_params else None,
               "device": run.data.tags.get("device"), "timing": run.data.tags.get(TIMING),
               "mlflow_run_id": run.info.run_id, "history": history}
    copy_atomically(checkpoint, folder / "model.ckpt")
    copy_atomically(config_path, folder / "config.yaml")
    write_atomically(folder / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_atomically(folder / "scores.json", json.dumps({"diverged": 1}, indent=2) + "\n")


def export_finished(cfg: DictConfig, plan: RunPlan) -> TrainResult:
    """A run of this very configuration finished before (`rnnlab.run`): write its export again from the store,
    train nothing. (A killed `dvc repro` reruns a stage whose run had finished, deleting its outputs first.)"""
    client, run_id = plan.client, plan.run_id
    log.warning("run %s already finished these settings: exported again, not retrained (resume=never retrains)",
                run_id)
    with tempfile.TemporaryDirectory(prefix="rnnlab-") as temporary:
        checkpoint = Path(client.download_artifacts(run_id, "checkpoints/best.ckpt", temporary))
        config_path = Path(client.download_artifacts(run_id, "config.yaml", temporary))
        result = stored_result(client, run_id, plan.tracking_uri)
        export(Path(cfg.export_dir), result, cfg, client.get_run(run_id), checkpoint, config_path)
    return result
