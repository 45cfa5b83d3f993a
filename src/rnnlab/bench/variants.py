"""The ways of training one model that the benchmark compares, each timed over the same batches.

- `run_project`: the project's own path, `rnnlab.train.train` itself: the Hydra config, `IMDBDataModule`
  (length-bucketed batches), `RecurrentModule`, the configured callbacks (CPU settings), a `pl.Trainer` with the
  config's settings (gradient clipping, deterministic), `TrainingTimer` and the MLflow record. Its one epoch is
  the planned batches; validation and test see one batch each, after the timed window.
- `run_plain`: a hand-written PyTorch loop over the same model, optimizer and clipping, on a list of
  batches given by index, either padded per batch (as the datamodule does) or all to `max_len` (what a user
  would write); with PyTorch's defaults, flush-denormal alone, or all the project's process settings
  (`rnnlab.run.cpu.apply_training_settings` and the config's deterministic mode).

Every variant trains `warmup` batches first and is timed from the end of the last warm-up step to the end
of the last step: data loading, collation, forward, backward, clipping, optimizer step and bookkeeping.
Each run happens in a fresh process (`in_fresh_process`), as a real `python -m rnnlab.train` would.

On a GPU (`device="cuda"`) the clock is read only at those two points, each after `torch.cuda.synchronize`
(CUDA calls return before their kernels end), and nothing inside the window waits for the GPU on the benchmark's
behalf: losses and lengths are read once the window has ended.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader

from rnnlab.bench.flops import fastest_seconds
from rnnlab.cells import CELLS
from rnnlab.data.imdb import IMDBDataModule, collate
from rnnlab.data.text import PAD_ID
from rnnlab.run.cpu import apply_training_settings
from rnnlab.train import build_data_and_model, train


@dataclass
class Measurement:
    """What one variant did in its timed window (the steps after warm-up)."""

    seconds: float = 0.0
    samples: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0  # batch x time steps actually run, padding included
    losses: list[float] = field(default_factory=list)

    def add(self, lengths: torch.Tensor, computed_tokens: int, loss: float) -> None:
        self.samples += len(lengths)  # one process, one device: each review of a batch counts once
        self.real_tokens += int(lengths.sum())
        self.computed_tokens += computed_tokens
        self.losses.append(loss)


def synchronize(device: torch.device | str) -> None:
    """Wait for the GPU's queued work before a clock read; nothing to wait for on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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


# How in_fresh_process starts its child: forked on a CPU (see there); on a GPU spawned, a new interpreter, since a
# forked child cannot use CUDA once anything in the parent has touched it. `python -m rnnlab.bench --device cuda`
# sets "spawn".
START_METHOD = "fork"


def in_fresh_process(fn: Callable, *args):
    """fn(*args) in a child forked from this process, which must not have run a parallel torch op yet.

    torch.set_flush_denormal sets the calling thread's floating-point mode only. OpenMP's worker threads
    copy it when they are created, at a process's first parallel op, and keep it: one matmul before
    set_flush_denormal(True) leaves the worker threads unflushed. In `python -m rnnlab.train` the pool starts at
    the first training batch, after the CPUSettings callback's setup(); a fresh child per run reproduces that, and
    lets runs with and without flushing share one benchmark. The child also starts with the same memory state each
    time.
    """
    pool = multiprocessing.get_context(START_METHOD).Pool(1)
    try:
        return pool.apply(fn, args)
    finally:
        pool.close()
        pool.join()


class WindowTimer(pl.Callback):
    """Times the steps after warm-up inside Lightning, and checks that they were the planned batches.

    Each batch's lengths, labels and loss are kept (references, no copy) and read at the end of training (the
    figures, and the check against the planned reviews), so that they cost nothing inside the timed window.
    """

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.measurement = Measurement()
        self.start = 0.0
        self.seen: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx in (self.plan.warmup - 1, len(self.plan.bucketed) - 1):  # the window's ends
            synchronize(pl_module.device)
            now = time.perf_counter()
            if batch_idx == self.plan.warmup - 1:
                self.start = now
            else:
                self.measurement.seconds = now - self.start
        tokens, lengths, labels = batch
        self.seen.append((tokens.numel(), lengths, labels, outputs["loss"].detach()))

    def on_train_end(self, trainer, pl_module) -> None:
        dataset = trainer.datamodule.datasets["train"]
        if len(self.seen) != len(self.plan.bucketed):
            raise RuntimeError(f"trained {len(self.seen)} batches, {len(self.plan.bucketed)} were planned")
        for k, ((computed, lengths, labels, loss), reviews) in enumerate(zip(self.seen, self.plan.bucketed)):
            lengths, labels = lengths.cpu(), labels.cpu()
            if not (np.array_equal(lengths.numpy(), dataset.lengths[reviews])
                    and np.array_equal(labels.numpy(), dataset.split.labels[reviews].astype(np.float32))):
                raise RuntimeError(f"batch {k} is not the planned one: the datamodule's batches changed")
            if k >= self.plan.warmup:
                self.measurement.add(lengths, computed, float(loss))


def run_project(cfg: DictConfig, plan: BatchPlan) -> tuple[Measurement, dict]:
    """Train through `rnnlab.train.train` on the planned batches: one epoch of exactly them, then one batch of
    validation and of test (outside the timed window) so the run is recorded as any other."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.resume = "never"  # a fresh run every time: an earlier, killed bench run must not be continued
        cfg.trainer.max_epochs = 1
        cfg.trainer.limit_train_batches = len(plan.bucketed)
        cfg.trainer.limit_val_batches = cfg.trainer.limit_test_batches = 1
        # No progress bars (the configured one, Lightning's default, MLflow's artifact downloads) and no test
        # table: the bench prints its own. Its figures (the timed window) are not affected either way.
        cfg.callbacks.progress_bar = None
        cfg.trainer.enable_progress_bar = False
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # this is a child process: see in_fresh_process
    window = WindowTimer(plan)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(cfg, callbacks=[window])
    # The whole run (warm-up, the Trainer's set-up, MLflow's writes, validation and test included), and what
    # TrainingTimer logged as train_samples_per_s: over the whole epoch, warm-up steps included, and the
    # validation batch too, since Lightning validates before on_train_epoch_end.
    fit = {"fit_seconds": time.perf_counter() - start,
           "logged_train_samples_per_s": result.metrics["train_samples_per_s"],
           "deterministic": torch.are_deterministic_algorithms_enabled(),
           "fill_uninitialized_memory": torch.utils.deterministic.fill_uninitialized_memory}
    return window.measurement, fit


def collate_to(items: list, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`collate`, then padded on to `max_len`: every batch the same shape, as Keras' pad_sequences makes."""
    tokens, lengths, labels = collate(items)
    return F.pad(tokens, (0, max_len - tokens.shape[1]), value=PAD_ID), lengths, labels


def run_plain(cfg: DictConfig, batches: list[np.ndarray], warmup: int, pad_to_max: bool, flush_denormal: bool,
              project_settings: bool = False, device: str = "cpu") -> Measurement:
    """A plain PyTorch loop: the same data, initial weights, optimizer, loss and clipping as the project path,
    on `device` (each batch copied there as Lightning does).

    project_settings: run as the project does (flush_denormal is then implied); else PyTorch's defaults,
    flush-denormal aside. Either way before the process's first parallel op: see in_fresh_process.
    """
    if project_settings:
        torch.use_deterministic_algorithms(cfg.trainer.deterministic)  # as the Trainer does
        apply_training_settings()  # as the CPUSettings callback does
    else:
        torch.set_flush_denormal(flush_denormal)
    pl.seed_everything(cfg.seed, workers=True)  # same initial weights as run_project
    datamodule, module = build_data_and_model(cfg)
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    net, clip = module.net.to(device), cfg.trainer.gradient_clip_val
    optimizer = module.optimizer_factory(net.parameters())
    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batches],
                        collate_fn=partial(collate_to, max_len=dataset.max_len) if pad_to_max else collate)
    measurement, start, seen = Measurement(), 0.0, []
    net.train()
    for step, (tokens, lengths, labels) in enumerate(loader):
        tokens, lengths, labels = tokens.to(device), lengths.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(tokens, lengths), labels)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        if step in (warmup - 1, len(batches) - 1):  # the window's ends
            synchronize(device)
            now = time.perf_counter()
            if step == warmup - 1:
                start = now
            else:
                measurement.seconds = now - start
        if step >= warmup:
            seen.append((lengths, tokens.numel(), loss.detach()))
    for lengths, computed, loss in seen:
        measurement.add(lengths.cpu(), computed, float(loss))
    return measurement


def make_layers(cell: str, impls: list[str], embedding_dim: int, hidden_size: int,
                device: str = "cpu") -> dict[str, torch.nn.Module]:
    """One recurrent layer of each implementation, as the encoder builds it."""
    return {impl: CELLS[cell].layers[impl](embedding_dim, hidden_size).to(device) for impl in impls}


def layer_step(impl: str, layer: torch.nn.Module, x: torch.Tensor) -> None:
    """Forward + backward of one layer alone: no embedding, pooling, loss, clipping or optimizer."""
    layer(x).sum().backward()  # every implementation's layer returns the hidden states [B, T, H]


def run_layers_only(cell: str, impls: list[str], batch: int, length: int, embedding_dim: int, hidden_size: int,
                    repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """Seconds of the fastest forward + backward of one recurrent layer of each implementation alone on a
    [batch, length, E] input. Each implementation's own speed at this shape, which the project path cannot beat.
    The implementations take turns, `repeats` rounds (see fastest_seconds), so that they compare back to back;
    with the project's process settings, in a fresh process.
    """
    return run_layers_on_shapes(cell, impls, [(batch, length)], embedding_dim, hidden_size, repeats, device)


def run_layers_on_shapes(cell: str, impls: list[str], shapes: list[tuple[int, int]], embedding_dim: int,
                         hidden_size: int, repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """As `run_layers_only`, over a list of [batch, length] shapes in turn: the seconds of the fastest round
    through all of them. Given the project's timed batches' shapes (`batch_shapes`), it is what the layer alone
    costs on the real, bucketed and padded batches, whose lengths vary from batch to batch."""
    apply_training_settings()
    torch.manual_seed(0)
    inputs = [torch.randn(batch, length, embedding_dim, device=device, requires_grad=True) for batch, length in shapes]
    layers = make_layers(cell, impls, embedding_dim, hidden_size, device)
    seconds = {impl: float("inf") for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            def through_all(impl=impl) -> None:
                for x in inputs:
                    layer_step(impl, layers[impl], x)
            seconds[impl] = min(seconds[impl], fastest_seconds(through_all, 1))
    return seconds


def batch_shapes(datamodule: IMDBDataModule, plan: BatchPlan) -> list[tuple[int, int]]:
    """[batch, padded length] of each timed batch of the plan: what the project's collate pads each one to."""
    lengths = datamodule.datasets["train"].lengths
    return [(len(batch), int(lengths[batch].max())) for batch in plan.bucketed[plan.warmup:]]
