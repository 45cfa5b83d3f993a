"""The compare stage: the claims report over seeds, judged from the pipeline's train-stage outputs, and the best
run registered as models:/rnnlab-imdb@champion.

Run folders are written by hand as the train stage writes them: metrics.json, and config.yaml composed from
conf/ with the stage's own overrides (model.cell, model.impl, seed), resolved. No training needed: for the
registry, real MLflow runs in a real sqlite store, each with a logged model entry (no files; compare reads none).
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

from rnnlab.cli import UserError
from rnnlab.compare import compare
from rnnlab.comparison.claims import (
    combine,
    describe,
    difference,
    holm,
    interval_test,
    judge_all,
    judge_claims,
    judge_counting_failures,
    judge_gradients,
    locate,
    t_interval,
)
from rnnlab.comparison.failures import curve
from rnnlab.composition import compose_config
from rnnlab.identity import timing_settings_sha256
from rnnlab.serve.registry import ALIAS, CHAMPION_URI, LOGGED_MODEL, REGISTERED_MODEL
from tests.helpers.project import run_module
from tests.helpers.training import runs, tiny_overrides

SEEDS = (0, 1, 2)


def write_run(train_dir: Path, cell: str, impl: str, seed: int, accuracy: float, time: float,
              *config_overrides: str, run_id: str | None = None) -> Path:
    """One run folder as `train@<cell>-<impl>-<seed>` leaves it; config_overrides: settings it was trained with;
    run_id: its MLflow run (metrics.json's mlflow_run_id), none by default so that no store is looked at."""
    folder = train_dir / f"{cell}-{impl}-{seed}"
    folder.mkdir(parents=True)
    metrics = {"cell": cell, "impl": impl, "seed": seed, "test_acc": accuracy, "fit_time_s": time,
               "train_samples_per_s": 22500 * 5 / time, "epochs": 5, "n_params": 1000, "device": "CPU test",
               "history": {"val_acc": [accuracy - 0.01, accuracy]}}
    if run_id:
        metrics["mlflow_run_id"] = run_id
    (folder / "metrics.json").write_text(json.dumps(metrics))
    config = compose_config([f"model.cell={cell}", f"model.impl={impl}", f"seed={seed}", *config_overrides])
    OmegaConf.save(config, folder / "config.yaml", resolve=True)
    return folder


def write_runs(train_dir: Path, impl: str, figures: dict[str, tuple[list[float], list[float]]]) -> list[str]:
    """figures: cell -> (test accuracy per seed, fit time per seed). Returns the pipeline that plans these runs."""
    for cell, (accuracies, times) in figures.items():
        for seed, accuracy, time in zip(SEEDS, accuracies, times):
            write_run(train_dir, cell, impl, seed, accuracy, time)
    return [f"pipeline.cells=[{','.join(figures)}]", f"pipeline.impls=[{impl}]",
            f"pipeline.seeds=[{','.join(map(str, SEEDS))}]", "pipeline.baselines=[]"]


def folders(tmp_path: Path) -> list[str]:
    return [f"paths.train_dir={tmp_path / 'train'}", f"paths.findings_dir={tmp_path / 'findings'}",
            f"paths.timing_dir={tmp_path / 'timing'}", f"paths.compare_dir={tmp_path / 'compare'}"]


def run_compare(tmp_path: Path, *overrides: str) -> str:
    """compare in this process, on conf/ with these overrides; returns table.md's text."""
    return compare(compose_config([*folders(tmp_path), *overrides]))


def run_command(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """The entry point, `python -m rnnlab.compare`, on conf/; Hydra's own outputs go under tmp_path."""
    return run_module("rnnlab.compare", *folders(tmp_path), *overrides, f"hydra.run.dir={tmp_path / 'hydra'}",
                      cwd=tmp_path)


def claims(out: Path) -> dict:
    return json.loads((out / "claims.json").read_text())["implementations"]


def table_rows(table: str) -> list[list[str]]:
    """The rows of the first table in `table` (the cells'; the runs' validation curves follow it)."""
    first = table.split("\n\n")[0]
    rows = [line.strip("|").split("|") for line in first.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row] for row in rows]


def test_the_articles_world_passes_every_claim(tmp_path):
    # RNN fastest and least accurate, LSTM and GRU within a fraction of a point, LSTM twice the GRU's time.
    pipeline = write_runs(tmp_path / "train", "explicit", {
        "rnn": ([0.750, 0.760, 0.755], [50, 52, 51]),
        "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
        "gru": ([0.871, 0.870, 0.872], [100, 104, 103]),
    })
    gradients = gradients_of({"rnn": [5, 9, 7], "lstm": [50, 60, 55], "gru": [60, 70, 400]})
    (tmp_path / "findings").mkdir()
    (tmp_path / "findings" / "gradients.json").write_text(json.dumps(gradients))
    run_compare(tmp_path, *pipeline)
    written = json.loads((tmp_path / "compare" / "claims.json").read_text())
    assert written["d_rnn_gradients_vanish"]["verdict"] == "holds"
    assert written["family"]["tests"] == 6 + 2 and written["family"]["gradient_tests"] == 2  # (d)'s two join
    said = (tmp_path / "compare" / "claims.md").read_text()
    assert "falls below 0.001 of its end value, capped at the review length, 400 steps" in said
    assert "8 interval tests (the parts of (a), (b) and (c) on explicit, 6, and (d)'s 2, measured once)" in said
    assert [m for m in written["family"]["members"] if m["claim"] == "d"] == [  # the family's record: its tests
        {"claim": "d", "impl": None, "test": "lstm / rnn reach"}, {"claim": "d", "impl": None, "test": "gru / rnn reach"}]
    report = claims(tmp_path / "compare")["explicit"]
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "holds"
    assert report["b_lstm_gru_similar_accuracy"]["verdict"] == "holds"
    assert report["c_lstm_twice_gru_time"]["verdict"] == "holds"
    assert report["c_lstm_twice_gru_time"]["lstm_over_gru_time"]["mean"] == pytest.approx(
        (200 / 100 + 210 / 104 + 204 / 103) / 3)
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "## Implementation: explicit" in text and "(c) LSTM ≈ 2x GRU's time:** on this CPU (test): holds" in text
    assert "per seed, trained (at initialisation): rnn 5, 9, 7 (3, 3, 3); lstm 50, 60, 55 (3, 3, 3)" in text
    # nothing failed: one line says so, and the verdicts are not repeated
    assert "## Failed runs: none\n\nAll 9 runs finished" in text and "counted as chance" not in text
    assert (tmp_path / "compare" / "accuracy_vs_time.png").stat().st_size > 0
    assert (tmp_path / "compare" / "learning_curves.csv").read_text().splitlines() == ["epoch,cell,val_acc"]  # no fused


def test_the_table_says_what_it_shows(tmp_path):
    pipeline = write_runs(tmp_path / "train", "explicit", {
        "rnn": ([0.750, 0.760, 0.755], [50, 52, 51]),
        "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
        "gru": ([0.871, 0.870, 0.872], [100, 104, 103]),
    })
    table = run_compare(tmp_path, *pipeline)
    assert (tmp_path / "compare" / "table.md").read_text() == table
    assert "| lstm | explicit | 3 | 0 of 3 (0%) | 0 of 3 | 0.8710 ± 0.0010 |" in table
    assert [row[0] for row in table_rows(table)] == ["rnn", "lstm", "gru"]
    cfg = compose_config([])
    model, data = cfg.model, cfg.data
    assert (f"Settings: embedding {model.embedding_dim}, hidden {model.hidden_size}, {model.num_layers} layer"
            in table)
    assert f"max_len {data.max_len}, vocabulary {data.vocab_size or cfg.prepare.vocab_size}, " in table
    assert f"batch {data.batch_size}, Adam lr {model.optimizer.lr}, {cfg.trainer.max_epochs} epochs at most." in table
    assert "9 runs = 3 cells x 1 impls x 3 seeds (rnn, lstm, gru x explicit x 0, 1, 2)." in table
    assert "Device: CPU test." in table


def test_claims_fail_where_the_figures_say_otherwise(tmp_path):
    # The fused cells on a CPU: the LSTM faster than the GRU, the RNN not the fastest, the GRU 2 points ahead.
    pipeline = write_runs(tmp_path / "train", "fused", {
        "rnn": ([0.750, 0.760, 0.755], [90, 92, 91]),
        "lstm": ([0.850, 0.852, 0.851], [80, 82, 81]),
        "gru": ([0.871, 0.870, 0.872], [200, 204, 203]),
    })
    run_compare(tmp_path, *pipeline)
    report = claims(tmp_path / "compare")["fused"]
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "does not hold"  # the RNN is slower than the LSTM
    assert [part["verdict"] for part in report["a_rnn_fastest_least_accurate"]["parts"]] == [
        "does not hold", "holds", "holds", "holds"]  # time vs lstm, vs gru; accuracy vs lstm, vs gru
    assert report["b_lstm_gru_similar_accuracy"]["verdict"] == "does not hold"
    assert report["c_lstm_twice_gru_time"]["verdict"] == "does not hold"
    assert (tmp_path / "compare" / "learning_curves.csv").read_text().splitlines() == [
        "epoch,cell,val_acc", "1,rnn,0.745", "2,rnn,0.755", "1,lstm,0.841", "2,lstm,0.851", "1,gru,0.861",
        "2,gru,0.871"]


def test_noisy_accuracies_are_inconclusive_not_similar(tmp_path):
    pipeline = write_runs(tmp_path / "train", "fused", {
        "lstm": ([0.80, 0.88, 0.84], [200, 200, 200]),
        "gru": ([0.85, 0.83, 0.87], [100, 100, 100]),
    })
    run_compare(tmp_path, *pipeline)
    report = claims(tmp_path / "compare")["fused"]
    assert report["b_lstm_gru_similar_accuracy"]["verdict"].startswith("inconclusive")
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "not testable"  # no RNN runs


def test_interval_figures():
    summary = describe([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert summary["mean"] == 2.0 and summary["sd"] == 1.0
    assert summary["ci95"] == pytest.approx([2 - 4.3027 / 3**0.5, 2 + 4.3027 / 3**0.5], abs=1e-4)
    assert describe([5.0])["ci95"] is None
    equal_spread = difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])  # Welch with equal variances: dof 4
    assert equal_spread["diff"] == 1.0
    assert equal_spread["ci95"] == pytest.approx([1 - 2.7764 * (2 / 3) ** 0.5, 1 + 2.7764 * (2 / 3) ** 0.5], abs=1e-4)
    assert difference([0.8, 0.8], [0.7, 0.7])["ci95"] == pytest.approx([0.1, 0.1])  # seeds that agree exactly


def test_only_the_planned_runs_enter_the_table(tmp_path):
    train = tmp_path / "train"
    for cell, accuracy, time in (("rnn", 0.7011, 51), ("lstm", 0.8022, 203), ("gru", 0.8033, 107)):
        write_run(train, cell, "fused", 0, accuracy, time)
    # Left by earlier pipelines: other seeds, the other implementation, other settings, a broken file.
    write_run(train, "rnn", "fused", 1, 0.6691, 991, "model.hidden_size=8")
    write_run(train, "lstm", "explicit", 0, 0.6692, 992)
    write_run(train, "gru", "fused", 7, 0.6693, 993)
    (train / "gru-fused-7" / "metrics.json").write_text("{not json")
    (train / "notes").mkdir()

    result = run_command(tmp_path, "pipeline.cells=[rnn,lstm,gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0]",
                         "pipeline.baselines=[]")

    assert result.returncode == 0, result.stderr
    table = (tmp_path / "compare" / "table.md").read_text()
    assert [row[:3] + row[5:6] for row in table_rows(table)] == [
        ["rnn", "fused", "1", "0.7011"], ["lstm", "fused", "1", "0.8022"], ["gru", "fused", "1", "0.8033"]]
    for stale in ("0.669", "991", "992", "993", "explicit"):
        assert stale not in table
    assert "3 runs = 3 cells x 1 impls x 1 seeds (rnn, lstm, gru x fused x 0)." in table
    # DVC's metrics: one file, per cell x impl of the pipeline, the means of the two numbers the article compares
    scores = json.loads((tmp_path / "compare" / "scores.json").read_text())
    counted = {"failure_rate": 0.0, "unstable": 0}
    assert scores == {"rnn-fused": {"test_acc": 0.7011, "fit_time_s": 51.0, **counted},
                      "lstm-fused": {"test_acc": 0.8022, "fit_time_s": 203.0, **counted},
                      "gru-fused": {"test_acc": 0.8033, "fit_time_s": 107.0, **counted}}
    points = (tmp_path / "compare" / "accuracy_vs_time.csv").read_text().splitlines()
    assert points == ["run,cell,impl,seed,fit_time_s,test_acc", "rnn-fused-0,rnn,fused,0,51.0,0.7011",
                      "lstm-fused-0,lstm,fused,0,203.0,0.8022", "gru-fused-0,gru,fused,0,107.0,0.8033"]
    assert not (tmp_path / "compare" / "summary.json").exists()
    assert result.stdout == table


ONE_RUN = ("pipeline.cells=[rnn]", "pipeline.impls=[fused]", "pipeline.seeds=[0]", "pipeline.baselines=[]")


def test_a_missing_planned_run_is_one_error_line(tmp_path):
    write_run(tmp_path / "train", "rnn", "fused", 0, 0.75, 50)
    result = run_command(tmp_path, "pipeline.cells=[rnn,gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0]",
                         "pipeline.baselines=[]")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"compare: error: {tmp_path / 'train' / 'gru-fused-0'} is missing: run gru-fused-0 of the pipeline "
        "has not been trained; run `dvc repro`"]
    assert not (tmp_path / "compare").exists()


def test_a_missing_key_is_one_error_line(tmp_path):
    path = write_run(tmp_path / "train", "rnn", "fused", 0, 0.75, 50) / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["fit_time_s"]
    path.write_text(json.dumps(metrics))
    result = run_command(tmp_path, *ONE_RUN)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"compare: error: {path} lacks key 'fit_time_s': run `dvc repro` to train rnn-fused-0 again"]
    assert not (tmp_path / "compare").exists()


def test_a_run_trained_with_other_settings_is_one_error_line(tmp_path):
    hidden_size = compose_config([]).model.hidden_size
    folder = write_run(tmp_path / "train", "rnn", "fused", 0, 0.75, 50, f"model.hidden_size={hidden_size // 2}")
    result = run_command(tmp_path, *ONE_RUN)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"compare: error: run rnn-fused-0 ({folder / 'config.yaml'}) was trained with "
        f"model.hidden_size={hidden_size // 2}; the pipeline now says {hidden_size}: run `dvc repro`"]
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize(("trained_with", "compared_with", "difference"), [
    (["data.max_len=300"], ["data.max_len=123"], "data.max_len=300; the pipeline now says 123"),
    (["model.pooling=max"], ["model.pooling=mean"], "model.pooling=max; the pipeline now says mean"),
    (["trainer.max_epochs=2"], ["trainer.max_epochs=3"], "trainer.max_epochs=2; the pipeline now says 3"),
    (["+model.extra=1"], [], "model.extra=1; the pipeline now says (not set)"),
    ([], ["+trainer.extra=true"], "trainer.extra=(not set); the pipeline now says true"),
])
def test_each_compared_section_is_checked(tmp_path, trained_with, compared_with, difference):
    write_run(tmp_path / "train", "rnn", "fused", 0, 0.75, 50, *trained_with)
    with pytest.raises(UserError) as error:
        run_compare(tmp_path, *ONE_RUN, *compared_with)
    assert f"was trained with {difference}: run `dvc repro`" in str(error.value)


def another_seed(folder: Path) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "seed": 3}))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda folder: (folder / "metrics.json").write_text("{not json"), "metrics.json is not valid JSON"),
    (lambda folder: (folder / "metrics.json").write_text("[]"), "metrics.json is not a JSON object"),
    (another_seed, "metrics.json holds run rnn-fused-3, not rnn-fused-0"),
    (lambda folder: (folder / "metrics.json").unlink(), "metrics.json is missing: run `dvc repro`"),
    (lambda folder: (folder / "config.yaml").unlink(), "config.yaml is missing"),
    (lambda folder: (folder / "config.yaml").write_text("seed: 0\nmodel: {}\n"), "config.yaml lacks key 'data'"),
    (lambda folder: (folder / "config.yaml").write_text("model: [1\n"), "config.yaml is not valid YAML"),
])
def test_a_damaged_run_folder_is_one_clear_error(tmp_path, damage, message):
    damage(write_run(tmp_path / "train", "rnn", "fused", 0, 0.75, 50))
    with pytest.raises(UserError) as error:
        run_compare(tmp_path, *ONE_RUN)
    assert message in str(error.value) and "\n" not in str(error.value)


# The champion: the pipeline's best run registered in the store its runs went to.

ACCURACIES = {"rnn": 0.75, "lstm": 0.87, "gru": 0.86}
THREE_CELLS = ("pipeline.cells=[rnn,lstm,gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0]",
               "pipeline.baselines=[]")


def runs_in_store(tmp_path: Path, logged: bool = True, accuracies: dict[str, float] = ACCURACIES) -> tuple[str, dict]:
    """The pipeline's runs (fused, seed 0) as MLflow runs in a sqlite store, each with a logged model entry unless
    not `logged`, and their folders naming them; returns (the store's URI, cell -> run id)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("imdb-cells", artifact_location=(tmp_path / "artifacts").as_uri())
    run_ids = {}
    for cell, accuracy in accuracies.items():
        run_id = client.create_run(experiment, run_name=f"{cell}-fused-seed0").info.run_id
        if logged:
            client.create_logged_model(experiment, name=LOGGED_MODEL, source_run_id=run_id)
        client.set_terminated(run_id, "FINISHED")
        write_run(tmp_path / "train", cell, "fused", 0, accuracy, 50, f"logger.tracking_uri='{uri}'", run_id=run_id)
        run_ids[cell] = run_id
    return uri, run_ids


def champion_run(uri: str) -> str:
    return mlflow.MlflowClient(uri).get_model_version_by_alias(REGISTERED_MODEL, ALIAS).run_id


def test_the_best_run_becomes_the_champion(tmp_path, capsys):
    uri, run_ids = runs_in_store(tmp_path)
    client = mlflow.MlflowClient(uri)

    result = run_command(tmp_path, *THREE_CELLS)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"compare: {CHAMPION_URI} is now lstm-fused-0 (run {run_ids['lstm']}, "
                                          "version 1)"]
    assert champion_run(uri) == run_ids["lstm"]
    version = client.get_model_version(REGISTERED_MODEL, "1")
    assert version.source.startswith("models:/m-") and version.tags == {"pipeline_run": "lstm-fused-0",
                                                                         "best_val_acc": "0.87", "test_acc": "0.87"}

    run_compare(tmp_path, *THREE_CELLS)  # the same best run: no new version
    assert "is still lstm-fused-0" in capsys.readouterr().err
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == 1

    rnn_path = tmp_path / "train" / "rnn-fused-0" / "metrics.json"
    rnn_path.write_text(json.dumps({**json.loads(rnn_path.read_text()), "test_acc": 0.95}))
    run_compare(tmp_path, *THREE_CELLS)  # the best on test, not on validation: chosen on validation only
    assert "is still lstm-fused-0" in capsys.readouterr().err

    metrics_path = tmp_path / "train" / "gru-fused-0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "history": {"val_acc": [0.5, 0.9, 0.8]}}))
    run_compare(tmp_path, *THREE_CELLS)  # gru retrained, now the best on validation: the alias moves
    assert f"is now gru-fused-0 (run {run_ids['gru']}, version 2)" in capsys.readouterr().err
    assert champion_run(uri) == run_ids["gru"]


def test_without_its_store_compare_still_works_and_says_so(tmp_path):
    runs_in_store(tmp_path)
    (tmp_path / "mlflow.db").rename(tmp_path / "moved.db")  # runs pulled through DVC onto another machine, say

    result = run_command(tmp_path, *THREE_CELLS)

    assert result.returncode == 0, result.stderr
    assert result.stdout == (tmp_path / "compare" / "table.md").read_text()
    assert result.stderr.splitlines() == [
        f"compare: note: the best run, lstm-fused-0, is not registered as the champion: no MLflow store at "
        f"sqlite:///{tmp_path / 'mlflow.db'} ({tmp_path / 'mlflow.db'} does not exist)"]
    assert not (tmp_path / "mlflow.db").exists()  # not created either


@pytest.mark.parametrize("case, says", [
    ("run-not-in-store", "Run with id=0123456789abcdef0123456789abcdef not found"),
    ("no-logged-model", "logged no model 'model'"),
    ("no-run-id", "metrics.json names no mlflow_run_id"),
])
def test_a_best_run_the_store_cannot_register_is_a_note(tmp_path, capsys, case, says):
    uri, run_ids = runs_in_store(tmp_path, logged=case != "no-logged-model")
    metrics_path = tmp_path / "train" / "lstm-fused-0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if case == "run-not-in-store":
        metrics["mlflow_run_id"] = "0123456789abcdef0123456789abcdef"
    elif case == "no-run-id":
        del metrics["mlflow_run_id"]
    metrics_path.write_text(json.dumps(metrics))

    run_compare(tmp_path, *THREE_CELLS)

    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("compare: ")]
    assert len(notes) == 1 and notes[0].startswith("compare: note: the best run, lstm-fused-0, is not registered")
    assert says in notes[0]
    assert mlflow.MlflowClient(uri).search_registered_models() == []


# The verdict rule (rnnlab.comparison.claims): holds / does not hold / inconclusive by intervals, Holm over a report.

def runs_of(figures: dict[str, tuple[list[float], list[float]]], impl: str = "sequence") -> list[dict]:
    """Run dicts as load_runs returns them (metrics.json's keys); figures: cell -> (accuracy, time) per seed."""
    return [{"cell": cell, "impl": impl, "seed": seed, "test_acc": accuracy, "fit_time_s": time,
             "train_samples_per_s": 22500 * 5 / time, "epochs": 5, "n_params": 1000, "device": "CPU test",
             "history": {"val_acc": [accuracy]}}
            for cell, (accuracies, times) in figures.items() for seed, accuracy, time in zip(SEEDS, accuracies, times)]


WORLD = {"rnn": ([0.750, 0.760, 0.755], [50, 52, 51]),  # every claim holds here
         "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
         "gru": ([0.871, 0.870, 0.872], [100, 104, 103])}


def judged(changes: dict, **settings) -> dict:
    figures = {cell: tuple(changes.get(cell, {}).get(key, WORLD[cell][k]) for k, key in enumerate(("acc", "time")))
               for cell in WORLD}
    return judge_all(runs_of(figures), **settings)["implementations"]["sequence"]


@pytest.mark.parametrize(("claim", "changes", "verdict"), [
    ("a_rnn_fastest_least_accurate", {}, "holds"),
    ("a_rnn_fastest_least_accurate", {"rnn": {"time": [250, 252, 251]}}, "does not hold"),  # slower than both
    ("a_rnn_fastest_least_accurate", {"rnn": {"time": [40, 120, 80]}}, "inconclusive"),  # time too noisy to say
    ("b_lstm_gru_similar_accuracy", {}, "holds"),
    ("b_lstm_gru_similar_accuracy", {"gru": {"acc": [0.890, 0.891, 0.892]}}, "does not hold"),  # GRU 2 points up
    ("b_lstm_gru_similar_accuracy", {"lstm": {"acc": [0.860, 0.880, 0.870]}}, "inconclusive"),
    ("c_lstm_twice_gru_time", {}, "holds"),
    ("c_lstm_twice_gru_time", {"lstm": {"time": [100, 105, 102]}}, "does not hold"),  # ratio 1
    ("c_lstm_twice_gru_time", {"lstm": {"time": [50, 180, 310]}}, "inconclusive"),  # 1.75 with ratios 0.5 ... 3
])
def test_each_claim_has_three_outcomes(claim, changes, verdict):
    result = judged(changes)[claim]
    assert result["verdict"] == verdict
    for test in result.get("parts") or [result["test"]]:  # every verdict is its adjusted interval against its region
        low, high = test["interval"]
        assert low <= test["estimate"] <= high and 0.95 <= test["level"] < 1


def test_compound_claim_a_combines_its_parts():
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "inconclusive"]) == "inconclusive"
    assert combine(["inconclusive", "does not hold"]) == "does not hold"  # one failing part decides
    # a non-significant time difference is not "not faster": the part is inconclusive, and so is (a)
    parts = judged({"rnn": {"time": [40, 120, 80]}})["a_rnn_fastest_least_accurate"]["parts"]
    assert [p["name"] for p in parts] == ["rnn − lstm time", "rnn − gru time", "rnn − lstm accuracy",
                                          "rnn − gru accuracy"]
    assert [p["verdict"] for p in parts] == ["inconclusive", "inconclusive", "holds", "holds"]


def gradients_of(trained_reach: dict[str, list[int]], cap: int = 400) -> dict:
    """gradients.json as rnnlab.findings.gradients writes it, seeds 0, 1, ... (curves left out: (d) reads reaches)"""
    return {"threshold": 1e-3, "cap": cap, "cells": {
        cell: {"seeds": list(range(len(reaches))), "trained_reach": reaches, "init_reach": [3] * len(reaches)}
        for cell, reaches in trained_reach.items()}}


def judged_d(trained_reach: dict[str, list[int]]) -> dict:
    """(d) judged as compare judges it (its own family here: no runs)."""
    return judge_claims([], gradients=gradients_of(trained_reach))[1]


CAPPED = [400, 400, 400]  # the gated cells' gradient reaches the whole review in every seed


@pytest.mark.parametrize("rnn, lstm, gru, verdict", [
    ([5, 9, 7], [50, 60, 55], [60, 70, 65], "holds"),
    ([300, 350, 400], [5, 9, 7], [6, 8, 7], "does not hold"),
    ([300, 350, 400], [50, 60, 55], CAPPED, "does not hold"),  # one gated cell's part fails: (d) fails
    ([5, 300, 40], [60, 50, 400], CAPPED, "inconclusive"),  # the RNN's seeds spread over the gated cells' reach
    ([5], [50], [60], "not testable"),  # one seed: no interval
])
def test_claim_d_has_the_three_outcomes_over_seeds(rnn, lstm, gru, verdict):
    claim = judged_d({"rnn": rnn, "lstm": lstm, "gru": gru})
    assert claim["verdict"] == verdict
    assert [p["name"] for p in claim["parts"]] == ["lstm / rnn reach", "gru / rnn reach"]
    if verdict != "not testable":
        assert all(p["family"] == 2 for p in claim["parts"])  # both parts are tests of the Holm family


def test_claim_d_with_capped_gated_reaches():
    # Capped gated reaches, an RNN alike in every seed: zero spread, the difference wholly above 0 -> holds
    claim = judged_d({"rnn": [79, 79, 79], "lstm": CAPPED, "gru": CAPPED})
    assert claim["verdict"] == "holds"
    assert claim["parts"][0]["interval"] == pytest.approx([math.log(400 / 79)] * 2)
    # capped gated cells, a spread RNN well below the cap: still holds, by the RNN's spread
    assert judged_d({"rnn": [60, 79, 100], "lstm": CAPPED, "gru": CAPPED})["verdict"] == "holds"
    # every reach at the cap: nothing measured, inconclusive, and no test in the family
    claim = judged_d({"rnn": CAPPED, "lstm": CAPPED, "gru": CAPPED})
    assert claim["verdict"] == "inconclusive" and "both reach the cap (400 steps)" in claim["parts"][0]["why"]
    assert judge_claims([], gradients=gradients_of({"rnn": CAPPED, "lstm": CAPPED, "gru": CAPPED}))[2] == 0


def test_claim_d_without_a_seeded_measurement_is_not_testable():
    assert judge_gradients(None)["verdict"] == "not testable"
    older = {"cells": {cell: {"init_reach": 3, "trained_reach": reach}  # one seed, before the seeds were measured
                       for cell, reach in (("rnn", 5), ("lstm", 50), ("gru", 60))}}
    assert judge_claims([], gradients=older)[1]["verdict"] == "not testable"
    assert judged_d({"rnn": [5, 6], "gru": [50, 60]})["verdict"] == "holds"  # one gated cell is enough
    assert judged_d({"lstm": [5, 6], "gru": [50, 60]})["verdict"] == "not testable"


CLOSE = {"lstm": {"acc": [0.8620, 0.8622, 0.8624]}, "gru": {"acc": [0.8700, 0.8702, 0.8704]}}  # 0.8 points apart


def test_similar_accuracy_at_several_margins():
    b = judged(CLOSE, margins_shown=[0.005, 0.008, 0.02])["b_lstm_gru_similar_accuracy"]
    assert b["test"]["estimate"] == pytest.approx(-0.008)
    assert b["verdict"] == "holds" and b["margin"] == 0.01
    assert b["at_margins"] == {"0.005": "does not hold", "0.008": "inconclusive", "0.01": "holds", "0.02": "holds"}
    assert judged(CLOSE, margin=0.005)["b_lstm_gru_similar_accuracy"]["verdict"] == "does not hold"


def test_the_margin_is_a_setting_and_the_report_says_what_is_true(tmp_path):
    figures = {cell: tuple(CLOSE.get(cell, {}).get("acc", WORLD[cell][0]) if k == 0 else WORLD[cell][1]
                           for k in range(2)) for cell in WORLD}
    pipeline = write_runs(tmp_path / "train", "sequence", figures)
    run_compare(tmp_path, *pipeline, "compare.similar_accuracy=0.005")
    b = claims(tmp_path / "compare")["sequence"]["b_lstm_gru_similar_accuracy"]
    assert b["verdict"] == "does not hold" and b["margin"] == 0.005
    text = (tmp_path / "compare" / "claims.md").read_text()
    low, high = b["test"]["interval"]
    assert (f"**(b) LSTM ≈ GRU in accuracy (margin ±0.5 points):** does not hold; lstm − gru accuracy -0.0080: "
            f"the {100 * b['test']['level']:.3g}% interval [{low:+.4f}, {high:+.4f}] lies wholly outside "
            "±0.5 points") in text
    assert ("the same test at other margins: at ±0.5 points: does not hold; at ±1 point: holds; "
            "at ±2 points: holds") in text
    assert "This report makes 6 interval tests" in text and "Holm's step-down adjustment" in text
    with pytest.raises(UserError, match="compare: alpha=1.5 must be in"):
        run_compare(tmp_path, *pipeline, "compare.alpha=1.5")


def test_holm_adjustment_can_leave_undecided_what_one_interval_decides():
    # LSTM and GRU equal on average with sd 0.0037 over 3 seeds: the 95% interval alone is inside ±1 point, but
    # (b) is one of 6 tests, and with (c) (and a time part of (a)) undecided it is judged at a stricter level.
    b = judged({"lstm": {"acc": [0.8663, 0.8700, 0.8737], "time": [50, 180, 310]},
                "gru": {"acc": [0.8663, 0.8700, 0.8737]}})["b_lstm_gru_similar_accuracy"]
    test = b["test"]
    assert 0.025 < test["p"] < 0.05  # decided at 5% alone
    assert locate(t_interval(test["estimate"], test["se"], test["dof"], 0.95), -0.01, 0.01) == "holds"
    assert test["family"] == 6 and test["rank"] <= 5 and test["level"] > 0.95
    assert test["p_holm"] > 0.05 and b["verdict"] == "inconclusive"
    # the same figures as the only test in a family: decided
    alone = interval_test("lstm − gru", {"mean": 0.0, "se": test["se"], "dof": test["dof"]}, -0.01, 0.01, "±1 point")
    assert holm([alone]) == 1 and alone["verdict"] == "holds" and alone["level"] == pytest.approx(0.95)


def test_holm_steps_down_in_order():
    tests = [interval_test(str(k), {"mean": mean, "se": 1.0, "dof": 1e6}, None, 0.0, "(−∞, 0)", closed=False)
             for k, mean in enumerate([-3.0, -2.3, -2.2])]  # p about 0.0027, 0.021, 0.028
    assert holm(tests) == 3
    assert [t["rank"] for t in tests] == [1, 2, 3]
    assert [t["level"] for t in tests] == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 1])
    assert [t["verdict"] for t in tests] == ["holds", "holds", "holds"]
    # the second fails its threshold (0.025): it and every test after it stay undecided, the third included
    tests[1] = interval_test("1", {"mean": -2.0, "se": 1.0, "dof": 1e6}, None, 0.0, "(−∞, 0)", closed=False)
    holm(tests)
    assert [t["verdict"] for t in tests] == ["holds", "inconclusive", "inconclusive"]
    assert tests[2]["level"] == pytest.approx(1 - 0.05 / 2)  # judged where the step-down stopped


# The timing claims (a) and (c) from the controlled timing measurement (data/timing/timing.json), when there is one.

def timing_of(epoch_s: dict[str, list[float]], impl: str = "sequence", disturbed: bool = False) -> dict:
    """timing.json as `python -m rnnlab.timing` writes it, for the pipeline's current settings: per cell, its epoch
    time in each round (the rounds interleaved: rnn, lstm, gru, rnn, ...)."""
    rounds = len(next(iter(epoch_s.values())))
    measurements = [{"round": r + 1, "position": k + 1, "cell": cell, "impl": impl, "epoch_s": times[r],
                     "samples_per_s": 22500 / times[r]}
                    for r in range(rounds) for k, (cell, times) in enumerate(epoch_s.items())]
    return {"settings_sha256": timing_settings_sha256(compose_config([])), "rounds": rounds,
            "machine": {"cpu_model": "AMD EPYC", "device": "CPU AMD EPYC (2 cores, 2 threads)", "accelerator": "cpu"},
            "window": {"disturbed": disturbed, "other_cpu_pct": 40.0 if disturbed else 0.5,
                       "load_avg_before": [0.2, 0.1, 0.1], "load_avg_after": [2.1, 1.0, 0.4]},
            "order": [f"{m['cell']}-{impl}" for m in measurements], "measurements": measurements}


TIMED_WORLD = {"rnn": [5.0, 5.2, 5.1, 5.0, 5.1], "lstm": [20.0, 20.4, 19.8, 20.1, 20.2],
               "gru": [10.0, 10.1, 9.9, 10.2, 10.0]}  # the article's world: RNN fastest, LSTM twice the GRU


@pytest.mark.parametrize(("claim", "timed", "verdict"), [
    ("a_rnn_fastest_least_accurate", {}, "holds"),
    ("a_rnn_fastest_least_accurate", {"rnn": [30.0, 31.0, 30.5, 30.2, 30.8]}, "does not hold"),  # slower than both
    ("a_rnn_fastest_least_accurate", {"rnn": [2.0, 25.0, 4.0, 22.0, 12.0]}, "inconclusive"),  # too noisy to say
    ("c_lstm_twice_gru_time", {}, "holds"),
    ("c_lstm_twice_gru_time", {"lstm": [10.1, 10.0, 10.0, 10.3, 10.1]}, "does not hold"),  # ratio 1
    ("c_lstm_twice_gru_time", {"lstm": [5.0, 35.0, 12.0, 30.0, 18.0]}, "inconclusive"),  # ratios 0.5 ... 3.5
])
def test_the_timing_claims_come_from_the_controlled_measurement(claim, timed, verdict):
    # The runs' own fit times say the opposite of the article everywhere: the RNN slowest, the LSTM as fast as
    # the GRU. Only the controlled measurement can give these verdicts.
    runs = runs_of({"rnn": (WORLD["rnn"][0], [300, 310, 305]), "lstm": (WORLD["lstm"][0], [100, 101, 99]),
                    "gru": (WORLD["gru"][0], [100, 100, 101])})
    assert judge_all(runs)["implementations"]["sequence"][claim]["verdict"] == "does not hold"
    report = judge_all(runs, timing=timing_of({**TIMED_WORLD, **timed}))
    result = report["implementations"]["sequence"][claim]
    assert result["verdict"] == verdict
    time_tests = [p for p in result["parts"] if "time" in p["name"]] if "parts" in result else [result["test"]]
    assert time_tests and all(t["source"] == "controlled timing" for t in time_tests)
    assert report["timing"]["where"] == "on this CPU (AMD EPYC)" and report["timing"]["source"] == "controlled timing"


def test_the_controlled_times_pair_the_cells_by_round():
    # Every round slower than the one before (a load building up): by round, the RNN is always 1 s faster; over
    # all rounds at once its times would overlap the LSTM's.
    timed = {"rnn": [5.0, 10.0, 15.0, 20.0], "lstm": [6.0, 11.0, 16.0, 21.0], "gru": [5.5, 10.5, 15.5, 20.5]}
    report = judge_all(runs_of(WORLD), timing=timing_of(timed))["implementations"]["sequence"]
    rnn_lstm = report["a_rnn_fastest_least_accurate"]["parts"][0]
    assert rnn_lstm["name"] == "rnn − lstm epoch time" and rnn_lstm["estimate"] == pytest.approx(-1.0)
    assert rnn_lstm["verdict"] == "holds" and rnn_lstm["interval"] == pytest.approx([-1.0, -1.0])
    c = report["c_lstm_twice_gru_time"]
    assert c["lstm_over_gru_time"]["mean"] == pytest.approx(sum(l / g for l, g in zip(timed["lstm"], timed["gru"])) / 4)
    assert report["cells"]["lstm"]["controlled_epoch_s"]["mean"] == pytest.approx(13.5)


def test_compare_judges_time_from_timing_json_and_says_where(tmp_path):
    pipeline = write_runs(tmp_path / "train", "sequence", {
        "rnn": ([0.750, 0.760, 0.755], [300, 310, 305]),  # under load: the runs' own times say the RNN is slowest
        "lstm": ([0.870, 0.871, 0.872], [100, 101, 99]),
        "gru": ([0.871, 0.870, 0.872], [100, 100, 101]),
    })
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing" / "timing.json").write_text(json.dumps(timing_of(TIMED_WORLD, disturbed=True)))
    table = run_compare(tmp_path, *pipeline)
    report = claims(tmp_path / "compare")["sequence"]
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "holds"
    assert report["c_lstm_twice_gru_time"]["verdict"] == "holds"
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "**(a) RNN fastest but least accurate:** on this CPU (AMD EPYC): holds" in text
    assert "**(c) LSTM ≈ 2x GRU's time:** on this CPU (AMD EPYC): holds" in text
    assert "judged from the controlled timing measurement" in text and "its window was disturbed" in text
    assert "were made on a GPU with cuDNN" in text
    assert "fit time of the run, under its load" in text and "epoch time, controlled timing" in text
    assert "fit time of the run, under its load (s)" in table


def test_without_a_timing_measurement_the_runs_fit_times_judge_and_say_so(tmp_path):
    pipeline = write_runs(tmp_path / "train", "sequence", WORLD)
    run_compare(tmp_path, *pipeline)
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "judged from the runs' own fit times" in text and "on this CPU (test)" in text
    c = claims(tmp_path / "compare")["sequence"]["c_lstm_twice_gru_time"]
    assert c["verdict"] == "holds" and c["test"]["source"] == "fit time of the runs"


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.update(settings_sha256="0" * 64), "was measured with other data, model, trainer or callbacks "
                                                   "settings than the pipeline now has: run `dvc repro timing`"),
    (lambda t: t.update(measurements=[m for m in t["measurements"] if m["cell"] != "gru"]), "lacks gru-sequence"),
    (lambda t: t.pop("window"), "is not a timing measurement of rnnlab.timing"),
])
def test_a_timing_measurement_of_other_settings_is_one_error_line(tmp_path, change, message):
    pipeline = write_runs(tmp_path / "train", "sequence", WORLD)
    timing = timing_of(TIMED_WORLD)
    change(timing)
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing" / "timing.json").write_text(json.dumps(timing))
    result = run_command(tmp_path, *pipeline)
    [line] = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith(f"compare: error: {tmp_path / 'timing' / 'timing.json'} ")
    assert line.endswith(message) if message.startswith("was") else message in line
    assert not (tmp_path / "compare").exists()


def test_the_table_flags_runs_whose_load_makes_their_times_not_comparable(tmp_path):
    pipeline = write_runs(tmp_path / "train", "sequence", WORLD)
    for cell, seed, timing in (("rnn", 0, "not comparable: load average 3.10 > 2 cores"), ("rnn", 1, "comparable"),
                               ("rnn", 2, "comparable")):
        path = tmp_path / "train" / f"{cell}-sequence-{seed}" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "timing": timing}))
    table = run_compare(tmp_path, *pipeline)
    rows = {row[0]: row for row in table_rows(table)}
    assert rows["rnn"][-1] == "1 of 3" and rows["lstm"][-1] == "not recorded"  # runs before the load was recorded
    assert "- rnn-sequence-0: not comparable: load average 3.10 > 2 cores" in table
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "| rnn | 3 |" in text and "(seed 0 under load)" in text


# Failed and unstable runs (rnnlab.comparison.failures): results, counted, never dropped.

def diverged_run(cell: str, seed: int, impl: str = "sequence") -> dict:
    """A run's record as the train stage writes it when the training diverged (rnnlab.run.export.export_diverged)."""
    return {"cell": cell, "impl": impl, "seed": seed, "diverged": "training diverged: train_loss is nan at epoch 1",
            "epochs": 2, "n_params": 1000, "device": "CPU test", "history": {"val_acc": [0.6, float("nan")]}}


def test_a_diverged_seed_counted_as_chance_changes_a_verdict():
    runs_now = runs_of(WORLD) + [diverged_run("gru", 3)]
    report = judge_counting_failures(runs_now)
    on_finished = report["implementations"]["sequence"]
    counted = report["failures"]["as_chance"]["implementations"]["sequence"]
    # on the three GRU seeds that finished, LSTM and GRU are equally accurate; a fourth at 0.5 leaves it open
    assert on_finished["b_lstm_gru_similar_accuracy"]["verdict"] == "holds"
    assert counted["b_lstm_gru_similar_accuracy"]["verdict"] == "inconclusive"
    assert counted["cells"]["gru"]["test_acc"]["n"] == 4 and counted["cells"]["gru"]["test_acc"]["mean"] == \
        pytest.approx((0.871 + 0.870 + 0.872 + 0.5) / 4)
    assert on_finished["cells"]["gru"]["runs"] == {"attempted": 4, "failed": 1, "failed_seeds": [3],
                                                   "failure_rate": 0.25, "unstable": 0, "unstable_seeds": []}
    # the time parts stay on the finished runs: the failed seed has no fit time to pair
    assert counted["c_lstm_twice_gru_time"]["lstm_over_gru_time"]["n"] == 3
    assert report["failures"]["failed"] == ["gru-sequence-3: training diverged: train_loss is nan at epoch 1"]


def test_a_run_is_unstable_when_its_last_epoch_falls_below_its_best():
    peaked_early = {"cell": "gru", "impl": "fused", "seed": 2, "history": {"val_acc": [0.88, 0.77, 0.71, 0.63]}}
    assert curve(peaked_early) == {"best_epoch": 1, "best_val_acc": 0.88, "last_epoch": 4, "last_val_acc": 0.63,
                                   "unstable": True}
    settled = {**peaked_early, "history": {"val_acc": [0.80, 0.88, 0.85]}}  # 0.03 below its best: within 0.05
    assert curve(settled)["unstable"] is False and curve(settled, drop=0.02)["unstable"] is True
    assert curve(diverged_run("gru", 3)) is None


def test_the_table_and_claims_count_failed_and_unstable_runs(tmp_path):
    train = tmp_path / "train"
    pipeline = write_runs(train, "explicit", WORLD)
    for cell in ("rnn", "lstm"):
        write_run(train, cell, "explicit", 3, WORLD[cell][0][0], WORLD[cell][1][0])
    failed = write_run(train, "gru", "explicit", 3, 0.5, 1)  # its metrics.json then replaced
    (failed / "metrics.json").write_text(json.dumps(diverged_run("gru", 3, "explicit")))
    unstable = train / "gru-explicit-0" / "metrics.json"
    unstable.write_text(json.dumps({**json.loads(unstable.read_text()), "history": {"val_acc": [0.88, 0.70]}}))

    table = run_compare(tmp_path, *pipeline[:2], "pipeline.seeds=[0,1,2,3]", "compare.unstable_drop=0.1",
                        "pipeline.baselines=[]")

    rows = {row[0]: row for row in table_rows(table)}
    assert rows["gru"][2:6] == ["4", "1 of 4 (25%)", "1 of 3", "0.8710 ± 0.0010"]  # accuracy: the 3 that finished
    assert rows["lstm"][3:5] == ["0 of 4 (0%)", "0 of 4"]
    assert "| gru-explicit-0 | 1 | 0.8800 | 2 | 0.7000 | unstable |" in table
    assert "| gru-explicit-3 | failed: training diverged: train_loss is nan at epoch 1 |" in table
    scores = json.loads((tmp_path / "compare" / "scores.json").read_text())
    assert scores["gru-explicit"]["failure_rate"] == 0.25 and scores["gru-explicit"]["unstable"] == 1
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "Failed runs (diverged): gru 1 of 4 (seed 3)." in text
    assert "Unstable runs (last epoch's validation accuracy more than 0.1 below the best epoch's): gru 1 of 3" in text
    assert "## The verdicts with failed runs counted as chance (0.5 accuracy)" in text
    assert "### Implementation: explicit, failures counted" in text
    judged = json.loads((tmp_path / "compare" / "claims.json").read_text())
    assert judged["failures"]["as_chance"]["implementations"]["explicit"]["cells"]["gru"]["test_acc"]["n"] == 4


@pytest.mark.parametrize("drop", ["-0.1", "1", "true"])
def test_a_bad_unstable_drop_is_one_error_line(tmp_path, drop):
    pipeline = write_runs(tmp_path / "train", "explicit", WORLD)
    result = run_command(tmp_path, *pipeline, f"compare.unstable_drop={drop}")
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(
        "compare: error: compare: unstable_drop=") and not (tmp_path / "compare").exists()


@pytest.mark.slow
def test_a_diverged_pipeline_run_is_written_and_compare_counts_it(prepared_dir, tmp_path):
    # A real tiny training run that diverges (lr = inf), as a DVC train stage runs it: with export_dir set
    trained_as = [*tiny_overrides(prepared_dir, tmp_path), "model.optimizer.lr=inf", "model.cell=lstm",
                  "model.impl=fused", "seed=0"]
    export = tmp_path / "train" / "lstm-fused-0"
    result = run_module("rnnlab.train", *trained_as, f"export_dir={export}", f"hydra.run.dir={tmp_path}/out",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the stage's result is the failure: dvc repro goes on
    assert result.stderr.strip().splitlines()[-1].startswith("train: warning: training diverged")
    assert sorted(path.name for path in export.iterdir()) == ["config.yaml", "metrics.json", "model.ckpt",
                                                              "scores.json"]
    assert json.loads((export / "metrics.json").read_text())["diverged"].startswith("training diverged")
    [run] = runs(tmp_path)
    assert run.info.status == "FAILED"

    table = run_compare(tmp_path, *trained_as, "pipeline.cells=[lstm]", "pipeline.impls=[fused]",
                        "pipeline.seeds=[0]", "pipeline.baselines=[]")
    assert table_rows(table)[0][:4] == ["lstm", "fused", "1", "1 of 1 (100%)"]
    assert "| lstm-fused-0 | failed: training diverged" in table


def test_a_time_verdict_names_its_hardware_even_when_the_runs_did_not_record_it():
    from rnnlab.comparison.claims import timing_source

    assert timing_source(None, ["CPU AMD EPYC (2 cores, 2 threads)"])["where"] == "on this CPU (AMD EPYC)"
    assert timing_source(None, ["unknown"])["where"] == "on hardware these runs did not record"
    assert timing_source(None, ["cuda NVIDIA H100"])["where"] == "on cuda NVIDIA H100"
