"""`dvc repro` of the data stages on a tiny archive, in a fresh copy of the project."""

from __future__ import annotations

import json

import pytest

from rnnlab.cells import ARTICLE_CELLS as CELLS  # the default pipeline.cells
from rnnlab.cli import UserError
from rnnlab.findings.gradients import run_dirs
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.params import compose_params
from rnnlab.pipeline import PlannedRun
from rnnlab.train import train
from tests.helpers.project import copy_project, run_dvc, run_module
from tests.helpers.training import compose_tiny


@pytest.mark.slow
def test_dvc_repro_data_stages(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    env = {"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}

    first = run_dvc("repro", "prepare", cwd=project, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'download'" in first.stdout and "Running stage 'prepare'" in first.stdout
    stats = json.loads((project / "data" / "prepare_stats.json").read_text())
    assert stats["test"]["reviews"] == 12
    assert (project / "data" / "prepared" / "tokenizer.json").is_file()

    second = run_dvc("repro", "prepare", cwd=project, env=env)
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout  # nothing changed, nothing re-runs
    status = run_dvc("status", "prepare", cwd=project)
    assert "up to date" in status.stdout, status.stdout

    # The data's counts are a record, not metrics: `dvc metrics show` keeps to the runs' scores
    shown = json.loads(run_dvc("metrics", "show", "--json", cwd=project).stdout)
    assert "data/prepare_stats.json" not in shown.get("", {}).get("data", {})


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every stage for real, the baseline and timing stages included: ~8 min on 2 loaded cores
def test_dvc_repro_end_to_end(tmp_path, tiny_archive):
    """download -> prepare -> train x3, baseline (the bag) -> gradients, adding, timing -> compare, with params.yaml
    composed for a tiny run (as `dvc exp run -S` would compose it), a metrics table listing every cell and the
    bag, and a change of code rerunning exactly the stages that execute it."""
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    small = ["pipeline.seeds=[0]", "pipeline.impls=[fused]", "pipeline.baselines=[bag]",
             "trainer.max_epochs=1", "data.batch_size=4",
             "model.embedding_dim=8", "model.hidden_size=8", "callbacks.progress_bar=null",
             "findings.gradients.length=6", "findings.adding.lengths=[10]", "findings.adding.seeds=[0]",
             "findings.adding.lr_search.lrs=[0.01]", "findings.adding.workers=1",
             "timing.rounds=2", "timing.warmup_batches=1", "timing.timed_batches=1",
             "+findings.adding.overrides=['trainer.max_steps=4','trainer.val_check_interval=2','data.train_size=64',"
             "'data.val_size=32','data.test_size=32']",
             f"logger.tracking_uri=sqlite:///{project}/mlflow.db"]
    compose_params(project / "params.yaml", small)
    env = {"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}
    # A folder from an earlier pipeline (another seed): the stages after training must not read it.
    stale = project / "data" / "train" / "rnn-fused-7"
    stale.mkdir(parents=True)
    (stale / "metrics.json").write_text(json.dumps({"cell": "rnn", "impl": "fused", "seed": 7, "test_acc": 1.0}))
    (stale / "model.ckpt").write_bytes(b"not a checkpoint")

    result = run_dvc("repro", cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for cell in CELLS:
        assert f"Running stage 'train@{cell}-fused-0'" in result.stdout
        metrics = json.loads((project / "data" / "train" / f"{cell}-fused-0" / "metrics.json").read_text())
        assert (metrics["cell"], metrics["impl"], metrics["seed"]) == (cell, "fused", 0)
        # params.yaml holds conf/ resolved: the run's name must still follow the stage's cell, not params.yaml's
        import mlflow

        run = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db").get_run(metrics["mlflow_run_id"])
        assert run.info.run_name == f"{cell}-fused-seed0" and run.data.tags["cell"] == cell
    assert not (project / "data" / "train" / "rnn-explicit-0").exists()  # only the planned runs train
    # the bag of embeddings: once per seed under its one implementation, beside the cells, never per impl
    assert "Running stage 'baseline@bag-0'" in result.stdout and "bag-fused" not in result.stdout
    bag = json.loads((project / "data" / "train" / "bag-plain-0" / "metrics.json").read_text())
    assert (bag["cell"], bag["impl"], bag["seed"]) == ("bag", "plain", 0)
    table = (project / "data" / "compare" / "table.md").read_text()
    assert all(f"| {cell} | fused | 1 |" in table for cell in CELLS) and "| bag | plain | 1 |" in table
    assert "| bag (no recurrence, impl plain) | 1 |" in (project / "data" / "compare" / "claims.md").read_text()
    claims = (project / "data" / "compare" / "claims.md").read_text()
    assert "in accuracy (margin ±1 point):** not testable" in claims  # one seed: no intervals over seeds
    # ...but the time parts of (a) and (c) come from the timing stage's rounds, named by the CPU they ran on
    timing = json.loads((project / "data" / "timing" / "timing.json").read_text())
    assert timing["order"] == [*(f"{cell}-fused" for cell in CELLS), "bag-plain"] * 2  # the floor timed too
    assert "judged from the controlled timing measurement" in claims
    assert f"(c) LSTM ≈ 2x GRU's time:** on this CPU ({timing['machine']['cpu_model']}): " in claims
    gradients = json.loads((project / "data" / "findings" / "gradients.json").read_text())
    assert set(gradients["cells"]) == set(CELLS)
    shown = json.loads(run_dvc("metrics", "show", "--json", cwd=project).stdout)[""]["data"]
    assert list(shown) == ["data/compare/scores.json"]  # one row: the means per cell, not every run's numbers
    scores = shown["data/compare/scores.json"]["data"]
    assert sorted(scores) == sorted([*(f"{cell}-fused" for cell in CELLS), "bag-plain"])
    assert all(set(row) == {"test_acc", "fit_time_s", "failure_rate", "unstable"}
               and all(isinstance(v, (int, float)) for v in row.values()) for row in scores.values())
    assert all(row["failure_rate"] == 0 for row in scores.values())  # nothing diverged at these settings

    again = run_dvc("repro", cwd=project, env=env)
    assert again.returncode == 0 and "Running stage" not in again.stdout

    # Code that training executes (here a module only the config names, callbacks.cpu_settings) changes:
    # the train stages and the adding stage, which trains too, are out of date; the data stages are not.
    with open(project / "src" / "rnnlab" / "run" / "cpu.py", "a") as f:
        f.write("# an edit\n")
    status = run_dvc("status", "--json", cwd=project)
    assert status.returncode == 0, status.stderr
    changed = json.loads(status.stdout)
    assert {f"train@{cell}-fused-0" for cell in CELLS} | {"baseline@bag-0", "adding"} <= set(changed), changed
    assert not {"download", "prepare"} & set(changed), changed
    for stage, changes in changed.items():
        assert changes == [{"changed deps": {"src/rnnlab/run/cpu.py": "modified"}}], (stage, changes)


def test_gradients_measure_every_seed_that_did_not_diverge(tmp_path):
    runs = [PlannedRun(cell, "fused", seed) for seed in (0, 1) for cell in ("rnn", "gru")]
    for run in runs:
        folder = tmp_path / run.name
        folder.mkdir()
        (folder / "model.ckpt").write_bytes(b"")
        record = {"seed": run.seed, **({"diverged": "training diverged"} if run.name == "gru-fused-0" else {})}
        (folder / "metrics.json").write_text(json.dumps(record))
    assert run_dirs(tmp_path, runs) == ({"rnn": [tmp_path / "rnn-fused-0", tmp_path / "rnn-fused-1"],
                                         "gru": [tmp_path / "gru-fused-1"]}, {"gru": ["gru-fused-0"]})
    (tmp_path / "gru-fused-1" / "metrics.json").write_text(json.dumps({"seed": 1, "diverged": "training diverged"}))
    with pytest.raises(UserError, match=r"every run of gru diverged \(gru-fused-0, gru-fused-1\)"):
        run_dirs(tmp_path, runs)


def test_the_gradients_stage_measures_every_seed(prepared_dir, tmp_path):
    # Real tiny runs as the train stages leave them: rnn and gru, seeds 0-2, fused; gru's seed 2 diverges (lr = inf)
    train_dir = tmp_path / "train"
    for cell in ("rnn", "gru"):
        for seed in (0, 1, 2):
            diverges = cell == "gru" and seed == 2
            cfg = compose_tiny(prepared_dir, tmp_path, f"model.cell={cell}", "model.impl=fused", f"seed={seed}",
                               "trainer.max_epochs=1", f"export_dir={train_dir}/{cell}-fused-{seed}",
                               *(["model.optimizer.lr=inf"] if diverges else []))
            if diverges:
                with pytest.raises(TrainingDiverged):
                    train(cfg)
            else:
                train(cfg)
    findings = tmp_path / "findings"
    result = run_module("rnnlab.findings.gradients", f"paths.prepared_dir={prepared_dir}",
                        f"paths.train_dir={train_dir}", f"paths.findings_dir={findings}", "pipeline.cells=[rnn,gru]",
                        "pipeline.impls=[fused]", "pipeline.seeds=[0,1,2]", "pipeline.baselines=[]",
                        "findings.gradients.length=5", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "left out, training diverged: gru-fused-2" in result.stderr
    measured = json.loads((findings / "gradients.json").read_text())
    assert measured["cap"] == 5 and measured["threshold"] == 1e-3
    assert [measured["cells"][cell]["seeds"] for cell in ("rnn", "gru")] == [[0, 1, 2], [0, 1]]
    assert measured["cells"]["gru"]["diverged"] == ["gru-fused-2"]
    for curves in measured["cells"].values():
        n = len(curves["seeds"])
        for name in ("init", "trained"):
            assert len(curves[f"{name}_reach"]) == n and all(1 <= r <= 5 for r in curves[f"{name}_reach"])
            assert len(curves[f"{name}_by_seed"]) == n and all(len(c) == 5 for c in curves[f"{name}_by_seed"])
            assert len(curves[name]) == 5
        # each seed starts from its own weights: their curves differ
        assert curves["init_by_seed"][0] != curves["init_by_seed"][1]
    # the mean curve lies within its band (lowest to highest seed)
    rnn = measured["cells"]["rnn"]
    assert all(min(c) <= m * (1 + 1e-9) and m <= max(c) * (1 + 1e-9)
               for m, c in zip(rnn["trained"], zip(*rnn["trained_by_seed"])))
    assert (findings / "gradients.png").stat().st_size > 0
