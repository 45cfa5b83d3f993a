"""What a run shows in MLflow: its config once as params, summary metrics at step 0, its data as datasets, tags.

Real tiny runs in a real sqlite store (tests/helpers/training.py)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rnnlab.run.history import HISTORY
from rnnlab.run.logger import SUMMARY_METRICS
from rnnlab.run.provenance import run_params
from rnnlab.train import train
from tests.helpers.interrupts import InterruptTraining
from tests.helpers.training import client_of, compose_tiny, runs

NOT_PARAMS = ("pipeline.", "download.", "prepare.", "findings.", "search.", "paths.", "logger.", "tags.",
              "callbacks.progress_bar", "data.data_dir")


def test_params_are_the_resolved_config_once(prepared_dir, tmp_path):
    cfg = compose_tiny(prepared_dir, tmp_path, "model=gru", "+tags.purpose=baseline")
    train(cfg)
    [run] = runs(tmp_path)
    params = run.data.params

    expected = run_params(OmegaConf.to_container(cfg, resolve=True))
    # (MLflow 3 logs a served model's model_config as params too: rnnlab names them as the run's own, adding none)
    assert set(params) == set(expected)
    assert all(params[name] == str(value) for name, value in expected.items())
    # Lightning's copy of the module's hyperparameters (cell, hidden_size, ... without their section) is gone
    assert not {"cell", "impl", "hidden_size", "embedding_dim", "task"} & set(params)
    assert not [name for name in params if name.startswith(NOT_PARAMS) or name in ("export_dir", "resume")]
    assert not [name for name in params if name.endswith("._partial_")]
    assert params["model.cell"] == "gru" and params["model.hidden_size"] == "8" and params["seed"] == "0"
    assert len(params) < 50
    # tags: the config's own, beside the project's
    assert run.data.tags["purpose"] == "baseline" and run.data.tags["cell"] == "gru"


def test_summary_metrics_are_one_value_at_step_0_and_epochs_at_their_last_step(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path))
    client = client_of(tmp_path)
    summaries = [name for name in client.get_run(result.run_id).data.metrics if name in SUMMARY_METRICS
                 or name.startswith("test_")]
    assert set(summaries) >= {*SUMMARY_METRICS, "test_acc", "test_loss"}
    for name in summaries:
        history = client.get_metric_history(result.run_id, name)
        assert [m.step for m in history] == [0], name  # a bar in MLflow's chart view, not a stray point
    for name in HISTORY:
        steps = [m.step for m in client.get_metric_history(result.run_id, name)]
        assert len(steps) == 2 and 0 < steps[0] < steps[1], name  # one per epoch, at the epoch's last step
    assert "epoch" not in client.get_run(result.run_id).data.metrics  # Lightning's counter: a chart of a staircase


def test_the_prepared_data_is_the_runs_dataset(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path))
    run = client_of(tmp_path).get_run(result.run_id)
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    data_sha256 = run.data.tags["data_sha256"]
    for context, folder in (("train", "train"), ("validation", "val"), ("test", "test")):
        dataset = inputs[context]
        assert dataset.name == f"imdb-{context}" and dataset.digest == data_sha256[:16]
        assert str((prepared_dir / folder).resolve()) in dataset.source


def test_a_resumed_run_logs_nothing_twice(prepared_dir, tmp_path):
    cfg = compose_tiny(prepared_dir, tmp_path)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(cfg, callbacks=[InterruptTraining()])  # Ctrl-C in the first epoch: KILLED, resumable
    [stopped] = runs(tmp_path)
    assert stopped.info.status == "KILLED"

    result = train(cfg)  # resume=auto: the same run, attempt 2

    assert result.run_id == stopped.info.run_id
    client = client_of(tmp_path)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rnnlab.attempt"] == "2"
    for name in ("n_params", "test_acc", "fit_time_s", "best_val_acc"):
        assert len(client.get_metric_history(result.run_id, name)) == 1, name
    assert len(run.inputs.dataset_inputs) == 3
