"""What a run shows in MLflow: its config once as params, summary metrics at step 0, its data as datasets, tags.

Real tiny runs in a real sqlite store (tests/helpers/training.py)."""

from __future__ import annotations

import logging
import os

import pytest
from omegaconf import OmegaConf

from rnnlab.composition import compose_config
from rnnlab.run.history import HISTORY
from rnnlab.run.naming import description
from rnnlab.run.logger import SUMMARY_METRICS
from rnnlab.run.provenance import COUNT_PARAMS, run_params
from rnnlab.run.result import stored_result
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
    assert set(params) == set(expected) | set(COUNT_PARAMS.values())  # and the run's counts
    assert all(params[name] == str(value) for name, value in expected.items())
    # Lightning's copy of the module's hyperparameters (cell, hidden_size, ... without their section) is gone
    assert not {"cell", "impl", "hidden_size", "embedding_dim", "task"} & set(params)
    assert not [name for name in params if name.startswith(NOT_PARAMS) or name in ("export_dir", "resume")]
    assert not [name for name in params if name.endswith("._partial_")]
    assert params["model.cell"] == "gru" and params["model.hidden_size"] == "8" and params["seed"] == "0"
    assert len(params) < 50
    # tags: the config's own, beside the project's
    assert run.data.tags["purpose"] == "baseline" and run.data.tags["cell"] == "gru"
    # in the order the run page lists them (the order they were set): what describes the run, then bookkeeping
    order = [name for name in run.data.tags if not name.startswith("mlflow.")]
    described = [order.index(name) for name in ("cell", "impl", "device", "purpose")]
    bookkeeping = [order.index(name) for name in order if name.startswith("rnnlab.")]
    assert max(described) < min(bookkeeping), order


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


def test_the_runs_counts_are_params_and_read_back(prepared_dir, tmp_path):
    """Its size and the epochs it trained: one value each, params (no chart in MLflow's UI), not metrics."""
    result = train(compose_tiny(prepared_dir, tmp_path))
    client = client_of(tmp_path)
    run = client.get_run(result.run_id)
    assert not {"n_params", "epochs"} & set(run.data.metrics)
    assert run.data.params["trainer.epochs_trained"] == "2"
    assert int(run.data.params["model.n_params"]) > 0
    stored = stored_result(client, result.run_id, result.tracking_uri)
    assert stored.metrics["epochs"] == 2 and stored.metrics["n_params"] == int(run.data.params["model.n_params"])
    assert stored.metrics == result.metrics


def test_a_run_recorded_before_keeps_its_counts_as_metrics(tmp_path):
    """Runs logged before the counts were params hold them as metrics at step 0: read back from there."""
    client = client_of(tmp_path)
    run_id = client.create_run(client.create_experiment("older")).info.run_id
    for name, value in {"test_acc": 0.75, "test_loss": 0.5, "best_val_acc": 0.8, "fit_time_s": 3.0,
                        "train_samples_per_s": 100.0, "epochs": 4, "n_params": 1234}.items():
        client.log_metric(run_id, name, value, step=0)
    for epoch, (loss, acc) in enumerate([(0.7, 0.6), (0.6, 0.7), (0.5, 0.75), (0.45, 0.8)], start=1):
        for name, value in {"train_loss": loss, "val_loss": loss, "val_acc": acc}.items():
            client.log_metric(run_id, name, value, step=epoch)
    client.set_terminated(run_id)

    stored = stored_result(client, run_id, f"sqlite:///{tmp_path}/mlflow.db")

    assert stored.metrics["epochs"] == 4 and stored.metrics["n_params"] == 1234
    assert isinstance(stored.metrics["epochs"], int) and isinstance(stored.metrics["n_params"], int)
    assert stored.metrics["test_acc"] == 0.75


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
    for name in ("test_acc", "fit_time_s", "best_val_acc"):
        assert len(client.get_metric_history(result.run_id, name)) == 1, name
    assert run.data.params["trainer.epochs_trained"] == "2" and int(run.data.params["model.n_params"]) > 0
    assert len(run.inputs.dataset_inputs) == 3


def test_debug_runs_are_kept_apart(prepared_dir, tmp_path):
    """debug=fdr|overfit|limit: their own experiment, `<experiment>-debug`, and a name that says which."""
    train(compose_tiny(prepared_dir, tmp_path))
    debug = train(compose_tiny(prepared_dir, tmp_path, "debug=fdr"))
    client = client_of(tmp_path)
    [normal] = runs(tmp_path)  # imdb-cells holds the normal run alone
    assert normal.info.run_id != debug.run_id and "debug" not in normal.data.tags
    kept = client.get_run(debug.run_id)
    assert client.get_experiment(kept.info.experiment_id).name == "imdb-cells-debug"
    assert kept.info.run_name == "lstm-fused-seed0-fdr" and kept.data.tags["debug"] == "fdr"


def test_a_training_run_records_the_machines_load(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "logger.system_metrics_interval_s=0.5"))
    client = client_of(tmp_path)
    history = client.get_metric_history(result.run_id, "system/cpu_utilization_percentage")
    assert history and all(0 <= m.value <= 100 * os.cpu_count() for m in history)
    steps = [m.step for m in history]
    assert steps == list(range(len(steps)))  # one sample a step, none lost or repeated
    assert "system/system_memory_usage_megabytes" in client.get_run(result.run_id).data.metrics


def test_no_system_metrics_when_switched_off(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "logger.system_metrics_interval_s=null"))
    assert not [name for name in client_of(tmp_path).get_run(result.run_id).data.metrics if name.startswith("system/")]


def test_each_epoch_is_a_line_of_the_log(prepared_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="rnnlab.run.progress"):
        result = train(compose_tiny(prepared_dir, tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == "rnnlab.run.progress"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    val_acc = result.history["val_acc"]
    for line, acc in zip(lines, val_acc):
        assert f"val_acc {acc:.4f}" in line and "train_loss" in line and line.endswith(" s)"), line


def test_wiring_classes_are_no_params_and_chosen_classes_read_last_in_their_section():
    params = run_params(OmegaConf.to_container(compose_config([]), resolve=True))
    assert not [name for name in params if name.endswith("._target_")]
    assert params["model.optimizer.class"] == "torch.optim.Adam"  # a choice: it changes the run
    assert not {"trainer.class", "model.class", "data.class", "callbacks.cpu_settings.class"} & set(params)
    assert not [name for name in params if name.startswith("compare.")]  # the verdict rule: not the run's


def test_a_runs_description_lists_its_overrides_without_credentials():
    note = description(["model=gru", "logger.tracking_uri=http://ann:s3cret@host:5000"], "multirun/x")
    assert "- `model=gru`" in note and "http://***@host:5000" in note and "s3cret" not in note
    assert "multirun/x" in note
    assert "no overrides" in description([])
