"""The parallel-scan cells through the pipeline (`pipeline.scan_cells`, stage `scan@<cell>-<seed>`).

- planned once per seed with impl scan, beside the cells' matrix and the baselines; a cell in the other list than
  its own is one error line saying which list it belongs in;
- compare shows them as extra rows (table.md, claims.md, scores, plot data) and judges the article's claims on
  rnn, lstm and gru alone: adding them changes no verdict and no member of the Holm family;
- a slow test: `dvc repro` on tiny data trains scan@mingru-* and compare shows its row.
"""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from rnnlab.cells import SCAN_CELL_NAMES
from rnnlab.composition import compose_config
from rnnlab.pipeline import planned_runs
from rnnlab.params import compose_params
from tests.helpers.project import copy_project, run_dvc
from tests.test_compare import SEEDS, claims, run_command, run_compare, table_rows, write_run, write_runs

FIGURES = {"rnn": ([0.750, 0.760, 0.755], [50, 52, 51]), "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
           "gru": ([0.871, 0.870, 0.872], [100, 104, 103])}
MINGRU = ([0.880, 0.878, 0.879], [10, 11, 12])  # faster and more accurate than any article cell


def test_the_scan_cells_are_planned_once_per_seed_with_scan():
    pipeline = compose_config(["pipeline.scan_cells=[mingru,qrnn]", "pipeline.seeds=[0,1]",
                               "pipeline.baselines=[bag]"]).pipeline
    planned = [run.name for run in planned_runs(pipeline)]
    assert planned[-6:] == ["mingru-scan-0", "mingru-scan-1", "qrnn-scan-0", "qrnn-scan-1", "bag-plain-0",
                            "bag-plain-1"]
    assert len(planned) == len(pipeline.cells) * len(pipeline.impls) * 2 + 6
    assert set(SCAN_CELL_NAMES) == {"mingru", "minlstm", "qrnn"}


def test_the_default_pipeline_trains_no_scan_cell():
    """Off until the real-data results include them (conf/config.yaml)."""
    pipeline = compose_config([]).pipeline
    assert list(pipeline.scan_cells) == []
    assert not [run for run in planned_runs(pipeline) if run.impl == "scan"]


def test_a_config_without_scan_cells_plans_as_before():
    pipeline = OmegaConf.create({"cells": ["rnn"], "impls": ["fused"], "seeds": [0], "baselines": []})
    assert [run.name for run in planned_runs(pipeline)] == ["rnn-fused-0"]


@pytest.mark.parametrize("overrides, message", [
    (["pipeline.cells=[rnn,mingru]"], "pipeline.cells lists mingru, a parallel-scan cell (implementations "
                                      "explicit, scan): list it in pipeline.scan_cells"),
    (["pipeline.scan_cells=[gru]"], "pipeline.scan_cells lists gru, a cell without a parallel scan (it has fused, "
                                    "explicit, sequence): list it in pipeline.cells"),
    (["pipeline.scan_cells=[bag]"], "pipeline.scan_cells lists bag, which has no recurrence: list it in "
                                    "pipeline.baselines"),
    (["pipeline.baselines=[qrnn]"], "pipeline.baselines lists qrnn, a recurrent cell: list it in "
                                    "pipeline.scan_cells"),
    (["pipeline.scan_cells=[nope]"], "pipeline.scan_cells='nope' is unknown: choose mingru | minlstm | qrnn"),
    (["pipeline.impls=[scan]"], "pipeline.cells lists rnn, which has no implementation scan (it has fused, "
                                "explicit, sequence): take scan out of pipeline.impls"),
])
def test_a_cell_in_the_wrong_list_says_which_list(tmp_path, overrides, message):
    with pytest.raises(ValueError) as raised:
        planned_runs(compose_config(overrides).pipeline)
    assert str(raised.value) == message
    result = run_command(tmp_path, *overrides)  # the command: one line, nothing written
    assert result.returncode == 1 and result.stderr.strip() == f"compare: error: {message}"
    assert not (tmp_path / "compare").exists()


def scan_world(tmp_path) -> list[str]:
    """The article's cells (fused) and minGRU (scan), three seeds each; returns the pipeline that plans them."""
    pipeline = write_runs(tmp_path / "train", "fused", FIGURES)
    for seed, accuracy, time in zip(SEEDS, *MINGRU):
        write_run(tmp_path / "train", "mingru", "scan", seed, accuracy, time)
    return pipeline


def test_a_scan_cell_is_an_extra_row_that_changes_no_verdict(tmp_path):
    pipeline = scan_world(tmp_path)
    without = tmp_path / "without"
    shutil.copytree(tmp_path / "train", without / "train")
    run_compare(without, *pipeline)
    table = run_compare(tmp_path, *pipeline, "pipeline.scan_cells=[mingru]")
    rows = {row[0]: row for row in table_rows(table)}
    assert list(rows) == ["rnn", "lstm", "gru", "mingru"]
    assert rows["mingru"][:3] == ["mingru", "scan", "3"] and rows["mingru"][5] == "0.8790 ± 0.0010"
    assert "12 runs: 9 = 3 cells x 1 impls x 3 seeds" in table
    assert "3 of parallel-scan cells, once per seed (mingru: impl scan)" in table
    out = tmp_path / "compare"
    report = json.loads((out / "claims.json").read_text())
    before = json.loads((without / "compare" / "claims.json").read_text())
    assert list(claims(out)) == ["fused"]  # no "scan" implementation judged
    # The same verdicts and the same Holm family as without minGRU: faster and more accurate than the RNN, it
    # would break (a) if it were judged as a cell
    assert report["implementations"] == before["implementations"] and report["family"] == before["family"]
    assert report["implementations"]["fused"]["a_rnn_fastest_least_accurate"]["verdict"] == "holds"
    assert report["scan_cells"]["mingru"]["impl"] == "scan" and report["scan_cells"]["mingru"]["seeds"] == [0, 1, 2]
    text = (out / "claims.md").read_text()
    assert "| mingru (parallel scan, impl scan, not judged) | 3 | 0.8790 [" in text
    assert json.loads((out / "scores.json").read_text())["mingru-scan"]["test_acc"] == pytest.approx(0.879)
    assert "mingru-scan-0,mingru,scan,0,10.0,0.88" in (out / "accuracy_vs_time.csv").read_text()
    assert "1,mingru," in (out / "learning_curves.csv").read_text()


def test_a_scan_cells_gradient_reach_is_shown_not_tested(tmp_path):
    pipeline = scan_world(tmp_path)
    findings = tmp_path / "findings"
    findings.mkdir()
    reach = {"rnn": [20, 25, 22], "lstm": [400, 400, 400], "gru": [300, 350, 320]}
    measured = {cell: {"seeds": list(SEEDS), "trained_reach": r, "init_reach": r} for cell, r in reach.items()}
    (findings / "gradients.json").write_text(json.dumps({"cells": measured, "cap": 400, "threshold": 1e-3}))
    run_compare(tmp_path, *pipeline, "pipeline.scan_cells=[mingru]")
    before = json.loads((tmp_path / "compare" / "claims.json").read_text())["d_rnn_gradients_vanish"]
    measured["mingru"] = {"seeds": list(SEEDS), "trained_reach": [1, 1, 1], "init_reach": [1, 1, 1]}
    (findings / "gradients.json").write_text(json.dumps({"cells": measured, "cap": 400, "threshold": 1e-3}))
    run_compare(tmp_path, *pipeline, "pipeline.scan_cells=[mingru]")
    d = json.loads((tmp_path / "compare" / "claims.json").read_text())["d_rnn_gradients_vanish"]
    assert d["trained_reach"]["mingru"] == {"0": 1, "1": 1, "2": 1}
    assert d["parts"] == before["parts"] and d["verdict"] == before["verdict"] == "holds"
    assert "mingru 1, 1, 1 (1, 1, 1)" in (tmp_path / "compare" / "claims.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every stage for real, two cells: several minutes on 2 loaded cores
def test_dvc_repro_trains_the_scan_cells_and_compare_shows_them(tmp_path, tiny_archive):
    """pipeline.scan_cells=[mingru]: `dvc repro` trains scan@mingru-<seed> beside train@rnn-fused-<seed>, the
    gradients and timing stages measure it too, and compare shows its row while the claims stay on the RNN (not
    enough cells to judge, as without it)."""
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    small = ["pipeline.cells=[rnn]", "pipeline.impls=[fused]", "pipeline.scan_cells=[mingru]", "pipeline.seeds=[0]",
             "pipeline.baselines=[]", "trainer.max_epochs=1", "data.batch_size=4", "model.embedding_dim=8",
             "model.hidden_size=8", "callbacks.progress_bar=null", "findings.gradients.length=6",
             "findings.adding.lengths=[10]", "findings.adding.seeds=[0]", "findings.adding.lr_search.lrs=[0.01]",
             "findings.adding.workers=1", "timing.rounds=2", "timing.warmup_batches=1", "timing.timed_batches=1",
             "+findings.adding.overrides=['trainer.max_steps=4','trainer.val_check_interval=2','data.train_size=64',"
             "'data.val_size=32','data.test_size=32']",
             f"logger.tracking_uri=sqlite:///{project}/mlflow.db"]
    compose_params(project / "params.yaml", small)
    result = run_dvc("repro", cwd=project, env={"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Running stage 'scan@mingru-0'" in result.stdout and "Running stage 'train@rnn-fused-0'" in result.stdout
    metrics = json.loads((project / "data" / "train" / "mingru-scan-0" / "metrics.json").read_text())
    assert (metrics["cell"], metrics["impl"], metrics["seed"]) == ("mingru", "scan", 0)
    out = project / "data" / "compare"
    table = (out / "table.md").read_text()
    assert "| rnn | fused | 1 |" in table and "| mingru | scan | 1 |" in table, table
    claims_text = (out / "claims.md").read_text()
    assert "| mingru (parallel scan, impl scan, not judged) | 1 |" in claims_text
    report = json.loads((out / "claims.json").read_text())
    assert list(report["implementations"]) == ["fused"] and list(report["implementations"]["fused"]["cells"]) == ["rnn"]
    assert report["implementations"]["fused"]["a_rnn_fastest_least_accurate"]["verdict"] == "not testable"
    assert report["family"]["tests"] == 0
    gradients = json.loads((project / "data" / "findings" / "gradients.json").read_text())
    assert set(gradients["cells"]) == {"rnn", "mingru"}
    timing = json.loads((project / "data" / "timing" / "timing.json").read_text())
    assert timing["order"] == ["rnn-fused", "mingru-scan"] * 2
