"""The LightningModule: a `RecurrentNetwork` trained for the task its data pose.

- binary (IMDB): binary cross-entropy on one logit; `acc` is the classification accuracy.
- regression (the adding problem): mean squared error, also logged as `mse`; `acc` is the fraction of
  predictions within 0.04 of the target, Hochreiter & Schmidhuber's criterion, so that "val_acc" means
  "higher is better" for both tasks and the same checkpointing and records serve both.

The task comes from the datamodule (`SequenceDataModule.task`), the network's settings from `model.*` in conf/.

A run has diverged, and ends FAILED with one line (`TrainingDiverged`), when at the end of an epoch
- its mean training loss or its validation loss is not a finite number (a non-finite gradient gets there too: it
  makes the weights, and so the next losses, non-finite; clipping does not mend it), or
- its mean training loss exceeds `divergence_factor` (model.divergence_factor in conf/) times the loss of the very
  first training batch, the untrained model's. The first epoch's loss would be no yardstick: a learning rate far
  too high explodes the loss within that epoch already. null turns this second rule off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy
from torchmetrics.regression import MeanSquaredError

from rnnlab.checks import one_of
from rnnlab.errors import UserError
from rnnlab.data.base import TASKS
from rnnlab.models.network import RecurrentNetwork


class TrainingDiverged(UserError, FloatingPointError):
    """The loss stopped being a number or exploded (module docstring): the run ends FAILED with this one line."""


TOLERANCE = 0.04  # Hochreiter & Schmidhuber (1997): a prediction this close to the target counts as correct


class RecurrentModule(pl.LightningModule):
    def __init__(
        self,
        *,
        task: str = "binary",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        divergence_factor: float | None = 10.0,
        **network: Any,
    ) -> None:
        """`network`: the keyword arguments of `RecurrentNetwork` (cell, impl, sizes, ...)."""
        super().__init__()
        self.task = one_of("task", task, TASKS)
        if divergence_factor is not None and (isinstance(divergence_factor, bool)
                                              or not isinstance(divergence_factor, (int, float))
                                              or not divergence_factor > 1):
            raise ValueError(f"divergence_factor={divergence_factor!r} must be a number above 1, or null")
        self.divergence_factor = divergence_factor
        self.first_loss: float | None = None  # the untrained model's loss: the first training batch's
        # Optimizer and scheduler are factories from the config (`_partial_: true`); they are recorded
        # in MLflow with the rest of the resolved config, not in the checkpoint, which holds plain values only.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.net = RecurrentNetwork(**network)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.scheduler_factory = scheduler
        # Means over all ranks' examples; a NaN loss kept as it is (MeanMetric's default drops it with a warning),
        # so that a diverged validation is seen (on_train_epoch_end)
        self.val_loss_mean = MeanMetric(nan_strategy="disable")
        self.test_loss_mean = MeanMetric(nan_strategy="disable")
        if task == "binary":
            self.train_acc, self.val_acc, self.test_acc = BinaryAccuracy(), BinaryAccuracy(), BinaryAccuracy()
        else:
            # acc: the mean of "within TOLERANCE", one 0/1 per example
            self.train_acc, self.val_acc, self.test_acc = MeanMetric(), MeanMetric(), MeanMetric()
            self.train_mse, self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError(), MeanSquaredError()

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(inputs, lengths)

    def step(self, batch, stage: str) -> torch.Tensor:
        inputs, lengths, targets = batch
        outputs = self(inputs, lengths)
        accuracy = getattr(self, f"{stage}_acc")
        if self.task == "binary":
            loss = F.binary_cross_entropy_with_logits(outputs, targets)
            # Hard 0/1 predictions: given floats all inside [0, 1], torchmetrics would read logits as
            # probabilities and threshold them at 0.5 instead of 0.
            accuracy((outputs > 0).long(), targets.long())
        else:
            loss = F.mse_loss(outputs, targets)
            accuracy(((outputs - targets).abs() < TOLERANCE).float())
            mse = getattr(self, f"{stage}_mse")
            mse(outputs, targets)
            self.log(f"{stage}_mse", mse, on_step=False, on_epoch=True, batch_size=len(targets))
        shown = stage != "test"  # on the progress bar once their epoch ends (the test has its own table)
        if stage == "train":  # each rank's own mean: no collective on the training path
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(targets), prog_bar=shown)
        else:
            # Evaluation's loss over all ranks' examples, each once (rnnlab.data.sampler): a metric that sums the
            # examples' losses and counts them over ranks at the epoch's end. Lightning's own `sync_dist` mean
            # would average the ranks' example counts as integers (4 examples on 3 ranks: 1), wrong when ranks
            # evaluate different numbers of examples. One value per example: MeanMetric ignores its weights when
            # it keeps NaNs.
            loss_of_each = (F.binary_cross_entropy_with_logits if self.task == "binary" else F.mse_loss)(
                outputs.detach(), targets, reduction="none")
            mean_loss = getattr(self, f"{stage}_loss_mean")
            mean_loss.update(loss_of_each)
            self.log(f"{stage}_loss", mean_loss, on_step=False, on_epoch=True, prog_bar=shown)
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, batch_size=len(targets), prog_bar=shown)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")
        if self.first_loss is None:  # one value, the same on every DDP rank
            self.first_loss = float(self.trainer.strategy.reduce(loss.detach(), reduce_op="mean"))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    def on_train_epoch_end(self) -> None:
        # Checked once an epoch rather than every step, so GPUs are not forced to sync; on the mean over DDP
        # ranks (train_loss is logged per rank), so that they all stop together.
        metrics = self.trainer.callback_metrics
        epoch = self.current_epoch
        if "train_loss" in metrics:
            loss = float(self.trainer.strategy.reduce(metrics["train_loss"].detach().clone(), reduce_op="mean"))
            if not math.isfinite(loss):
                raise TrainingDiverged(f"training diverged: train_loss is {loss} at epoch {epoch}")
            factor, first = self.divergence_factor, self.first_loss
            if factor is not None and first is not None and loss > factor * first:
                raise TrainingDiverged(
                    f"training diverged: train_loss {loss:.4g} at epoch {epoch} is over {factor:g} x the untrained "
                    f"model's {first:.4g} (model.divergence_factor)")
        if "val_loss" in metrics and not math.isfinite(float(metrics["val_loss"])):
            raise TrainingDiverged(f"training diverged: val_loss is {float(metrics['val_loss'])} at epoch {epoch}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["first_train_loss"] = self.first_loss  # a resumed run keeps its yardstick

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.first_loss = checkpoint.get("first_train_loss")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}
