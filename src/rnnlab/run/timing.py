"""Training time, the article's second axis: wall time of the fit, of each epoch's training, and throughput."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from rnnlab.data.sampler import BucketBatchSampler


class TrainingTimer(pl.Callback):
    """Logs `epoch_time_s` per epoch (its training batches only: Lightning validates inside the epoch, before
    `on_train_epoch_end`, so the clock pauses while it does), and at the end `fit_time_s` (wall time of the
    whole fit, validation included) and `train_samples_per_s` (over the training time only), each review
    counted once per epoch, however many ranks train it (`reviews_trained`).

    On a CUDA device every clock read first waits for the GPU (`torch.cuda.synchronize`): kernels run
    asynchronously, and without the wait the clock would time their launches, not their work.

    Its totals are part of a checkpoint's state: a resumed run (`rnnlab.run`) counts the epochs it kept plus
    the time since it resumed; the epoch a kill cut short, trained again, is counted once.
    """

    def __init__(self) -> None:
        self.fit_start = 0.0
        self.running_since: float | None = None  # None while the clock is paused (validation)
        self.epoch_seconds = self.train_seconds = 0.0
        self.samples = 0
        self.fit_time_s: float | None = None
        self.restored: dict | None = None
        self.device: torch.device | None = None  # the trainer's, known at on_fit_start

    def clock(self) -> float:
        """Seconds on the performance counter, once the device has finished the work queued so far."""
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def state_dict(self) -> dict:
        # Saved at an epoch's end (rnnlab.run.checkpoints.LastCheckpoint): the totals of the epochs done so far.
        return {"fit_seconds": self.clock() - self.fit_start, "train_seconds": self.train_seconds,
                "samples": self.samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict  # applied at on_fit_start, which Lightning calls after restoring

    def pause(self) -> None:
        if self.running_since is not None:
            self.epoch_seconds += self.clock() - self.running_since
            self.running_since = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.device = trainer.strategy.root_device
        done = self.restored or {"fit_seconds": 0.0, "train_seconds": 0.0, "samples": 0}
        self.fit_start = self.clock() - done["fit_seconds"]
        self.train_seconds, self.samples = done["train_seconds"], done["samples"]
        self.restored = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_seconds, self.running_since = 0.0, self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += reviews_trained(trainer, batch, batch_idx)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Validation inside a training epoch (not the sanity check before it): training goes on afterwards.
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.running_since = self.clock()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.pause()
        self.train_seconds += self.epoch_seconds
        pl_module.log("epoch_time_s", self.epoch_seconds, on_epoch=True, rank_zero_only=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_time_s = self.clock() - self.fit_start
        throughput = self.samples / self.train_seconds if self.train_seconds else 0.0
        metrics = {"fit_time_s": self.fit_time_s, "train_samples_per_s": throughput}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})


def reviews_trained(trainer, batch, batch_idx: int) -> int:
    """The examples all ranks together train in this step, each counted once: under DDP the sampler pads the ranks'
    shares with repeated batches so they step in lockstep, and its count weighs those 0 (rnnlab.data.sampler).
    Another sampler: every rank taken to train a batch of this one's size."""
    sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
    if isinstance(sampler, BucketBatchSampler) and sampler.examples_per_step is not None:
        return sampler.examples_per_step[batch_idx]
    return len(batch[2]) * trainer.world_size
