"""Faults a training run survives, each made for real: kill -9, SIGTERM, SIGINT and SIGUSR1 sent to a real
`python -m rnnlab.train` process, then the same command again; eight runs started at once on a new store; a
finite divergence; a stage rerun after its run finished; credentials in URLs. README "Reliability" quotes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import torch

from rnnlab.cli import UserError
from rnnlab.composition import compose_config
from rnnlab.identity import run_key, world_size
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.run.provenance import run_params
from rnnlab.run.tags import END_REASON
from rnnlab.train import train
from tests.helpers.interrupts import (
    InterruptSecondEpoch,
    InterruptTraining,
    start,
    stderr_of,
    wait_for_first_checkpoint,
)
from tests.helpers.project import copy_project, run_dvc, run_module
from tests.helpers.servers import mlflow_server
from tests.helpers.training import (
    EXPERIMENT,
    client_of,
    compose_tiny,
    outcome,
    runs,
    tiny_overrides,
    untracked_overrides,
)

# 20 epochs of 8 batches, a few seconds: the kill lands at a random epoch. Dropout and a scheduler, so that the
# random states and the scheduler's are part of what a resumed run must restore to end identical.
EPOCHS = 20
RESUMABLE = [f"trainer.max_epochs={EPOCHS}", "data.batch_size=1", "model.dropout=0.5",
             "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.8}"]


def train_command(prepared_dir: Path, store: Path, *overrides: str) -> list[str]:
    """The command a user runs, against the sqlite store in `store`."""
    return [sys.executable, "-m", "rnnlab.train", *tiny_overrides(prepared_dir, store), *RESUMABLE, *overrides,
            f"hydra.run.dir={store}/out"]


def kill_after_first_checkpoint(process: subprocess.Popen, store: Path, signum: int, rng: random.Random,
                                within: float = 0.5) -> float:
    """Wait for the run's first `last.ckpt`, then send `signum` after a random delay in [0, within) seconds."""
    wait_for_first_checkpoint(process, store)
    delay = rng.uniform(0, within)
    time.sleep(delay)
    assert process.poll() is None, "the run finished before the signal: nothing to resume"
    os.kill(process.pid, signum)
    process.wait(timeout=300)
    return delay


@pytest.fixture(scope="module")
def uninterrupted(prepared_dir, tmp_path_factory) -> dict:
    """The reference: the same command, never stopped."""
    store = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(train_command(prepared_dir, store), cwd=store, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return outcome(store)


# Each signal, and what the killed process shows: its exit status and its run's status until the rerun.
FAULTS = {
    "SIGKILL": (signal.SIGKILL, -signal.SIGKILL, "RUNNING"),  # nothing runs in the process: the next start sees it
    "SIGTERM": (signal.SIGTERM, 128 + signal.SIGTERM, "KILLED"),  # schedulers, docker stop
    "SIGINT": (signal.SIGINT, 128 + signal.SIGINT, "KILLED"),  # Ctrl-C
    "SIGUSR1": (signal.SIGUSR1, 128 + signal.SIGUSR1, "KILLED"),  # SLURM's pre-emption warning
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_stopped_run_resumes_into_the_same_run_identically(prepared_dir, tmp_path, uninterrupted, fault):
    signum, exit_status, status = FAULTS[fault]
    command = train_command(prepared_dir, tmp_path)
    seed = random.randrange(1 << 30)
    process = start(command, tmp_path)
    # Anywhere in the rest of the fit (as long as the uninterrupted one took, less its first epoch and a margin)
    delay = kill_after_first_checkpoint(process, tmp_path, signum, random.Random(seed),
                                        within=0.8 * uninterrupted["fit_time_s"] * (1 - 1 / EPOCHS))
    assert process.returncode == exit_status, stderr_of(process)[-3000:]
    stopped = outcome(tmp_path)
    where = (fault, seed, delay, f"stopped after epoch {len(stopped['history']['val_acc'])} of {EPOCHS}")
    print(*where)
    assert stopped["status"] == status, where
    assert (tmp_path / "checkpoints" / stopped["run_id"] / "last.ckpt").is_file(), where  # kept, to resume from
    if status == "KILLED":
        assert stopped["tags"][END_REASON] == f"signal {fault}", where

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = outcome(tmp_path)  # still one run: the same one
    assert resumed["run_id"] == stopped["run_id"] and resumed["status"] == "FINISHED"
    assert resumed["tags"]["rnnlab.attempt"] == "2"
    assert resumed["metrics"] == uninterrupted["metrics"], where
    assert resumed["history"] == uninterrupted["history"], where
    assert len(resumed["history"]["val_acc"]) == EPOCHS
    assert not (tmp_path / "checkpoints").exists()  # no stray checkpoint once finished


@pytest.fixture(scope="module")
def uninterrupted_ddp(prepared_dir, tmp_path_factory) -> dict:
    store = tmp_path_factory.mktemp("uninterrupted-ddp")
    result = subprocess.run(train_command(prepared_dir, store, "trainer=ddp_sim"), cwd=store, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return outcome(store)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGTERM"])
def test_ddp_run_resumes_identically(prepared_dir, tmp_path, uninterrupted_ddp, fault):
    """Two DDP processes (ddp_spawn on the CPU): the main process killed, its workers go with it (no orphan writes
    into the run), and the rerun continues the same run to the same results."""
    signum, exit_status, status = FAULTS[fault]
    command = train_command(prepared_dir, tmp_path, "trainer=ddp_sim")
    process = start(command, tmp_path)
    seed = random.randrange(1 << 30)
    delay = kill_after_first_checkpoint(process, tmp_path, signum, random.Random(seed), within=0.3)
    assert process.returncode == exit_status, stderr_of(process)[-3000:]
    stopped = outcome(tmp_path)
    where = (fault, seed, delay, f"stopped after epoch {len(stopped['history']['val_acc'])} of {EPOCHS}")
    print(*where)
    assert stopped["status"] == status, where
    [last] = (tmp_path / "checkpoints").glob("*/last.ckpt")
    states = [state for state in torch.load(last, weights_only=True)["callbacks"].values() if "rng_by_rank" in state]
    assert [len(state["rng_by_rank"]) for state in states] == [2]  # each rank's own random states, for its resume
    time.sleep(2)  # workers started in tmp_path: none may outlive their main process
    assert not [p.pid for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(tmp_path)], where
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = outcome(tmp_path)
    assert resumed["run_id"] == stopped["run_id"] and resumed["status"] == "FINISHED"
    assert resumed["metrics"] == uninterrupted_ddp["metrics"], where
    assert resumed["history"] == uninterrupted_ddp["history"], where


@pytest.mark.parametrize("trainer, processes", [
    ({"accelerator": "cpu", "devices": 2}, 2), ({"accelerator": "cpu", "devices": -1}, os.cpu_count()),
    ({"accelerator": "gpu", "devices": [0, 1, 3]}, 3), ({"accelerator": "gpu", "devices": "0,1"}, 2),
    ({"accelerator": "gpu", "devices": 4, "num_nodes": 2}, 8), ({"accelerator": "cpu", "devices": "auto"}, 1),
    ({"accelerator": "gpu", "devices": -1}, torch.cuda.device_count()),
])
def test_world_size_is_resolved_as_lightning_reads_devices(trainer, processes):
    assert world_size(trainer) == processes


def test_the_run_key_holds_the_resolved_world_size():
    """devices: -1 is every device this machine has: the same key as their count, another key on another count
    (a resume there would shard the batches otherwise)."""
    def key(*overrides: str) -> str:
        return run_key(compose_config(["trainer=ddp_sim", *overrides]), "data", "code")

    cores = os.cpu_count()
    assert key("trainer.devices=-1") == key(f"trainer.devices={cores}") != key(f"trainer.devices={cores + 1}")


@pytest.mark.slow
def test_sigterm_exits_143_and_the_run_ends_killed(prepared_dir, tmp_path):
    process = start(train_command(prepared_dir, tmp_path), tmp_path)
    kill_after_first_checkpoint(process, tmp_path, signal.SIGTERM, random.Random(0))
    assert process.returncode == 143
    assert stderr_of(process).strip().splitlines()[-1] == (
        "train: stopped by SIGTERM: the run ended KILLED; run the same command again to resume it")
    stopped = outcome(tmp_path)
    assert stopped["status"] == "KILLED" and stopped["tags"][END_REASON] == "signal SIGTERM"


@pytest.mark.slow
def test_sigusr1_in_a_slurm_job_requeues_it(prepared_dir, tmp_path):
    """Under SLURM, SIGUSR1 is the pre-emption warning: the run ends KILLED and the job is requeued (Lightning's
    auto-requeue); the requeued job (same id, next restart count) resumes the run, even on another node."""
    bin_dir = tmp_path / "bin"  # a stand-in for SLURM's scontrol: it records the requeue it was asked for
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.log\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "rnnlab", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_RESTART_COUNT": "0",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = train_command(prepared_dir, tmp_path)
    process = start(command, tmp_path, slurm)
    kill_after_first_checkpoint(process, tmp_path, signal.SIGUSR1, random.Random(1))
    assert process.returncode == 138, stderr_of(process)[-3000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    stopped = outcome(tmp_path)
    assert stopped["status"] == "KILLED" and stopped["tags"]["rnnlab.slurm_job"] == "4242.0"
    again = subprocess.run(command, cwd=tmp_path, env={**os.environ, **slurm, "SLURM_RESTART_COUNT": "1"},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = outcome(tmp_path)
    assert resumed["run_id"] == stopped["run_id"] and resumed["status"] == "FINISHED"


@pytest.mark.slow
def test_a_dead_run_is_ended_failed_by_the_next_start(prepared_dir, tmp_path):
    """kill -9 leaves its run RUNNING; the next training start in the store, of any settings, ends it FAILED with
    the reason; it can still be resumed by its own command."""
    process = start(train_command(prepared_dir, tmp_path), tmp_path)
    kill_after_first_checkpoint(process, tmp_path, signal.SIGKILL, random.Random(2))
    [dead] = runs(tmp_path)
    assert dead.info.status == "RUNNING"
    other = train(compose_tiny(prepared_dir, tmp_path, "seed=1", "trainer.max_epochs=1"))
    run = client_of(tmp_path).get_run(dead.info.run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags[END_REASON].startswith(f"died: process {process.pid} on ")
    assert other.run_id != dead.info.run_id
    assert len(runs(tmp_path)) == 2
    again = subprocess.run(train_command(prepared_dir, tmp_path), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert client_of(tmp_path).get_run(dead.info.run_id).info.status == "FINISHED" and len(runs(tmp_path)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_eight_runs_at_once_on_a_new_store(prepared_dir, tmp_path, store):
    """Parallel first use: a new sqlite file's schema is created once, under a lock, and the experiment once; every
    run is recorded, and the store stays sound. The same against a new tracking server."""
    with contextlib.ExitStack() as stack:
        uri = f"sqlite:///{tmp_path}/mlflow.db" if store == "sqlite" else stack.enter_context(mlflow_server(tmp_path))
        processes = [start([sys.executable, "-m", "rnnlab.train", *tiny_overrides(prepared_dir, tmp_path),
                            f"logger.tracking_uri={uri}", "trainer.max_epochs=1", f"seed={seed}",
                            f"hydra.run.dir={tmp_path}/out{seed}"], tmp_path)
                     for seed in range(8)]
        for process in processes:
            process.wait(timeout=600)
        failures = [stderr_of(p)[-2000:] for p in processes if p.returncode != 0]
        assert not failures, failures
        client = mlflow.MlflowClient(uri)
        [experiment] = [e for e in client.search_experiments() if e.name == EXPERIMENT]
        found = client.search_runs([experiment.experiment_id])
        assert len(found) == 8 and all(r.info.status == "FINISHED" for r in found)
        assert sorted(int(r.data.params["seed"]) for r in found) == list(range(8))
        # Healthy afterwards: a new run can be written and read back.
        probe = client.create_run(experiment.experiment_id)
        client.log_metric(probe.info.run_id, "x", 1.0)
        assert client.get_run(probe.info.run_id).data.metrics == {"x": 1.0}
    if store == "sqlite":  # and the schema is at MLflow's head revision
        from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version, create_sqlalchemy_engine

        engine = create_sqlalchemy_engine(uri)
        assert _get_schema_version(engine) == _get_latest_schema_revision()


def test_finite_divergence_ends_failed(prepared_dir, tmp_path):
    """Adam at lr 1e6: the loss explodes to ~1e5 but stays finite; the run ends FAILED, one line, no checkpoint."""
    with pytest.raises(TrainingDiverged, match=r"training diverged: train_loss .* at epoch 0 is over 10 x the "
                                               r"untrained model's .* \(model.divergence_factor\)"):
        train(compose_tiny(prepared_dir, tmp_path, "model.optimizer.lr=1e6"))
    [run] = runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags[END_REASON].startswith("error: training diverged")
    assert not (tmp_path / "checkpoints").exists()  # a run that failed on an error is not resumed


def test_finite_divergence_is_one_line_from_the_command_line(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model.optimizer.lr=1e6",
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("train: error: training diverged: train_loss ")


def test_divergence_factor_null_keeps_only_the_finite_rule(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "model.optimizer.lr=1e6", "model.divergence_factor=null",
                                "trainer.max_epochs=1"))
    assert result.metrics["test_loss"] > 1000  # exploded, finite, and not judged


def test_interrupted_run_resumes_into_the_same_run(prepared_dir, tmp_path):
    """Ctrl-C before the first epoch ends: no checkpoint yet, so the rerun trains from the start, into that run."""
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_tiny(prepared_dir, tmp_path), callbacks=[InterruptTraining()])  # settings unchanged
    [stopped] = runs(tmp_path)
    assert stopped.info.status == "KILLED" and stopped.data.tags[END_REASON] == "interrupted"
    result = train(compose_tiny(prepared_dir, tmp_path))
    [run] = runs(tmp_path)
    assert result.run_id == run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert len(result.history["val_acc"]) == 2
    reference = train(compose_tiny(prepared_dir, tmp_path / "reference"))
    assert result.history["val_loss"] == reference.history["val_loss"]


def edited(good: bytes, edit) -> bytes:
    """A real Lightning checkpoint of the run, loaded, changed by `edit(checkpoint)` and saved again."""
    checkpoint = torch.load(io.BytesIO(good), weights_only=True)
    edit(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def wrong_shaped(checkpoint: dict) -> None:
    """One weight of another shape (as another model's would be)."""
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.zeros(3, 5)


def wrong_shaped_moment(checkpoint: dict) -> None:
    """The weights intact; Adam's first moment of one parameter of another shape (torch loads it, and fails at
    the first step)."""
    [state, *_] = checkpoint["optimizer_states"][0]["state"].values()
    state["exp_avg"] = torch.zeros(3, 5)


# How the file is spoiled, and what the refusal says of it
CORRUPTIONS = {
    "truncated": (lambda good: good[: len(good) // 2], "not a readable torch checkpoint"),  # a copy cut short
    "random": (lambda good: random.Random(0).randbytes(len(good)), "not a readable torch checkpoint"),  # garbage
    "empty": (lambda good: b"", "the file is empty"),
    "wrong-shaped": (lambda good: edited(good, wrong_shaped),
                     "its weights are not this model's (names or shapes differ)"),
    # Good weights, a broken optimizer state
    "optimizer-moment-wrong-shaped": (lambda good: edited(good, wrong_shaped_moment),
                                      "its optimizer state does not fit this model's optimizer (exp_avg of shape "
                                      "(3, 5) for a parameter of shape "),
    "optimizer-state-missing": (lambda good: edited(good, lambda c: c.update(optimizer_states=[])),
                                "its optimizer state does not fit this model's optimizer (0 optimizer states where "
                                "the model has 1 optimizer)"),
    "optimizer-state-garbage": (lambda good: edited(good, lambda c: c["optimizer_states"].__setitem__(0, {"x": 1})),
                                "its optimizer state does not fit this model's optimizer (KeyError: "),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_last_checkpoint_is_refused_and_the_run_kept(prepared_dir, tmp_path, corruption):
    """A stopped run whose last.ckpt cannot be read: the rerun refuses in one line naming the file and changes
    nothing (the run stays KILLED, best.ckpt and last.ckpt stay); a good copy put back, it resumes."""
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_tiny(prepared_dir, tmp_path), callbacks=[InterruptSecondEpoch()])
    [stopped] = runs(tmp_path)
    folder = tmp_path / "checkpoints" / stopped.info.run_id
    last = folder / "last.ckpt"
    good = last.read_bytes()
    spoil, reason = CORRUPTIONS[corruption]
    last.write_bytes(spoil(good))
    kept = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert set(kept) == {"last.ckpt", "best.ckpt"}

    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), f"hydra.run.dir={tmp_path}/out",
                        cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"train: error: run {stopped.info.run_id} cannot resume from {last}: {reason}"), line
    assert line.endswith("nothing was changed: put a good copy of that file back and rerun to resume the run, or "
                         "resume=never for a new run"), line
    [after] = runs(tmp_path)
    assert after.info.status == "KILLED" and after.data.tags == stopped.data.tags  # attempt, end reason unchanged
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == kept

    last.write_bytes(good)
    resumed = train(compose_tiny(prepared_dir, tmp_path))
    [run] = runs(tmp_path)
    assert resumed.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["rnnlab.attempt"] == "2" and len(resumed.history["val_acc"]) == 2


def test_resume_never_and_resume_by_run_id(prepared_dir, tmp_path):
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_tiny(prepared_dir, tmp_path), callbacks=[InterruptTraining()])
    [stopped] = runs(tmp_path)
    fresh = train(compose_tiny(prepared_dir, tmp_path, "resume=never"))
    assert fresh.run_id != stopped.info.run_id and len(runs(tmp_path)) == 2
    resumed = train(compose_tiny(prepared_dir, tmp_path, f"resume={stopped.info.run_id}"))
    assert resumed.run_id == stopped.info.run_id and resumed.history == fresh.history | {
        "epoch_time_s": resumed.history["epoch_time_s"]}
    for override, message in [
        (f"resume={stopped.info.run_id}", f"resume={stopped.info.run_id}: that run has finished"),
        ("resume=latest", "resume='latest': choose auto | never | <the 32-character id of a run>"),
        (f"resume={'0' * 32}", f"resume={'0' * 32}: no such run"),
    ]:
        result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), override,
                            f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"train: error: {message}")


def test_resume_by_run_id_refuses_other_settings(prepared_dir, tmp_path):
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_tiny(prepared_dir, tmp_path), callbacks=[InterruptTraining()])
    [stopped] = runs(tmp_path)
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model.hidden_size=9",
                        f"resume={stopped.info.run_id}", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"train: error: resume={stopped.info.run_id}: that run was started with other settings, data or code: "
        "run its own command again, or resume=never for a new run")


def test_a_finished_stage_is_exported_again_not_retrained(prepared_dir, tmp_path):
    """`dvc repro` killed after a train stage's run finished but before DVC recorded it reruns the stage, deleting
    its outputs first: the rerun exports the finished run again rather than leaving a second FINISHED run."""
    export = tmp_path / "export"
    cfg = compose_tiny(prepared_dir, tmp_path, f"export_dir={export}")
    first = train(cfg)
    written = {name: (export / name).read_bytes() for name in ("model.ckpt", "config.yaml", "metrics.json")}
    shutil.rmtree(export)  # what dvc repro does to a stage's outputs before running it
    again = train(cfg)
    [run] = runs(tmp_path)
    assert again.run_id == first.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert again.metrics == first.metrics and again.history == first.history
    assert {name: (export / name).read_bytes() for name in written} == written
    assert json.loads(written["metrics.json"])["mlflow_run_id"] == first.run_id
    # Without export_dir nothing is reused: the same settings trained again are a new run (repeated timings).
    train(compose_tiny(prepared_dir, tmp_path))
    assert len(runs(tmp_path)) == 2


def test_a_wrong_typed_value_in_params_yaml_is_refused_before_any_run(prepared_dir, tmp_path):
    """`max_epochs: abc` typed into params.yaml, the file a train stage runs on: the stage's command refuses it in
    one line, before a run exists (`dvc repro` has removed the stage's outputs by then: README "Reliability")."""
    from rnnlab.params import compose_params

    params = tmp_path / "params.yaml"
    compose_params(params, tiny_overrides(prepared_dir, tmp_path))
    text = params.read_text()
    assert "  max_epochs: 2\n" in text
    params.write_text(text.replace("  max_epochs: 2\n", "  max_epochs: abc\n"))
    result = run_module("rnnlab.train", "--config-dir", str(tmp_path), "--config-name", "params",
                        f"export_dir={tmp_path}/export", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == (
        "train: error: trainer: max_epochs='abc' must be a positive integer (-1 only with trainer.max_steps or "
        "trainer.max_time as the budget)"), result.stderr[-3000:]
    assert runs(tmp_path) == [] and not (tmp_path / "export").exists()


@contextlib.contextmanager
def immutable(folder: Path):
    """`folder` made immutable (`chattr +i`): nothing can be created in it, even by root, whom chmod does not stop."""
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("how", ["immutable", "under-a-file"])
def test_an_unwritable_artifact_store_is_refused_before_training(prepared_dir, tmp_path, how):
    """The artifact store beside the sqlite store (mlartifacts/) cannot be written: refused in one line before a run
    exists, rather than after training (when the run ended FAILED without its model, its checkpoints deleted).
    Made for real: an immutable folder, or (anywhere) an experiment whose artifact location lies under a file."""
    command = ["rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), f"hydra.run.dir={tmp_path}/out"]
    with contextlib.ExitStack() as stack:
        if how == "immutable":
            folder, why = tmp_path / "mlartifacts", "Operation not permitted"
            folder.mkdir()
            stack.enter_context(immutable(folder))
        else:
            (tmp_path / "a-file").write_text("")
            folder, why = tmp_path / "a-file" / "mlartifacts", "Not a directory"
            client_of(tmp_path).create_experiment(EXPERIMENT, artifact_location=folder.as_uri())
        result = run_module(*command, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"train: error: the artifact store {folder} is not writable ({why}): a run would train, then fail to record "
        "its model; make it writable, or use another store (logger.tracking_uri)"), result.stderr[-3000:]
    assert runs(tmp_path) == [] and not (tmp_path / "checkpoints").exists()


def test_an_artifact_store_made_unwritable_mid_run_keeps_the_run_resumable(prepared_dir, tmp_path):
    """mlartifacts/ made immutable while the run trains (after the check before training): recording its model at
    the end fails. One line; the run ends FAILED "not recorded" with both checkpoints kept (before: deleted, the
    training lost); the store writable again, the same command resumes it and records it, every epoch once."""
    command = train_command(prepared_dir, tmp_path)
    process = start(command, tmp_path)
    wait_for_first_checkpoint(process, tmp_path)  # the store's check has passed: mlartifacts/ exists
    with immutable(tmp_path / "mlartifacts"):
        process.wait(timeout=600)
    [stopped] = runs(tmp_path)
    run_id, folder = stopped.info.run_id, tmp_path / "checkpoints" / stopped.info.run_id
    lines = stderr_of(process).strip().splitlines()
    assert process.returncode == 1 and "Traceback" not in stderr_of(process), lines[-30:]
    assert lines[-1].startswith(f"train: error: run {run_id} trained, but recording it failed (PermissionError: "
                                "[Errno 1] Operation not permitted: "), lines[-1]
    assert lines[-1].endswith(f"): it ended FAILED \"not recorded\", its checkpoints kept in {folder}; fix that and "
                              "run the same command again: it resumes from its last checkpoint and records the run")
    assert stopped.info.status == "FAILED" and stopped.data.tags[END_REASON].startswith("not recorded: ")
    assert {path.name for path in folder.iterdir()} == {"last.ckpt", "best.ckpt"}

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    [run] = runs(tmp_path)
    assert run.info.run_id == run_id and run.info.status == "FINISHED" and run.data.tags["rnnlab.attempt"] == "2"
    assert len(client_of(tmp_path).get_metric_history(run_id, "val_acc")) == EPOCHS  # nothing trained twice
    client = client_of(tmp_path)
    assert {a.path for a in client.list_artifacts(run_id)} >= {"checkpoints", "config.yaml"}
    [model] = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert model.name == "model"  # the served model, recorded by the rerun
    assert not (tmp_path / "checkpoints").exists()


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A file system of `size` (a tmpfs) mounted at `folder`: a disk that fills up for real. Needs root."""
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def resize(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until `leave` bytes are free."""
    stats = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))


def test_a_new_store_on_a_full_disk_is_left_absent_or_whole(prepared_dir, tmp_path):
    """A new sqlite store on a disk with 600 KB free (MLflow's schema takes ~1 MB): one `disk full` line and no
    store file (before: 45 traceback lines and a half-made schema that every later open refused with "table ...
    already exists"). Such a half-made store, left by MLflow itself, is made again once there is room, since it
    holds no run; and training then goes ahead."""
    with small_disk(tmp_path / "disk", "600k") as disk:
        db = disk / "mlflow.db"
        result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, disk), f"hydra.run.dir={tmp_path}/out",
                            cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"train: error: disk full: the MLflow store {db} could not be created ("), line
        assert line.endswith(" KB free there); nothing was changed: free some space, or use another store "
                             "(logger.tracking_uri)"), line
        assert sorted(path.name for path in disk.iterdir()) == ["mlflow.db.lock"]  # no store, no leftover

        # The fault as MLflow alone leaves it: a half-made schema, refused by every open once there is room
        mlflow_alone = subprocess.run([sys.executable, "-c", f"import mlflow; mlflow.MlflowClient('sqlite:///{db}')"
                                       ".search_experiments()"], capture_output=True, text=True, check=False)
        assert mlflow_alone.returncode != 0 and "database or disk is full" in mlflow_alone.stderr
        resize(disk, "20m")
        broken = subprocess.run([sys.executable, "-c", f"import mlflow; mlflow.MlflowClient('sqlite:///{db}')"
                                 ".search_experiments()"], capture_output=True, text=True, check=False)
        assert "already exists" in broken.stderr, broken.stderr[-2000:]

        result = train(compose_tiny(prepared_dir, disk, "trainer.max_epochs=1"))
        [run] = runs(disk)
        assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
        from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version, create_sqlalchemy_engine

        assert _get_schema_version(create_sqlalchemy_engine(f"sqlite:///{db}")) == _get_latest_schema_revision()


def test_a_store_on_a_full_disk_is_one_line_before_any_run(prepared_dir, tmp_path):
    """A complete store whose disk has 100 KB left: one line, no run (before: 25 traceback lines)."""
    with small_disk(tmp_path / "disk", "4m") as disk:
        client_of(disk).create_experiment(EXPERIMENT)
        fill(disk, 100 * 1024)
        result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, disk), f"hydra.run.dir={tmp_path}/out",
                            cwd=tmp_path)
        assert result.returncode == 1, result.stderr[-3000:]
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("train: error: disk full: "), line
        assert line.endswith(f" KB free where the MLflow store {disk}/mlflow.db is (a run needs at least 1024 KB): "
                             "free some space, or use another store (logger.tracking_uri)"), line
        assert runs(disk) == [] and not (disk / "checkpoints").exists()


@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_read_only_store_is_one_line_before_any_run(prepared_dir, tmp_path, what):
    """The store's folder, or its database file, immutable (`chattr +i`, which stops root): one line, no run
    (before: 8 traceback lines on the lock file, or MLflow's "attempt to write a readonly database")."""
    db = tmp_path / "mlflow.db"
    client_of(tmp_path).create_experiment(EXPERIMENT)  # the store exists, its lock file too: as after a first run
    (tmp_path / "mlflow.db.lock").touch()
    frozen = tmp_path if what == "folder" else db
    with immutable(frozen):
        result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path),
                            f"hydra.run.dir={tmp_path.parent}/{tmp_path.name}-out", cwd=tmp_path.parent)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"train: error: the MLflow store {db} is read-only ({frozen}: Operation not permitted): a run could not be "
        "recorded; make it writable, or use another store (logger.tracking_uri)"), result.stderr[-3000:]
    assert runs(tmp_path) == []


def test_no_checkpoint_left_after_success(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path), output_dir=tmp_path / "work")
    assert not (tmp_path / "checkpoints").exists()  # the run's checkpoint folder went with its end
    left = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.ckpt") if "mlartifacts" not in p.parts]
    assert left == [Path("work/checkpoints/best.ckpt")]  # the store's copy aside
    assert result.best_checkpoint == tmp_path / "work" / "checkpoints" / "best.ckpt"


def test_credentials_in_urls_are_not_recorded(prepared_dir, tmp_path):
    cfg = compose_tiny(prepared_dir, tmp_path, "download.url='https://alice:s3cret@data.example/imdb.tar.gz?token=t0k'")
    result = train(cfg)
    run = client_of(tmp_path).get_run(result.run_id)
    recorded = json.dumps([run.data.params, run.data.tags])
    assert "s3cret" not in recorded and "t0k" not in recorded and "alice" not in recorded
    assert "download.url" not in run.data.params  # not a setting of the run; a setting that were a URL is redacted:
    assert run_params({"data": {"url": "https://alice:s3cret@data.example/x?token=t0k"}}) == {
        "data.url": "https://***@data.example/x?token=***"}


@pytest.mark.slow
def test_a_server_uri_with_credentials_is_not_recorded(prepared_dir, tmp_path):
    """A real `mlflow server`, reached through http://user:password@host:port."""
    with mlflow_server(tmp_path) as url:
        uri = url.replace("http://", "http://alice:s3cret@")
        result = run_module("rnnlab.train", *untracked_overrides(prepared_dir, tmp_path), "trainer.max_epochs=1", f"logger.tracking_uri={uri}",
                            f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        client = mlflow.MlflowClient(url)
        [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
        assert run.info.status == "FINISHED"
        recorded = json.dumps([run.data.params, run.data.tags])
        assert "s3cret" not in recorded and "alice" not in recorded
        assert "logger.tracking_uri" not in run.data.params  # where a run goes is not a setting of the run
        assert url.replace("http://", "http://***@") in result.stdout and "s3cret" not in result.stdout  # the log
        assert not (tmp_path / "checkpoints").exists()  # a server run's checkpoints: ./checkpoints, gone at the end


@pytest.mark.slow
def test_a_tracking_server_down_mid_training_stops_resumably(prepared_dir, tmp_path):
    """A real `mlflow server` stopped while a run trains against it: after a bounded wait (about a minute, not
    MLflow's ~4 per call) the command ends in one line, exit 1, saying the run stays RUNNING there; its checkpoints
    kept, the same command resumes it once a server answers for that store again (here on another port)."""
    command = [sys.executable, "-m", "rnnlab.train", *untracked_overrides(prepared_dir, tmp_path), *RESUMABLE,
               f"hydra.run.dir={tmp_path}/out"]
    with mlflow_server(tmp_path) as url:
        process = start([*command, f"logger.tracking_uri={url}"], tmp_path)
        wait_for_first_checkpoint(process, tmp_path)
    down = time.monotonic()  # the server is stopped
    process.wait(timeout=150)
    waited = time.monotonic() - down
    lines = stderr_of(process).strip().splitlines()
    assert process.returncode == 1 and "Traceback" not in stderr_of(process), lines[-30:]
    [folder] = (tmp_path / "checkpoints").iterdir()
    assert lines[-1] == (f"train: error: tracking server unreachable: {url} ([Errno 111] Connection refused): run "
                         f"{folder.name} stays RUNNING there, its checkpoints kept; run the same command again once "
                         "it answers, to resume it"), lines[-30:]
    assert not [line for line in lines if "Retrying" in line], lines[-30:]
    assert 30 < waited < 120, waited  # urllib3's backoff: 0 + 4 + 8 + 16 + 32 s, then the line
    assert (folder / "last.ckpt").is_file() and (folder / "best.ckpt").is_file()
    with mlflow_server(tmp_path) as url:  # the same store (tmp_path/server.db) on another port
        client = mlflow.MlflowClient(url)
        assert client.get_run(folder.name).info.status == "RUNNING"  # what the store holds, as the line says
        again = subprocess.run([*command, f"logger.tracking_uri={url}"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=600, check=False)
        assert again.returncode == 0, again.stderr[-3000:]
        run = client.get_run(folder.name)
        assert run.info.status == "FINISHED" and run.data.tags["rnnlab.attempt"] == "2"
        assert len(client.get_metric_history(folder.name, "val_acc")) == EPOCHS
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_tracking_server_down_at_the_start_is_one_line_at_once(prepared_dir, tmp_path):
    """A real `mlflow server`, stopped before the command starts: one line after one quick retry (QUICK_HTTP), not
    the minute of retries training allows a server (TRAINING_HTTP) followed by MLflow's traceback; nothing
    trained, no checkpoint."""
    with mlflow_server(tmp_path) as url:
        pass  # started, answered, stopped: its port now refuses connections
    message = (f"tracking server unreachable: {url} ([Errno 111] Connection refused): nothing was trained; start "
               "it, or check logger.tracking_uri / $MLFLOW_TRACKING_URI, and run the command again")
    began = time.monotonic()  # timed in this process: a loaded machine's imports would dwarf the wait
    with pytest.raises(UserError) as refused:
        train(compose_config([*untracked_overrides(prepared_dir, tmp_path), f"logger.tracking_uri={url}"]))
    took = time.monotonic() - began
    print(f"refused after {took:.1f} s")
    assert str(refused.value) == message
    assert took < 40, took  # TRAINING_HTTP's retries alone wait 0 + 4 + 8 + 16 + 32 s
    result = run_module("rnnlab.train", *untracked_overrides(prepared_dir, tmp_path), f"logger.tracking_uri={url}",
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == f"train: error: {message}", result.stderr[-3000:]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_killed_dvc_repro_resumes_its_stage(tmp_path, tiny_archive):
    """kill -9 of `dvc repro` (and its training process) in the middle of a train stage; `dvc repro` again resumes
    the stage's run: one FINISHED run for the stage."""
    from rnnlab.params import compose_params

    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    compose_params(project / "params.yaml", [
        "pipeline.cells=[gru]", "pipeline.seeds=[0]", "pipeline.impls=[fused]", *RESUMABLE, "data.batch_size=1",
        "model.embedding_dim=8", "model.hidden_size=8", "callbacks.progress_bar=null",
        f"logger.tracking_uri=sqlite:///{project}/mlflow.db"])
    env = {"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}
    prepared = run_dvc("repro", "prepare", cwd=project, env=env)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    bin_dir = str(Path(sys.executable).parent)
    dvc = start([f"{bin_dir}/dvc", "repro", "train@gru-fused-0"], project,
                {**env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, start_new_session=True)
    try:
        kill_after_first_checkpoint(dvc, project, signal.SIGKILL, random.Random(3))
    finally:
        os.killpg(dvc.pid, signal.SIGKILL)  # dvc and the training process it started, as a terminal's kill would
    again = run_dvc("repro", "train@gru-fused-0", cwd=project, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["rnnlab.attempt"] == "2"
    metrics = json.loads((project / "data" / "train" / "gru-fused-0" / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == run.info.run_id and len(metrics["history"]["val_acc"]) == EPOCHS
