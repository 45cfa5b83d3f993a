"""The ways of training one model that the benchmark compares, each timed over the same batches.

- `run_project`: the project's own path. The Hydra config, `IMDBDataModule` (length-bucketed batches),
  `SentimentClassifier` (whose setup() flushes denormals), a `pl.Trainer` with the config's settings
  (gradient clipping, deterministic), `TrainingTimer` and the MLflow `RunLogger`.
- `run_plain`: a hand-written PyTorch loop over the same model, optimizer and clipping, on a list of
  batches given by index, either padded per batch (as the datamodule does) or all to `max_len` (what a user
  would write); with PyTorch's defaults, flush-denormal alone, or all the project's process settings
  (`rnnlab.cpu.apply_training_settings` and the config's deterministic mode).

Every variant trains `warmup` batches first and is timed from the end of the last warm-up step to the end
of the last step: data loading, collation, forward, backward, clipping, optimizer step and bookkeeping.
Each run happens in a fresh process (`in_fresh_process`), as a real `python -m rnnlab.train` would.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from rnnlab.bench.flops import fastest_seconds
from rnnlab.cpu import apply_training_settings
from rnnlab.data.datamodule import IMDBDataModule, collate
from rnnlab.data.text import PAD_ID
from rnnlab.models.cells import FUSED_CELLS
from rnnlab.timing import TrainingTimer
from rnnlab.tracking import MarkInterrupted, flatten


@dataclass
class Measurement:
    """What one variant did in its timed window (the steps after warm-up)."""

    seconds: float = 0.0
    samples: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0  # batch x time steps actually run, padding included
    losses: list[float] = field(default_factory=list)

    def add(self, lengths: torch.Tensor, tokens: torch.Tensor, loss: float) -> None:
        self.samples += len(lengths)
        self.real_tokens += int(lengths.sum())
        self.computed_tokens += tokens.numel()
        self.losses.append(loss)


@dataclass
class BatchPlan:
    """The batches every variant trains on, as lists of review indices: `warmup` batches, then the timed ones.

    `bucketed` is exactly what the datamodule's sampler yields first in epoch 0. `shuffled` holds the same
    reviews in random order, cut to the same batch sizes, warm-up and timed reviews kept apart: so the timed
    window of every variant trains on the same reviews and the same real tokens.
    """

    warmup: int
    bucketed: list[np.ndarray]
    shuffled: list[np.ndarray]


def plan_batches(datamodule: IMDBDataModule, warmup: int, steps: int, seed: int) -> BatchPlan:
    if warmup < 1 or steps < 1:
        raise ValueError("warmup and steps must be positive: the timed window starts at the end of a warm-up step")
    datamodule.setup("fit")
    bucketed = datamodule.train_dataloader().batch_sampler.batches()[: warmup + steps]
    if len(bucketed) < warmup + steps:
        raise ValueError(f"the training split holds {len(bucketed)} batches; {warmup} + {steps} were asked for")
    rng = np.random.default_rng(seed)
    shuffled: list[np.ndarray] = []
    for group in (bucketed[:warmup], bucketed[warmup:]):
        reviews = rng.permutation(np.concatenate(group))
        shuffled += np.split(reviews, np.cumsum([len(b) for b in group])[:-1])
    return BatchPlan(warmup, bucketed, shuffled)


def in_fresh_process(fn: Callable, *args):
    """fn(*args) in a child forked from this process, which must not have run a parallel torch op yet.

    torch.set_flush_denormal sets the calling thread's floating-point mode only. OpenMP's worker threads
    copy it when they are created, at a process's first parallel op, and keep it: measured here, one matmul
    before set_flush_denormal(True) left the worker thread unflushed and an LSTM (E=H=128) training step on a
    267-token batch took 1.7 s instead of 0.35 s. In `python -m rnnlab.train` the pool starts at the first
    training batch, after SentimentClassifier.setup(); a fresh child per run reproduces that, and lets runs
    with and without flushing share one benchmark. The child also starts with the same memory state each time.
    """
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        return pool.apply(fn, args)
    finally:
        pool.close()
        pool.join()


class WindowTimer(pl.Callback):
    """Times the steps after warm-up inside Lightning, and checks that they are the planned batches."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.measurement = Measurement()
        self.start = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        tokens, lengths, _ = batch
        if len(lengths) != len(self.plan.bucketed[batch_idx]):
            raise RuntimeError(f"batch {batch_idx} is not the planned one: the datamodule's batches changed")
        if batch_idx >= self.plan.warmup:
            self.measurement.add(lengths, tokens, float(outputs["loss"]))
            self.measurement.seconds = now - self.start
        if batch_idx == self.plan.warmup - 1:
            self.start = time.perf_counter()


def run_project(cfg: DictConfig, plan: BatchPlan, workdir: Path) -> tuple[Measurement, dict]:
    """Train through the project's path as `rnnlab.train` sets it up, minus validation and checkpoints."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, vocab_size=datamodule.vocab_size)
    window, timer = WindowTimer(plan), TrainingTimer()
    logger = instantiate(cfg.logger, run_name=f"bench-{cfg.model.cell}-E{cfg.model.embedding_dim}")
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[timer, MarkInterrupted(), window], logger=logger, default_root_dir=workdir,
        max_steps=len(plan.bucketed), limit_val_batches=0, enable_checkpointing=False,
        enable_progress_bar=False)
    logger.log_hyperparams(flatten(OmegaConf.to_container(cfg, resolve=True)))
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    # The whole fit (warm-up, the Trainer's set-up and MLflow's writes included), and what TrainingTimer
    # logged to MLflow as train_samples_per_s (warm-up steps included).
    fit = {"fit_seconds": time.perf_counter() - start,
           "logged_train_samples_per_s": float(trainer.callback_metrics["train_samples_per_s"]),
           "deterministic": torch.are_deterministic_algorithms_enabled(),
           "fill_uninitialized_memory": torch.utils.deterministic.fill_uninitialized_memory}
    return window.measurement, fit


def collate_to(items: list, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`collate`, then padded on to `max_len`: every batch the same shape, as Keras' pad_sequences makes."""
    tokens, lengths, labels = collate(items)
    return F.pad(tokens, (0, max_len - tokens.shape[1]), value=PAD_ID), lengths, labels


def run_plain(cfg: DictConfig, batches: list[np.ndarray], warmup: int, pad_to_max: bool, flush_denormal: bool,
              project_settings: bool = False) -> Measurement:
    """A plain PyTorch loop: the same data, initial weights, optimizer, loss and clipping as the project path.

    project_settings: run as the project does (flush_denormal is then implied); else PyTorch's defaults,
    flush-denormal aside. Either way before the process's first parallel op: see in_fresh_process.
    """
    if project_settings:
        torch.use_deterministic_algorithms(cfg.trainer.deterministic)  # as the Trainer does
        apply_training_settings()  # as SentimentClassifier.setup() does
    else:
        torch.set_flush_denormal(flush_denormal)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    pl.seed_everything(cfg.seed, workers=True)  # same initial weights as run_project
    module = instantiate(cfg.model, vocab_size=dataset.vocab_size)
    net, clip = module.net, cfg.trainer.gradient_clip_val
    optimizer = module.optimizer_factory(net.parameters())
    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batches],
                        collate_fn=partial(collate_to, max_len=dataset.max_len) if pad_to_max else collate)
    measurement, start = Measurement(), 0.0
    net.train()
    for step, (tokens, lengths, labels) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(tokens, lengths), labels)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        now = time.perf_counter()
        if step >= warmup:
            measurement.add(lengths, tokens, loss.item())
            measurement.seconds = now - start
        if step == warmup - 1:
            start = time.perf_counter()
    return measurement


def run_layer_only(cell: str, batch: int, length: int, embedding_dim: int, hidden_size: int,
                   repeats: int = 4) -> float:
    """Seconds of the fastest forward + backward of the fused recurrent layer alone on a [batch, length, E]
    input: no embedding, pooling, loss, clipping or optimizer. The library kernel's own speed at this
    shape, which the project path cannot beat; run with the project's process settings, in a fresh process.
    """
    apply_training_settings()
    torch.manual_seed(0)
    layer = FUSED_CELLS[cell](embedding_dim, hidden_size, batch_first=True)
    x = torch.randn(batch, length, embedding_dim, requires_grad=True)
    return fastest_seconds(lambda: layer(x)[0].sum().backward(), repeats)
