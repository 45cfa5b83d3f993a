"""The adding problem: the generator, real Lightning runs of every cell on it, and the length sweep."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import PROJECT_ROOT, run_module
from rnnlab.cli import UserError
from rnnlab.data.adding import AddingDataModule, adding_examples
from rnnlab.findings.adding import sweep
from rnnlab.models.network import RecurrentNetwork
from rnnlab.module import RecurrentModule
from rnnlab.train import build_data_and_model, train

SIZES = ["data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=8", "data.eval_batch_size=8",
         "model.hidden_size=8", "trainer.max_epochs=2"]
TINY = ["data.seq_len=8", *SIZES, "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]


def compose_adding(tmp_path: Path, *overrides: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["data=adding", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                                            *TINY, *overrides])


def test_examples_have_two_markers_and_their_sum_as_target():
    features, targets = adding_examples(200, 10, np.random.default_rng(0))
    assert features.shape == (200, 10, 2) and targets.shape == (200,)
    assert features.dtype == targets.dtype == np.float32
    values, markers = features[..., 0], features[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert (markers[:, :5].sum(axis=1) == 1).all() and (markers[:, 5:].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(targets, (values * markers).sum(axis=1, dtype=np.float32))
    assert 0.5 < targets.mean() < 1.5


def test_same_seed_same_data_and_splits_independent():
    def data(seed: int, train_size: int = 40) -> dict[str, list[torch.Tensor]]:
        datamodule = AddingDataModule(seq_len=12, train_size=train_size, val_size=20, test_size=20, seed=seed)
        datamodule.setup()
        return {name: dataset.tensors for name, dataset in datamodule.datasets.items()}

    first, again, other, bigger = data(3), data(3), data(4), data(3, train_size=80)
    for name in ("train", "val", "test"):
        for a, b in zip(first[name], again[name]):
            assert torch.equal(a, b)
        assert not torch.equal(first[name][0], other[name][0])
    assert not torch.equal(first["val"][0], first["test"][0])
    assert torch.equal(first["test"][0], bigger["test"][0])  # a bigger train split leaves test unchanged


def test_batches_are_shaped_like_imdb_batches():
    datamodule = AddingDataModule(seq_len=12, train_size=40, val_size=20, test_size=20, batch_size=16,
                                  eval_batch_size=8)
    datamodule.setup()
    batches = list(datamodule.train_dataloader())
    assert sorted(len(targets) for _, _, targets in batches) == [8, 16, 16]
    for features, lengths, targets in batches:
        assert features.shape == (len(targets), 12, 2) and features.dtype == torch.float32
        assert lengths.tolist() == [12] * len(targets)
        assert targets.dtype == torch.float32
    assert sum(len(batch[2]) for batch in datamodule.test_dataloader()) == 20
    assert datamodule.network_inputs == {"input_size": 2} and datamodule.task == "regression"


def test_short_sequences_and_ambiguous_inputs_are_refused(tmp_path):
    with pytest.raises(UserError, match="data: seq_len=1 must be at least 2"):
        build_data_and_model(compose_adding(tmp_path, "data.seq_len=1"))
    with pytest.raises(UserError, match="data: train_size=0 must be a positive integer"):
        build_data_and_model(compose_adding(tmp_path, "data.train_size=0"))
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        RecurrentNetwork(cell="gru", vocab_size=10, input_size=2)
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        RecurrentNetwork(cell="gru")
    with pytest.raises(ValueError, match=r"task='ranking' is unknown: choose binary \| regression"):
        RecurrentModule(cell="gru", input_size=2, task="ranking")


def test_continuous_inputs_skip_the_embedding():
    model = RecurrentNetwork(input_size=2, cell="gru", hidden_size=5)
    assert model.embedding is None
    outputs = model(torch.rand(3, 7, 2), torch.tensor([7, 7, 7]))
    assert outputs.shape == (3,)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_tiny_adding_run_per_cell_is_recorded(tmp_path, cell):
    result = train(compose_adding(tmp_path, f"model={cell}"))
    best_val_acc = result.metrics["best_val_acc"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("imdb-cells").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == result.run_id
    metrics = run.data.metrics
    assert result.metrics["test_mse"] == metrics["test_mse"]
    assert {"train_mse", "val_mse", "val_acc", "test_mse", "test_acc", "test_loss", "fit_time_s"} <= set(metrics)
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2  # one value per epoch
    assert metrics["test_mse"] == pytest.approx(metrics["test_loss"])  # the loss is the MSE
    assert 0 <= metrics["test_acc"] <= 1 and 0 <= best_val_acc <= 1
    assert run.data.params["data.seq_len"] == "8" and run.data.params["model.cell"] == cell
    assert run.data.tags["cell"] == cell and "data_sha256" not in run.data.tags  # generated: named by params


def test_sweep_writes_json_and_figure(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where train() puts each run's working folder
    threads = torch.get_num_threads()
    try:
        sweep(["rnn", "lstm"], [4, 8], [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SIZES],
              tmp_path / "findings")
    finally:
        torch.set_num_threads(threads)
    found = json.loads((tmp_path / "findings" / "adding.json").read_text())
    assert set(found["results"]) == {"rnn", "lstm"}
    for by_length in found["results"].values():
        assert set(by_length) == {"4", "8"}
        for row in by_length.values():
            assert row["test_mse"] >= 0 and 0 <= row["test_acc"] <= 1
            assert 0 < row["baseline_mse"] < 1  # ~1/6 on a large test set; 16 examples here
    assert (tmp_path / "findings" / "adding.png").stat().st_size > 0
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("adding").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["adding-T4-lstm-seed0", "adding-T4-rnn-seed0",
                                                     "adding-T8-lstm-seed0", "adding-T8-rnn-seed0"]
    for run in runs:  # the sweep's budget comes from conf/experiment/adding.yaml
        assert run.data.params["model.optimizer.lr"] == "0.01", run.info.run_name
        assert run.data.params["trainer.enable_progress_bar"] == "False", run.info.run_name
    assert found["settings"]["overrides"][0] == "experiment=adding"
    assert list(scratch.iterdir()) == []  # runs' working folders are gone; checkpoints live in MLflow


@pytest.mark.slow
def test_train_cli_runs_the_adding_problem(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_module("rnnlab.train", "data=adding", "model=gru", f"logger.tracking_uri={uri}", *TINY,
                        f"hydra.run.dir={tmp_path}/out", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("imdb-cells").experiment_id])
    assert run.info.status == "FINISHED" and "test_mse" in run.data.metrics
    assert (tmp_path / "out" / "config.yaml").is_file()


@pytest.mark.parametrize("override, message", [
    ("findings.adding.lengths=[1]", "adding: error: findings.adding.lengths=[1] must list integers >= 2"),
    ("pipeline.cells=[tcn]", "adding: error: pipeline.cells lists unknown cells ['tcn']: choose from rnn | lstm | gru"),
    ('findings.adding.overrides=["model.hidden_size=0"]', "adding: error: model: hidden_size=0 must be a positive integer"),
])
def test_sweep_cli_refuses_bad_settings_in_one_line(tmp_path, override, message):
    result = run_module("rnnlab.findings.adding", override, f"paths.findings_dir={tmp_path}/findings",
                        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/out",
                        cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == message, result.stderr[-2000:]
    assert not (tmp_path / "findings").exists()
