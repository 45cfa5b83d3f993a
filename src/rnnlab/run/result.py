"""What `rnnlab.train.train` hands back, and the same read back from the store for a run that exists already."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow

from rnnlab.run.history import metric_histories
from rnnlab.run.provenance import COUNT_PARAMS

LOAD_METRICS = ("fit_load_avg", "fit_cpu_share", "fit_other_cpu_pct")  # what the fit ran under (rnnlab.run.load)


@dataclass
class TrainResult:
    """Enough to use the run without searching the store for it."""

    run_id: str
    tracking_uri: str
    metrics: dict  # test_acc, test_loss (test_mse), best_val_acc, fit_time_s, train_samples_per_s, epochs, n_params,
    # and LOAD_METRICS
    history: dict[str, list[float]]  # HISTORY, one value per epoch
    best_checkpoint: Path | None  # None when the run's working folder was temporary (train() outside Hydra)


def stored_result(client: mlflow.MlflowClient, run_id: str, tracking_uri: str) -> TrainResult:
    """A run's result as the store holds it."""
    run = client.get_run(run_id)
    logged = run.data.metrics  # the latest value of each
    metrics = {name: float(value) for name, value in logged.items() if name.startswith("test_")}
    metrics.update({name: float(logged[name]) for name in ("best_val_acc", "fit_time_s", "train_samples_per_s")})
    # the counts: params (COUNT_PARAMS); runs recorded before hold them as metrics
    metrics.update({name: int(float(run.data.params.get(param, logged.get(name))))
                    for name, param in COUNT_PARAMS.items()})
    metrics.update({name: float(logged[name]) for name in LOAD_METRICS if name in logged})  # runs before: none
    return TrainResult(run_id, tracking_uri, metrics, metric_histories(client, run_id), None)
