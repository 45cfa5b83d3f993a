"""A run's checkpoints: where they live, written atomically, and `last.ckpt` with what an identical
continuation needs (random states, the epoch's metrics)."""

from __future__ import annotations

import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from rnnlab.cli import UserError, first_line
from rnnlab.files import replacing
from rnnlab.processes import die_with_parent
from rnnlab.run.signals import Stopped
from rnnlab.tracking import sqlite_file

LAST = "last.ckpt"


def checkpoint_root(configured: str | None, tracking_uri: str) -> Path:
    """paths.checkpoint_dir, or `checkpoints/` beside a sqlite store (in the working directory for a server)."""
    if configured:
        return Path(configured).resolve()
    db = sqlite_file(tracking_uri)
    return (db.parent if db is not None else Path.cwd()) / "checkpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside their destination, then renamed over it: a process killed
    while writing leaves the previous checkpoint whole. (Lightning's own writer goes through /tmp and, across file
    systems, copies into place.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with replacing(path) as temporary, open(temporary, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash of the machine leaves the old one whole


def check_resumable(path: Path, model: torch.nn.Module, run_id: str) -> None:
    """A `UserError` line unless `path` is a checkpoint `model` can continue from: read as `fit` reads it, with
    the model's weights, of the model's names and shapes. Called before the run is claimed, so that a refused
    resume changes nothing: the run stays stopped, its checkpoints stay (README "Reliability")."""
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch's own message is long, and for weights_only may advise unpickling code
            raise ValueError(f"not a readable torch checkpoint, truncated or overwritten ({type(e).__name__}: "
                             f"{first_line(e).split('. ')[0][:120]})") from e
        if not isinstance(checkpoint, dict) or not {"state_dict", "loops", "optimizer_states"} <= checkpoint.keys():
            raise ValueError("not a Lightning checkpoint of a training run")
        found = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
        if found != {name: tuple(t.shape) for name, t in model.state_dict().items()}:
            raise ValueError("its weights are not this model's (names or shapes differ)")
        check_optimizer_states(checkpoint["optimizer_states"], model)
    except (OSError, ValueError, TypeError, AttributeError) as e:  # the last two: a state_dict of other things
        raise UserError(f"run {run_id} cannot resume from {path}: {first_line(e)}; nothing was changed: put a good "
                        "copy of that file back and rerun to resume the run, or resume=never for a new run") from e


def check_optimizer_states(states: Any, model: torch.nn.Module) -> None:
    """A `ValueError` unless `states` (a checkpoint's `optimizer_states`) load into the model's own optimizers with
    a tensor of each parameter's shape wherever one is kept per parameter (Adam's moments, momentum). torch loads
    a state of other shapes without a word and fails at the first step, by when the run is claimed again."""
    configured = model.configure_optimizers()
    if isinstance(configured, dict):
        configured = configured["optimizer"]
    optimizers = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    if not isinstance(states, list) or len(states) != len(optimizers):
        found = f"{len(states)} optimizer states" if isinstance(states, list) else f"a {type(states).__name__}"
        raise ValueError(f"its optimizer state does not fit this model's optimizer ({found} where the model has "
                         f"{len(optimizers)} optimizer)")
    for optimizer, state in zip(optimizers, states):
        try:
            optimizer.load_state_dict(state)  # a fresh optimizer of the model's parameters: nothing else is touched
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as e:
            raise ValueError(f"its optimizer state does not fit this model's optimizer ({type(e).__name__}: "
                             f"{first_line(e)[:120]})") from e
        for parameter, kept in optimizer.state.items():
            for name, value in kept.items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                    raise ValueError(f"its optimizer state does not fit this model's optimizer ({name} of shape "
                                     f"{tuple(value.shape)} for a parameter of shape {tuple(parameter.shape)})")


def rng_states(device: torch.device) -> dict[str, Any]:
    """This process's random states, as plain values and tensors (`weights_only` loads them): torch's, numpy's and
    Python's global ones, and on a CUDA device that device's own."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def every_ranks_rng_states(trainer: pl.Trainer) -> list[dict[str, Any]]:
    """Each rank's random states, in rank order, on every rank (one collective: call it on every rank)."""
    own = rng_states(trainer.strategy.root_device)
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return [own]
    gathered: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, own)
    return gathered


class LastCheckpoint(Checkpoint):
    """`last.ckpt` in the run's checkpoint folder, written at the end of every training epoch, after the best
    checkpoint was updated (Lightning runs `Checkpoint` callbacks last, in order).

    Lightning's checkpoint holds the weights, the optimizer's and schedulers' states, the loops' progress and the
    callbacks' states (the best checkpoint's score, the training clock). This callback's state adds what an
    identical continuation needs besides: every rank's random states (dropout, the data loader's seed draws; rank
    0 writes the file, so it gathers the others' first, and each rank gets its own back) and the epoch's metrics, which Lightning sends to MLflow only after this hook: a run killed in between gets them
    from here when it resumes.
    """

    def __init__(self) -> None:
        self.dirpath: str | None = None  # set by `RunPlan.attach` once the run exists
        self.epoch_end: dict[str, Any] = {}
        self.rng_by_rank: list[dict[str, Any]] = []  # gathered just before last.ckpt is written
        self.restored: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if multiprocessing.parent_process() is not None:  # a ddp_spawn worker
            die_with_parent()
        # Rank 0's folder on every rank, as ModelCheckpoint does (only rank 0 writes, but every rank names the file)
        self.dirpath = trainer.strategy.broadcast(self.dirpath)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The step Lightning logs epoch metrics at: the epoch's last optimizer step.
        step = trainer.fit_loop.epoch_loop._batches_that_stepped - 1
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}
        self.epoch_end = {"step": step, "metrics": metrics}
        self.rng_by_rank = every_ranks_rng_states(trainer)
        trainer.save_checkpoint(Path(self.dirpath) / LAST)
        write_pending(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        write_pending(trainer)  # the last epoch's training metrics, logged after its checkpoint

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Stopped (resumable): what belongs to the epochs last.ckpt holds; the unfinished epoch is trained and
        # logged again on resume. An error: everything, the epoch it failed in included (a diverged loss).
        stopped = isinstance(exception, (KeyboardInterrupt, Stopped, SIGTERMException))
        write_pending(trainer, self.epoch_end.get("step", -1) if stopped else None)

    def state_dict(self) -> dict[str, Any]:
        return {"rng_by_rank": self.rng_by_rank, **self.epoch_end}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.restored:
            return
        # Lightning restores before this hook. The random states go back to what they were when the checkpoint
        # was written, before the next draw: the training data iterator's seed, which an uninterrupted run draws
        # after on_train_epoch_start but a resumed fit while setting up, before it.
        # The same number of ranks as when it was written: the run key holds the world size (rnnlab.identity).
        set_rng_states(self.restored["rng_by_rank"][trainer.global_rank], trainer.strategy.root_device)
        if trainer.is_global_zero and trainer.logger is not None:
            log_missing_metrics(trainer.logger, self.restored["step"], self.restored["metrics"])
        self.restored = None


def write_pending(trainer: pl.Trainer, up_to_step: int | None = None) -> None:
    """The per-step metrics the run's logger held back until now (`RunLogger.write_pending`)."""
    for logger in trainer.loggers:
        if hasattr(logger, "write_pending"):
            logger.write_pending(up_to_step)


def log_missing_metrics(logger: Any, step: int, metrics: dict[str, float]) -> None:
    """Log each of `metrics` at `step` unless the run has a value there already."""
    client, run_id = logger.experiment, logger.run_id
    missing = {name: value for name, value in metrics.items()
               if not any(m.step == step for m in client.get_metric_history(run_id, name))}
    if missing:
        logger.log_metrics(missing, step=step)
