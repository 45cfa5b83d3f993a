"""How a run stops on a signal: at the next batch boundary while training, ending KILLED and resumable."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment

from rnnlab.tracking import StoreUnreachable

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(BaseException):
    """A signal stopped the run (`stopping_on_signals`): it ends KILLED, resumable."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class SignalState:
    """The signal `stopping_on_signals` received, if any, and whether the stop waits for a batch boundary."""

    received: list[int] = field(default_factory=list)
    deferred: bool = False

    def stop_if_received(self) -> None:
        """Raise `Stopped` here if a signal came; first kill this process's children: ddp_spawn workers (and data
        loader workers) stop with it (at exit, multiprocessing would wait for them, and they for each other). The
        run resumes from its last epoch's checkpoint all the same."""
        if not self.received:
            return
        self.deferred = False
        for child in multiprocessing.active_children():
            child.kill()
        raise Stopped(self.received[0])


class StopAtBatchBoundaries(pl.Callback):
    """While this process runs batches, a signal stops the run at the next batch boundary instead of wherever the
    process is: an exception raised inside an MLflow write (a metric being logged) can leave its sqlite transaction
    open, holding the store's write lock, and the run could then not be ended KILLED (it stayed RUNNING)."""

    def __init__(self, state: SignalState) -> None:
        self.state = state

    def _start(self, *_: Any) -> None:
        self.state.deferred = True
        self.state.stop_if_received()

    def _boundary(self, *_: Any) -> None:
        self.state.stop_if_received()

    def _end(self, *_: Any) -> None:
        self.state.deferred = False
        self.state.stop_if_received()

    on_fit_start = on_test_start = _start
    on_train_batch_start = on_train_batch_end = on_validation_batch_end = on_test_batch_end = _boundary
    on_train_epoch_end = on_validation_epoch_end = _boundary
    on_fit_end = on_test_end = _end

    def on_exception(self, *_: Any) -> None:
        self.state.deferred = False


@contextmanager
def stopping_on_signals() -> Iterator[SignalState]:
    """SIGTERM, SIGINT and SIGUSR1 raise `Stopped`: at once, or while Lightning runs batches in this process (the
    `StopAtBatchBoundaries` callback given the state this yields) at the next batch boundary. The run ends KILLED
    on the way out, and the process exits with 128 + the signal's number. (Without it Ctrl-C would end a run
    KILLED too, but exit 1 inside Lightning, 130 elsewhere.) Lightning calls this handler after its own for
    SIGTERM. SIGUSR1 in a SLURM job also requeues it, as Lightning's auto-requeue does (train() gives the Trainer
    its own plugins, so Lightning's default, auto-requeue on, is what holds)."""
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield state
        return
    received = state.received

    def handler(signum: int, frame: Any) -> None:
        if received:  # already stopping: let it finish ending the run
            return
        received.append(signum)
        if not state.deferred:
            state.stop_if_received()

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield state
    except BaseException as e:
        if not received:
            raise
        requeued = received[0] == signal.SIGUSR1 and SLURMEnvironment.detect() and requeue_slurm_job()
        name = signal.Signals(received[0]).name
        if isinstance(e, StoreUnreachable):  # the store could not be told: say what it holds, not KILLED
            print(f"train: stopped by {name}; {e}", file=sys.stderr, flush=True)
        else:
            print(f"train: stopped by {name}: the run ended KILLED; "
                  + ("its SLURM job was requeued" if requeued else "run the same command again to resume it"),
                  file=sys.stderr, flush=True)
        raise SystemExit(128 + received[0]) from e
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def requeue_slurm_job() -> bool:
    """`scontrol requeue` this SLURM job (an array job's own task), as Lightning's SLURM signal handler does."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    try:
        return subprocess.call(["scontrol", "requeue", job]) == 0
    except OSError:
        return False
