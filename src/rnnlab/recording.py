"""What one training run leaves behind, and how it ends: the MLflow record, the DVC export, the final status.

`RunRecord` is the bookkeeping half of the recipe in `rnnlab.train`:

    record = RunRecord(cfg, logger, sweep_id)             # also a callback: it hears how a fit ended
    with record.running(trainer, model, datamodule):      # run started: params, tags; ends FINISHED/KILLED/FAILED
        trainer.fit(...); trainer.test(...)
        result = record.finish(trainer, datamodule, output_dir)   # artifacts, served model, export -> TrainResult

Under DDP only rank 0 writes; with ddp_spawn the workers log their metrics into the run this process created,
and `finish` reads them back from MLflow.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from rnnlab.data.base import SequenceDataModule
from rnnlab.plots import plot_learning_curves
from rnnlab.serving import log_sentiment_model
from rnnlab.tracking import RunLogger, flatten, run_tags

HISTORY = ("train_loss", "val_loss", "val_acc", "epoch_time_s")  # per-epoch metrics a run reports
LOSS_NAMES = {"binary": "BCE", "regression": "MSE"}


@dataclass
class TrainResult:
    """What `rnnlab.train.train` hands back: enough to use the run without searching the store for it."""

    run_id: str
    tracking_uri: str
    metrics: dict  # test_acc, test_loss (test_mse), best_val_acc, fit_time_s, train_samples_per_s, epochs, n_params
    history: dict[str, list[float]]  # HISTORY, one value per epoch
    best_checkpoint: Path | None  # None when the run's working folder was temporary (train() outside Hydra)


def final_status(exception: BaseException | None) -> str:
    """How a run ends: FINISHED, KILLED (the user or the system stopped it) or FAILED (an error)."""
    if exception is None:
        return "FINISHED"
    return "KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED"


class RunRecord(pl.Callback):
    def __init__(self, cfg: DictConfig, logger: RunLogger, sweep_id: str | None = None) -> None:
        self.cfg, self.logger, self.sweep_id = cfg, logger, sweep_id
        self.exception: BaseException | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning turns Ctrl-C into SystemExit after calling this: remember what really happened.
        self.exception = exception

    @contextmanager
    def running(self, trainer: pl.Trainer, model: pl.LightningModule,
                datamodule: SequenceDataModule) -> Iterator[None]:
        """Create the run (before DDP spawns workers, so they all log into it) and end it with its final status."""
        if not trainer.is_global_zero:
            yield
            return
        client, run_id = self.logger.experiment, self.logger.run_id
        self.logger.log_hyperparams(flatten(OmegaConf.to_container(self.cfg, resolve=True)))
        tags = run_tags(model.hparams.cell, model.hparams.impl, getattr(datamodule, "data_dir", None),
                        self.cfg.trainer.accelerator, self.sweep_id)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        self.logger.log_metrics({"n_params": sum(p.numel() for p in model.parameters())})
        try:
            yield
        except BaseException as e:
            client.set_terminated(run_id, final_status(self.exception or e))
            raise
        client.set_terminated(run_id, final_status(None))

    def finish(self, trainer: pl.Trainer, datamodule: SequenceDataModule, output_dir: Path) -> TrainResult:
        """Artifacts in MLflow (config, checkpoint, learning curves, the served model); for DVC, the export folder."""
        client, run_id, cfg = self.logger.experiment, self.logger.run_id, self.cfg
        best: ModelCheckpoint = trainer.checkpoint_callback
        run = client.get_run(run_id)
        logged = run.data.metrics  # the latest value of each; DDP workers logged them here
        history = {name: [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]
                   for name in HISTORY}
        metrics = {name: float(value) for name, value in logged.items() if name.startswith("test_")}
        metrics.update({
            # ddp_spawn hands the best checkpoint's path back to this process but not its score
            "best_val_acc": float(best.best_model_score) if best.best_model_score is not None
            else max(history["val_acc"]),
            "fit_time_s": float(logged["fit_time_s"]),
            "train_samples_per_s": float(logged["train_samples_per_s"]),
            "epochs": trainer.current_epoch,
            "n_params": sum(p.numel() for p in trainer.lightning_module.parameters()),
        })
        cell, impl = cfg.model.cell, cfg.model.impl
        config_path = output_dir / "config.yaml"
        OmegaConf.save(cfg, config_path, resolve=True)
        curves_path = output_dir / "learning_curves.png"
        plot_learning_curves(history, f"{cell} ({impl})", curves_path, LOSS_NAMES[datamodule.task])
        for path in (config_path, curves_path):
            client.log_artifact(run_id, str(path))
        client.log_artifact(run_id, best.best_model_path, artifact_path="checkpoints")
        if datamodule.task == "binary":  # a served model reads review text through the run's tokenizer
            log_sentiment_model(run_id, self.logger._tracking_uri, best.best_model_path,
                             datamodule.data_dir / "tokenizer.json", datamodule.max_len, datamodule.keep)
        if cfg.export_dir:
            export = Path(cfg.export_dir)
            export.mkdir(parents=True, exist_ok=True)
            summary = {"cell": cell, "impl": impl, "seed": cfg.seed, **metrics,
                       "device": run.data.tags.get("device"), "mlflow_run_id": run_id, "history": history}
            shutil.copyfile(best.best_model_path, export / "model.ckpt")
            shutil.copyfile(config_path, export / "config.yaml")
            (export / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        return TrainResult(run_id, self.logger._tracking_uri, metrics, history, Path(best.best_model_path))
