"""Sweeps and the search's workers on a real SLURM cluster: scripts/slurm_local.sh brings up slurmctld, slurmd and munged on this machine
(Debian's slurm-wlm, installed by scripts/install_services.sh), and `python -m rnnlab.train -m
hydra/launcher=slurm ...` submits its runs to it through hydra-submitit-launcher. A job pre-empted with SLURM's
warning signal requeues itself and resumes its MLflow run. The launcher configs compose without a cluster.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir

from tests.helpers.project import PROJECT_ROOT
from tests.helpers.slurm import SLURM_LOCAL
from tests.helpers.training import client_of, runs, sweep_runs, tiny_overrides

CELLS = ("rnn", "lstm", "gru")


def sweep_command(prepared_dir: Path, store: Path, *overrides: str) -> list[str]:
    """A SLURM sweep of tiny runs into the sqlite store in `store`; its folder is `store`/sweep."""
    return [sys.executable, "-m", "rnnlab.train", "-m", "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",  # two jobs at a time on the 2-CPU node
            *tiny_overrides(prepared_dir, store), f"hydra.sweep.dir={store}/sweep", *overrides]


def job_returns(sweep_dir: Path) -> dict[str, object]:
    """What each job of a sweep returned to the launcher, by SLURM job id as submitit names it (`<array>_<task>`
    or `<job>`): submitit's result file holds ("success", Hydra's JobReturn) or ("error", its traceback)."""
    returns = {}
    for result in (sweep_dir / ".submitit").glob("*/*_result.pkl"):
        outcome, value = pickle.loads(result.read_bytes())
        assert outcome == "success", value
        returns[result.parent.name] = value
    return returns


@pytest.mark.slow
def test_a_sweep_runs_as_slurm_jobs_into_one_mlflow_sweep(cluster, prepared_dir, tmp_path):
    started = time.monotonic()
    result = subprocess.run(sweep_command(prepared_dir, tmp_path, f"model={','.join(CELLS)}", "trainer.max_epochs=1"),
                            cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    [parent], recorded = sweep_runs(runs(tmp_path))  # the jobs' runs, nested under the sweep's parent run
    assert sorted(run.data.tags["cell"] for run in recorded) == sorted(CELLS)
    assert all(run.info.status == "FINISHED" for run in recorded)
    assert {run.data.tags["sweep_id"] for run in recorded} == {str(tmp_path / "sweep")}
    assert {run.data.tags["mlflow.parentRunId"] for run in recorded} == {parent.info.run_id}
    cluster.wait_until_no_jobs()

    # Each run was a job of one array, which SLURM ran to completion: the run's tag names the job, and SLURM's
    # job log has it COMPLETED, as a task of the array submitit submitted.
    completed = {job["JobId"]: job for job in cluster.jobs() if job["JobState"] == "COMPLETED"}
    returns = job_returns(tmp_path / "sweep")
    arrays = set()
    for run in recorded:
        job_id, restarts = run.data.tags["rnnlab.slurm_job"].split(".")
        assert restarts == "0" and job_id in completed, (run.data.tags["rnnlab.slurm_job"], cluster.jobs())
        job = completed[job_id]
        arrays.add(job["ArrayJobId"])
        # The launcher got the job's return value back: its best val_acc, the one MLflow recorded.
        returned = returns[f"{job['ArrayJobId']}_{job['ArrayTaskId']}"]
        assert returned.return_value == pytest.approx(run.data.metrics["best_val_acc"])
        assert f"model={run.data.tags['cell']}" in returned.overrides
        # and it ran in the sweep's folder for its job number, where Hydra wrote its config
        assert (tmp_path / "sweep" / job["ArrayTaskId"] / ".hydra" / "overrides.yaml").exists()
    assert len(arrays) == 1  # one submission
    print(f"3-job SLURM sweep: {time.monotonic() - started:.0f} s")


@pytest.mark.slow
def test_a_preempted_job_requeues_itself_and_resumes_its_run(cluster, prepared_dir, tmp_path):
    """SLURM's warning signal (SIGUSR1, as slurm.yaml asks SLURM to send before the time limit) reaches the job
    while it trains: the run ends KILLED, the job requeues itself, runs again (restart count 1) and resumes the
    same MLflow run from its last epoch; the sweep's caller gets the second attempt's return value."""
    # 100 epochs of 8 one-review batches: the signal comes just after the first epoch's checkpoint.
    command = sweep_command(prepared_dir, tmp_path, "trainer.max_epochs=100", "data.batch_size=1")
    job_id = None
    with open(tmp_path / "launcher.err", "w") as launcher_err:
        launcher = subprocess.Popen(command, cwd=tmp_path, env=cluster.env, stdout=subprocess.DEVNULL,
                                    stderr=launcher_err)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("checkpoints/*/last.ckpt")):
            assert launcher.poll() is None, (tmp_path / "launcher.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.1)
        [job_id] = cluster.command("squeue", "--noheader", "--format=%A").stdout.split()
        # To the job's steps (the srun'd Python), where SLURM's own warning goes; not --batch: the batch shell
        # has no handler and would die of it.
        signalled = cluster.command("scancel", "--signal=USR1", job_id)
        assert signalled.returncode == 0, signalled.stderr
        assert launcher.wait(timeout=400) == 0, (tmp_path / "launcher.err").read_text()[-3000:]
    finally:
        if launcher.poll() is None:  # failed: stop the launcher and its job
            launcher.kill()
            if job_id is not None:
                cluster.command("scancel", job_id)
    cluster.wait_until_no_jobs()

    [parent], [run] = sweep_runs(runs(tmp_path))  # the job's run, nested under its one-run sweep's parent
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["rnnlab.attempt"] == "2"
    assert run.data.tags["rnnlab.slurm_job"] == f"{job_id}.1"  # the same job, SLURM_RESTART_COUNT=1
    # Every epoch once: the second attempt continued the first instead of training again from the start.
    client = client_of(tmp_path)
    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert len(epochs) == 100 and len(set(epochs)) == 100
    # SLURM saw the job end twice: requeued, then completed.
    ends = [job["JobState"] for job in cluster.jobs() if job["JobId"] == job_id]
    assert ends[-1] == "COMPLETED" and len(ends) == 2, ends
    [(_, returned)] = job_returns(tmp_path / "sweep").items()
    assert returned.return_value == pytest.approx(run.data.metrics["best_val_acc"])
    [job_err] = (tmp_path / "sweep" / ".submitit").glob("*/*_0_log.err")
    assert "train: stopped by SIGUSR1: the run ended KILLED; its SLURM job was requeued" in job_err.read_text()


@pytest.mark.slow
def test_a_search_runs_as_slurm_workers_and_survives_one_cancelled_mid_trial(cluster, prepared_dir, tmp_path):
    """The search's trials by two workers, the two jobs of one SLURM array sharing the journal. One job is
    cancelled (scancel) while both train: the other, once its own trial is done, finds the cancelled worker's
    trial left RUNNING with its lock free, trains its setting again and resumes its MLflow run, so the cell ends
    with exactly search.trials completed trials."""
    epochs = 40  # of 8 one-review batches: long enough that the cancel lands inside both trials
    command = [sys.executable, "-m", "rnnlab.search.run", "-m", "hydra/launcher=slurm",
               "hydra.launcher.cpus_per_task=1", "search.worker=0,1", *tiny_overrides(prepared_dir, tmp_path),
               f"search.dir={tmp_path}/search", 'search.overrides=["model.impl=fused"]',
               f'search.proxy=["trainer.max_epochs={epochs}"]', "data.batch_size=1", "search.cells=[rnn]",
               "search.trials=2", f"hydra.sweep.dir={tmp_path}/sweep"]
    with open(tmp_path / "launcher.err", "w") as launcher_err:
        launcher = subprocess.Popen(command, cwd=tmp_path, env=cluster.env, stdout=subprocess.DEVNULL,
                                    stderr=launcher_err)
    array = None
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("checkpoints/*/last.ckpt"))) < 2:  # both workers are training
            assert launcher.poll() is None, (tmp_path / "launcher.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "not two checkpoints after 300 s"
            time.sleep(0.1)
        jobs = sorted(cluster.command("squeue", "--noheader", "--format=%i").stdout.split())
        assert len(jobs) == 2, jobs
        array = jobs[0].split("_")[0]
        cancelled = cluster.command("scancel", f"{array}_0")
        assert cancelled.returncode == 0, cancelled.stderr
        # The surviving worker takes over the cancelled one's trial, and its job ends once the cell is done.
        cluster.wait_until_no_jobs(seconds=500)
    finally:
        # Submitit learns a job's end from its result file or from sacct; the cancelled job wrote none and this
        # cluster has no accounting (sacct), so the launcher would wait for it for ever: stopped here. On a
        # cluster with accounting it ends with the cancelled job's error.
        launcher.kill()
        launcher.wait(timeout=60)
        if array is not None:
            cluster.command("scancel", array)
    cluster.wait_until_no_jobs()

    study = optuna.load_study(study_name="rnn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "search" / "journal.log"))))
    states = [t.state.name for t in study.trials]
    assert sorted(states) == ["COMPLETE", "COMPLETE", "FAIL"], states
    assert len({t.number for t in study.trials}) == 3
    [failed] = [t for t in study.trials if t.state.name == "FAIL"]
    [retry] = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert retry.user_attrs["retry_of"] == failed.number and retry.params == failed.params
    assert retry.user_attrs["draw"] == failed.user_attrs["draw"]
    assert {t.user_attrs["worker"] for t in study.trials if t.state.name == "COMPLETE"} == {1}  # the survivor
    # The retry resumed the cancelled run: every epoch once, the second attempt continuing the first.
    client = client_of(tmp_path)
    resumed = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert resumed.info.status == "FINISHED" and resumed.data.tags["rnnlab.attempt"] == "2"
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "val_acc")]
    assert len(steps) == epochs and len(set(steps)) == epochs
    search = client.get_experiment_by_name("search")
    children = [r for r in client.search_runs([search.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    # SLURM ran the two workers as the tasks of one array: one cancelled, one completed.
    ends = {job["JobId"]: job["JobState"] for job in cluster.jobs() if job.get("ArrayJobId") == array}
    assert sorted(ends.values()) == ["CANCELLED", "COMPLETED"], cluster.jobs()


@pytest.mark.slow
def test_up_is_idempotent_and_refuses_a_taken_port(cluster, tmp_path):
    again = cluster.command(str(SLURM_LOCAL), "up")
    assert again.returncode == 0 and "already up" in again.stdout, again.stderr
    other = tmp_path / "other"
    taken = cluster.command("env", f"SLURM_LOCAL_DIR={other}", str(SLURM_LOCAL), "up")
    assert taken.returncode != 0
    port = cluster.env["SLURM_LOCAL_PORT"]
    assert taken.stderr.strip() == f"slurm_local: port {port} is in use (set SLURM_LOCAL_PORT)"
    assert not other.exists()  # nothing started, nothing written
    status = cluster.command(str(SLURM_LOCAL), "status")
    assert status.returncode == 0 and "idle" in status.stdout


def test_slurm_local_refuses_a_bad_command_and_reports_a_cluster_that_is_down(tmp_path):
    env = {**os.environ, "SLURM_LOCAL_DIR": str(tmp_path / "none")}
    bad = subprocess.run([str(SLURM_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert bad.stderr.strip() == "slurm_local: usage: scripts/slurm_local.sh up|down|status (got 'start')"
    status = subprocess.run([str(SLURM_LOCAL), "status"], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 1
    assert status.stderr.strip() == f"slurm_local: not up (folder {tmp_path / 'none'})"
    down = subprocess.run([str(SLURM_LOCAL), "down"], env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 0 and "already down" in down.stdout


def compose_hydra(*overrides: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_launchers_are_config_choices():
    slurm = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_task=1")
    launcher = slurm.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_task, launcher.timeout_min) == ("gpu", 1, 60)
    # SLURM warns with the signal rnnlab handles (it stops at a batch boundary and requeues), not submitit's
    assert launcher.additional_parameters.signal == f"USR1@{launcher.signal_delay_s}"
    assert launcher.additional_parameters.requeue is True  # whatever the cluster's default
    joblib = compose_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
