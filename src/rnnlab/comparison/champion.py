"""The pipeline's best run registered as the champion model."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from rnnlab.comparison.runs import read_config
from rnnlab.pipeline import PlannedRun, run_folder


def best_val_acc(run: dict) -> float:
    return max(run["history"]["val_acc"])


def register_best(cfg: DictConfig, runs: list[dict]) -> None:
    """Point the champion alias at the best run on validation (its best epoch's val_acc, the checkpoint it keeps;
    the first of equals in the table's order), in the store its config.yaml's logger.tracking_uri names (null: the
    same default training resolved). Chosen on validation only: the test accuracy is reported, never compared."""
    best = max(runs, key=best_val_acc)
    planned = PlannedRun(best["cell"], best["impl"], best["seed"])
    folder = run_folder(cfg.paths.train_dir, planned)
    not_registered = f"the best run, {planned.name}, is not registered as the champion"
    run_id = best.get("mlflow_run_id")
    if not isinstance(run_id, str) or not run_id:
        print(f"compare: note: {not_registered}: {folder / 'metrics.json'} names no mlflow_run_id", file=sys.stderr)
        return
    logger = read_config(folder / "config.yaml", planned).get("logger")
    # Imported here: MLflow and torch, which the comparison itself does without.
    from rnnlab.serve.registry import CHAMPION_URI, register_champion
    from rnnlab.tracking import NoStore, resolve_tracking_uri

    uri = resolve_tracking_uri(logger.get("tracking_uri") if isinstance(logger, dict) else None)
    try:
        version, moved = register_champion(uri, run_id, {"pipeline_run": planned.name,
                                                         "best_val_acc": str(best_val_acc(best)),
                                                         "test_acc": str(best["test_acc"])})
    except NoStore as e:
        print(f"compare: note: {not_registered}: {e}", file=sys.stderr)
        return
    print(f"compare: {CHAMPION_URI} {'is now' if moved else 'is still'} {planned.name} "
          f"(run {run_id}, version {version.version})", file=sys.stderr)
