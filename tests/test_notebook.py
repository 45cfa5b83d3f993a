"""notebooks/compare.ipynb executed by a real kernel: on a store of tiny real runs, and on stores with none."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import nbformat
import pytest

from rnnlab.run.sweep import sweep_parent
from rnnlab.train import train
from tests.helpers.notebook import execute
from tests.helpers.project import PROJECT_ROOT
from tests.helpers.training import EXPERIMENT, compose_tiny


def tagged(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    [cell] = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return cell


def text(outputs: list) -> str:
    """Everything an output list shows as text: printed streams and the plain/HTML forms of displayed values."""
    parts = []
    for output in outputs:
        parts.append(output.get("text", ""))
        parts.extend(output.get("data", {}).get(kind, "") for kind in ("text/plain", "text/html"))
    return "\n".join(parts)


def images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.outputs)


@pytest.fixture
def kernel_env(monkeypatch):
    """The kernel inherits this process's environment: start from one without the notebook's variables."""
    for name in ("MLFLOW_TRACKING_URI", "RNNLAB_GRADIENTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # a preset backend (Agg in CI) would stop inline figures
    return monkeypatch


def write_gradients(path: Path) -> Path:
    distance = list(range(6))
    cells = {
        cell: {"init": [decay**k for k in distance], "trained": [(decay**0.5) ** k for k in distance],
               "seeds": [0, 1], "init_reach": [2, 3], "trained_reach": [4, 4]}  # as the stage writes it: per seed
        for cell, decay in (("rnn", 0.1), ("lstm", 0.5), ("gru", 0.6), ("mingru", 0.3))  # and a scan cell
    }
    path.write_text(json.dumps({"distance": distance, "threshold": 1e-3, "cells": cells}))
    return path


@pytest.mark.slow
def test_notebook_compares_the_finished_runs(prepared_dir, tmp_path, kernel_env):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # the store compose_tiny's runs log to
    client = mlflow.MlflowClient(uri)
    # An explicit artifact folder: MLflow's default for a sqlite store is ./mlruns, i.e. the project root's.
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "artifacts"))
    # Two GRU seeds of one setting, and a GRU run of another setting (max_len), which must not join them; the
    # bag of embeddings (no recurrence, impl plain) and minGRU (a parallel-scan cell, impl scan) beside the cells
    for overrides in (["model=rnn"], ["model=lstm"], ["model=gru"], ["model=gru", "seed=1"],
                      ["model=gru", "data.max_len=5"], ["model=bag"], ["model.cell=mingru", "model.impl=scan"]):
        train(compose_tiny(prepared_dir, tmp_path, *overrides))
    # A run that did not finish must be left out, however good its numbers.
    failed = client.create_run(experiment_id, tags={"cell": "crashed", "impl": "fused"})
    client.log_metric(failed.info.run_id, "test_acc", 1.0)
    client.set_terminated(failed.info.run_id, "FAILED")
    # Nor a debug run (one recorded before debug runs had their own experiment) or a sweep's parent run
    debugged = client.create_run(experiment_id, tags={"cell": "debugged", "impl": "fused", "debug": "overfit"})
    client.log_metric(debugged.info.run_id, "test_acc", 1.0)
    client.set_terminated(debugged.info.run_id, "FINISHED")
    sweep_parent(uri, EXPERIMENT, str(tmp_path / "multirun"))
    kernel_env.setenv("MLFLOW_TRACKING_URI", uri)
    kernel_env.setenv("RNNLAB_GRADIENTS", str(write_gradients(tmp_path / "gradients.json")))

    notebook = execute(PROJECT_ROOT / "notebooks", probe="print(summary.to_json(orient='records'))")

    table = text(tagged(notebook, "summary-table").outputs)
    for cell in ("rnn", "lstm", "gru", "bag", "mingru"):
        assert cell in table
    assert "crashed" not in table and "debugged" not in table and "?" not in table  # a parent has no cell
    rows = json.loads(notebook.cells[-1].outputs[-1]["text"])
    assert {(row["cell"], row["setting"]): row["runs"] for row in rows} == {
        ("rnn", "data.max_len=400"): 1, ("lstm", "data.max_len=400"): 1, ("gru", "data.max_len=400"): 2,
        ("gru", "data.max_len=5"): 1, ("bag", "data.max_len=400"): 1, ("mingru", "data.max_len=400"): 1}
    assert [row["impl"] for row in rows if row["cell"] == "mingru"] == ["scan"]
    [gru] = [row for row in rows if row["cell"] == "gru" and row["runs"] == 2]
    assert "±" in gru["test_acc"] and "±" in gru["fit_time_s"]  # two seeds: mean ± sd
    for tag in ("accuracy-vs-time", "learning-curves", "gradient-decay"):
        assert images(tagged(notebook, tag)) == 1, tag


@pytest.mark.parametrize("start", ["notebooks", "root"])
def test_notebook_says_when_there_is_nothing_to_show(tmp_path, kernel_env, start):
    # A fresh project-like folder and no environment variables: the notebook finds <root>/mlflow.db itself,
    # from notebooks/ or from the root. From notebooks/ the store exists but holds no imdb-cells runs;
    # from the root there is no store at all, and the notebook must not create one.
    (tmp_path / "notebooks").mkdir()
    store = tmp_path / "mlflow.db"
    if start == "notebooks":
        mlflow.MlflowClient(f"sqlite:///{store}").search_experiments()  # creates the (empty) store
    cwd = tmp_path / "notebooks" if start == "notebooks" else tmp_path

    notebook = execute(cwd)

    shown = text([output for cell in notebook.cells for output in cell.get("outputs", [])])
    assert f"sqlite:///{store}" in shown
    assert "No finished runs in experiment 'imdb-cells'" in shown
    assert "dvc repro gradients" in shown
    assert not any(images(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert store.exists() == (start == "notebooks")
    if start == "root":
        assert f"No MLflow store at {store}" in shown
