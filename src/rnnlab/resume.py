"""Runs that survive being stopped: a stopped run continues, into the same MLflow run, with the same results.

Conventions (README "Reliability"):

- `resume` (conf/config.yaml) says which run a command continues:
  - `auto` (the default): the latest run of the experiment with the same *run key* decides. Stopped before its end
    (KILLED by a signal or Ctrl-C, or its process died: left RUNNING, or FAILED "died" by the sweep below), it
    continues from its last completed epoch. FINISHED, with `export_dir` set (a DVC stage, whose outputs
    `dvc repro` deletes before rerunning it), it is not trained again: its export is written again from the store.
    Otherwise (none, FINISHED without export_dir, FAILED with an error, or still running): a new run.
  - `never`: a new run.
  - `<run id>`: that run, which must have the same key, not be FINISHED, not have failed with an error, and not
    be running in a live process of this host (on another host its owner cannot be checked: naming it says the
    owner is gone).
- The run key (tag `rnnlab.run_key`) is a sha256 over what decides a run's results: the resolved `seed`, `data`,
  `model`, `trainer`, `callbacks` (progress display left out), `export_dir` and experiment name, the prepared
  data's sha256 and the rnnlab code's (`tracking.code_hash`). Change any of them and the command is a new run.
- Checkpoints: `<checkpoint dir>/<run id>/` holds `best.ckpt` (the configured ModelCheckpoint) and `last.ckpt`,
  written at the end of every training epoch (`LastCheckpoint`). Both are written to a temporary file and renamed
  into place (`AtomicCheckpointIO`), so a kill leaves the previous one whole. The checkpoint dir is
  `paths.checkpoint_dir`, or by default `checkpoints/` beside a sqlite store (in the working directory for a
  server; for several machines, point it at a shared file system). A run's folder goes when it ends FINISHED (its
  best checkpoint is in MLflow by then) or FAILED with an error; a stopped run keeps it until it is resumed.
- Owners: a run records its process (tags `rnnlab.host`, `rnnlab.pid`, `rnnlab.pid_started`; under SLURM also
  `rnnlab.slurm_job`, the job id and restart count, and in a job array `rnnlab.slurm_array_task`,
  <array>_<task>). Every train start ends the RUNNING runs whose process is gone (this host's, or an earlier
  incarnation of this SLURM job) FAILED with `rnnlab.end_reason` "died: ...".
- Signals: SIGTERM (schedulers, `docker stop`), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's pre-emption warning) stop
  the run at the next batch boundary (at once outside training): it ends KILLED (`rnnlab.end_reason` "signal
  SIGTERM"), its checkpoints kept, and the process exits with status 128 + the signal's number (143, 130, 138).
  Under SLURM with Lightning's auto-requeue (its default), SIGUSR1 also requeues the job with `scontrol requeue`, as Lightning would; the requeued job runs the same
  command, which resumes. A stopped epoch is trained again on resume: epoch ends are the points a run resumes
  from exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import psutil
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only

from rnnlab.cli import UserError
from rnnlab.tracking import code_hash, open_experiment, redact, resolve_tracking_uri, sqlite_file, store_lock

log = logging.getLogger(__name__)

RUN_KEY = "rnnlab.run_key"
END_REASON = "rnnlab.end_reason"
ATTEMPT = "rnnlab.attempt"
HOST, PID, PID_STARTED, SLURM_JOB = "rnnlab.host", "rnnlab.pid", "rnnlab.pid_started", "rnnlab.slurm_job"
SLURM_ARRAY_TASK = "rnnlab.slurm_array_task"
DIED = "died"  # the start of the end reason the sweep records: such a run may be resumed
ERROR = "error"  # the start of the end reason of a run that failed on an error: it is not resumed

RUN_ID = re.compile(r"[0-9a-f]{32}")
# Settings that change what is shown while training, not what is trained: left out of the run key.
DISPLAY_ONLY = {"callbacks": ("progress_bar",), "trainer": ("enable_progress_bar", "enable_model_summary")}
LAST = "last.ckpt"
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def run_key(cfg: DictConfig, data_sha256: str | None, code_sha256: str) -> str:
    """What identifies a run's results (see the module docstring): a command with the same key is the same run."""
    settings: dict[str, Any] = {}
    for name in ("seed", "data", "model", "trainer", "callbacks", "export_dir", "test"):
        value = cfg.get(name)
        settings[name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    for section, keys in DISPLAY_ONLY.items():
        for key in keys:
            (settings[section] or {}).pop(key, None)
    settings.update(experiment=cfg.logger.experiment_name, data_sha256=data_sha256, code_sha256=code_sha256)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def owner_tags() -> dict[str, str]:
    """This process, as a run records its owner."""
    me = psutil.Process()
    tags = {HOST: socket.gethostname(), PID: str(me.pid), PID_STARTED: f"{me.create_time():.2f}"}
    if os.environ.get("SLURM_JOB_ID"):
        tags[SLURM_JOB] = f"{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    if os.environ.get("SLURM_ARRAY_JOB_ID"):  # a sweep's job array: the name squeue and submitit show (<array>_<task>)
        tags[SLURM_ARRAY_TASK] = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return tags


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that owns a run still runs; None when that cannot be known (another host)."""
    slurm, job = tags.get(SLURM_JOB), os.environ.get("SLURM_JOB_ID")
    if slurm and job and slurm.split(".")[0] == job and slurm != owner_tags()[SLURM_JOB]:
        return False  # an earlier incarnation of this requeued job
    if HOST not in tags or tags[HOST] != socket.gethostname():
        return None
    try:
        process = psutil.Process(int(tags[PID]))
        # A pid is reused by later processes: the start time tells them apart. A zombie has died already.
        return f"{process.create_time():.2f}" == tags.get(PID_STARTED) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def end_dead_runs(client: mlflow.MlflowClient) -> list[str]:
    """End FAILED, with a "died: ..." reason, every RUNNING run of the store whose owner process is gone."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    ended = []
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'") if experiments else []:
        tags = run.data.tags
        if owner_alive(tags) is False:
            reason = (f"{DIED}: process {tags.get(PID)} on {tags.get(HOST)} ended without ending the run "
                      f"(noticed by process {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')})")
            client.set_tag(run.info.run_id, END_REASON, reason)
            client.set_terminated(run.info.run_id, "FAILED")
            ended.append(run.info.run_id)
    return ended


def resumable(run: Run) -> bool:
    """Stopped before its end and not on an error: KILLED, FAILED because its process died, or RUNNING with its
    process gone."""
    status, reason = run.info.status, run.data.tags.get(END_REASON, "")
    if status == "RUNNING":
        return owner_alive(run.data.tags) is False
    return status == "KILLED" or (status == "FAILED" and reason.startswith(DIED))


def checkpoint_root(configured: str | None, tracking_uri: str) -> Path:
    """paths.checkpoint_dir, or `checkpoints/` beside a sqlite store (in the working directory for a server)."""
    if configured:
        return Path(configured).resolve()
    db = sqlite_file(tracking_uri)
    return (db.parent if db is not None else Path.cwd()) / "checkpoints"


@dataclass
class RunPlan:
    """Which run a training command is (`plan_run`), and where its checkpoints live."""

    client: mlflow.MlflowClient
    tracking_uri: str
    key: str
    data_sha256: str | None
    code_sha256: str
    root: Path  # the checkpoint dir: one folder per run id
    run_id: str | None = None  # an existing run to continue or reuse; None: a new run
    finished: bool = False  # the run ended FINISHED: reuse it, train nothing
    attempt: int = 1
    folder: Path | None = field(default=None, init=False)  # <root>/<run id>, once the run exists

    @property
    def checkpoint(self) -> Path | None:
        """The `last.ckpt` a continued run restarts from; None: from the start."""
        if self.run_id is None or self.finished:
            return None
        last = self.root / self.run_id / LAST
        return last if last.is_file() else None

    def creation_tags(self) -> dict[str, str]:
        """Tags a new run is created with, so it can be found (key) and judged (owner) even if killed at once."""
        return {RUN_KEY: self.key, ATTEMPT: str(self.attempt), **owner_tags()}

    def attach(self, trainer: pl.Trainer, run_id: str) -> None:
        """Point every checkpoint callback of `trainer` at the run's folder (`resume` finds it by the run id)."""
        self.folder = self.root / run_id
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp"):  # a checkpoint being written when its process was killed
            leftover.unlink(missing_ok=True)
        for callback in trainer.checkpoint_callbacks:
            callback.dirpath = os.path.realpath(self.folder)  # as ModelCheckpoint resolves it: compared on resume

    def end(self, resumable_after: bool) -> None:
        """The run ended: its checkpoints go unless it may be resumed."""
        if self.folder is None or resumable_after:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.root.rmdir()  # only if no other run keeps checkpoints there
        except OSError:
            pass


def plan_run(cfg: DictConfig, data_sha256: str | None) -> RunPlan:
    """Open the store (created and migrated by one process at a time), end the runs whose process died, and decide
    which run this command is, as `cfg.resume` says (module docstring)."""
    mode = str(cfg.get("resume") or "auto")
    if mode not in ("auto", "never") and not RUN_ID.fullmatch(mode):
        raise UserError(f"resume={mode!r}: choose auto | never | <the 32-character id of a run>")
    uri = resolve_tracking_uri(cfg.logger.tracking_uri)
    code_sha256 = code_hash()
    with store_lock(uri):  # on sqlite, also makes choosing and claiming a run one step across processes
        client = mlflow.MlflowClient(uri)  # creates and migrates a new sqlite store's schema
        plan = RunPlan(client, uri, run_key(cfg, data_sha256, code_sha256), data_sha256, code_sha256,
                       checkpoint_root(cfg.paths.get("checkpoint_dir"), uri))
        experiment_id = open_experiment(client, cfg.logger.experiment_name)
        for run_id in end_dead_runs(plan.client):
            log.warning("run %s: its process died; ended FAILED (rerun its command to resume it)", run_id)
        run = choose_run(plan.client, experiment_id, plan.key, mode, bool(cfg.export_dir))
        if run is not None:
            plan.run_id, plan.finished = run.info.run_id, run.info.status == "FINISHED"
            if not plan.finished:
                claim(plan, run)
    return plan


def every_rank_runs_this_command(trainer: pl.Trainer) -> bool:
    """Whether a launcher started each DDP process, and each runs the whole command (torchrun, srun:
    trainer=multinode), rather than this process training alone or starting its workers itself (ddp_spawn)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None or trainer.world_size == 1:
        return False
    if environment.creates_processes_externally:
        return True
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher):
        # Lightning would start the other ranks itself, by running this command again in each, only once this
        # process is training: they could not follow its plan (and under -m each would rerun the whole sweep)
        raise UserError("trainer.strategy=ddp needs a launcher that starts every process (torchrun, srun: "
                        "trainer=multinode); on one machine use trainer=ddp or trainer=ddp_sim (ddp_spawn)")
    return False


def plan_on_rank_zero(cfg: DictConfig, data_sha256: str | None) -> RunPlan | None:
    """`plan_run` in the process of global rank 0; None in the others. Under torchrun or srun every rank runs the
    training command, numbered by its launcher (RANK, SLURM_PROCID: Lightning's `rank_zero_only.rank`), and only
    rank 0 may choose the run and claim it in the store; the others learn its plan from it (`follow_rank_zero`).
    Called before the trainer exists, so that a bad `resume` is refused before Lightning prints anything."""
    return plan_run(cfg, data_sha256) if rank_zero_only.rank == 0 else None


def follow_rank_zero(trainer: pl.Trainer, plan: RunPlan | None) -> RunPlan:
    """Rank 0's plan on every rank when each runs this command (`every_rank_runs_this_command`): sent through
    Lightning's process group, set up here as `fit` would (and reused by it), so that every rank resumes the same
    run from the same checkpoint. A new run is created by rank 0's logger alone."""
    if not every_rank_runs_this_command(trainer):
        if plan is None:
            raise UserError(f"this process is rank {rank_zero_only.rank} of those a launcher (torchrun, srun) "
                            "started, but its trainer trains alone: use trainer=multinode, or start one process")
        return plan
    trainer.strategy.setup_environment()
    # An MLflow client does not travel: each rank opens its own (the store exists by now, made by rank 0)
    decided = (replace(plan, client=None), plan.checkpoint) if plan is not None else None
    followed, checkpoint = trainer.strategy.broadcast(decided)
    if plan is not None:
        return plan
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"rank {trainer.global_rank} cannot read {checkpoint}, the checkpoint the run resumes from: "
                        "set paths.checkpoint_dir to a folder every node shares")
    return replace(followed, client=mlflow.MlflowClient(followed.tracking_uri))


def choose_run(client: mlflow.MlflowClient, experiment_id: str, key: str, mode: str, exported: bool) -> Run | None:
    if mode == "never":
        return None
    if mode != "auto":
        return named_run(client, mode, key)
    [latest] = client.search_runs([experiment_id], f"tags.`{RUN_KEY}` = '{key}'", max_results=1,
                                  order_by=["attributes.start_time DESC"]) or [None]
    if latest is None:
        return None
    if resumable(latest):
        return latest
    if latest.info.status == "FINISHED" and exported and has_best_checkpoint(client, latest.info.run_id):
        return latest
    return None


def named_run(client: mlflow.MlflowClient, run_id: str, key: str) -> Run:
    """`resume=<run id>`: that run, if it can be continued by this command."""
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise UserError(f"resume={run_id}: no such run in {redact(client.tracking_uri)}") from e
    tags, status = run.data.tags, run.info.status
    if tags.get(RUN_KEY) != key:
        raise UserError(f"resume={run_id}: that run was started with other settings, data or code: run its own "
                        "command again, or resume=never for a new run")
    if status == "FINISHED":
        raise UserError(f"resume={run_id}: that run has finished")
    if status == "FAILED" and not tags.get(END_REASON, "").startswith(DIED):
        raise UserError(f"resume={run_id}: that run failed ({tags.get(END_REASON, 'an error')}); resume=never "
                        "starts a new one")
    if status == "RUNNING" and owner_alive(tags):
        raise UserError(f"resume={run_id}: that run is still running (process {tags[PID]} on {tags[HOST]})")
    return run


def has_best_checkpoint(client: mlflow.MlflowClient, run_id: str) -> bool:
    return any(a.path == "checkpoints/best.ckpt" for a in client.list_artifacts(run_id, "checkpoints"))


def claim(plan: RunPlan, run: Run) -> None:
    """Make `run` this process's: owner tags, attempt count, status RUNNING again."""
    plan.attempt = int(run.data.tags.get(ATTEMPT, "1")) + 1
    run_id = run.info.run_id
    plan.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**owner_tags(), ATTEMPT: str(plan.attempt)}.items()])
    if END_REASON in run.data.tags:
        plan.client.delete_tag(run_id, END_REASON)
    plan.client.update_run(run_id, status="RUNNING")
    checkpoint = plan.checkpoint
    log.info("resuming run %s (attempt %d) from %s", run_id, plan.attempt,
             checkpoint if checkpoint is not None else "its start: it had not finished an epoch")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside their destination, then renamed over it: a process killed
    while writing leaves the previous checkpoint whole. (Lightning's own writer goes through /tmp and, across file
    systems, copies into place.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def rng_states() -> dict[str, Any]:
    """torch's, numpy's and Python's global random states, as plain values and tensors (`weights_only` loads them)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class LastCheckpoint(Checkpoint):
    """`last.ckpt` in the run's checkpoint folder, written at the end of every training epoch, after the best
    checkpoint was updated (Lightning runs `Checkpoint` callbacks last, in order).

    Lightning's checkpoint holds the weights, the optimizer's and schedulers' states, the loops' progress and the
    callbacks' states (the best checkpoint's score, the training clock). This callback's state adds what an
    identical continuation needs besides: the random states (dropout, the data loader's seed draws) and the
    epoch's metrics, which Lightning sends to MLflow only after this hook: a run killed in between gets them
    from here when it resumes.
    """

    def __init__(self) -> None:
        self.dirpath: str | None = None  # set by `RunPlan.attach` once the run exists
        self.epoch_end: dict[str, Any] = {}
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
        trainer.save_checkpoint(Path(self.dirpath) / LAST)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states(), **self.epoch_end}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.restored:
            return
        # Lightning restores before this hook. The random states go back to what they were when the checkpoint
        # was written, before the next draw: the training data iterator's seed, which an uninterrupted run draws
        # after on_train_epoch_start but a resumed fit while setting up, before it.
        set_rng_states(self.restored["rng"])
        if trainer.is_global_zero and trainer.logger is not None:
            log_missing_metrics(trainer.logger, self.restored["step"], self.restored["metrics"])
        self.restored = None


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux). A ddp_spawn worker whose main process was
    killed would otherwise train on, writing into a run and checkpoint folder that a rerun resumes meanwhile."""
    PR_SET_PDEATHSIG = 1
    parent = os.getppid()
    try:
        ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError, TypeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGKILL)


def log_missing_metrics(logger: Any, step: int, metrics: dict[str, float]) -> None:
    """Log each of `metrics` at `step` unless the run has a value there already."""
    client, run_id = logger.experiment, logger.run_id
    missing = {name: value for name, value in metrics.items()
               if not any(m.step == step for m in client.get_metric_history(run_id, name))}
    if missing:
        logger.log_metrics(missing, step=step)


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
        print(f"train: stopped by {signal.Signals(received[0]).name}: the run ended KILLED; "
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
