"""A run's per-step metrics read back from the store: the one place rnnlab reads metric histories."""

from __future__ import annotations

import mlflow

HISTORY = ("train_loss", "val_loss", "val_acc", "epoch_time_s")  # per-epoch metrics a run reports


def metric_by_step(client: mlflow.MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    """(step, value) of metric `name`, in step order. A resumed run may have logged a step twice (before it was
    killed and again after): one value per step, the latest."""
    by_step = {}
    for m in sorted(client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp)):
        by_step[m.step] = m.value
    return sorted(by_step.items())


def metric_histories(client: mlflow.MlflowClient, run_id: str) -> dict[str, list[float]]:
    """HISTORY, one value per epoch."""
    return {name: [value for _, value in metric_by_step(client, run_id, name)] for name in HISTORY}
