"""Which run a training command is: new, resumed, or finished before (`plan_run`); the run package's
docstring has the rules."""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytorch_lightning as pl
import torch
from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from rnnlab.cli import UserError
from rnnlab.identity import run_key
from rnnlab.run.checkpoints import LAST, check_resumable, checkpoint_root
from rnnlab.run.owners import end_dead_runs, owner_alive, owner_tags, resumable
from rnnlab.run.provenance import code_hash
from rnnlab.run.tags import ATTEMPT, END_REASON, HOST, PID, RUN_KEY, resumable_failure
from rnnlab.tracking import (
    QUICK_HTTP,
    ServerDownAtStart,
    open_experiment,
    quick_http,
    redact,
    resolve_tracking_uri,
    store_lock,
    unreachable,
    unwritable_artifacts,
)

log = logging.getLogger(__name__)


RUN_ID = re.compile(r"[0-9a-f]{32}")


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
        for leftover in self.folder.glob(".tmp-*"):  # a checkpoint being written when its process was killed (files.replacing)
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


def plan_run(cfg: DictConfig, data_sha256: str | None, model: torch.nn.Module) -> RunPlan:
    """Open the store (created and migrated by one process at a time), end the runs whose process died, and decide
    which run this command is, as `cfg.resume` says (module docstring). A run to continue from a `last.ckpt` that
    cannot restore `model` is refused, left as it was."""
    mode = str(cfg.get("resume") or "auto")
    if mode not in ("auto", "never") and not RUN_ID.fullmatch(mode):
        raise UserError(f"resume={mode!r}: choose auto | never | <the 32-character id of a run>")
    uri = resolve_tracking_uri(cfg.logger.tracking_uri)
    code_sha256 = code_hash()
    # A server that does not answer now is one line after a few seconds (QUICK_HTTP), not the minute of retries
    # that training rides out a server's restart with (TRAINING_HTTP), then MLflow's traceback
    try:
        with quick_http(QUICK_HTTP):
            return choose_and_claim(cfg, mode, uri, data_sha256, code_sha256, model)
    except Exception as e:
        if unreachable(e):
            raise ServerDownAtStart(uri, e) from e
        raise


def choose_and_claim(cfg: DictConfig, mode: str, uri: str, data_sha256: str | None, code_sha256: str,
                     model: torch.nn.Module) -> RunPlan:
    """`plan_run`'s work, in the store."""
    with store_lock(uri):  # on sqlite, also makes choosing and claiming a run one step across processes
        client = mlflow.MlflowClient(uri)  # creates and migrates a new sqlite store's schema
        plan = RunPlan(client, uri, run_key(cfg, data_sha256, code_sha256), data_sha256, code_sha256,
                       checkpoint_root(cfg.paths.get("checkpoint_dir"), uri))
        experiment_id = open_experiment(client, cfg.logger.experiment_name)
        for run_id in end_dead_runs(plan.client):
            log.warning("run %s: its process died; ended FAILED (rerun its command to resume it)", run_id)
        run = choose_run(plan.client, experiment_id, plan.key, mode, bool(cfg.export_dir))
        if run is None or run.info.status != "FINISHED":  # it will train: can it keep what it trains?
            why = unwritable_artifacts(client.get_experiment(experiment_id).artifact_location)
            if why is not None:
                raise UserError(why)
        if run is not None:
            plan.run_id, plan.finished = run.info.run_id, run.info.status == "FINISHED"
            if not plan.finished:
                if plan.checkpoint is not None:
                    check_resumable(plan.checkpoint, model, plan.run_id)
                claim(plan, run)
    return plan


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
    if status == "FAILED" and not resumable_failure(tags.get(END_REASON, "")):
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
