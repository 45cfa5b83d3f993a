"""Stopping a training run: Ctrl-C inside this process, or a signal to a command started in the background."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytorch_lightning as pl


class InterruptTraining(pl.Callback):
    """A Lightning callback that presses Ctrl-C after the first training batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        raise KeyboardInterrupt


class InterruptSecondEpoch(pl.Callback):
    """Ctrl-C as the second training epoch starts: the run stops with the first epoch's `last.ckpt` written."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def start(command: list[str], cwd: Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """Start `command`; its stderr goes to a file (a pipe nobody reads could fill and block it): `stderr_of`."""
    stderr = open(cwd / f"stderr-{time.monotonic_ns()}.txt", "w+")
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=stderr, **popen)
    process.stderr_file = stderr
    return process


def stderr_of(process: subprocess.Popen) -> str:
    process.stderr_file.seek(0)
    return process.stderr_file.read()


def wait_for_first_checkpoint(process: subprocess.Popen, store: Path, poll: float = 0.02) -> None:
    """Wait until a run of `process` wrote its first `last.ckpt` under `store`/checkpoints (at most 300 s)."""
    deadline = time.monotonic() + 300
    while not list(store.glob("checkpoints/*/last.ckpt")):
        assert process.poll() is None, stderr_of(process)[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(poll)

