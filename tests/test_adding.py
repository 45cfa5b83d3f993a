"""The adding problem: the generator, real Lightning runs of every cell on it, and the length sweep."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from rnnlab.cli import UserError
from rnnlab.comparison.claims import adding_reach, judge_claims, judge_gradients
from rnnlab.composition import compose_config
from rnnlab.data.adding import AddingDataModule, adding_examples
from rnnlab.findings.adding import Row, beyond_edge, choose_lr, compose_run, first_below, grid_edge, make_task, sweep
from rnnlab.findings.adding_report import limit, limit_margins, summarise, table
from rnnlab.models.network import RecurrentNetwork
from rnnlab.models.recurrent_module import RecurrentModule
from rnnlab.train import build_data_and_model, train
from tests.helpers.project import PROJECT_ROOT, run_module

SIZES = ["data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=8", "data.eval_batch_size=8",
         "model.hidden_size=8", "trainer.max_epochs=2"]
TINY = ["data.seq_len=8", *SIZES, "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]


def compose_adding(tmp_path: Path, *overrides: str):
    return compose_config(["data=adding", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *TINY, *overrides])


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


# The sweep's budget, tiny: validated every 2 updates, up to 8; a threshold (2.0) that the first validation meets,
# so updates_to_threshold is 2 and the run stops there.
SWEEP = [*SIZES, "trainer.max_steps=8", "trainer.val_check_interval=2",
         "callbacks.reach_threshold.stopping_threshold=2.0"]


def adding_runs(tmp_path: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("adding").experiment_id])


def row(updates: int | None, test_mse: float = 0.1, lr: float = 0.01, best: float | None = 0.05) -> dict:
    return {"updates_to_threshold": updates, "test_mse": test_mse, "lr": lr, "best_val_mse": best,
            "baseline_mse": 0.17}


def test_limit_learned_and_chosen_lr_from_hand_made_results():
    runs = {"rnn": {"10": {"0": row(500), "1": row(None)},     # one seed learned: learned, no limit here
                    "25": {"0": row(None), "1": row(None)},    # every seed failed: the limit
                    "50": {"0": row(None), "1": row(750)}},    # learned again further on: the limit stays 25
            "gru": {"10": {"0": row(250), "1": row(250)}, "400": {"0": row(9000), "1": row(None)}},
            "lstm": {"100": {"0": row(None)}, "200": {"0": row(None)}}}
    assert limit(runs["rnn"]) == 25 and limit(runs["gru"]) is None and limit(runs["lstm"]) == 100
    results, limits = summarise(runs)
    assert limits == {"rnn": 25, "gru": None, "lstm": 100}
    assert [results["rnn"][T]["learned"] for T in ("10", "25", "50")] == [True, False, True]
    assert results["rnn"]["10"]["seeds_learned"] == 1 and results["rnn"]["10"]["seeds"] == 2
    assert results["gru"]["400"]["updates_to_threshold_median"] == 9000  # over the seeds that got there
    assert results["lstm"]["100"]["updates_to_threshold_median"] is None
    # the lr: fewest updates to the threshold; if none got there, the lowest best validation MSE
    assert choose_lr({"a": row(750, lr=0.001), "b": row(500, lr=0.003), "c": row(None, lr=0.01, best=0.001)}) == 0.003
    assert choose_lr({"a": row(None, lr=0.001, best=0.1), "b": row(None, lr=0.003, best=0.02),
                      "c": {**row(None, lr=0.01, best=None), "diverged": "training diverged"}}) == 0.003
    assert first_below([(2, 0.5), (4, 0.009), (6, 0.001)], 0.01) == 4 and first_below([(2, 0.5)], 0.01) is None


def test_limits_state_their_margin_and_a_near_miss_is_borderline():
    """The issue's case: RNN seed 0 missed by 5% at T = 25 (seed 1 learned), both seeds failed at T = 50, seed 1
    by 30%: a clean limit at knife_edge 0.25, borderline at 0.5."""
    runs = {"rnn": {"25": {"0": row(None, best=0.0105), "1": row(6000, best=0.0098)},
                    "50": {"0": row(None, best=0.058), "1": row(None, best=0.013)}},
            "lstm": {"25": {"0": row(750, best=0.009)}, "50": {"0": row(1000, best=0.0095)}},
            "gru": {"25": {"0": {**row(None, best=None), "diverged": "training diverged"}}}}
    results, limits = summarise(runs)
    assert limits == {"rnn": 50, "lstm": None, "gru": 25}
    assert results["rnn"]["25"]["best_val_mse"] == {"0": 0.0105, "1": 0.0098}
    margins = limit_margins(runs, limits, 0.01, knife_edge=0.25)
    rnn = margins["rnn"]
    assert rnn["T"] == 50 and rnn["seeds"]["1"]["best_val_mse"] == 0.013
    assert rnn["seeds"]["0"]["margin"] == pytest.approx(4.8) and rnn["closest_margin"] == pytest.approx(0.3)
    assert not rnn["borderline"]
    assert limit_margins(runs, limits, 0.01, knife_edge=0.5)["rnn"]["borderline"]
    assert margins["lstm"] is None  # no limit, no margin
    assert margins["gru"] == {"T": 25, "seeds": {"0": {"best_val_mse": None, "margin": None}}, "closest_margin": None,
                              "borderline": False}  # diverged: failed, by no measurable margin
    report = {"runs": runs, "results": results, "limits": limits, "limit_margins": margins,
              "settings": {"threshold": 0.01, "knife_edge": 0.25, "lr": {"rnn": 0.001, "lstm": 0.01, "gru": 0.01},
                           "lr_search": {"length": 50}}}
    text = table(report)
    assert "| rnn | not recorded | 0.001 | 25 | 1/2 | never (0.0105, +5%), 6000 |" in text  # no settings.impls
    assert ("rnn 50 (best validation MSE seed 0 0.0580 +480%, seed 1 0.0130 +30% vs 0.01: a clean limit); "
            "lstm none; gru 25 (best validation MSE diverged vs 0.01: a clean limit)") in text
    borderline = {**report, "limit_margins": limit_margins(runs, limits, 0.01, 0.5),
                  "settings": {**report["settings"], "knife_edge": 0.5}}
    assert "seed 1 0.0130 +30% vs 0.01: borderline: within 50% of it)" in table(borderline)


def test_the_next_lr_past_a_winning_edge_keeps_the_edges_log_step():
    grid = [0.0003, 0.001, 0.003, 0.01]
    assert grid_edge(grid, 0.01) == "top" and grid_edge(grid, 0.0003) == "bottom" and grid_edge(grid, 0.003) is None
    assert beyond_edge(grid, "top") == 0.0333 and beyond_edge([*grid, 0.0333], "top") == 0.111
    assert beyond_edge(grid, "bottom") == 0.00009


def plant_search_rows(path: Path, rows: dict[float, dict], overrides: list[str]) -> None:
    """An earlier adding.json holding lr-search runs of the GRU at T = 4 with these outcomes: the sweep reuses a
    run of the same settings, so these are the search's results and it trains none of them."""
    planted = {}
    for lr, outcome in rows.items():
        task = make_task((), compose_run(Row("gru", "gru"), 4, 0, lr, overrides))
        planted[f"{lr:g}"] = {**row(None, lr=lr), **outcome, "settings_sha256": task.settings_sha256}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"lr_search": {"gru": planted}, "runs": {}}))


def test_a_winning_edge_grows_the_grid_until_bracketed_or_capped(tmp_path):
    """Planted search results: the top lr (0.01) wins, so 0.1 is tried; it wins too, so 1 is tried; 1 is worse:
    0.1 is bracketed. With one extension allowed, 0.1 wins at the edge and stays there. No run trains: the search's
    runs are reused and the one length, 4, is the search's."""
    out = tmp_path / "findings"
    overrides = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SWEEP]
    outcomes = {0.001: {"best_val_mse": 0.5}, 0.01: {"updates_to_threshold": 6}, 0.1: {"updates_to_threshold": 4},
                1.0: {"best_val_mse": 0.2}}
    plant_search_rows(out / "adding.json", outcomes, overrides)
    report = sweep(["gru"], [4], [0], {"length": 4, "lrs": [0.001, 0.01], "max_extensions": 2}, overrides, out)
    assert report["lr_grid"]["gru"] == {"lrs": [0.001, 0.01, 0.1, 1.0], "extensions": 2, "chosen": 0.1,
                                        "bracketed": True, "edge": None}
    assert report["settings"]["lr"] == {"gru": 0.1}
    assert list(report["lr_search"]["gru"]) == ["0.001", "0.01", "0.1", "1"]
    assert report["runs"]["gru"]["4"]["0"]["updates_to_threshold"] == 4  # the search's run at 0.1, reused
    assert "gru 0.1 of [0.001, 0.01, 0.1, 1] (2 extensions): bracketed" in table(report)
    assert not (tmp_path / "mlflow.db").exists()  # nothing trained

    plant_search_rows(out / "adding.json", outcomes, overrides)
    capped = sweep(["gru"], [4], [0], {"length": 4, "lrs": [0.001, 0.01], "max_extensions": 1}, overrides, out)
    assert capped["lr_grid"]["gru"] == {"lrs": [0.001, 0.01, 0.1], "extensions": 1, "chosen": 0.1,
                                        "bracketed": False, "edge": "top"}
    assert "gru 0.1 of [0.001, 0.01, 0.1] (1 extension): still at the top edge" in table(capped)
    assert not (tmp_path / "mlflow.db").exists()


def test_the_sweep_extends_real_grids_and_runs_the_orthogonal_variant(tmp_path):
    """Real tiny runs. With two lrs the winner is always at an edge, so each row's grid grows by one lr past it
    (0.01, 0.03 -> 0.00333 below or 0.09 above), which is trained; the cap (1) stops it there. The orthogonal RNN, a
    variant, goes through the same search and lengths; a rerun trains nothing."""
    out = tmp_path / "findings"
    overrides = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SWEEP]
    variants = {"rnn-orthogonal": ["model.cell=rnn", "model.init=orthogonal"]}
    lr_search = {"length": 4, "lrs": [0.01, 0.03], "max_extensions": 1}
    threads = torch.get_num_threads()
    try:
        report = sweep(["rnn"], [4, 6], [0], lr_search, overrides, out, variants=variants)
        assert len(adding_runs(tmp_path)) == 2 * 3 + 2 * 1  # per row 3 lrs searched at T = 4, then T = 6
        again = sweep(["rnn"], [4, 6], [0], lr_search, overrides, out, variants=variants)
    finally:
        torch.set_num_threads(threads)
    assert len(adding_runs(tmp_path)) == 8 and again["runs"] == report["runs"]
    found = json.loads((out / "adding.json").read_text())
    assert found["settings"]["variants"] == {"rnn-orthogonal": {"cell": "rnn", "overrides": variants["rnn-orthogonal"]}}
    trained = {(r.data.params["model.init"], float(r.data.params["model.optimizer.lr"]), r.data.params["data.seq_len"])
               for r in adding_runs(tmp_path)}
    for name, init in (("rnn", "pytorch"), ("rnn-orthogonal", "orthogonal")):
        grid = found["lr_grid"][name]
        assert grid["lrs"] in ([0.00333, 0.01, 0.03], [0.01, 0.03, 0.09]) and grid["extensions"] == 1
        assert grid["chosen"] == choose_lr(found["lr_search"][name]) == found["settings"]["lr"][name]
        assert grid["bracketed"] == (grid["chosen"] == grid["lrs"][1])
        assert grid["edge"] == (None if grid["bracketed"] else grid_edge(grid["lrs"], grid["chosen"]))
        assert {(init, lr, "4") for lr in grid["lrs"]} | {(init, grid["chosen"], "6")} <= trained
        assert set(found["runs"][name]) == {"4", "6"} and found["results"][name]["6"]["learned"]
        assert found["limits"][name] is None and found["limit_margins"][name] is None
        assert f"| {name} | sequence | {grid['chosen']:g} | 6 | 1/1 | 2 |" in table(found)
    assert (out / "adding.png").stat().st_size > 0


def test_claim_d_reads_the_sweeps_limits():
    runs = {"rnn": {"10": {"0": row(500)}, "25": {"0": row(None)}, "50": {"0": row(None)}},
            "lstm": {"10": {"0": row(250)}, "25": {"0": row(750)}, "50": {"0": row(None)}},
            "gru": {"10": {"0": row(250)}, "25": {"0": row(250)}, "50": {"0": row(1000)}}}
    results, limits = summarise(runs)
    adding = {"runs": runs, "results": results, "limits": limits, "complete": True}
    gradients = {"cap": 400, "cells": {cell: {"seeds": [0, 1], "init_reach": [3, 3], "trained_reach": reaches}
                                       for cell, reaches in (("rnn", [5, 7]), ("lstm", [50, 70]), ("gru", [60, 90]))}}
    claim = judge_claims([], gradients=gradients, adding=adding)[1]
    assert claim["verdict"] == "holds"
    assert claim["adding_learned_up_to"] == {"rnn": 10, "lstm": 25, "gru": 50} == adding_reach(adding)
    assert claim["adding_limit"] == {"rnn": 25, "lstm": 50, "gru": None}
    # a sweep still running, or a file of the older shape: no adding figures rather than wrong ones
    assert "adding_learned_up_to" not in judge_gradients(gradients, {**adding, "complete": False})
    older = {"results": {"rnn": {"10": {"test_mse": 0.2, "baseline_mse": 0.17}}}}
    assert "adding_limit" not in judge_gradients(gradients, older)


def test_sweep_records_updates_to_threshold_and_resumes(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where train() puts each run's working folder
    out = tmp_path / "findings"
    overrides = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SWEEP]
    threads = torch.get_num_threads()
    try:
        sweep(["gru"], [4, 8], [0], {"length": 4, "lrs": [0.01], "max_extensions": 2}, overrides, out)
        first = json.loads((out / "adding.json").read_text())
        assert len(adding_runs(tmp_path)) == 2
        # a killed sweep: the entry of one run is missing (it never finished); the rerun trains that one only
        del first["runs"]["gru"]["8"]["0"]
        first["complete"] = False
        (out / "adding.json").write_text(json.dumps(first))
        sweep(["gru"], [4, 8], [0], {"length": 4, "lrs": [0.01], "max_extensions": 2}, overrides, out)
    finally:
        torch.set_num_threads(threads)
    found = json.loads((out / "adding.json").read_text())
    runs = adding_runs(tmp_path)
    assert sorted(r.info.run_name for r in runs) == ["adding-T4-gru-seed0", *["adding-T8-gru-seed0"] * 2]
    assert found["complete"] and set(found["runs"]["gru"]) == {"4", "8"}
    assert found["runs"]["gru"]["4"]["0"] == first["runs"]["gru"]["4"]["0"]  # kept, not trained again
    for T in ("4", "8"):
        entry = found["runs"]["gru"][T]["0"]
        assert entry["updates_to_threshold"] == 2 and entry["updates"] == 2  # stopped at the first validation
        assert 0 <= entry["best_val_mse"] < 2.0 and entry["test_mse"] >= 0 and entry["lr"] == 0.01
        assert 0 < entry["baseline_mse"] < 1 and entry["mlflow_run_id"] in {r.info.run_id for r in runs}
        assert found["results"]["gru"][T]["learned"]
    assert found["limits"] == {"gru": None}
    settings = found["settings"]
    assert (settings["threshold"], settings["max_updates"], settings["validate_every"]) == (2.0, 8, 2)
    assert settings["lr"] == {"gru": 0.01} and settings["overrides"][0] == "experiment=adding"
    assert found["lr_search"] == {}  # one lr: nothing to search
    for run in runs:  # the sweep's budget comes from conf/experiment/adding.yaml
        assert run.data.params["trainer.val_check_interval"] == "2", run.info.run_name
        assert run.data.params["callbacks.reach_threshold.class"].endswith("EarlyStopping")
    assert (out / "adding.png").stat().st_size > 0
    assert list(scratch.iterdir()) == []  # runs' working folders are gone; checkpoints live in MLflow
    assert sorted(p.name for p in out.iterdir()) == ["adding.json", "adding.png"]  # no temporary file left


def test_each_row_runs_its_cells_own_implementation_of_the_configured_one():
    """The budget asks for model.impl=sequence: the article's cells run it, composed exactly as before (the
    committed adding.json's runs keep their identity); a parallel-scan cell has no sequence kernel: its scan."""
    for cell in ("rnn", "lstm", "gru"):
        cfg = compose_run(Row(cell, cell), 400, 0, 0.01, [])
        assert cfg == compose_config(["experiment=adding", f"model.cell={cell}", "data.seq_len=400", "seed=0",
                                      "model.optimizer.lr=0.01"])
        assert cfg.model.impl == "sequence"
    for cell in ("mingru", "minlstm", "qrnn"):
        assert compose_run(Row(cell, cell), 400, 0, 0.01, []).model.impl == "scan"
    # a configured implementation the cell has is kept
    assert compose_run(Row("qrnn", "qrnn"), 400, 0, 0.01, ["model.impl=explicit"]).model.impl == "explicit"


def test_a_scan_cell_is_a_row_of_the_sweep_up_to_length_400(tmp_path):
    """minGRU beside the GRU, real tiny runs at T = 4 and 400: its runs take its scan, and adding.json, the MLflow
    runs, the table and the figure say so."""
    out = tmp_path / "findings"
    overrides = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SWEEP]
    threads = torch.get_num_threads()
    try:
        report = sweep(["gru", "mingru"], [4, 400], [0], {"length": 4, "lrs": [0.01], "max_extensions": 0},
                       overrides, out)
    finally:
        torch.set_num_threads(threads)
    found = json.loads((out / "adding.json").read_text())
    assert found == report and found["complete"]
    assert found["settings"]["impls"] == {"gru": "sequence", "mingru": "scan"}
    for cell, impl in found["settings"]["impls"].items():
        for T in ("4", "400"):
            entry = found["runs"][cell][T]["0"]
            assert entry["impl"] == impl and entry["updates_to_threshold"] == 2 and entry["test_mse"] >= 0
    ran = sorted((r.data.params["model.cell"], r.data.params["model.impl"], r.data.params["data.seq_len"])
                 for r in adding_runs(tmp_path))
    assert ran == [("gru", "sequence", "4"), ("gru", "sequence", "400"), ("mingru", "scan", "4"),
                   ("mingru", "scan", "400")]
    text = table(found)
    assert "| mingru | scan | 0.01 | 400 | 1/1 | 2 |" in text and "| gru | sequence | 0.01 | 400 | 1/1 | 2 |" in text
    assert found["limits"] == {"gru": None, "mingru": None}
    assert (out / "adding.png").stat().st_size > 0


@pytest.mark.slow
def test_sweep_searches_each_cells_lr_in_worker_processes(tmp_path, capfd):
    """Two cells, two lrs each at T = 4, in 2 worker processes; a threshold no run reaches (limits everywhere),
    then every run kept by a rerun."""
    out = tmp_path / "findings"
    overrides = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *SWEEP,
                 "callbacks.reach_threshold.stopping_threshold=1e-9"]
    lr_search = {"length": 4, "lrs": [0.001, 0.03], "max_extensions": 0}  # no extension: two lrs, both tried
    report = sweep(["rnn", "lstm"], [4, 6], [0, 1], lr_search, overrides, out, workers=2)
    assert set(report["lr_search"]) == {"rnn", "lstm"}
    for cell in ("rnn", "lstm"):
        rows = report["lr_search"][cell]
        assert set(rows) == {"0.001", "0.03"} and all(r["updates_to_threshold"] is None for r in rows.values())
        best = min(rows.values(), key=lambda r: r["best_val_mse"])
        assert report["settings"]["lr"][cell] == best["lr"]
        assert report["runs"][cell]["4"]["0"]["mlflow_run_id"] == best["mlflow_run_id"]  # the search's run, reused
        for T in ("4", "6"):
            assert all(r["updates"] == 8 for r in report["runs"][cell][T].values())  # the whole budget
    assert report["limits"] == {"rnn": 4, "lstm": 4}
    noise = capfd.readouterr().err  # the workers' own output: fresh interpreters get the noise filters too
    assert "LeafSpec" not in noise and "litlogger" not in noise
    assert len(adding_runs(tmp_path)) == 2 * 2 + 2 * 3  # the search, then the runs not searched already
    again = sweep(["rnn", "lstm"], [4, 6], [0, 1], lr_search, overrides, out, workers=2)
    assert len(adding_runs(tmp_path)) == 10 and again["runs"] == report["runs"]


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
    ("findings.adding.seeds=[]", "adding: error: findings.adding.seeds=[] must list integers >= 0"),
    ("findings.adding.lr_search.lrs=[0.01,-1]",
     "adding: error: findings.adding.lr_search.lrs=[0.01, -1] must list positive learning rates"),
    ("findings.adding.workers=0", "adding: error: findings.adding.workers=0 must be a positive integer"),
    ('findings.adding.overrides=["callbacks.reach_threshold=null"]',
     "adding: error: callbacks.reach_threshold.stopping_threshold is missing: the sweep's runs stop, and count as "
     "learned, at that validation MSE (conf/experiment/adding.yaml)"),
    ("findings.adding.cells=[tcn]", "adding: error: findings.adding.cells=['tcn'] must list recurrent cells: choose "
     "from rnn | lstm | gru | mingru | minlstm | qrnn"),
    ("findings.adding.cells=[bag]", "adding: error: findings.adding.cells=['bag'] must list recurrent cells: choose "
     "from rnn | lstm | gru | mingru | minlstm | qrnn"),
    ("findings.adding.cells=[gru,gru]", "adding: error: findings.adding.cells=['gru', 'gru'] lists a cell twice"),
    ("findings.adding.lr_search.max_extensions=-1",
     "adding: error: findings.adding.lr_search.max_extensions=-1 must be an integer >= 0"),
    ("findings.adding.knife_edge=-0.1",
     "adding: error: findings.adding.knife_edge=-0.1 must be a number >= 0 (relative to the threshold)"),
    ("findings.adding.lr_search.lrs=[0.01,0.01]",
     "adding: error: findings.adding.lr_search.lrs=[0.01, 0.01] lists a learning rate twice"),
    ('+findings.adding.variants.x=["model.init=orthogonal"]',
     ("adding: error: findings.adding.variants.x=['model.init=orthogonal'] must set model.cell to one of "
      "rnn | lstm | gru | mingru | minlstm | qrnn, once")),
    ('+findings.adding.variants.rnn=["model.cell=rnn"]',
     "adding: error: findings.adding.variants.rnn: a variant needs a name of its own, not a cell's"),
    ('+findings.adding.variants.x=["model.cell=rnn","model.init=identity"]',
     "adding: error: model: init='identity' is unknown: choose pytorch | keras | orthogonal"),
    ('+findings.adding.variants.x=["model.cell=rnn","model.colour=red"]',
     "adding: error: findings.adding.variants.x or findings.adding.overrides: Could not override 'model.colour'."),
    ('findings.adding.overrides=["model.hidden_size=0"]', "adding: error: model: hidden_size=0 must be a positive integer"),
])
def test_sweep_cli_refuses_bad_settings_in_one_line(tmp_path, override, message):
    result = run_module("rnnlab.findings.adding", override, f"paths.findings_dir={tmp_path}/findings",
                        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/out",
                        cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == message, result.stderr[-2000:]
    assert not (tmp_path / "findings").exists()
