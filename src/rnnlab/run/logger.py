"""The MLflow logger the trainer writes a run's metrics through."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from rnnlab.run.provenance import COUNT_PARAMS
from rnnlab.tracking import default_artifact_location, resolve_tracking_uri

# Metrics a run has one value of, at its end: logged once, at step 0, so that MLflow shows them as the run's
# summary (a bar per run in the chart view) rather than as stray points on the epochs' step axis. (Its size and
# epochs trained are counts, no figures to chart: params, `log_counts`.)
SUMMARY_METRICS = ("fit_time_s", "train_samples_per_s", "best_val_acc",
                   "fit_load_avg", "fit_cpu_share", "fit_other_cpu_pct")  # the last three: rnnlab.run.load


def is_summary(name: str) -> bool:
    return name in SUMMARY_METRICS or name.startswith("test_")


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, except that
    - it never ends the run: Lightning would mark it FINISHED after `fit`, before the test and the record.
      `rnnlab.run.record.RunRecord` decides the final status, in one place;
    - the run's params are the resolved config, logged once by `RunRecord` (`log_config`): what Lightning logs
      itself (the module's `save_hyperparameters`, a copy of model.* under other names) is left out;
    - summary metrics (`is_summary`) go to step 0, each once: a resumed run that logs one again keeps the first;
      the run's counts (its size, the epochs it trained) are params, also once (`log_counts`);
    - Lightning's `epoch` metric is left out: MLflow draws it as a chart of its own (a staircase). Per-epoch
      metrics are logged at their epoch's last optimizer step; the job log's line per epoch names the epoch;
    - `system_metrics_interval_s` (conf/logger/mlflow.yaml) is how often `RunRecord` samples the machine's load
      into the run (`rnnlab.run.system_metrics`); None: not at all;
    - per-step metrics wait in `pending` until the epoch's `last.ckpt` is written (`LastCheckpoint` calls
      `write_pending`): a run stopped after its validation metrics but before its checkpoint trains that epoch
      again on resume, and would otherwise log it twice. What is pending when a run stops is dropped; the last
      checkpointed epoch's metrics are in its checkpoint, and the resume logs those that are missing.
    """

    def __init__(self, experiment_name: str, tracking_uri: str | None = None, run_name: str | None = None,
                 system_metrics_interval_s: float | None = None, **kwargs: Any) -> None:
        self.system_metrics_interval_s = system_metrics_interval_s
        uri = resolve_tracking_uri(tracking_uri)
        kwargs.setdefault("artifact_location", default_artifact_location(uri))
        super().__init__(experiment_name=experiment_name, tracking_uri=uri, run_name=run_name, **kwargs)

    def finalize(self, status: str = "success") -> None:
        pass

    pending: list[tuple[dict[str, float], int | None]] | None = None  # per-step metrics not yet sent

    def write_pending(self, up_to_step: int | None = None) -> None:
        """Send the per-step metrics logged since the last call (their epoch's checkpoint is safe by now); with
        `up_to_step`, only those of steps up to it, the rest dropped (a stopped run's unfinished epoch)."""
        pending, self.pending = self.pending or [], []
        for metrics, step in pending:
            if up_to_step is None or (step is not None and step <= up_to_step):
                super().log_metrics(metrics, step=step)

    def log_hyperparams(self, params: Any) -> None:
        pass  # Lightning's call; the checkpoint still holds the module's hparams (predict and resume read them)

    def log_config(self, params: dict[str, Any]) -> None:
        super().log_hyperparams(params)

    @rank_zero_only
    def log_counts(self, counts: dict[str, int]) -> None:
        """`COUNT_PARAMS` (`n_params`, `epochs`) as their params, each once: a resumed run keeps the first value
        (MLflow refuses a param's second, different value)."""
        logged = self.experiment.get_run(self.run_id).data.params
        params = {COUNT_PARAMS[name]: value for name, value in counts.items() if COUNT_PARAMS[name] not in logged}
        if params:
            super().log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        per_step = {name: value for name, value in metrics.items() if not is_summary(name) and name != "epoch"}
        summary = {name: value for name, value in metrics.items() if is_summary(name)}
        if summary:
            logged = self.experiment.get_run(self.run_id).data.metrics
            summary = {name: value for name, value in summary.items() if name not in logged}
            if summary:
                super().log_metrics(summary, step=0)
        if per_step:
            if self.pending is None:
                self.pending = []
            self.pending.append((per_step, step))
