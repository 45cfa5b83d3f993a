"""The equal-budget search: the expected-maximum arithmetic, and real searches on tiny data (Optuna's journal,
real training, a real sqlite MLflow store), including one killed mid-trial and resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from rnnlab.search.budget import decide_probability, expected_max, seeds_to_decide
from tests.helpers.interrupts import start, wait_for_first_checkpoint
from tests.helpers.project import run_module
from tests.helpers.training import tiny_overrides


def test_expected_max_matches_hand_values():
    # Two trials worth 0 and 1: one draw is 1 half the time; the best of two draws misses 1 a quarter of the time.
    means, sds = expected_max([1.0, 0.0], budgets=3)
    assert means == pytest.approx([0.5, 0.75, 0.875])
    assert sds == pytest.approx([0.5, np.sqrt(0.75 * 0.25), np.sqrt(0.875 * 0.125)])


def test_expected_max_grows_to_the_best_value():
    values = list(np.random.default_rng(0).uniform(0.6, 0.9, size=12))
    means, sds = expected_max(values, budgets=200)
    assert np.all(np.diff(means) >= 0)
    assert means[0] == pytest.approx(np.mean(values))
    assert means[-1] == pytest.approx(max(values), abs=1e-6) and sds[-1] < 1e-2
    with pytest.raises(ValueError):
        expected_max([])


def test_seeds_to_decide_follows_the_spread():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=5)
    base = (base - base.mean()) / base.std(ddof=1)  # sd exactly 1 before scaling
    narrow, wide = 0.85 + 0.002 * base, 0.85 + 0.006 * base
    few, many = seeds_to_decide(narrow, narrow + 0.0, 0.01), seeds_to_decide(wide, wide + 0.0, 0.01)
    assert few is not None and many is not None and 2 <= few < many
    # sd 0.006 each, difference 0: t(0.975, 2n - 2) * 0.006 * sqrt(2 / n) is 0.0104 at n = 4 (t = 2.447) and
    # 0.0088 at n = 5 (t = 2.306): five seeds put the interval inside +-0.01
    assert many == 5
    # a difference of exactly the margin can never be decided
    assert seeds_to_decide(narrow, narrow + 0.01, 0.01) is None


def spread_exactly(mean: float, sd: float, n: int = 5) -> np.ndarray:
    base = np.random.default_rng(1).normal(0, 1, size=n)
    return mean + sd * (base - base.mean()) / base.std(ddof=1)


def test_the_chance_to_decide_b_grows_with_seeds():
    lstm, gru = spread_exactly(0.875, 0.006), spread_exactly(0.880, 0.002)  # about the tuned runs
    chance = decide_probability(lstm, gru, 0.01, (5, 10, 20, 40))
    assert list(chance) == [5, 10, 20, 40]
    assert all(a < b for a, b in zip(list(chance.values()), list(chance.values())[1:]))
    assert 0.15 < chance[5] < 0.45 and chance[40] > 0.95
    assert decide_probability(lstm, gru, 0.01, (5, 10, 20, 40)) == chance  # a seeded Generator: the same figures
    # a stricter interval (Holm, in a family) decides less often
    assert decide_probability(lstm, gru, 0.01, (10,), level=0.99)[10] < chance[10]


def test_the_chance_to_decide_b_in_known_cases():
    # far apart or nearly identical: decided at once
    assert decide_probability(spread_exactly(0.85, 0.002), spread_exactly(0.90, 0.002), 0.01, (5,))[5] == 1.0
    assert decide_probability(spread_exactly(0.88, 0.0005), spread_exactly(0.88, 0.0005), 0.01, (5,))[5] == 1.0
    # a true difference of exactly the margin: decided only when the interval misses the margin, 5% of the time
    # for a 95% interval, whatever the number of seeds
    chance = decide_probability(spread_exactly(0.89, 0.004), spread_exactly(0.88, 0.004), 0.01, (5, 20))
    assert chance[5] == pytest.approx(0.05, abs=0.01) and chance[20] == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError):
        decide_probability([0.8, 0.81], [0.8, 0.82], 0.01, (1,))


def search_args(prepared_dir: Path, store: Path, *extra: str) -> list[str]:
    return [*tiny_overrides(prepared_dir, store), f"search.dir={store}/search", 'search.overrides=["model.impl=fused"]',
            'search.proxy=["trainer.max_epochs=2"]', f"hydra.run.dir={store}/out", *extra]


def trials_table(store: Path) -> pd.DataFrame:
    return pd.read_csv(store / "search" / "trials.csv")


def search_runs(store: Path, experiment: str = "search") -> list:
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def searched(prepared_dir, tmp_path_factory) -> Path:
    """Two cells, two trials each, then the report."""
    store = tmp_path_factory.mktemp("search")
    result = run_module("rnnlab.search.run", *search_args(prepared_dir, store, "search.cells=[rnn,gru]",
                                                           "search.trials=2"), cwd=store)
    assert result.returncode == 0, result.stderr[-3000:]
    report = run_module("rnnlab.search.report", *search_args(prepared_dir, store, "search.cells=[rnn,gru]"),
                        cwd=store)
    assert report.returncode == 0, report.stderr[-3000:]
    return store


def test_every_cell_gets_the_same_trials_as_child_runs_that_never_read_test(searched):
    table = trials_table(searched)
    assert sorted(table.groupby("cell").size().items()) == [("gru", 2), ("rnn", 2)]
    assert set(table.state) == {"COMPLETE"} and table.value.between(0, 1).all()
    runs = search_runs(searched)
    parents = {r.data.tags["cell"]: r.info.run_id for r in runs if "rnnlab.search_parent" in r.data.tags}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(parents) == ["gru", "rnn"] and len(children) == 4
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[run.data.params["model.cell"]]
        assert not [name for name in run.data.metrics if name.startswith("test_")]  # chosen on validation only
        assert run.info.run_id in set(table.user_attrs_mlflow_run_id)
    # every trial drew its own setting from the space, and trial k the same in every cell (common random numbers)
    assert table["params_model.optimizer.lr"].nunique() == 2
    assert (table.groupby("number")["params_model.optimizer.lr"].nunique() == 1).all()
    assert sorted(table.user_attrs_draw) == [0, 0, 1, 1]
    assert table["params_model.pooling"].isin(["last", "max", "mean"]).all()


def test_two_workers_share_the_budget_and_draw_what_one_worker_draws(searched, prepared_dir, tmp_path):
    """The same search as `searched`, by two worker processes at once (Hydra's joblib launcher): each cell gets
    exactly its trials, numbered once each, both workers train some, and trial k of each cell has the setting and
    the value one worker gave it (shared draws, the same seed)."""
    result = run_module("rnnlab.search.run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        "search.worker=0,1", *search_args(prepared_dir, tmp_path, "search.cells=[rnn,gru]",
                                                          "search.trials=2", f"hydra.sweep.dir={tmp_path}/sweep"),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    together, alone = trials_table(tmp_path), trials_table(searched)
    assert sorted(together.groupby("cell").size().items()) == [("gru", 2), ("rnn", 2)]
    assert set(together.state) == {"COMPLETE"}
    assert (together.groupby("cell")["number"].apply(sorted) == pd.Series({"gru": [0, 1], "rnn": [0, 1]})).all()
    assert set(together.user_attrs_worker) == {0, 1}
    drawn = [column for column in alone.columns if column.startswith("params_")]
    key = ["cell", "user_attrs_draw"]
    expected = alone.sort_values(key).reset_index(drop=True)
    found = together.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(found[key + drawn], expected[key + drawn])
    assert list(found.value) == pytest.approx(list(expected.value))
    children = [r for r in search_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}


def test_the_report_shows_expected_best_by_budget(searched):
    curves = pd.read_csv(searched / "search" / "expected_max.csv")
    table = trials_table(searched)
    for cell, rows in curves.groupby("cell"):
        values = table[table.cell == cell].value
        assert list(rows.trials) == [1, 2]
        assert rows.expected_best_val_acc.iloc[0] == pytest.approx(values.mean())
        assert rows.expected_best_val_acc.iloc[1] <= values.max() + 1e-9
    best = json.loads((searched / "search" / "best.json").read_text())
    assert best["rnn"]["best_val_acc"] == pytest.approx(table[table.cell == "rnn"].value.max())
    assert (searched / "search" / "expected_max.png").stat().st_size > 0
    assert "| rnn |" in (searched / "search" / "report.md").read_text()


def test_a_scan_cell_gets_the_same_budget_and_draws_and_runs_its_scan(prepared_dir, tmp_path):
    """search.overrides picks one implementation for every cell (fused here); minGRU has none such, so its trials
    run its parallel scan (rnnlab.cells.run_impl), and the study, each trial and each MLflow run say so. The budget
    and the draws are the classic cell's."""
    args = search_args(prepared_dir, tmp_path, "search.cells=[gru,mingru]")
    result = run_module("rnnlab.search.run", *args, "search.trials=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = trials_table(tmp_path)
    assert sorted(table.groupby("cell").size().items()) == [("gru", 2), ("mingru", 2)]
    assert set(table.state) == {"COMPLETE"}
    drawn = [column for column in table.columns if column.startswith("params_")]
    by_draw = {cell: rows.sort_values("user_attrs_draw")[["user_attrs_draw", *drawn]].reset_index(drop=True)
               for cell, rows in table.groupby("cell")}
    assert list(by_draw["gru"].user_attrs_draw) == [0, 1]
    pd.testing.assert_frame_equal(by_draw["mingru"], by_draw["gru"])  # draw k: the same setting in both cells
    assert dict(zip(table.cell, table.user_attrs_impl)) == {"gru": "fused", "mingru": "scan"}
    runs = [r for r in search_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert sorted((r.data.params["model.cell"], r.data.params["model.impl"]) for r in runs) == [
        ("gru", "fused"), ("gru", "fused"), ("mingru", "scan"), ("mingru", "scan")]
    parents = {r.data.tags["cell"]: r.data.params for r in search_runs(tmp_path) if "rnnlab.search_parent" in r.data.tags}
    assert {cell: params["search.impl"] for cell, params in parents.items()} == {"gru": "fused", "mingru": "scan"}
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "search" / "journal.log")))
    overrides = {cell: optuna.load_study(study_name=cell, storage=storage).user_attrs["overrides"]
                 for cell in ("gru", "mingru")}
    assert overrides["gru"][-2:] == ["model.cell=gru", "model.impl=fused"]
    assert overrides["mingru"][-3:] == ["model.cell=mingru", "model.impl=fused", "model.impl=scan"]
    made = run_module("rnnlab.search.report", *args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    text = (tmp_path / "search" / "report.md").read_text()
    every_run = next(line for line in text.splitlines() if line.startswith("Sampler:")).split("Implementation")[0]
    assert "model.embedding_dim=8" in every_run and "model.impl" not in every_run  # not one for all: per cell
    assert "Implementation per cell (the configured one where the cell has it, else its parallel scan: " \
           "rnnlab.cells.run_impl): gru fused, mingru scan." in text
    assert "| mingru |" in text and "common random numbers (every cell's k-th trial drew the same setting" in text


def test_a_study_refuses_other_settings_and_bad_spaces_in_one_line(searched, prepared_dir):
    other = run_module("rnnlab.search.run", *search_args(prepared_dir, searched, "search.cells=[rnn]",
                                                          "search.trials=3", 'search.proxy=["trainer.max_epochs=1"]'),
                       cwd=searched)
    assert other.returncode == 1 and "was run with proxy=" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    for bad, message in (("search.trials=0", "search.trials=0"), ("search.sampler=grid", "choose random | tpe"),
                         ("search.space={model.dropout:{low:0.5,high:0.1}}", "needs low < high"),
                         ("search.cells=[transformer]", "unknown cells")):
        result = run_module("rnnlab.search.run", *search_args(prepared_dir, searched, bad), cwd=searched)
        assert result.returncode == 1 and message in result.stderr, (bad, result.stderr[-2000:])
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(trials_table(searched)) == 4  # nothing was added


def test_final_runs_test_the_confirmed_settings_and_are_not_rerun(searched, prepared_dir):
    args = search_args(prepared_dir, searched, "search.cells=[rnn,gru]", "search.final.seeds=[0,1]",
                       "search.final.proxy_check=3", "search.final.confirm.top_k=2", "search.final.confirm.seeds=[0,1]")
    # a report before any confirmation run: the best proxy trials, said to lack confirmation (nothing trained yet)
    early = run_module("rnnlab.search.final", *args, "search.final.train=false", cwd=searched)
    assert early.returncode == 1 and "no final run" in early.stderr, early.stderr[-3000:]
    result = run_module("rnnlab.search.final", *args, cwd=searched)
    assert result.returncode == 0, result.stderr[-3000:]
    # confirmation: both trials of each cell (top 2) at the full budget over seeds 0 and 1, validation only
    confirmed = [json.loads(path.read_text()) for path in sorted((searched / "search" / "confirm").glob("*.json"))]
    assert sorted((r["cell"], r["trial"], r["seed"]) for r in confirmed) == sorted(
        (cell, trial, seed) for cell in ("rnn", "gru") for trial in (0, 1) for seed in (0, 1))
    confirm_runs = search_runs(searched, "search-confirm")
    assert len(confirm_runs) == 8
    assert all(not [m for m in run.data.metrics if m.startswith("test_")] for run in confirm_runs)
    assert all("test_acc" not in r and 0 <= r["best_val_acc"] <= 1 for r in confirmed)
    selection = json.loads((searched / "search" / "final.json").read_text())["selection"]
    for cell in ("rnn", "gru"):
        means = {trial: np.mean([r["best_val_acc"] for r in confirmed if (r["cell"], r["trial"]) == (cell, trial)])
                 for trial in (0, 1)}
        chosen = max(means, key=lambda trial: (means[trial], -trial))
        assert selection[cell]["chosen"] == chosen and selection[cell]["complete"]
        setting = next(r["setting"] for r in confirmed if (r["cell"], r["trial"]) == (cell, chosen))
        for seed in (0, 1):
            run = json.loads((searched / "search" / "final" / f"{cell}-seed{seed}.json").read_text())
            assert run["setting"] == setting and run["trial"] == chosen and run["seed"] == seed
            assert 0 <= run["test_acc"] <= 1
    check = json.loads((searched / "search" / "proxy_check.json").read_text())
    assert -1 <= check["spearman"] <= 1 and all(row["checked"] for row in check["chosen"])
    assert {(row["cell"], row["trial"]) for row in check["chosen"]} <= {
        (row["cell"], row["trial"]) for row in check["settings"]}
    claims = (searched / "search" / "claims.md").read_text()
    assert "| claim | shared setting | tuned |" in claims
    # no dvc repro in this folder, and no lstm among the cells
    assert "| b_lstm_gru_similar_accuracy | not run (dvc repro) | fused: not testable |" in claims
    assert "| **chosen** |" in claims and "Without all their confirmation runs" not in claims
    finals = len(search_runs(searched, "search-final"))
    assert finals == 4
    again = run_module("rnnlab.search.final", *args, "search.final.train=false", cwd=searched)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (searched / "search" / "claims.md").read_text() == claims  # the report again, from the files
    assert len(search_runs(searched, "search-final")) == finals
    # a rerun that may train: every confirmation and final run is on disk, nothing trains again
    rerun = run_module("rnnlab.search.final", *args, cwd=searched)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(search_runs(searched, "search-confirm")) == 8 and len(search_runs(searched, "search-final")) == finals
    # a result trained with other settings (the best changed as trials were added: another identity,
    # rnnlab.identity) is not reused
    path = searched / "search" / "final" / "rnn-seed0.json"
    stale = json.loads(path.read_text())
    identity, stale_setting = stale["settings_sha256"], stale["setting"]
    stale["setting"] = {**stale["setting"], "model.pooling": "not-the-best"}
    stale["settings_sha256"] = "0" * 64
    path.write_text(json.dumps(stale))
    third = run_module("rnnlab.search.final", *args, cwd=searched)
    assert third.returncode == 0 and "the best setting or the settings around it changed" in (
        third.stdout + third.stderr), third.stderr[-3000:]
    retrained = json.loads(path.read_text())
    assert retrained["setting"] == stale_setting and retrained["settings_sha256"] == identity
    assert len(search_runs(searched, "search-final")) == finals + 1  # that one alone: the others are on disk


@pytest.mark.slow
def test_a_killed_search_goes_on_and_its_trial_resumes_into_the_same_run(prepared_dir, tmp_path):
    # Long enough trials (100 epochs of 8 batches: seconds even on a quiet machine) that the kill lands inside
    # one, just after its first checkpoint.
    args = search_args(prepared_dir, tmp_path, "search.cells=[rnn]", "search.trials=2", "data.batch_size=1",
                       'search.proxy=["trainer.max_epochs=100"]')
    process = start([sys.executable, "-m", "rnnlab.search.run", *args], cwd=tmp_path)
    wait_for_first_checkpoint(process, tmp_path, poll=0.05)
    time.sleep(0.1)
    assert process.poll() is None, "the search ended before the kill: nothing to resume"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    [killed] = [r for r in search_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert killed.info.status == "RUNNING"

    result = subprocess.run([sys.executable, "-m", "rnnlab.search.run", *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 0 was interrupted" in result.stdout + result.stderr  # Hydra's log goes to stdout
    study = optuna.load_study(study_name="rnn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "search" / "journal.log"))))
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    retry = study.trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == study.trials[0].params
    assert retry.user_attrs["mlflow_run_id"] == killed.info.run_id  # resumed from its checkpoint, same run
    children = [r for r in search_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}


def proxy_trial(number: int, value: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(params={"model.optimizer.lr": 0.001 * (number + 1)},
                                     distributions={"model.optimizer.lr": optuna.distributions.FloatDistribution(
                                         1e-4, 1e-1)}, value=value)


def test_confirmation_chooses_the_best_validation_mean_not_the_best_proxy():
    from rnnlab.search.confirm import candidates, select

    trials = [proxy_trial(0, 0.90), proxy_trial(1, 0.80), proxy_trial(2, 0.70)]
    for number, trial in enumerate(trials):
        trial.number = number
    assert [t.number for t in candidates({"gru": trials}, 2)["gru"]] == [0, 1]
    # the proxy's favourite is unstable at the full budget: one seed diverged (chance), the others lower
    runs = [{"trial": 0, "seed": 0, "best_val_acc": 0.86}, {"trial": 0, "seed": 1, "diverged": "NaN loss"},
            {"trial": 0, "seed": 2, "best_val_acc": 0.88},
            {"trial": 1, "seed": 0, "best_val_acc": 0.84}, {"trial": 1, "seed": 1, "best_val_acc": 0.85},
            {"trial": 1, "seed": 2, "best_val_acc": 0.83}]
    chosen = select(trials[:2], runs, [0, 1, 2])
    assert chosen["complete"] and chosen["chosen"] == 1
    first = chosen["candidates"][0]
    assert first["diverged"] == 1 and first["mean_val_acc"] == pytest.approx((0.86 + 0.5 + 0.88) / 3)
    assert [c["chosen"] for c in chosen["candidates"]] == [False, True]
    # a candidate without all its seeds: nothing is chosen (the report keeps the proxy's best and says so)
    partial = select(trials[:2], runs[:-1], [0, 1, 2])
    assert not partial["complete"] and partial["chosen"] is None
