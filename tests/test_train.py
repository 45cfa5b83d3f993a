"""Real Lightning training on tiny prepared data, recorded in a real sqlite MLflow store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import mlflow
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from rnnlab.cli import UserError
from rnnlab.composition import compose_config
from rnnlab.data.arrays import PreparedSplit
from rnnlab.models.recurrent_module import RecurrentModule, TrainingDiverged
from rnnlab.run.sweep import sweep_parent
from rnnlab.run.tags import SWEEP_PARENT
from rnnlab.train import check_trainer_settings, train
from tests.helpers.project import PROJECT_ROOT, run_module
from tests.helpers.servers import mlflow_server
from tests.helpers.training import (EXPERIMENT, compose_tiny, counted_examples, runs, sweep_runs, tiny_overrides,
                                    untracked_overrides)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_run_per_cell_and_impl_is_recorded(prepared_dir, tmp_path, cell, impl):
    cfg = compose_tiny(prepared_dir, tmp_path, f"model={cell}", f"model.impl={impl}", f"export_dir={tmp_path}/export")
    result = train(cfg)
    [run] = runs(tmp_path)
    assert result.run_id == run.info.run_id  # the caller gets its run back, no search needed
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FINISHED" and run.info.run_name == f"{cell}-{impl}-seed0"
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert {"train_loss", "val_loss", "val_acc", "test_acc", "test_loss", "fit_time_s", "epoch_time_s",
            "train_samples_per_s"} <= set(metrics)
    assert int(params["model.n_params"]) > 0 and params["trainer.epochs_trained"] == "2"  # counts: params
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2  # one value per epoch
    assert 0 <= metrics["test_acc"] <= 1 and metrics["fit_time_s"] > 0 and metrics["train_samples_per_s"] > 0
    assert params["model.cell"] == cell and params["model.impl"] == impl and params["trainer.max_epochs"] == "2"
    assert tags["cell"] == cell and tags["impl"] == impl
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    assert len(tags["data_sha256"]) == 64 and tags["device"].startswith("CPU")
    assert {"torch", "lightning", "mlflow", "python"} <= set(tags)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "learning_curves.png", "checkpoints"} <= artifacts
    # What train() returns is what the store and the DVC export hold.
    assert result.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert result.metrics["epochs"] == 2 and len(result.history["val_acc"]) == 2
    assert result.best_checkpoint is None  # train() from Python: a temporary working folder, now gone
    exported = json.loads((tmp_path / "export" / "metrics.json").read_text())
    assert exported["best_val_acc"] == pytest.approx(result.metrics["best_val_acc"])
    assert exported["test_acc"] == pytest.approx(metrics["test_acc"])
    assert exported["history"] == result.history and exported["mlflow_run_id"] == result.run_id
    assert (tmp_path / "export" / "model.ckpt").stat().st_size > 0
    assert f"cell: {cell}" in (tmp_path / "export" / "config.yaml").read_text()


def test_working_folder_keeps_the_best_checkpoint(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "trainer.max_epochs=1"), output_dir=tmp_path / "work")
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.best_checkpoint.is_relative_to(tmp_path / "work") and result.best_checkpoint.name == "best.ckpt"


def test_extra_callbacks_join_the_recipe(prepared_dir, tmp_path):
    import pytorch_lightning as pl

    class CountBatches(pl.Callback):
        seen = 0

        def on_train_batch_end(self, *args) -> None:
            CountBatches.seen += 1

    train(compose_tiny(prepared_dir, tmp_path, "trainer.max_epochs=1"), callbacks=[CountBatches()])
    assert CountBatches.seen == 2  # 8 training reviews in batches of 4


def test_epoch_time_leaves_validation_out(prepared_dir, tmp_path):
    import time

    import pytorch_lightning as pl

    pause = 2.0

    class SlowValidation(pl.Callback):
        def on_validation_batch_end(self, *args) -> None:
            time.sleep(pause)

    result = train(compose_tiny(prepared_dir, tmp_path, "trainer.max_epochs=1"), callbacks=[SlowValidation()])
    [epoch_time] = result.history["epoch_time_s"]
    # One slow validation batch: all of it in the fit's wall time, none of it in the epoch's training time
    # (however loaded the machine, which only lengthens both).
    assert result.metrics["fit_time_s"] - epoch_time >= pause


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_timer_waits_for_the_gpu_before_reading_the_clock():
    from rnnlab.run.timing import TrainingTimer

    timer = TrainingTimer()
    timer.device = torch.device("cuda", torch.cuda.current_device())
    x = torch.randn(4096, 4096, device=timer.device)
    start = timer.clock()
    for _ in range(50):  # queued in microseconds, tens of milliseconds of work
        x = torch.tanh(x @ x)
    measured = timer.clock() - start
    waited = time.perf_counter()
    torch.cuda.synchronize()  # nothing left to wait for: the clock read already waited
    assert time.perf_counter() - waited < 0.1 * measured


def test_same_seed_same_metrics(prepared_dir, tmp_path):
    a, b = (train(compose_tiny(prepared_dir, tmp_path / name, "model=gru")) for name in ("a", "b"))
    assert a.metrics["test_acc"] == b.metrics["test_acc"] and a.metrics["test_loss"] == b.metrics["test_loss"]
    for key in ("train_loss", "val_loss", "val_acc"):  # every epoch's value, bit for bit (timings aside)
        assert a.history[key] == b.history[key], key


def test_diverged_run_ends_failed(prepared_dir, tmp_path):
    cfg = compose_tiny(prepared_dir, tmp_path, "model.optimizer.lr=inf")
    with pytest.raises(TrainingDiverged, match="diverged"):
        train(cfg)
    [run] = runs(tmp_path)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("override, message", [
    ("model.optimizer.lr=-1", "train: error: model.optimizer: Invalid learning rate: -1"),
    ("model.cell=foo", "train: error: model: cell='foo' is unknown: choose rnn | lstm | gru"),
    ("model.impl=cuda", "train: error: model: impl='cuda' is unknown: choose fused | explicit"),
    ("model.pooling=sum", "train: error: model: pooling='sum' is unknown: choose last | max | mean"),
    ("model.init=bogus", "train: error: model: init='bogus' is unknown: choose pytorch | keras | orthogonal"),
    ("model.hidden_size=0", "train: error: model: hidden_size=0 must be a positive integer"),
    ("model.dropout=1.5", "train: error: model: dropout=1.5 must be a number in [0, 1)"),
    ("data.max_len=-5", "train: error: data: max_len=-5 must be a positive integer"),
    ("data.batch_size=0", "train: error: data: batch_size=0 must be a positive integer"),
    ("data.vocab_size=100000", "train: error: data: vocab_size=100000 exceeds the prepared vocabulary"),
    ("paths.prepared_dir=/nonexistent", "train: error: data: /nonexistent/tokenizer.json not found: run `dvc repro prepare` first"),
    ("callbacks.model_checkpoint=null", "train: error: callbacks.model_checkpoint is missing"),
    ("trainer.accelerator=tpu", "train: error: trainer: "),
    # Lightning reads these only once it fits, by when a run would be in the store (issue 21)
    ("trainer.max_epochs=abc", ("train: error: trainer: max_epochs='abc' must be a positive integer (-1 only "
                                "with trainer.max_steps or trainer.max_time as the budget)")),
    ("trainer.max_epochs=0", "train: error: trainer: max_epochs=0 must be a positive integer"),
    ("trainer.max_epochs=-1", "train: error: trainer: max_epochs=-1 must be a positive integer"),  # no end
    ("trainer.max_epochs=null", "train: error: trainer: max_epochs=None must be a positive integer"),
    ("+trainer.max_steps=0", "train: error: trainer: max_steps=0 must be a positive integer, or -1 (no limit)"),
    ("trainer.gradient_clip_val=-1", "train: error: trainer: gradient_clip_val=-1 must be a number >= 0, or null"),
    ("trainer.gradient_clip_val=abc", "train: error: trainer: gradient_clip_val='abc' must be a number >= 0"),
    ("seed=abc", "train: error: seed='abc' must be an integer"),
])
def test_user_errors_are_one_line_and_create_no_run(prepared_dir, tmp_path, override, message):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), override,
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert runs(tmp_path) == []  # refused before any MLflow run exists


@pytest.mark.parametrize("overrides", [
    ["trainer.max_epochs=-1", "+trainer.max_steps=3"],  # the budget in updates (experiment=adding)
    ["trainer.max_epochs=-1", "+trainer.max_time=00:00:00:01"],
    ["trainer.max_epochs=null", "+trainer.max_steps=3"],
    ["trainer.gradient_clip_val=null"],
    ["trainer.gradient_clip_val=0"],
    ["debug=fdr"], ["debug=limit"], ["debug=overfit"],
])
def test_trainer_settings_users_rely_on_are_accepted(prepared_dir, tmp_path, overrides):
    check_trainer_settings(compose_tiny(prepared_dir, tmp_path, *overrides))


@pytest.mark.parametrize("experiment", ["adding", "article", "best"])
def test_the_experiments_trainer_settings_are_accepted(experiment):
    check_trainer_settings(compose_config([f"experiment={experiment}"]))  # adding: max_epochs -1, max_steps


@pytest.mark.parametrize("overrides", [
    ["trainer=gpu", "model.impl=sequence"], ["trainer=ddp", "model.impl=sequence"],
    ["trainer.accelerator=mps", "model.impl=sequence"],
    ["trainer=gpu", "experiment=best"], ["trainer=gpu", "experiment=adding"],
])
def test_the_cpu_kernel_is_refused_on_other_accelerators(overrides):
    """Decided from the configured accelerator: no GPU needed. Running the explicit cells instead would record
    them as `sequence`."""
    with pytest.raises(UserError, match=r"^model.impl=sequence runs rnnlab's C\+\+ kernel on CPUs only, not with "
                                        r"trainer.accelerator=(gpu|mps): choose model.impl=fused"):
        check_trainer_settings(compose_config(overrides))


@pytest.mark.parametrize("overrides", [
    ["trainer=gpu", "experiment=best", "model.impl=fused"], ["trainer=gpu", "model.impl=explicit"],
    ["trainer=gpu", "debug=limit"], ["model.impl=sequence"], ["experiment=best"],
])
def test_gpu_settings_users_rely_on_are_accepted(overrides):
    cfg = compose_config(overrides)
    check_trainer_settings(cfg)
    if "trainer=gpu" in overrides:  # a debug config keeps the accelerator it is given
        assert cfg.trainer.accelerator == "gpu"


def test_the_cpu_kernel_refusal_is_one_line_and_creates_no_run(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "trainer=gpu", "model.impl=sequence",
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "train: error: model.impl=sequence runs rnnlab's C++ kernel on CPUs only, not with trainer.accelerator=gpu: "
        "choose model.impl=fused (cuDNN's kernels) or model.impl=explicit (the same cells, step by step)"]
    assert runs(tmp_path) == []


def test_an_unbounded_budget_trains_to_max_steps(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "trainer.max_epochs=-1", "+trainer.max_steps=5"))
    # 8 reviews in batches of 4: 2 updates an epoch, so the 5th ends the run in its third epoch, before validation
    assert runs(tmp_path)[0].info.status == "FINISHED" and result.metrics["epochs"] == 3
    assert len(result.history["val_acc"]) == 2


def test_divergence_is_one_line_from_the_command_line(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model.optimizer.lr=inf",
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("train: error: training diverged: train_loss is nan")
    [run] = runs(tmp_path)
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_multirun_is_one_parent_run_over_its_runs(prepared_dir, tmp_path):
    sweep = tmp_path / "multirun"
    result = run_module("rnnlab.train", "-m", "model=rnn,gru", *tiny_overrides(prepared_dir, tmp_path),
                        "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    [parent], found = sweep_runs(runs(tmp_path))
    assert sorted(r.data.tags["cell"] for r in found) == ["gru", "rnn"]
    assert all(r.info.status == "FINISHED" for r in found)
    assert {r.data.tags["sweep_id"] for r in found} == {str(sweep)} == {parent.data.tags[SWEEP_PARENT]}
    # nested: MLflow's runs list shows the sweep as one row, its runs under it
    assert {r.data.tags["mlflow.parentRunId"] for r in found} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.info.run_name == f"sweep-{tmp_path.name}/multirun"
    # each run's description: what it changed from the defaults
    for run in found:
        note = run.data.tags["mlflow.note.content"]
        assert f"`model={run.data.tags['cell']}`" in note and "`trainer.max_epochs=1`" in note, note
        assert "model=rnn,gru" not in note and str(sweep) in note

    # The job log: a line per epoch with its figures, the closing line naming the run and its folder; no
    # terminal, so no progress bar; Lightning's notices that say nothing about the run are gone
    job_log = (sweep / "0" / "train.log").read_text()
    assert re.search(r"epoch 1/1: train_acc [\d.]+, train_loss [\d.]+, val_acc [\d.]+, val_loss [\d.]+", job_log)
    rnn = next(r for r in found if r.data.tags["cell"] == "rnn")
    assert f"rnn-fused-seed0: run {rnn.info.run_id} in experiment {EXPERIMENT}; its folder: {sweep / '0'}" in job_log
    shown = result.stdout + result.stderr + job_log
    for noise in ("\r", "\x1b[", "v_num", "GPU available: False", "TPU available", "log_every_n_steps"):
        assert noise not in shown, noise


def test_runs_of_one_sweep_in_many_processes_share_one_parent(tmp_path):
    """Launchers that run a sweep's jobs in processes of their own (joblib, SLURM): each job asks for the parent
    run at its start; the first creates it, the others find it, however they interleave."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ask = ("import sys; from rnnlab.run.sweep import sweep_parent; "
           "print(sweep_parent(sys.argv[1], 'imdb-cells', sys.argv[2]))")
    jobs = [subprocess.Popen([sys.executable, "-c", ask, uri, "multirun/a"], stdout=subprocess.PIPE, text=True)
            for _ in range(4)]
    answers = {job.communicate(timeout=120)[0].strip() for job in jobs}
    assert all(job.returncode == 0 for job in jobs)
    [parent], others = sweep_runs(runs(tmp_path))
    assert answers == {parent.info.run_id} and not others
    assert sweep_parent(uri, EXPERIMENT, "multirun/b") != parent.info.run_id  # another sweep, another parent


@pytest.mark.slow
def test_ddp_sim_logs_one_run(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", "trainer=ddp_sim", *tiny_overrides(prepared_dir, tmp_path),
                        "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/out", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(tmp_path)  # two processes, one MLflow run
    assert run.info.status == "FINISHED"
    assert "test_acc" in run.data.metrics and "fit_time_s" in run.data.metrics


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2, 3])
def test_ddp_evaluation_counts_every_review_once(prepared_dir, tmp_path, ranks):
    """4 validation and 12 test reviews in batches of 4: on 2 ranks the test's 3 batches are shared 2 + 1 (padding
    would repeat one), on 3 ranks validation's one batch is cut so that each rank gets a part. The logged
    accuracies and losses are a one-process evaluation's of the same checkpoint. Training: 8 reviews in batches
    of 3 (3, 3, 2), on 2 ranks padded to 4 batches (one repeated), on 3 ranks one batch each of unequal sizes;
    samples/s counts the 8 reviews of the epoch once."""
    counts = tmp_path / "counts"
    result = run_module("rnnlab.train", "trainer=ddp_sim", f"trainer.devices={ranks}",
                        *tiny_overrides(prepared_dir, tmp_path), "trainer.max_epochs=1", f"export_dir={tmp_path}/export",
                        "data.batch_size=3",
                        "+callbacks.count._target_=tests.helpers.training.CountEvaluated",
                        f"+callbacks.count.folder={counts}", f"hydra.run.dir={tmp_path}/out", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("val", "test"):
        per_rank = counted_examples(counts, stage)
        assert len(per_rank) == ranks and all(per_rank)
        assert sum(per_rank) == len(PreparedSplit.load(prepared_dir / stage))
    [run] = runs(tmp_path)
    cfg = compose_tiny(prepared_dir, tmp_path)
    module = RecurrentModule.load_from_checkpoint(tmp_path / "export" / "model.ckpt", weights_only=True)
    one_process = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                             use_distributed_sampler=False)
    [validated] = one_process.validate(module, datamodule=instantiate(cfg.data))
    [tested] = one_process.test(module, datamodule=instantiate(cfg.data))
    for name, value in {**validated, **tested}.items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-6), name
    trained = run.data.metrics["train_samples_per_s"] * run.data.metrics["epoch_time_s"]  # one epoch's reviews
    assert trained == pytest.approx(len(PreparedSplit.load(prepared_dir / "train")), rel=1e-4)


def test_runs_go_to_a_tracking_server_from_the_environment(prepared_dir, tmp_path):
    """MLFLOW_TRACKING_URI (a team's server) overrides the default sqlite file: a real `mlflow server`."""
    with mlflow_server(tmp_path) as url:
        result = run_module("rnnlab.train", *untracked_overrides(prepared_dir, tmp_path), "trainer.max_epochs=1",
                            f"hydra.run.dir={tmp_path}/out", cwd=PROJECT_ROOT, env={"MLFLOW_TRACKING_URI": url})
        assert result.returncode == 0, result.stderr[-3000:]
        client = mlflow.MlflowClient(url)
        [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
        assert run.info.status == "FINISHED" and "test_acc" in run.data.metrics
        assert not (tmp_path / "mlflow.db").exists() and not (PROJECT_ROOT / "out").exists()
