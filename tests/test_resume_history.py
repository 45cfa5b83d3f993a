"""A run stopped between its validation metrics and its epoch's checkpoint resumes with every epoch logged once.

The stop is made at that very moment, not left to timing: a callback sends this process SIGTERM once the second
epoch's validation metrics have been logged; the run stops at the next batch boundary, before `last.ckpt` holds
that epoch (tests/test_slurm.py's pre-emption met the same moment by chance, and logged an epoch twice).
"""

from __future__ import annotations

import os
import signal

import mlflow
import pytest
import pytorch_lightning as pl

from rnnlab.run.history import HISTORY
from rnnlab.train import train
from tests.helpers.training import compose_tiny, runs

EPOCHS = 4


class TerminateAfterValidation(pl.Callback):
    """SIGTERM to this process right after the validation of training epoch `epoch` (0-based) was logged."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def histories(store) -> dict[str, list[tuple[int, float]]]:
    [run] = runs(store)
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    return {name: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, name),
                                                     key=lambda m: (m.step, m.timestamp))]
            for name in ("train_loss", "val_loss", "val_acc")}


def test_a_stop_before_the_epochs_checkpoint_logs_every_epoch_once(prepared_dir, tmp_path):
    reference = tmp_path / "uninterrupted"
    train(compose_tiny(prepared_dir, reference, f"trainer.max_epochs={EPOCHS}"))
    stopped = tmp_path / "stopped"
    cfg = compose_tiny(prepared_dir, stopped, f"trainer.max_epochs={EPOCHS}")
    with pytest.raises(SystemExit) as exit_info:
        train(cfg, callbacks=[TerminateAfterValidation(epoch=1)])
    assert exit_info.value.code == 128 + signal.SIGTERM
    [run] = runs(stopped)
    assert run.info.status == "KILLED"
    # What the store holds of the stopped run: the first epoch, whole, and nothing of the second
    assert [len(points) for points in histories(stopped).values()] == [1, 1, 1]
    train(cfg)  # resumes from the first epoch's checkpoint
    [run] = runs(stopped)
    assert run.info.status == "FINISHED" and run.data.tags["rnnlab.attempt"] == "2"
    resumed, uninterrupted = histories(stopped), histories(reference)
    for name, points in resumed.items():
        steps = [step for step, _ in points]
        assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS, (name, steps)
    assert resumed == uninterrupted  # the same steps and the same values as a run never stopped
    assert set(HISTORY) >= {"train_loss", "val_loss", "val_acc"}
