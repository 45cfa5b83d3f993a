"""The compare stage: the claims report over seeds, judged from train-stage metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, run_module
from rnnlab.compare import main as compare_main
from rnnlab.findings.claims import describe, difference

SEEDS = (0, 1, 2)


def write_runs(train_dir: Path, impl: str, figures: dict[str, tuple[list[float], list[float]]]) -> None:
    """figures: cell -> (test accuracy per seed, fit time per seed), written as the train stages write them."""
    for cell, (accuracies, times) in figures.items():
        for seed, accuracy, time in zip(SEEDS, accuracies, times):
            run_dir = train_dir / f"{cell}-{impl}-{seed}"
            run_dir.mkdir(parents=True)
            metrics = {"cell": cell, "impl": impl, "seed": seed, "test_acc": accuracy, "fit_time_s": time,
                       "train_samples_per_s": 22500 * 5 / time, "epochs": 5, "n_params": 1000,
                       "device": "CPU test", "history": {"val_acc": [accuracy - 0.01, accuracy]}}
            (run_dir / "metrics.json").write_text(json.dumps(metrics))


def claims(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["claims"]["implementations"]


def test_the_articles_world_passes_every_claim(tmp_path):
    # RNN fastest and least accurate, LSTM and GRU within a fraction of a point, LSTM twice the GRU's time.
    write_runs(tmp_path / "train", "explicit", {
        "rnn": ([0.750, 0.760, 0.755], [50, 52, 51]),
        "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
        "gru": ([0.871, 0.870, 0.872], [100, 104, 103]),
    })
    assert compare_main([str(tmp_path / "train"), "--out", str(tmp_path / "compare")]) == 0
    report = claims(tmp_path / "compare")["explicit"]
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "holds"
    assert report["b_lstm_gru_similar_accuracy"]["verdict"] == "holds"
    assert report["c_lstm_twice_gru_time"]["verdict"] == "holds"
    assert report["c_lstm_twice_gru_time"]["lstm_over_gru_time"]["mean"] == pytest.approx(
        (200 / 100 + 210 / 104 + 204 / 103) / 3)
    text = (tmp_path / "compare" / "claims.md").read_text()
    assert "## Implementation: explicit" in text and "(c) LSTM ≈ 2x GRU's time:** holds" in text
    assert "| lstm | explicit | 3 | 0.8710 ± 0.0010 |" in (tmp_path / "compare" / "table.md").read_text()
    assert (tmp_path / "compare" / "accuracy_vs_time.png").stat().st_size > 0


def test_claims_fail_where_the_figures_say_otherwise(tmp_path):
    # The fused cells on a CPU: the LSTM faster than the GRU, the RNN not the fastest, the GRU 2 points ahead.
    write_runs(tmp_path / "train", "fused", {
        "rnn": ([0.750, 0.760, 0.755], [90, 92, 91]),
        "lstm": ([0.850, 0.852, 0.851], [80, 82, 81]),
        "gru": ([0.871, 0.870, 0.872], [200, 204, 203]),
    })
    assert compare_main([str(tmp_path / "train"), "--out", str(tmp_path / "compare")]) == 0
    report = claims(tmp_path / "compare")["fused"]
    assert report["a_rnn_fastest_least_accurate"]["verdict"] == "half: least accurate, not fastest"
    assert report["b_lstm_gru_similar_accuracy"]["verdict"] == "does not hold"
    assert report["c_lstm_twice_gru_time"]["verdict"] == "does not hold"


def test_noisy_accuracies_are_inconclusive_not_similar(tmp_path):
    write_runs(tmp_path / "train", "fused", {
        "lstm": ([0.80, 0.88, 0.84], [200, 200, 200]),
        "gru": ([0.85, 0.83, 0.87], [100, 100, 100]),
    })
    assert compare_main([str(tmp_path / "train"), "--out", str(tmp_path / "compare")]) == 0
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


def test_no_runs_is_one_error_line(tmp_path):
    (tmp_path / "train").mkdir()
    result = run_module("rnnlab.compare", str(tmp_path / "train"), "--out", str(tmp_path / "compare"),
                        cwd=PROJECT_ROOT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"compare: error: no */metrics.json under {tmp_path / 'train'}: run the train stages first"]
    assert not (tmp_path / "compare").exists()
