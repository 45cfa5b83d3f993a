"""Train one recurrent cell and record the run in MLflow: the Hydra entry point and its recipe.

    python -m rnnlab.train                                   # conf/config.yaml as it is (LSTM)
    python -m rnnlab.train model=gru trainer.max_epochs=2
    python -m rnnlab.train experiment=article               # the article's Keras setup
    python -m rnnlab.train -m model=rnn,lstm,gru seed=0,1,2  # a sweep: nine runs sharing one sweep id

    python -m rnnlab.train ...                               # again after a kill: resumes the same run
    python -m rnnlab.train resume=never                      # a new run, whatever happened before

The recipe: settings checked -> seed -> datamodule -> model -> which run (new, resumed, or finished before:
rnnlab.run) -> callbacks -> logger -> trainer -> fit (from the last checkpoint when resuming) -> test on the best
checkpoint -> record. `train(cfg)` returns a `TrainResult` (run id, final metrics, history, best checkpoint); the entry point
returns the best validation accuracy, what a Hydra sweeper maximises. A run whose training diverges ends FAILED
(`TrainingDiverged`, one error line); with `export_dir` set (a DVC train stage) its outputs are written all the
same, marked diverged, and the command ends with a warning line and status 0: the failure is the stage's result.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from rnnlab.checks import positive_int
from rnnlab.cli import UserError, build, first_line, hydra_app
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.parameters import network_settings, with_matched_model
from rnnlab.run.checkpoints import AtomicCheckpointIO, LastCheckpoint
from rnnlab.run.export import export_finished
from rnnlab.run.load import RunLoad
from rnnlab.run.naming import description, kept_apart
from rnnlab.run.progress import EpochLog, progress_bar_wanted
from rnnlab.run.provenance import data_hash
from rnnlab.run.ranks import follow_rank_zero, plan_on_rank_zero
from rnnlab.run.record import RunRecord
from rnnlab.run.result import TrainResult, stored_result
from rnnlab.run.signals import StopAtBatchBoundaries, stopping_on_signals
from rnnlab.run.sweep import sweep_parent
from rnnlab.run.timing import TrainingTimer
from rnnlab.tracking import TRAINING_HTTP, quick_http

log = logging.getLogger("rnnlab.train")  # not __main__, its name under `python -m`


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), output_dir: Path | None = None,
          sweep_id: str | None = None, tags: dict[str, str] | None = None) -> TrainResult:
    """Train, test and record one run as `cfg` says.

    callbacks: join the configured ones (tests, the benchmark). output_dir: the run's working folder (config,
    plots, and at the end the best checkpoint; while it trains, its checkpoints are where a rerun finds them:
    rnnlab.run); None: a temporary one, since all the run keeps is in MLflow (and cfg.export_dir) by the end.
    sweep_id: tags the runs of one sweep. tags: set when the run is created (a search trial: its parent run).
    With `test: false` in cfg (a search trial: chosen on validation only) the test split is never touched.
    """
    # A server that stops answering: a bounded wait, then a resumable stop (tracking.py). A `with`, not a
    # decorator: a decorating context manager holds a generator, and a sweep's launcher (joblib, submitit)
    # must pickle this function when the command runs as __main__.
    with quick_http(TRAINING_HTTP):
        return train_and_record(cfg, callbacks, output_dir, sweep_id, tags)


def train_and_record(cfg: DictConfig, callbacks: Sequence[pl.Callback], output_dir: Path | None,
                     sweep_id: str | None, tags: dict[str, str] | None) -> TrainResult:
    """`train`'s recipe, top to bottom."""
    cfg = kept_apart(cfg)  # a debug run: its own experiment and a name that says so (rnnlab.run.naming)
    check_trainer_settings(cfg)
    try:  # experiment=matched: the cell's hidden size solved before anything records the settings
        cfg = with_matched_model(cfg)
    except ValueError as e:
        raise UserError(f"model.match: {first_line(e)}") from e
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build_data_and_model(cfg)
    configured = [build(c, f"callbacks.{name}") for name, c in cfg.callbacks.items() if c is not None]
    show_bar = progress_bar_wanted()  # outside a terminal, the epoch lines alone (rnnlab.run.progress)
    if not show_bar:
        configured = [c for c in configured if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ModelCheckpoint) and c.monitor for c in configured):
        raise UserError("callbacks.model_checkpoint is missing: a run tests and exports its best checkpoint")
    data_dir = getattr(datamodule, "data_dir", None)  # generated data (data=adding) have no files
    # Under torchrun or srun every rank runs this command: rank 0 chooses the run, the others follow (rnnlab.run)
    plan = plan_on_rank_zero(cfg, data_hash(data_dir) if data_dir is not None else None, model)
    with working_folder(output_dir) as output_dir, stopping_on_signals() as signals:
        record = RunRecord(cfg, sweep_id)
        # The logger of the planned run joins once every rank knows the plan, through the trainer's process group
        bar_setting = {} if show_bar else {"enable_progress_bar": False}
        trainer: pl.Trainer = build(cfg.trainer, "trainer", logger=False, default_root_dir=output_dir,
                                    plugins=[AtomicCheckpointIO()], **bar_setting,
                                    callbacks=[*configured, EpochLog(), TrainingTimer(), RunLoad(), record,
                                               LastCheckpoint(),
                                               StopAtBatchBoundaries(signals), *callbacks])
        plan = follow_rank_zero(trainer, plan)
        if plan.finished:
            return export_finished(cfg, plan) if trainer.is_global_zero else stored_result(
                plan.client, plan.run_id, plan.tracking_uri)
        tags = dict(tags or {})
        if sweep_id and "mlflow.parentRunId" not in tags:  # nested under its sweep's parent run (rnnlab.run.sweep)
            tags["mlflow.parentRunId"] = sweep_parent(cfg.logger.tracking_uri, cfg.logger.experiment_name, sweep_id)
        # What describes the run first, the bookkeeping after: MLflow shows a new run's tags in this order
        trainer.logger = build(cfg.logger, "logger", run_id=plan.run_id,
                               tags={**record.described(model, plan), **tags, **plan.creation_tags()})
        try:
            with record.running(trainer, model, datamodule, plan):
                trainer.fit(model, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
                if cfg.get("test", True):
                    # fast_dev_run (debug=fdr) saves no checkpoint: it tests the model as it is in memory
                    best = None if trainer.fast_dev_run else trainer.checkpoint_callback.best_model_path
                    trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
                result = record.finish(trainer, datamodule, output_dir)
        except TrainingDiverged as e:
            if cfg.export_dir:  # a DVC train stage: the failed run is a result, its outputs say so (compare counts it)
                record.export_diverged(trainer, e)
            raise
    if result.best_checkpoint is not None and not result.best_checkpoint.exists():
        result.best_checkpoint = None  # its temporary folder is gone; the checkpoint is in MLflow
    return result


def build_data_and_model(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The datamodule and the model, every setting checked before any run exists (one `UserError` line if not)."""
    datamodule = build(cfg.data, "data")
    model = build(network_settings(cfg.model), "model", task=datamodule.task, **datamodule.network_inputs)
    try:  # the optimizer and scheduler are only built at fit time: try their settings now
        model.configure_optimizers()
    except (ValueError, TypeError) as e:
        raise UserError(f"model.optimizer: {first_line(e)}") from e
    return datamodule, model


def check_trainer_settings(cfg: DictConfig) -> None:
    """The seed and the trainer's budget and clipping, checked before any run exists (one `UserError` line if not):
    Lightning reads them only once it fits, by when the run is in the store (and a DVC stage's outputs are gone)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed={seed!r} must be an integer")
    trainer = cfg.trainer
    max_steps, max_time = trainer.get("max_steps", -1), trainer.get("max_time")
    if max_steps != -1:  # Lightning's "no limit"
        try:
            positive_int("max_steps", max_steps)
        except ValueError as e:
            raise UserError(f"trainer: {e}, or -1 (no limit)") from e
    max_epochs = trainer.get("max_epochs")
    # An unbounded epoch count (-1; null is Lightning's 1000) only where another setting ends the training
    if not (max_epochs in (-1, None) and (max_steps != -1 or max_time is not None)):
        try:
            positive_int("max_epochs", max_epochs)
        except ValueError as e:
            raise UserError(f"trainer: {e} (-1 only with trainer.max_steps or trainer.max_time as the budget)") from e
    check_implementation(cfg.model.get("impl"), trainer.get("accelerator", "auto"))
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 <= clip < math.inf):
        raise UserError(f"trainer: gradient_clip_val={clip!r} must be a number >= 0, or null (no clipping)")


def check_implementation(impl: str | None, accelerator: str) -> None:
    """Refuse `model.impl=sequence` on an accelerator other than the CPU (one `UserError` line): its C++ kernel runs
    on CPUs only, and running the explicit cells instead would record them as `sequence`. The decision is made from
    the configured accelerator (`auto`: a GPU when torch sees one), before any run exists."""
    if impl != "sequence":
        return
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator != "cpu":
        raise UserError(f"model.impl=sequence runs rnnlab's C++ kernel on CPUs only, not with trainer.accelerator="
                        f"{accelerator}: choose model.impl=fused (cuDNN's kernels) or model.impl=explicit (the same "
                        "cells, step by step)")


@contextmanager
def working_folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="rnnlab-") as temporary:
        yield Path(temporary)


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    hydra = HydraConfig.get()
    sweep_id = hydra.sweep.dir if hydra.mode == RunMode.MULTIRUN else None  # what the runs of one -m share
    output_dir = Path(hydra.runtime.output_dir)
    note = description(list(hydra.overrides.task), sweep_id)  # the run page's description: what it changed
    try:
        result = train(cfg, output_dir=output_dir, sweep_id=sweep_id, tags={"mlflow.note.content": note})
    except TrainingDiverged as e:
        if not cfg.export_dir:
            raise
        # A DVC train stage: the run failed, and that is its result (export_dir says so); `dvc repro` goes on to
        # compare, which counts it. Ended FAILED in MLflow all the same.
        print(f"train: warning: {first_line(e)}; recorded as a failed run in {cfg.export_dir}", file=sys.stderr)
        return math.nan
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    log.info("%s: run %s in experiment %s; its folder: %s", run.info.run_name, result.run_id,
             kept_apart(cfg).logger.experiment_name, output_dir)
    return result.metrics["best_val_acc"]


if __name__ == "__main__":
    main()
