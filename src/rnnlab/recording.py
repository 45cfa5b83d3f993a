"""What one training run leaves behind, and how it ends: the MLflow record, the DVC export, the final status.

`RunRecord` is the bookkeeping half of the recipe in `rnnlab.train`:

    record = RunRecord(cfg, sweep_id)                     # a callback: it hears how a fit ended
    with record.running(trainer, model, datamodule, plan):  # run started (or resumed): params, tags;
        trainer.fit(...); trainer.test(...)               # ends FINISHED / KILLED / FAILED, with a reason
        result = record.finish(trainer, datamodule, output_dir)   # artifacts, served model, export -> TrainResult

A run that already finished this very configuration (`rnnlab.resume`) is exported again by `export_finished`.
Under DDP only rank 0 writes; with ddp_spawn the workers log their metrics into the run this process created,
and `finish` reads them back from MLflow: the result is always what the store holds (`stored_result`). Under
torchrun or srun every rank runs the whole recipe: the others wait for rank 0's record and return it too.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from rnnlab.cli import first_line
from rnnlab.data.base import SequenceDataModule
from rnnlab.plots import plot_learning_curves
from rnnlab.resume import END_REASON, ERROR, RunPlan, Stopped
from rnnlab.serving import log_sentiment_model
from rnnlab.tracking import RunLogger, log_dataset_inputs, redact, run_params, run_tags, user_tags

log = logging.getLogger(__name__)

HISTORY = ("train_loss", "val_loss", "val_acc", "epoch_time_s")  # per-epoch metrics a run reports
SCORES = ("best_val_acc", "fit_time_s", "train_samples_per_s", "epochs", "n_params")  # with test_*: scores.json
LOSS_NAMES = {"binary": "BCE", "regression": "MSE"}


@dataclass
class TrainResult:
    """What `rnnlab.train.train` hands back: enough to use the run without searching the store for it."""

    run_id: str
    tracking_uri: str
    metrics: dict  # test_acc, test_loss (test_mse), best_val_acc, fit_time_s, train_samples_per_s, epochs, n_params
    history: dict[str, list[float]]  # HISTORY, one value per epoch
    best_checkpoint: Path | None  # None when the run's working folder was temporary (train() outside Hydra)


STOPS = (KeyboardInterrupt, Stopped, SIGTERMException)  # Ctrl-C, a signal (rnnlab.resume), Lightning's SIGTERM


def final_status(exception: BaseException | None) -> str:
    """How a run ends: FINISHED, KILLED (the user or the system stopped it) or FAILED (an error)."""
    if exception is None:
        return "FINISHED"
    return "KILLED" if isinstance(exception, STOPS) else "FAILED"


def end_reason(exception: BaseException) -> str:
    """Why a run ended before its end (tag `rnnlab.end_reason`): "signal SIGTERM", "interrupted" or "error: ...";
    `rnnlab.resume` resumes the first two, and runs "died: ..." (found by its sweep), never errors."""
    if isinstance(exception, Stopped):
        return f"signal {signal.Signals(exception.signum).name}"
    if isinstance(exception, SIGTERMException):
        return "signal SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return "interrupted"
    return redact(f"{ERROR}: {first_line(exception)}")[:5000]


class RunRecord(pl.Callback):
    def __init__(self, cfg: DictConfig, sweep_id: str | None = None) -> None:
        self.cfg, self.sweep_id = cfg, sweep_id
        self.logger: RunLogger | None = None  # the trainer's, and the run's plan: given by `running`
        self.plan: RunPlan | None = None
        self.exception: BaseException | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Counted in the process that trained: a ddp_spawn worker's count never reaches the main process's trainer
        if trainer.logger is not None:
            trainer.logger.log_metrics({"epochs": trainer.current_epoch})

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning turns Ctrl-C into SystemExit after calling this: remember what really happened.
        self.exception = exception

    @contextmanager
    def running(self, trainer: pl.Trainer, model: pl.LightningModule, datamodule: SequenceDataModule,
                plan: RunPlan) -> Iterator[None]:
        """Create the run, or open the one this command resumes (before DDP spawns workers, so they all log into
        it), and end it with its final status; its checkpoints go unless it may be resumed."""
        self.logger, self.plan = trainer.logger, plan
        if not trainer.is_global_zero:
            yield
            return
        client, run_id = self.logger.experiment, self.logger.run_id
        self.plan.attach(trainer, run_id)
        params = run_params(OmegaConf.to_container(self.cfg, resolve=True))
        stored = client.get_run(run_id)  # a resumed run has its params already (values can't change)
        self.logger.log_config({name: value for name, value in params.items() if name not in stored.data.params})
        data_dir = getattr(datamodule, "data_dir", None)  # generated data (data=adding) have no files
        if data_dir is not None and self.plan.data_sha256 and not stored.inputs.dataset_inputs:
            log_dataset_inputs(client, run_id, "imdb", Path(data_dir), self.plan.data_sha256)
        tags = run_tags(model.hparams.cell, model.hparams.impl, self.plan.data_sha256,
                        self.cfg.trainer.accelerator, self.sweep_id)
        tags["rnnlab.code_sha256"] = self.plan.code_sha256
        configured = self.cfg.get("tags")  # the config's own (`+tags.purpose=baseline`, debug configs)
        tags.update(user_tags(OmegaConf.to_container(configured) if OmegaConf.is_config(configured) else None))
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        self.logger.log_metrics({"n_params": sum(p.numel() for p in model.parameters())}, step=0)
        log.info("MLflow run %s (%s, attempt %d) in %s", run_id, stored.info.run_name, self.plan.attempt,
                 redact(self.logger._tracking_uri))
        try:
            yield
        except BaseException as e:
            exception = self.exception or e
            status, reason = final_status(exception), end_reason(exception)
            client.set_tag(run_id, END_REASON, reason)
            client.set_terminated(run_id, status)
            self.plan.end(resumable_after=not reason.startswith(ERROR))
            raise
        client.set_terminated(run_id, final_status(None))
        self.plan.end(resumable_after=False)

    def finish(self, trainer: pl.Trainer, datamodule: SequenceDataModule, output_dir: Path) -> TrainResult:
        """Artifacts in MLflow (config, checkpoint, learning curves, the served model); for DVC, the export folder.
        The best checkpoint moves to <output_dir>/checkpoints/best.ckpt."""
        if trainer.fast_dev_run:
            return self.finish_debug_run(trainer, output_dir)
        if not trainer.is_global_zero:  # torchrun, srun: rank 0 records; wait for its run id, then read its record
            run_id = trainer.strategy.broadcast(None)
            return stored_result(self.plan.client, run_id, self.plan.tracking_uri)
        client, run_id, cfg = self.logger.experiment, self.logger.run_id, self.cfg
        best: ModelCheckpoint = trainer.checkpoint_callback
        history = metric_histories(client, run_id)
        # ddp_spawn hands the best checkpoint's path back to this process but not its score
        best_val_acc = float(best.best_model_score) if best.best_model_score is not None else max(history["val_acc"])
        # Logged so that the result can be read back from the store alone (a reused run, DDP workers' metrics)
        self.logger.log_metrics({"best_val_acc": best_val_acc})
        result = stored_result(client, run_id, self.logger._tracking_uri)
        cell, impl = cfg.model.cell, cfg.model.impl
        config_path = output_dir / "config.yaml"
        OmegaConf.save(cfg, config_path, resolve=True)
        curves_path = output_dir / "learning_curves.png"
        plot_learning_curves(result.history, f"{cell} ({impl})", curves_path, LOSS_NAMES[datamodule.task])
        for path in (config_path, curves_path):
            client.log_artifact(run_id, str(path))
        client.log_artifact(run_id, best.best_model_path, artifact_path="checkpoints")
        # a served model reads review text through the run's tokenizer
        if datamodule.task == "binary" and cfg.get("test", True):
            log_sentiment_model(run_id, self.logger._tracking_uri, best.best_model_path,
                             datamodule.data_dir / "tokenizer.json", datamodule.max_len, datamodule.keep)
        if cfg.export_dir:
            export(Path(cfg.export_dir), result, cfg, client.get_run(run_id), Path(best.best_model_path), config_path)
        kept = output_dir / "checkpoints" / "best.ckpt"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(best.best_model_path, kept)  # the run's checkpoint folder goes when the run ends
        result.best_checkpoint = kept
        log.info("run %s: %s", run_id, ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items()))
        trainer.strategy.broadcast(run_id)  # to the other ranks under torchrun or srun: the record is complete
        return result

    def finish_debug_run(self, trainer: pl.Trainer, output_dir: Path) -> TrainResult:
        """A fast_dev_run (debug=fdr): a few batches through every step, no checkpoint, and Lightning gives it no
        logger. The run keeps its params, tags and config; the result holds the last batches' metrics, and
        nothing is served, registered or exported."""
        config_path = output_dir / "config.yaml"
        OmegaConf.save(self.cfg, config_path, resolve=True)
        self.logger.experiment.log_artifact(self.logger.run_id, str(config_path))
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}
        metrics["best_val_acc"] = metrics.get("val_acc", float("nan"))
        return TrainResult(self.logger.run_id, self.logger._tracking_uri, metrics, {}, None)


def metric_histories(client: mlflow.MlflowClient, run_id: str) -> dict[str, list[float]]:
    """HISTORY, one value per epoch. A resumed run may have logged an epoch's value twice (before it was killed
    and again after): one per step, the latest."""
    history = {}
    for name in HISTORY:
        by_step = {}
        for m in sorted(client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp)):
            by_step[m.step] = m.value
        history[name] = [by_step[step] for step in sorted(by_step)]
    return history


def stored_result(client: mlflow.MlflowClient, run_id: str, tracking_uri: str) -> TrainResult:
    """A run's result as the store holds it."""
    logged = client.get_run(run_id).data.metrics  # the latest value of each
    metrics = {name: float(value) for name, value in logged.items() if name.startswith("test_")}
    metrics.update({name: float(logged[name]) for name in ("best_val_acc", "fit_time_s", "train_samples_per_s")})
    metrics.update({name: int(logged[name]) for name in ("epochs", "n_params")})
    return TrainResult(run_id, tracking_uri, metrics, metric_histories(client, run_id), None)


def export(folder: Path, result: TrainResult, cfg: DictConfig, run: mlflow.entities.Run, checkpoint: Path,
           config_path: Path) -> None:
    """The DVC stage's outputs: the best checkpoint, the resolved config, the metrics and per-epoch history."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"cell": cfg.model.cell, "impl": cfg.model.impl, "seed": cfg.seed, **result.metrics,
               "device": run.data.tags.get("device"), "mlflow_run_id": result.run_id, "history": result.history}
    # DVC's metrics: the numbers alone (metrics.json, the run's record that compare reads, holds names and lists)
    scores = {name: value for name, value in result.metrics.items() if name in SCORES or name.startswith("test_")}
    # Each file lands whole or not at all (a temporary beside it, then a rename): a kill mid-export never
    # leaves a half-written output for DVC or compare to read.
    for name, write in (("model.ckpt", lambda tmp: shutil.copyfile(checkpoint, tmp)),
                        ("config.yaml", lambda tmp: shutil.copyfile(config_path, tmp)),
                        ("metrics.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n")),
                        ("scores.json", lambda tmp: tmp.write_text(json.dumps(scores, indent=2) + "\n"))):
        temporary = folder / f".{name}.tmp"
        write(temporary)
        temporary.replace(folder / name)


def export_finished(cfg: DictConfig, plan: RunPlan) -> TrainResult:
    """A run of this very configuration finished before (`rnnlab.resume`): write its export again from the store,
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
