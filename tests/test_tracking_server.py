"""A team's tracking server for real: PostgreSQL and `mlflow server` started by scripts/tracking_server.py, a
parallel Hydra sweep (joblib) training into it, then compare, predict and the notebook reading from it, all
sent there by $MLFLOW_TRACKING_URI alone. Skipped where PostgreSQL is not installed."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from rnnlab.run.tags import SWEEP_PARENT
from rnnlab.serve.registry import ALIAS, REGISTERED_MODEL, logged_model
from tests.helpers.notebook import execute
from tests.helpers.project import PROJECT_ROOT, run_module
from tests.helpers.servers import free_ports
from tests.helpers.training import EXPERIMENT, sweep_runs, untracked_overrides

SCRIPT = PROJECT_ROOT / "scripts" / "tracking_server.py"
CELLS, SEEDS = ("rnn", "gru"), (0, 1, 2)
EPOCHS = 2  # tiny_overrides'


def postgres_installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb") is not None


pytestmark = pytest.mark.skipif(not postgres_installed(),
                                reason="PostgreSQL is not installed: scripts/install_services.sh postgres")


def tracking_server(command: str, folder: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), command, "--dir", str(folder), *options],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def server() -> Iterator[tuple[Path, str]]:
    """(the server's folder, its URL): started by the script, stopped by it at the end whatever happens.

    The folder is in the project's git-ignored .tracking/, not in tmp_path: run as root, the script runs PostgreSQL
    as the `postgres` user, and pytest's temporary folders are closed to other users.
    """
    folder = PROJECT_ROOT / ".tracking" / f"test-{uuid.uuid4().hex[:8]}"
    port, postgres_port = free_ports(2)
    try:
        started = tracking_server("start", folder, "--port", str(port), "--pg-port", str(postgres_port))
        log = folder / "mlflow.log"
        assert started.returncode == 0, started.stderr + (log.read_text()[-3000:] if log.is_file() else "")
        url = f"http://127.0.0.1:{port}"
        assert started.stdout.splitlines()[-1] == f"export MLFLOW_TRACKING_URI={url}"
        again = tracking_server("start", folder, "--port", str(port), "--pg-port", str(postgres_port))
        assert again.returncode == 0 and "mlflow server: already running" in again.stdout, again.stderr
        yield folder, url
    finally:
        stopped = tracking_server("stop", folder)
        status = tracking_server("status", folder)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # .tracking/ too, unless it holds a server of the user's
    assert stopped.returncode == 0, stopped.stderr
    assert status.returncode == 3 and status.stdout.splitlines() == [
        "mlflow server: stopped", f"postgres: stopped (cluster: {folder / 'postgres'})"], status.stdout


@pytest.mark.parametrize("mistake", ["port", "pg-port", "same-ports", "bad-port"])
def test_a_mistake_is_one_line_and_starts_nothing(tmp_path, mistake):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        [free] = free_ports(1)
        options, message = {
            "port": ([busy, free], f"port {busy} on 127.0.0.1 is in use: choose another with --port"),
            "pg-port": ([free, busy], f"port {busy} on 127.0.0.1 is in use: choose another with --pg-port"),
            "same-ports": ([free, free], f"--port and --pg-port are both {free}: the two services need a port each"),
            "bad-port": ([70000, free], "--port 70000: a port is a number from 1 to 65535"),
        }[mistake]
        result = tracking_server("start", tmp_path / "server", "--port", str(options[0]), "--pg-port", str(options[1]))
    assert result.returncode == 1 and result.stderr == f"tracking_server: error: {message}\n", result.stderr
    assert not (tmp_path / "server" / "postgres").exists()  # checked before anything was made or started


@pytest.mark.slow
def test_a_parallel_sweep_compare_predict_and_the_notebook_use_the_server(server, prepared_dir, tmp_path,
                                                                          monkeypatch):
    folder, url = server
    env = {"MLFLOW_TRACKING_URI": url}
    overrides = untracked_overrides(prepared_dir, tmp_path)
    train_dir = tmp_path / "train"
    # Each run exported as the pipeline's train stage names its folder, for compare to find
    sweep = run_module("rnnlab.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       f"model={','.join(CELLS)}", f"seed={','.join(map(str, SEEDS))}", *overrides,
                       f"paths.train_dir={train_dir}",
                       "export_dir=${paths.train_dir}/${model.cell}-${model.impl}-${seed}",
                       f"hydra.sweep.dir={tmp_path}/multirun", cwd=tmp_path, env=env)
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    client = mlflow.MlflowClient(url)
    # Jobs in two processes, no store lock on a server: still one parent run, every run nested under it
    [parent], runs = sweep_runs(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]))
    assert sorted((r.data.tags["cell"], int(r.data.params["seed"])) for r in runs) == sorted(
        itertools.product(CELLS, SEEDS))
    assert {r.data.tags["sweep_id"] for r in runs} == {parent.data.tags[SWEEP_PARENT]}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    for run in runs:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED", run.data.tags
        assert {"test_acc", "test_loss", "fit_time_s", "best_val_acc", "train_samples_per_s"} <= set(run.data.metrics)
        assert len(client.get_metric_history(run_id, "val_acc")) == EPOCHS
        model = logged_model(client, run_id)
        # Artifacts go through the server (mlflow-artifacts:/), which keeps them in its own folder
        assert model is not None and model.artifact_location.startswith("mlflow-artifacts:"), run_id
        assert {"config.yaml", "checkpoints"} <= {a.path for a in client.list_artifacts(run_id)}
    assert len(list((folder / "artifacts").rglob("MLmodel"))) == len(runs)
    # Nothing fell back to a local store
    assert not [p.name for p in tmp_path.iterdir() if p.name in ("mlflow.db", "mlruns", "mlartifacts")]

    compared = run_module("rnnlab.compare", *overrides, f"paths.train_dir={train_dir}",
                          f"paths.findings_dir={tmp_path / 'findings'}", f"paths.compare_dir={tmp_path / 'compare'}",
                          f"pipeline.cells=[{','.join(CELLS)}]", "pipeline.impls=[fused]", "pipeline.baselines=[]",
                          f"pipeline.seeds=[{','.join(map(str, SEEDS))}]", f"hydra.run.dir={tmp_path}/compare-out",
                          cwd=tmp_path, env=env)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert all(f"| {cell} | fused | {len(SEEDS)} |" in (tmp_path / "compare" / "table.md").read_text()
               for cell in CELLS)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, ALIAS)  # registered on the server
    by_id = {run.info.run_id: run for run in runs}
    assert by_id[champion.run_id].data.metrics["best_val_acc"] == max(r.data.metrics["best_val_acc"] for r in runs)

    predicted = run_module("rnnlab.predict", "A wonderful film, great acting.", cwd=tmp_path, env=env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert f"the model of run {champion.run_id}" in predicted.stderr
    [line] = predicted.stdout.splitlines()
    probability, label, _ = line.split("\t")
    assert 0 <= float(probability) <= 1 and label in ("pos", "neg")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # the notebook's kernel inherits this process's environment
    monkeypatch.delenv("RNNLAB_GRADIENTS", raising=False)
    notebook = execute(PROJECT_ROOT / "notebooks", probe="print(json.dumps(sorted(runs['run_id'])))")
    shown = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])]
    assert f"tracking URI: {url}\n" in shown
    assert json.loads(shown[-1]) == sorted(by_id)  # the finished runs it compares are the sweep's
