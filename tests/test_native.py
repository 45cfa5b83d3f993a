"""What users of Hydra, Lightning and DVC expect: debug configs, the model group's choices, a job log, a quiet
terminal, git-ignored local and DVC files, and `dvc metrics` / `dvc plots` views that read well."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pytest

from rnnlab.cells import CELLS
from rnnlab.train import train
from tests.helpers.project import PROJECT_ROOT, run_dvc, run_module
from tests.helpers.training import compose_tiny, debug_runs, runs, tiny_overrides

# Lines a run printed before that said nothing about the run (all filtered by rnnlab.cli.quiet_noise)
NOISE = ("litlogger", "LeafSpec", "CloudPickle", "cloudpickle", "`weights_only` was not set",
         "Validating input example", "Downloading artifacts", "GPU available: False", "TPU available",
         "log_every_n_steps", "v_num", "\r", "system metrics")


@pytest.mark.parametrize("debug", ["fdr", "overfit", "limit"])
def test_debug_configs_finish_a_tagged_run(prepared_dir, tmp_path, debug):
    # max_epochs=2 keeps overfit (20 epochs) and limit (3) short here; fdr ignores it (one batch of each split)
    result = train(compose_tiny(prepared_dir, tmp_path, f"debug={debug}", "trainer.max_epochs=2"))
    assert not runs(tmp_path)  # imdb-cells: none; a debug run has an experiment of its own
    [run] = debug_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["debug"] == debug
    assert run.data.params["trainer.detect_anomaly"] == "True"
    artifacts = {a.path for a in mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(run.info.run_id)}
    if debug == "fdr":  # Lightning keeps no checkpoint: the model is tested in memory, nothing is served
        assert "test_acc" in result.metrics and result.best_checkpoint is None
        assert "checkpoints" not in artifacts and "model" not in artifacts
    else:
        assert {"checkpoints", "config.yaml"} <= artifacts and "test_acc" in run.data.metrics


def test_a_run_from_the_command_line_is_quiet_and_leaves_a_job_log(prepared_dir, tmp_path):
    overrides = [o for o in tiny_overrides(prepared_dir, tmp_path) if "progress_bar" not in o]
    result = run_module("rnnlab.train", *overrides, f"hydra.run.dir={tmp_path / 'job'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not [noise for noise in NOISE if noise in output], output
    log = (tmp_path / "job" / "train.log").read_text()
    [run] = runs(tmp_path)
    assert f"MLflow run {run.info.run_id}" in log and "test_acc" in log  # rnnlab's messages
    assert "`Trainer.fit` stopped" in log  # and Lightning's


def test_the_model_group_offers_the_cells_only(prepared_dir, tmp_path):
    shown = run_module("rnnlab.train", "--help", cwd=tmp_path)
    assert "model: bag, gru, lstm, rnn\n" in shown.stdout  # the three cells and the floor without recurrence
    assert "_encoder" not in shown.stdout  # the cells' shared settings live in model/_base/recurrent_module.yaml
    picked = run_module("rnnlab.train", "model=_base/recurrent_module", f"paths.prepared_dir={prepared_dir}", cwd=tmp_path)
    assert picked.returncode == 1 and picked.stderr.strip().splitlines() == [
        "train: error: model.cell is not set (Missing mandatory value: model.cell)"]


@pytest.mark.parametrize("path", ["conf/local/default.yaml", "dvc_plots/index.html"])
def test_machine_and_view_files_are_git_ignored(path):
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0, path
    assert subprocess.run(["git", "check-ignore", "-q", "conf/local/.gitkeep"], cwd=PROJECT_ROOT).returncode == 1


def test_dvc_metrics_are_numbers_in_few_columns():
    shown = run_dvc("metrics", "show", "--json", cwd=PROJECT_ROOT)
    assert shown.returncode == 0, shown.stderr
    files = json.loads(shown.stdout)[""]["data"]
    assert list(files) == ["data/compare/scores.json"]  # one row: the runs' own numbers are plain outputs
    columns = set()
    for group, numbers in files["data/compare/scores.json"]["data"].items():  # "<cell>-<impl>": {name: number}
        for name, value in numbers.items():
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (group, name, value)
            columns.add(f"{group}.{name}")
    # 4 numbers per cell x impl (and per baseline), not every run's: 7 groups at the default pipeline
    groups = {name.split(".")[0] for name in columns}
    assert len(groups) <= 7 and len(columns) == 4 * len(groups)
    assert {name.split(".")[1] for name in columns} == {"test_acc", "fit_time_s", "failure_rate", "unstable"}


def test_dvc_plots_give_each_cell_its_colour_and_label_the_axes(tmp_path):
    shown = run_dvc("plots", "show", "--json", "-o", str(tmp_path / "plots"), cwd=PROJECT_ROOT)  # images go there
    assert shown.returncode == 0, shown.stderr
    plots = json.loads(shown.stdout)["data"]
    [curves] = [p for name, p in plots.items() if name.startswith("Validation accuracy by epoch")]
    [scatter] = [p for name, p in plots.items() if name.startswith("Test accuracy against training time")]
    for plot, x_title in ((curves, "epoch"), (scatter, "training time (s, log scale)")):
        encoding = plot[0]["content"]["encoding"]
        assert encoding["color"]["field"] == "cell" and encoding["color"]["scale"]["domain"] == list(CELLS)
        assert encoding["x"]["title"] == x_title and encoding["y"]["title"] != "y"
    assert curves[0]["content"]["encoding"]["x"]["axis"]["format"] == "d"  # whole epochs
