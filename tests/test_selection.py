"""`experiment=best`: chosen on validation accuracy alone, from the committed runs (rnnlab.comparison.selection)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.cli import UserError
from rnnlab.comparison.selection import CHANCE, Candidate, choose, floor_comparison, ranked, select
from rnnlab.composition import compose_config
from tests.helpers.project import PROJECT_ROOT, run_module

COMPARED = ("model", "data", "trainer")  # what a setting is: how the network is built, fed and trained


def test_a_candidate_best_on_test_but_worse_on_validation_is_not_chosen():
    on_test = Candidate("best on test", ["model=gru"], val_accs=[0.880, 0.882], test_accs=[0.900, 0.901])
    on_validation = Candidate("best on validation", ["model=lstm"], val_accs=[0.886, 0.884],
                              test_accs=[0.870, 0.871])
    unrecorded = Candidate("tried once, no committed run", [], note="no committed run")
    assert choose([on_test, on_validation, unrecorded]) is on_validation
    assert choose([on_validation, on_test]) is on_validation


def test_a_diverged_seed_counts_as_chance():
    steady = Candidate("steady", [], val_accs=[0.85, 0.85, 0.85])
    brittle = Candidate("brittle", [], val_accs=[0.89, 0.89, CHANCE], diverged=1)
    assert choose([brittle, steady]) is steady


def test_the_floor_without_recurrence_is_ranked_but_never_chosen():
    floor = Candidate("floor without recurrence, bag (plain)", ["model=bag"], val_accs=[0.890, 0.892], floor=True)
    cell = Candidate("shared setting, gru (fused)", ["model=gru"], val_accs=[0.880, 0.882])
    assert choose([floor, cell]) is cell
    assert ranked([cell, floor]) == [floor, cell]
    [row] = floor_comparison([floor, cell], cell)
    assert row["rank"] == 1 and row["of"] == 2 and row["lead"] == pytest.approx(-0.010)
    assert row["lead_ci95"][0] < -0.010 < row["lead_ci95"][1] < 0
    with pytest.raises(UserError, match="no recurrent candidate"):
        choose([floor])


def write(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_the_command_lists_every_candidate_and_tests_the_chosen_one_only(tmp_path):
    train, search = tmp_path / "train", tmp_path / "search"
    for seed in (0, 1):  # the shared GRU is ahead on test, the tuned LSTM on validation, the bag between them
        write(train / f"gru-fused-{seed}" / "scores.json", {"best_val_acc": 0.880, "test_acc": 0.9111})
        write(train / f"bag-plain-{seed}" / "scores.json", {"best_val_acc": 0.884 + seed / 1000, "test_acc": 0.8666})
        write(search / "final" / f"lstm-seed{seed}.json",
              {"cell": "lstm", "impl": "sequence", "seed": seed, "trial": 3, "best_val_acc": 0.890 + seed / 1000,
               "test_acc": 0.8777, "setting": {"model.optimizer.lr": 0.01, "model.pooling": "mean"}})
    write(search / "final" / "gru-seed0.json", {"cell": "gru", "impl": "sequence", "seed": 0, "trial": 5,
                                               "diverged": "NaN loss", "setting": {"model.optimizer.lr": 0.02}})
    args = [f"paths.train_dir={train}", f"search.dir={search}", "pipeline.cells=[gru]", "pipeline.impls=[fused]",
            "pipeline.seeds=[0,1]", "pipeline.baselines=[bag]", f"hydra.run.dir={tmp_path}/out"]
    result = run_module("rnnlab.comparison.selection", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((search / "experiment_best.json").read_text())
    assert report["chosen"].startswith("tuned lstm (search trial 3")
    assert report["overrides"] == ["model.cell=lstm", "model.impl=sequence", "model.optimizer.lr=0.01",
                                   "model.pooling=mean"]
    assert report["test_accs"] == [0.8777, 0.8777]
    listed = {c["name"].split(":")[0]: c for c in report["candidates"]}
    assert listed["tuned gru (search trial 5, sequence)"]["val_accs"] == [CHANCE]
    assert listed["shared setting, gru (fused)"]["mean_val_acc"] == pytest.approx(0.880)
    assert any(c["note"] == "no committed run" for c in report["candidates"])
    text = (search / "experiment_best.md").read_text()
    assert "0.8777" in text and "0.9111" not in text and "0.8666" not in text  # only the chosen one's test
    # the floor: listed, marked and ranked (second of four measured), never chosen; the chosen one's lead over it
    assert listed["floor without recurrence, bag (plain)"]["floor"] and not report["chosen"].startswith("floor")
    assert "| floor without recurrence, bag (plain) | 0, 1 | 0.8845 ± 0.0007 | 0 | floor (not a candidate) |" in text
    [floor] = report["floor"]
    assert floor["rank"] == 2 and floor["of"] == 4 and floor["lead"] == pytest.approx(0.0060)
    assert "bag (plain) ranks 2 of 4 measured settings; the chosen tuned lstm (search trial 3, sequence) is 0.60 " \
           "points above it on validation" in text
    # a broken result: one line, exit 1, the earlier report kept
    (search / "final" / "gru-seed0.json").write_text("{not json")
    broken = run_module("rnnlab.comparison.selection", *args, cwd=tmp_path)
    assert broken.returncode == 1 and len(broken.stderr.strip().splitlines()) == 1, broken.stderr
    assert broken.stderr.startswith("comparison.selection: error:") and "gru-seed0.json" in broken.stderr
    assert (search / "experiment_best.md").read_text() == text


def test_the_committed_experiment_best_is_the_validation_winner_of_the_committed_runs():
    cfg = compose_config([f"paths.train_dir={PROJECT_ROOT / 'data' / 'train'}",
                          f"search.dir={PROJECT_ROOT / 'data' / 'search'}"])
    candidates, chosen = select(cfg)
    assert len([c for c in candidates if c.val_accs]) > 1  # a choice was made among several measured settings
    best = compose_config(["experiment=best"])
    winner = compose_config(chosen.overrides)
    for section in COMPARED:
        assert best[section] == winner[section], section
