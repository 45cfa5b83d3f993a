"""What one training run leaves behind, and how it ends: the MLflow record, the DVC export, the final status.

`RunRecord` is the bookkeeping half of the recipe in `rnnlab.train`:

    record = RunRecord(cfg, sweep_id)                     # a callback: it hears how a fit ended
    with record.running(trainer, model, datamodule, plan):  # run started (or resumed): params, tags, system
        trainer.fit(...); trainer.test(...)               # metrics; ends FINISHED / KILLED / FAILED, with a reason
        result = record.finish(trainer, datamodule, output_dir)   # artifacts, served model, export -> TrainResult

A run that already finished this very configuration (`rnnlab.run`) is exported again by `export_finished`.
Under DDP only rank 0 writes; with ddp_spawn the workers log their metrics into the run this process created,
and `finish` reads them back from MLflow: the result is always what the store holds (`stored_result`). Under
torchrun or srun every rank runs the whole recipe: the others wait for rank 0's record and return it too.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytorch_lightning as pl
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from rnnlab.cli import UserError, first_line
from rnnlab.data.base import SequenceDataModule
from rnnlab.run.curves import plot_learning_curves
from rnnlab.run.export import export, export_diverged
from rnnlab.run.history import metric_histories
from rnnlab.run.logger import RunLogger
from rnnlab.run.plan import RunPlan
from rnnlab.run.provenance import log_dataset_inputs, run_params, run_tags, user_tags
from rnnlab.run.result import TrainResult, stored_result
from rnnlab.run.signals import Stopped
from rnnlab.run.system_metrics import SystemMetrics
from rnnlab.run.tags import END_REASON, ERROR, UNRECORDED
from rnnlab.serve.pyfunc import log_sentiment_model
from rnnlab.tracking import StoreUnreachable, redact, unreachable

log = logging.getLogger(__name__)


LOSS_NAMES = {"binary": "BCE", "regression": "MSE"}


STOPS = (KeyboardInterrupt, Stopped, SIGTERMException)  # Ctrl-C, a signal (rnnlab.run), Lightning's SIGTERM


class RecordFailed(UserError):
    """A run trained and tested, then its record failed (the artifact store unwritable, the model not logged): it
    ends FAILED "not recorded", resumable, its checkpoints kept, so that the same command records it again."""

    def __init__(self, run_id: str, folder: Path | None, error: BaseException) -> None:
        super().__init__(f"run {run_id} trained, but recording it failed ({type(error).__name__}: "
                         f"{redact(first_line(error))[:300]}): it ended FAILED \"{UNRECORDED}\", its checkpoints "
                         f"kept in {folder}; fix that and run the same command again: it resumes from its last "
                         "checkpoint and records the run")


def final_status(exception: BaseException | None) -> str:
    """How a run ends: FINISHED, KILLED (the user or the system stopped it) or FAILED (an error)."""
    if exception is None:
        return "FINISHED"
    return "KILLED" if isinstance(exception, STOPS) else "FAILED"


def end_reason(exception: BaseException) -> str:
    """Why a run ended before its end (tag `rnnlab.end_reason`): "signal SIGTERM", "interrupted" or "error: ...";
    `rnnlab.run` resumes the first two, and runs "died: ..." (found by its sweep), never errors."""
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
        self.recording = False  # `finish` has begun: training and testing are over
        self._described: dict[str, str] | None = None

    def described(self, model: pl.LightningModule, plan: RunPlan) -> dict[str, str]:
        """The tags that describe the run (cell, impl, device, versions, sweep, the config's own `tags`), before
        the bookkeeping ones (`rnnlab.*`): a new run is created with them first, and MLflow lists a run's tags in
        the order they were set (the run page), or sorted (`rnnlab.` after most of them)."""
        if self._described is None:
            self._described = run_tags(model.hparams.cell, model.hparams.impl, plan.data_sha256,
                                       self.cfg.trainer.accelerator, self.sweep_id)
            configured = self.cfg.get("tags")  # the config's own (`+tags.purpose=baseline`, debug configs)
            self._described.update(user_tags(OmegaConf.to_container(configured)
                                             if OmegaConf.is_config(configured) else None))
        return self._described

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Counted in the process that trained: a ddp_spawn worker's count never reaches the main process's trainer
        if trainer.logger is not None:
            trainer.logger.log_counts({"epochs": trainer.current_epoch})

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
        tags = {**self.described(model, plan), "rnnlab.code_sha256": self.plan.code_sha256}
        for key, value in tags.items():  # a resumed run: the values of this attempt (its device, versions)
            client.set_tag(run_id, key, value)
        self.logger.log_counts({"n_params": sum(p.numel() for p in model.parameters())})
        log.info("MLflow run %s (%s, attempt %d) in %s", run_id, stored.info.run_name, self.plan.attempt,
                 redact(self.logger._tracking_uri))
        interval = self.logger.system_metrics_interval_s
        sampling = SystemMetrics(run_id, self.plan.tracking_uri, interval, resumed=self.plan.attempt > 1) \
            if interval else nullcontext()
        try:
            with sampling:
                yield
        except BaseException as e:
            exception = self.exception or e
            if unreachable(exception):  # no status can be written: the run stays RUNNING, its checkpoints kept
                raise StoreUnreachable(self.plan.tracking_uri, run_id, exception) from e
            status, reason = final_status(exception), end_reason(exception)
            # Failing to record what trained loses nothing that cannot be redone: resumable, checkpoints kept
            record_failed = self.recording and status == "FAILED"
            if record_failed:
                reason = redact(f"{UNRECORDED}: {first_line(exception)}")[:5000]
            try:
                client.set_tag(run_id, END_REASON, reason)
                client.set_terminated(run_id, status)
            except Exception as store_error:
                if not unreachable(store_error):
                    raise
                raise StoreUnreachable(self.plan.tracking_uri, run_id, store_error) from e
            self.plan.end(resumable_after=not reason.startswith(ERROR))
            if record_failed and isinstance(exception, (OSError, MlflowException)):  # else a bug: its traceback
                raise RecordFailed(run_id, self.plan.folder, exception) from e
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
        self.recording = True
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

    def export_diverged(self, trainer: pl.Trainer, error: BaseException) -> None:
        """A run whose training diverged, with cfg.export_dir set (a DVC train stage): its outputs, marked diverged
        (rnnlab.run.export.export_diverged). Every rank calls it (saving a checkpoint is collective); rank 0 writes."""
        with tempfile.TemporaryDirectory(prefix="rnnlab-") as temporary:
            checkpoint = Path(temporary) / "model.ckpt"
            trainer.save_checkpoint(checkpoint, weights_only=True)
            if not trainer.is_global_zero:
                return
            config_path = Path(temporary) / "config.yaml"
            OmegaConf.save(self.cfg, config_path, resolve=True)
            client, run_id = self.logger.experiment, self.logger.run_id
            export_diverged(Path(self.cfg.export_dir), self.cfg, client.get_run(run_id), first_line(error),
                            metric_histories(client, run_id), checkpoint, config_path)

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
