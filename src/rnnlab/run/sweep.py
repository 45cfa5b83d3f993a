"""The parent run of a Hydra multirun: every run of one `python -m rnnlab.train -m ...` is nested under it
(MLflow's `mlflow.parentRunId`), so the runs list shows the sweep as one expandable row.

The sweep's runs may each be a process of their own (the joblib launcher, SLURM jobs on other machines), and
no process sees the sweep start: the first run to ask creates the parent, found by the sweep id (tag
`rnnlab.sweep_parent`) by every later one. Like the search's parent runs (rnnlab.search.study), it is a folder,
not a process: it is FINISHED from the start and holds no metrics.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from rnnlab.run.tags import SWEEP_PARENT
from rnnlab.tracking import open_experiment, resolve_tracking_uri, store_lock


def sweep_parent(tracking_uri: str | None, experiment_name: str, sweep_id: str) -> str:
    """The id of the parent run of sweep `sweep_id` in experiment `experiment_name`, created by the first call.

    On sqlite the store lock makes finding and creating one step. A server has no such lock: two runs starting
    at once may both create one, so each then keeps the oldest (ties: the smaller id) and deletes its own if that
    is not it; both end up naming the same parent.
    """
    uri = resolve_tracking_uri(tracking_uri)
    with store_lock(uri):
        client = mlflow.MlflowClient(uri)
        experiment_id = open_experiment(client, experiment_name)
        found = parents(client, experiment_id, sweep_id)
        if found:
            return found[0]
        shown = "/".join(Path(sweep_id).parts[-2:])  # multirun/<day>/<time>: the day and time
        run = client.create_run(experiment_id, run_name=f"sweep-{shown}", tags={
            SWEEP_PARENT: sweep_id,
            "mlflow.note.content": f"The Hydra multirun in `{sweep_id}`: its runs are nested under this one, "
                                   "each one's description listing its overrides.",
        })
        client.set_terminated(run.info.run_id, "FINISHED")
        chosen = parents(client, experiment_id, sweep_id)[0]
        if chosen != run.info.run_id:
            client.delete_run(run.info.run_id)
        return chosen


def parents(client: mlflow.MlflowClient, experiment_id: str, sweep_id: str) -> list[str]:
    """The ids of the parent runs of `sweep_id`, oldest first."""
    found = client.search_runs([experiment_id], f"tags.`{SWEEP_PARENT}` = '{sweep_id}'")
    return [run.info.run_id for run in sorted(found, key=lambda run: (run.info.start_time, run.info.run_id))]
