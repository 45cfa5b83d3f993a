"""Train one recurrent cell and record the run in MLflow: the Hydra entry point and its recipe.

    python -m rnnlab.train                                   # conf/config.yaml as it is (LSTM)
    python -m rnnlab.train model=gru trainer.max_epochs=2
    python -m rnnlab.train experiment=article               # the article's Keras setup
    python -m rnnlab.train -m model=rnn,lstm,gru seed=0,1,2  # a sweep: nine runs sharing one sweep id

The recipe: seed -> datamodule -> model -> callbacks -> logger -> trainer -> fit -> test on the best
checkpoint -> record. `train(cfg)` returns a `TrainResult` (run id, final metrics, history, best checkpoint);
the entry point returns the best validation accuracy, what a Hydra sweeper maximises.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from rnnlab.cli import UserError, build, first_line, hydra_app
from rnnlab.recording import RunRecord, TrainResult
from rnnlab.timing import TrainingTimer


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), output_dir: Path | None = None,
          sweep_id: str | None = None) -> TrainResult:
    """Train, test and record one run as `cfg` says.

    callbacks: join the configured ones (tests, the benchmark). output_dir: the run's working folder (checkpoints,
    config, plots); None: a temporary one, since all the run keeps is in MLflow (and cfg.export_dir) by the end.
    sweep_id: tags the runs of one sweep.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build_data_and_model(cfg)
    with working_folder(output_dir) as output_dir:
        configured = [build(c, f"callbacks.{name}") for name, c in cfg.callbacks.items() if c is not None]
        if not any(isinstance(c, ModelCheckpoint) and c.monitor for c in configured):
            raise UserError("callbacks.model_checkpoint is missing: a run tests and exports its best checkpoint")
        logger = build(cfg.logger, "logger")
        record = RunRecord(cfg, logger, sweep_id)
        trainer: pl.Trainer = build(cfg.trainer, "trainer", logger=logger, default_root_dir=output_dir,
                                    callbacks=[*configured, TrainingTimer(), record, *callbacks])
        with record.running(trainer, model, datamodule):
            trainer.fit(model, datamodule=datamodule)
            trainer.test(model, datamodule=datamodule, ckpt_path="best")
            result = record.finish(trainer, datamodule, output_dir)
    if not result.best_checkpoint.exists():
        result.best_checkpoint = None  # its temporary folder is gone; the checkpoint is in MLflow
    return result


def build_data_and_model(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The datamodule and the model, every setting checked before any run exists (one `UserError` line if not)."""
    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model", task=datamodule.task, **datamodule.network_inputs)
    try:  # the optimizer and scheduler are only built at fit time: try their settings now
        model.configure_optimizers()
    except (ValueError, TypeError) as e:
        raise UserError(f"model.optimizer: {first_line(e)}") from e
    return datamodule, model


@contextmanager
def working_folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="rnnlab-") as temporary:
        yield Path(temporary)


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    hydra = HydraConfig.get()
    sweep_id = hydra.sweep.dir if hydra.mode == RunMode.MULTIRUN else None  # what the runs of one -m share
    return train(cfg, output_dir=Path(hydra.runtime.output_dir), sweep_id=sweep_id).metrics["best_val_acc"]


if __name__ == "__main__":
    main()
