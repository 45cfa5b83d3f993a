"""Training time, the article's second axis: wall time of the fit, of each epoch, and throughput."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


class TrainingTimer(pl.Callback):
    """Logs `epoch_time_s` (training batches of one epoch, validation excluded) per epoch, and at the end
    `fit_time_s` (wall time of the whole fit, validation included) and `train_samples_per_s`."""

    def __init__(self) -> None:
        self.fit_start = self.epoch_start = 0.0
        self.train_seconds = 0.0
        self.samples = 0
        self.fit_time_s: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start, self.train_seconds, self.samples = time.perf_counter(), 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[2]) * trainer.world_size  # every rank trains a batch of this size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self.epoch_start
        self.train_seconds += seconds
        pl_module.log("epoch_time_s", seconds, on_epoch=True, rank_zero_only=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_time_s = time.perf_counter() - self.fit_start
        throughput = self.samples / self.train_seconds if self.train_seconds else 0.0
        metrics = {"fit_time_s": self.fit_time_s, "train_samples_per_s": throughput}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
