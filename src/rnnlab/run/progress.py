"""What a run shows while it trains: a line per epoch in the job log, and a progress bar only in a terminal.

    epoch 2/5: train_loss 0.6712, train_acc 0.5834, val_loss 0.6530, val_acc 0.6120 (41.2 s)

The line goes through Python logging (logger `rnnlab.run.progress`): on the console and in Hydra's job log,
<output dir>/train.log, so every epoch's figures stay readable after the bar has moved on. Outside a terminal
(a log file, CI, `nohup`, a SLURM job's output) a progress bar would write its carriage returns and redraws into
the file: `progress_bar_wanted` says whether to keep it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

log = logging.getLogger(__name__)


def progress_bar_wanted() -> bool:
    """Whether a progress bar has a terminal to draw on (stderr, where it draws, and where Lightning's tqdm
    draws too)."""
    return sys.stderr.isatty()


class EpochLog(pl.Callback):
    """One log line per completed training epoch, with its epoch-level metrics (training, then validation)."""

    started: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        log.info("%s", epoch_line(trainer, time.perf_counter() - (self.started or time.perf_counter())))


def epoch_line(trainer: pl.Trainer, seconds: float) -> str:
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
               if name.startswith(("train_", "val_")) and value.numel() == 1}
    ordered = sorted(metrics, key=lambda name: (not name.startswith("train_"), name))
    figures = ", ".join(f"{name} {metrics[name]:.4f}" for name in ordered)
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    return f"epoch {trainer.current_epoch + 1}/{total}: {figures or 'no metrics'} ({seconds:.1f} s)"


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, each epoch's bar kept on screen (`leave`), without `v_num`: the logger's version,
    which for MLflow is nothing a reader can use (the run is named in the job log)."""

    def __init__(self, refresh_rate: int = 1, leave: bool = True) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
