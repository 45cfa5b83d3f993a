"""The search report's uncertainty, time axis, edges and draws, on constructed trials (optuna.trial.create_trial:
no training), and the common-random-numbers sampler on in-memory studies (no training either)."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, create_trial

from rnnlab.compare import compare
from rnnlab.comparison.claims import judge_counting_failures
from rnnlab.composition import compose_config
from rnnlab.search import report
from rnnlab.search.budget import bootstrap_expected_max, expected_max, percentile_band
from rnnlab.search.final import claims_markdown, shared_setting_claims
from rnnlab.search.study import DRAW_ATTR, requeue_interrupted, same_overrides, sampler, storage, suggest
from tests.helpers.project import run_module
from tests.test_compare import folders, gradients_of, write_runs

SPACE = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "conf/search/default.yaml").space)
DISTRIBUTIONS = {"model.optimizer.lr": FloatDistribution(1e-4, 3e-2, log=True),
                 "model.hidden_size": CategoricalDistribution([32, 64, 128]),
                 "model.embedding_dim": CategoricalDistribution([32, 64, 128]),
                 "model.pooling": CategoricalDistribution(["last", "max", "mean"]),
                 "model.dropout": FloatDistribution(0.0, 0.5)}


def trials_of(values, seconds=10.0, draws=False, params=None) -> list[FrozenTrial]:
    made = []
    for number, value in enumerate(values):
        setting = params[number] if params else {"model.optimizer.lr": 1e-3, "model.hidden_size": 64,
                                                  "model.embedding_dim": 64, "model.pooling": "mean",
                                                  "model.dropout": 0.2}
        attrs = {"fit_time_s": seconds, "best_epoch": 1, **({DRAW_ATTR: number} if draws else {})}
        trial = create_trial(value=float(value), params=setting, distributions=DISTRIBUTIONS, user_attrs=attrs)
        trial.number = number
        made.append(trial)
    return made


def uniform(low, high, size, seed=0) -> list[float]:
    return list(np.random.default_rng(seed).uniform(low, high, size))


def test_the_bootstrap_band_contains_the_curve_and_narrows_with_more_trials():
    few, many = uniform(0.6, 0.9, 10, seed=1), uniform(0.6, 0.9, 80, seed=2)
    table = report.curves({"few": trials_of(few), "many": trials_of(many)})
    assert (table.band_low <= table.expected_best_val_acc + 1e-12).all()
    assert (table.expected_best_val_acc <= table.band_high + 1e-12).all()
    width = {cell: (rows.band_high - rows.band_low).to_numpy()[:10] for cell, rows in table.groupby("cell")}
    assert (width["many"] < width["few"]).all()  # the same budgets n = 1..10, judged on 8x the trials
    # the band is the curve's uncertainty, not the sd of one search's best: at n = N the sd is small, the band not
    assert table.sd.iloc[9] < (table.band_high - table.band_low).iloc[9]
    # a seeded Generator: the same band again
    again = report.curves({"few": trials_of(few), "many": trials_of(many)})
    assert again.band_low.equals(table.band_low) and again.band_high.equals(table.band_high)


def test_bootstrap_curves_are_expected_max_curves_of_resamples():
    values = uniform(0.6, 0.9, 12)
    boot = bootstrap_expected_max({"a": values}, resamples=50, seed=3)["a"]
    assert boot.shape == (50, 12) and np.all(np.diff(boot, axis=1) >= -1e-12)
    positions = np.random.default_rng(3).integers(0, 12, (50, 12))
    assert boot[0] == pytest.approx(expected_max(list(np.asarray(values)[positions[0]]))[0])
    low, high = percentile_band(boot)
    assert (low <= high).all()
    with pytest.raises(ValueError):
        bootstrap_expected_max({"a": values, "b": values[:5]}, paired=True)


def test_the_difference_interval_has_the_sign_of_clearly_separated_cells():
    trials = {"weak": trials_of(uniform(0.70, 0.72, 20, seed=4)),
              "strong": trials_of(uniform(0.85, 0.86, 20, seed=5))}
    boot = report.bootstrap(trials)
    diffs = report.differences(report.curves(trials, boot), boot)
    assert set(zip(diffs.a, diffs.b)) == {("strong", "weak")}  # the one ahead at n = N first
    assert (diffs.low > 0).all() and (diffs.difference > diffs.low).all() and (diffs.p_positive == 1).all()
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE},
                           report.curves(trials, boot), report.best_trials(trials), diffs,
                           report.leads(report.curves(trials, boot), boot))
    assert "strong ahead of weak beyond the 95% interval at every budget shown" in text


def test_identical_cells_are_ahead_of_each_other_half_the_time():
    values = uniform(0.7, 0.9, 20, seed=6)
    trials = {"a": trials_of(values), "b": trials_of(values)}
    boot = report.bootstrap(trials)
    diffs = report.differences(report.curves(trials, boot), boot)
    assert diffs.difference.abs().max() < 1e-12
    assert diffs.p_positive.between(0.4, 0.6).all()
    assert (diffs.low < 0).all() and (diffs.high > 0).all()
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE},
                           report.curves(trials, boot), report.best_trials(trials), diffs)
    assert "the 95% interval includes 0 at every budget shown" in text and "not resolved by 20 trials" in text


def test_trials_sharing_draws_are_resampled_in_pairs():
    values = uniform(0.7, 0.9, 20, seed=7)
    trials = {"a": trials_of(values, draws=True), "b": trials_of([v - 0.01 for v in values], draws=True)}
    assert report.shared_draws(trials) and not report.shared_draws({"a": trials_of(values), "b": trials["b"]})
    boot = report.bootstrap(trials)
    diffs = report.differences(report.curves(trials, boot), boot)
    # paired draw by draw, a constant difference has no uncertainty
    assert diffs.low.to_numpy() == pytest.approx(0.01) and diffs.high.to_numpy() == pytest.approx(0.01)
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE},
                           report.curves(trials, boot), report.best_trials(trials), diffs, paired=True)
    assert "common random numbers (every cell's k-th trial drew the same setting" in text


def test_edges_of_the_space():
    best = {"gru": {"setting": {"model.optimizer.lr": 0.029, "model.hidden_size": 128, "model.embedding_dim": 64,
                                "model.pooling": "last", "model.dropout": 0.25}},
            "rnn": {"setting": {"model.optimizer.lr": 1.1e-4, "model.hidden_size": 32, "model.embedding_dim": 32,
                                "model.pooling": "mean", "model.dropout": 0.49}},
            "lstm": {"setting": {"model.optimizer.lr": 0.0149, "model.hidden_size": 64, "model.embedding_dim": 64,
                                 "model.pooling": "max", "model.dropout": 0.34}}}
    found = report.edges(best, SPACE)
    assert found["gru"] == ["lr=0.029 (within 5% of the high end, 0.03)", "hidden_size=128 (the highest of 32, 64, 128)"]
    assert found["rnn"] == ["lr=0.00011 (within 5% of the low end, 0.0001)",
                            "hidden_size=32 (the lowest of 32, 64, 128)", "embedding_dim=32 (the lowest of 32, 64, 128)",
                            "dropout=0.49 (within 5% of the high end, 0.5)"]
    assert found["lstm"] == []  # lr 0.0149 is 12% of log-range from the top; pooling's choices have no order
    trials = {"gru": trials_of([0.8, 0.85], params=[best["lstm"]["setting"], best["gru"]["setting"]])}
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE},
                           report.curves(trials), report.best_trials(trials))
    assert ("At the edge of the space (the best setting may lie beyond it): gru: lr=0.029 (within 5% of the high "
            "end, 0.03), hidden_size=128 (the highest of 32, 64, 128).") in text


def test_the_time_axis():
    fast, slow = trials_of(uniform(0.7, 0.8, 10, seed=8), seconds=10), trials_of(uniform(0.8, 0.9, 10, seed=9),
                                                                                 seconds=30)
    # a trial without a recorded fit time: its wall time in the study
    del slow[0].user_attrs["fit_time_s"]
    slow[0].datetime_start = datetime.datetime(2025, 1, 1, 12, 0, 0)
    slow[0].datetime_complete = datetime.datetime(2025, 1, 1, 12, 0, 30)
    assert report.trial_time(slow[0]) == 30 and report.trial_time(fast[0]) == 10
    table = report.curves({"fast": fast, "slow": slow})
    by = {cell: rows.set_index("trials") for cell, rows in table.groupby("cell")}
    assert by["fast"].expected_time_s[10] == pytest.approx(100) and by["slow"].expected_time_s[4] == pytest.approx(120)
    assert report.shown_times(table) == [60, 100]  # from one slow trial (30 s) to all fast ones (100 s)
    read = report.at_time(table, 60)
    assert read["fast"][0] == pytest.approx(by["fast"].expected_best_val_acc[6])
    assert read["slow"][0] == pytest.approx(by["slow"].expected_best_val_acc[2])
    assert np.isnan(report.at_time(table, 200)["fast"][0])  # past the fast cell's 10 trials
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE}, table,
                           report.best_trials({"fast": fast, "slow": slow}))
    assert "| fast | 10 | 100 | 10.0 |" in text and "| slow | 10 | 300 | 30.0 |" in text


def test_draws_in_the_region_of_the_best_trials_are_counted():
    inside = {"model.optimizer.lr": 5e-3, "model.hidden_size": 64, "model.embedding_dim": 64, "model.pooling": "max",
              "model.dropout": 0.1}
    last = {**inside, "model.pooling": "last"}
    low = {**inside, "model.optimizer.lr": 1e-3}
    trials = {"a": trials_of([0.8] * 3, params=[inside, last, low]), "b": trials_of([0.8] * 3, params=[inside] * 3)}
    assert report.region_counts(trials) == {"a": 1, "b": 3}
    text = report.markdown({"sampler": "random", "proxy": [], "overrides": [], "seed": 0, "space": SPACE},
                           report.curves(trials), report.best_trials(trials), region=report.region_counts(trials))
    assert "these trials predate common random numbers" in text and "a 1 of 3, b 3 of 3." in text


def test_every_cell_draws_the_same_settings_in_turn():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = OmegaConf.create({"seed": 0, "sampler": "random"})
    space = OmegaConf.create(SPACE)
    drawn = {}
    for cell in ("rnn", "gru"):
        study = optuna.create_study(direction="maximize", sampler=sampler(settings, cell, 0))
        drawn[cell] = []
        for _ in range(3):
            trial = study.ask()
            drawn[cell].append(suggest(trial, space))
            study.tell(trial, 0.5)
        assert [t.user_attrs[DRAW_ATTR] for t in study.trials] == [0, 1, 2]
    assert drawn["rnn"] == drawn["gru"]  # trial k of every cell: the same setting
    assert drawn["rnn"][0] != drawn["rnn"][1]  # and each trial its own
    # another search seed: other draws
    other = optuna.create_study(sampler=sampler(OmegaConf.create({"seed": 1, "sampler": "random"}), "rnn", 0))
    assert suggest(other.ask(), space) != drawn["rnn"][0]
    # a later sitting (a new sampler on the same study) goes on with the next draws
    study = optuna.create_study(direction="maximize", sampler=sampler(settings, "lstm", 0))
    trial = study.ask()
    assert suggest(trial, space) == drawn["rnn"][0]
    study.tell(trial, 0.5)
    study.sampler = sampler(settings, "lstm", 1)
    assert suggest(study.ask(), space) == drawn["rnn"][1]


def test_a_retried_trial_keeps_the_cells_in_step(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = OmegaConf.create({"seed": 0, "sampler": "random", "dir": str(tmp_path)})
    space = OmegaConf.create(SPACE)
    steady = optuna.create_study(direction="maximize", sampler=sampler(settings, "rnn", 0))
    expected = []
    for _ in range(2):
        trial = steady.ask()
        expected.append(suggest(trial, space))
        steady.tell(trial, 0.5)
    study = optuna.create_study(direction="maximize", sampler=sampler(settings, "gru", 0))
    suggest(study.ask(), space)  # left RUNNING by a process that died during it: nobody holds its lock
    assert requeue_interrupted(settings, study) == [0]
    retry = study.ask()
    assert suggest(retry, space) == expected[0] and retry.user_attrs["retry_of"] == 0
    study.tell(retry, 0.5)
    after = study.ask()
    assert after.number == 2 and suggest(after, space) == expected[1]
    assert [t.user_attrs[DRAW_ATTR] for t in study.trials] == [0, 0, 1]


COMMITTED_SEARCH = Path(__file__).parents[1] / "data" / "search"
REPORT_FILES = ("report.md", "best.json", "expected_max.csv", "expected_max_diff.csv")


def test_the_committed_study_gives_the_committed_report(tmp_path):
    """Its studies stored `model=<cell>` (before the search named cells by model.cell) and no trial's impl: the
    report reads them as it did."""
    copy = tmp_path / "search"
    shutil.copytree(COMMITTED_SEARCH, copy)
    report.report(compose_config([f"search.dir={copy}"]).search)
    for name in REPORT_FILES:
        assert (copy / name).read_text() == (COMMITTED_SEARCH / name).read_text(), name


def test_a_study_that_stored_model_equals_cell_is_the_same_study():
    stored = optuna.load_study(study_name="rnn", storage=storage(OmegaConf.create({"dir": str(COMMITTED_SEARCH)})))
    assert stored.user_attrs["overrides"] == ["model=rnn", "model.impl=sequence"]
    assert same_overrides(stored.user_attrs["overrides"], ["model.cell=rnn", "model.impl=sequence"])
    assert not same_overrides(stored.user_attrs["overrides"], ["model.cell=gru", "model.impl=sequence"])
    assert not same_overrides(stored.user_attrs["overrides"], ["model.cell=rnn", "model.impl=fused"])
    assert not same_overrides(None, ["model.cell=rnn"])


@pytest.mark.slow
def test_the_committed_study_goes_on_under_model_cell(tmp_path):
    """`python -m rnnlab.search.run` on the committed journal, its budget done: the studies open (their stored
    `model=<cell>` is the run's `model.cell=<cell>`), nothing trains, trials.csv is written as it was."""
    copy = tmp_path / "search"
    shutil.copytree(COMMITTED_SEARCH, copy)
    result = run_module("rnnlab.search.run", f"search.dir={copy}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (copy / "trials.csv").read_text() == (COMMITTED_SEARCH / "trials.csv").read_text()
    # the journal gains only Optuna's create-study entries for studies it has (op 0, ignored on reading): no user
    # attribute rewritten, no trial
    before, after = (COMMITTED_SEARCH / "journal.log").read_text(), (copy / "journal.log").read_text()
    assert after.startswith(before)
    assert [json.loads(line)["op_code"] for line in after[len(before):].splitlines()] == [0, 0, 0]


# The search's claims report counts its failed final runs as compare does (rnnlab.comparison.failures).

def final_run(cell: str, seed: int, accuracy: float, curve: list[float]) -> dict:
    """A final run's JSON as rnnlab.search.final.final_runs writes it."""
    return {"cell": cell, "impl": "fused", "seed": seed, "test_acc": accuracy, "fit_time_s": 100.0 + seed,
            "setting": {"model.optimizer.lr": 0.01}, "trial": 3, "history": {"val_acc": curve}}


def test_the_search_report_counts_a_diverged_final_run_at_chance():
    results = [final_run("lstm", seed, accuracy, [0.85, accuracy]) for seed, accuracy in
               enumerate([0.880, 0.881, 0.882, 0.880])]
    results += [final_run("gru", seed, accuracy, [accuracy, 0.70]) for seed, accuracy in  # peaked at epoch 1
                enumerate([0.880, 0.881, 0.879])]
    results.append({"cell": "gru", "impl": "fused", "seed": 3, "diverged": "training diverged: train_loss is nan",
                    "setting": {"model.optimizer.lr": 0.01}, "trial": 3})
    tuned = judge_counting_failures(results)
    text = claims_markdown(tuned, None, results, {}, 20)
    assert tuned["implementations"]["fused"]["b_lstm_gru_similar_accuracy"]["verdict"] == "holds"
    as_chance = tuned["failures"]["as_chance"]["implementations"]["fused"]
    assert as_chance["b_lstm_gru_similar_accuracy"]["verdict"] == "inconclusive"
    assert "over seeds [0, 1, 2, 3]" in text
    assert "Failed runs (diverged): gru 1 of 4 (seed 3)." in text
    assert "gru 3 of 3 finished (seeds 0, 1, 2)" in text  # each ended 0.18 below its epoch-1 best
    assert "| gru-fused-0 | 1 | 0.8800 | 2 | 0.7000 | unstable |" in text
    assert "- **(b) LSTM ≈ GRU in accuracy (margin ±1 point):** inconclusive" in text.split(
        "counted as chance (0.5 accuracy)")[1]


def test_the_search_report_says_in_one_line_when_no_final_run_failed():
    results = [final_run(cell, seed, 0.88, [0.87, 0.88]) for cell in ("lstm", "gru") for seed in range(3)]
    text = claims_markdown(judge_counting_failures(results), None, results, {}, 20)
    assert "## Failed runs: none\n\nAll 6 runs finished" in text and "counted as chance" not in text


def test_the_shared_column_is_compares_report_with_its_family_and_the_tuned_family_says_what_it_holds(tmp_path):
    # the pipeline's runs and its gradient measurement: compare's family holds (a), (b), (c) and (d)'s two tests
    pipeline = write_runs(tmp_path / "train", "fused", {"rnn": ([0.750, 0.760, 0.755], [50, 52, 51]),
                                                         "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
                                                         "gru": ([0.871, 0.870, 0.872], [100, 104, 103])})
    (tmp_path / "findings").mkdir()
    (tmp_path / "findings" / "gradients.json").write_text(
        json.dumps(gradients_of({"rnn": [5, 9, 7], "lstm": [50, 60, 55], "gru": [60, 70, 400]})))
    cfg = compose_config([*folders(tmp_path), *pipeline])
    compare(cfg)
    compares = json.loads((tmp_path / "compare" / "claims.json").read_text())["family"]
    shared = shared_setting_claims(cfg)
    assert shared["family"] == compares and compares["tests"] == len(compares["members"]) == 6 + 2
    # the tuned runs: no gradient measurement, so (a), (b) and (c) only
    results = [final_run(cell, seed, 0.80 + 0.03 * (cell != "rnn") + 0.001 * seed, [0.8, 0.8])
               for cell in ("rnn", "lstm", "gru") for seed in range(3)]
    tuned = judge_counting_failures(results)
    assert tuned["family"]["tests"] == len(tuned["family"]["members"]) == 6
    assert {m["claim"] for m in tuned["family"]["members"]} == {"a", "b", "c"}
    text = claims_markdown(tuned, shared, results, {}, 20)
    assert "This report makes 6 interval tests (the parts of (a), (b) and (c) on fused)" in text
    assert "(d) is not in it: the tuned runs have no gradient measurement" in text
    assert ("compare's own report (data/compare/claims.md), judged by the same code: a family of 8 interval tests "
            "(the parts of (a), (b) and (c) on fused, 6, and (d)'s 2, measured once)") in text
