"""Tiny real training runs on the `prepared_dir` fixture's data, recorded in a sqlite MLflow store in a folder."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytorch_lightning as pl
from omegaconf import DictConfig

from rnnlab.composition import compose_config
from rnnlab.run.history import metric_histories
from rnnlab.run.tags import SWEEP_PARENT

EXPERIMENT = "imdb-cells"
# clocks, and the load they ran under (rnnlab.run.load): never identical from run to run
TIMINGS = ("fit_time_s", "train_samples_per_s", "epoch_time_s", "fit_load_avg", "fit_cpu_share", "fit_other_cpu_pct",
           "epoch_load_avg", "epoch_cpu_share", "epoch_other_cpu_pct")


def measured(name: str) -> bool:
    """A clock or the machine's state (MLflow's system metrics), not a result: it differs between identical runs."""
    return name in TIMINGS or name.startswith("system/")


def tiny_overrides(prepared_dir: Path, store: Path) -> list[str]:
    """A 2-epoch run of a tiny network on `prepared_dir`, recorded in `store`/mlflow.db."""
    return [
        f"paths.prepared_dir={prepared_dir}",
        f"logger.tracking_uri=sqlite:///{store}/mlflow.db",
        "trainer.max_epochs=2",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "model.embedding_dim=8",
        "model.hidden_size=8",
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
    ]


def untracked_overrides(prepared_dir: Path, store: Path) -> list[str]:
    """tiny_overrides without the store: for a run sent elsewhere ($MLFLOW_TRACKING_URI, a server)."""
    return [o for o in tiny_overrides(prepared_dir, store) if not o.startswith("logger.tracking_uri")]


def compose_tiny(prepared_dir: Path, store: Path, *overrides: str) -> DictConfig:
    """conf/config.yaml composed with tiny_overrides, then `overrides`."""
    return compose_config([*tiny_overrides(prepared_dir, store), *overrides])


def client_of(store: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")


def runs(store: Path) -> list:
    """The runs of experiment imdb-cells in `store`/mlflow.db, newest first."""
    client = client_of(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def debug_runs(store: Path) -> list:
    """The runs of experiment imdb-cells-debug (debug=fdr|overfit|limit) in `store`/mlflow.db, newest first."""
    client = client_of(store)
    experiment = client.get_experiment_by_name(f"{EXPERIMENT}-debug")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def sweep_runs(found: list) -> tuple[list, list]:
    """(the parent runs of sweeps, the other runs) among `found`."""
    return [r for r in found if SWEEP_PARENT in r.data.tags], [r for r in found if SWEEP_PARENT not in r.data.tags]


def outcome(store: Path) -> dict:
    """The one run in `store`: status, final metrics and per-epoch history, clocks left out."""
    [run] = runs(store)
    history = {name: values for name, values in metric_histories(client_of(store), run.info.run_id).items()
               if not measured(name)}
    metrics = {name: value for name, value in run.data.metrics.items() if not measured(name)}
    return {"run_id": run.info.run_id, "status": run.info.status, "metrics": metrics, "history": history,
            "tags": run.data.tags, "params": run.data.params, "fit_time_s": run.data.metrics.get("fit_time_s")}


class CountEvaluated(pl.Callback):
    """Writes how many examples this rank validated (in the last validation epoch) and tested to
    `folder`/<stage>-rank<r>.json: summed over ranks, what an evaluation counted. A config entry
    (+callbacks.count._target_=tests.helpers.training.CountEvaluated), so that spawned DDP ranks build it too."""

    def __init__(self, folder: str) -> None:
        self.folder, self.examples = Path(folder), 0

    def count(self, batch) -> None:
        self.examples += len(batch[2])

    def write(self, trainer: pl.Trainer, stage: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stage}-rank{trainer.global_rank}.json").write_text(json.dumps({"examples": self.examples}))
        self.examples = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.count(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.count(batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.write(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.write(trainer, "test")


def counted_examples(folder: Path, stage: str) -> list[int]:
    """What CountEvaluated wrote for `stage`, per rank."""
    return [json.loads(path.read_text())["examples"] for path in sorted(folder.glob(f"{stage}-rank*.json"))]
