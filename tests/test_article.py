"""`python -m rnnlab.findings.article`: the article's setup for each cell over seeds, on tiny data, for real."""

from __future__ import annotations

import json

import mlflow

from tests.helpers.project import run_module
from tests.helpers.training import tiny_overrides


def article_runs(store) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("article")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_the_article_setup_over_seeds_is_reported_and_not_retrained(prepared_dir, tmp_path):
    # tiny_overrides come after experiment=article, so the tiny sizes win; the article's init and optimizer stay
    args = [*tiny_overrides(prepared_dir, tmp_path), "data.vocab_size=null", "data.max_len=50",
            "pipeline.cells=[rnn,gru]", "findings.article.seeds=[0,1]",
            'findings.article.overrides=["model.impl=fused"]', f"paths.findings_dir={tmp_path}/findings",
            f"hydra.run.dir={tmp_path}/out"]
    result = run_module("rnnlab.findings.article", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {(r["cell"], r["seed"]): r for r in json.loads((tmp_path / "findings" / "article.json").read_text())["runs"]}
    assert sorted(runs) == [("gru", 0), ("gru", 1), ("rnn", 0), ("rnn", 1)]
    for run in runs.values():
        assert run["init"] == "keras" and run["settings"]["model"]["optimizer"]["_target_"] == "torch.optim.RMSprop"
        assert 0 <= run["test_acc"] <= 1
    table = (tmp_path / "findings" / "article.md").read_text()
    assert "| simple RNN | 2 |" in table and "| GRU | 2 |" in table and "init keras" in table
    assert len(article_runs(tmp_path)) == 4

    again = run_module("rnnlab.findings.article", *args, cwd=tmp_path)
    assert again.returncode == 0 and len(article_runs(tmp_path)) == 4  # stored results: nothing retrained
    other = run_module("rnnlab.findings.article", *args, "model.init=pytorch", cwd=tmp_path)
    assert other.returncode == 0 and len(article_runs(tmp_path)) == 8  # other settings: every run trained again
    assert json.loads((tmp_path / "findings" / "article" / "rnn-seed0.json").read_text())["init"] == "pytorch"


def test_bad_seeds_are_one_line(tmp_path):
    result = run_module("rnnlab.findings.article", "findings.article.seeds=[]", f"hydra.run.dir={tmp_path}/out",
                        cwd=tmp_path)
    assert result.returncode == 1 and "findings.article.seeds=[] must list integer seeds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
