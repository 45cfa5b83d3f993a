"""Which process owns a run, whether it still lives, and ending the runs whose process died."""

from __future__ import annotations

import os
import socket
import time

import mlflow
import psutil
from mlflow.entities import Run

from rnnlab.run.tags import DIED, END_REASON, HOST, PID, PID_STARTED, SLURM_ARRAY_TASK, SLURM_JOB, resumable_failure


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
    """Stopped before its end and not on an error: KILLED, FAILED because its process died or its record failed
    at the end, or RUNNING with its process gone."""
    status, reason = run.info.status, run.data.tags.get(END_REASON, "")
    if status == "RUNNING":
        return owner_alive(run.data.tags) is False
    return status == "KILLED" or (status == "FAILED" and resumable_failure(reason))
