"""The timing stage (`python -m rnnlab.timing`), run for real on tiny data: 2 cells x 1 implementation x 2 rounds of
a few batches; what it writes, in the order it measured. Never asserts on speed."""

from __future__ import annotations

import json

import pytest

from rnnlab.bench.machine import cpu_model
from rnnlab.comparison.runs import load_timing
from rnnlab.composition import compose_config
from tests.helpers.project import run_module

# 8 training reviews in batches of 2: 1 untimed batch, then 2 timed ones per measurement.
TINY = ["pipeline.cells=[rnn,gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0]", "pipeline.baselines=[]",
        "timing.rounds=2", "timing.warmup_batches=1", "timing.timed_batches=2", "data.batch_size=2", "model.embedding_dim=8",
        "model.hidden_size=8"]


def overrides(prepared_dir, tmp_path) -> list[str]:
    return [*TINY, f"paths.prepared_dir={prepared_dir}", f"data.data_dir={prepared_dir}",
            f"paths.timing_dir={tmp_path / 'timing'}"]


@pytest.mark.slow
def test_the_timing_stage_measures_every_cell_interleaved_and_records_the_load(prepared_dir, tmp_path):
    result = run_module("rnnlab.timing", *overrides(prepared_dir, tmp_path), f"hydra.run.dir={tmp_path / 'hydra'}",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "timing" / "timing.json").read_text())
    assert report["order"] == ["rnn-fused", "gru-fused", "rnn-fused", "gru-fused"]  # A B A B: interleaved
    assert [(m["round"], m["position"], m["cell"]) for m in report["measurements"]] == [
        (1, 1, "rnn"), (1, 2, "gru"), (2, 1, "rnn"), (2, 2, "gru")]
    for m in report["measurements"]:
        assert m["samples"] == 4 and m["seconds"] > 0  # the 2 timed batches of 2, the same ones every time
        assert m["epoch_s"] == pytest.approx(m["seconds"] * report["train_samples"] / 4)
        assert set(m["load"]) >= {"other_cpu_pct", "disturbed", "load_avg_before", "load_avg_after", "own_cpu_s"}
    assert report["machine"]["cpu_model"] == cpu_model() and report["machine"]["accelerator"] == "cpu"
    window = report["window"]
    assert window["disturbed"] == (window["other_cpu_pct"] > 5.0) and len(window["load_avg_before"]) == 3
    assert window["own_cpu_s"] > 0 and window["wall_s"] > 0  # the measurements' processes are counted as its own
    for cell in ("rnn", "gru"):
        summary = report["summary"]["fused"][cell]
        assert summary["epoch_s"]["n"] == 2 and summary["epoch_s"]["ci95"] is not None
    table = (tmp_path / "timing" / "timing.md").read_text()
    assert "| rnn | fused |" in table and "| gru | fused |" in table and cpu_model() in table
    assert "rnn-fused, gru-fused" in table
    # compare takes it as the measurement of these settings
    cfg = compose_config(overrides(prepared_dir, tmp_path))
    assert load_timing(cfg)["measurements"] == report["measurements"]


def test_a_window_longer_than_the_data_is_one_error_line(prepared_dir, tmp_path):
    result = run_module("rnnlab.timing", *overrides(prepared_dir, tmp_path), "timing.timed_batches=50",
                        f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "timing: error: the training split holds 4 batches; 1 + 50 were asked for: lower timing.warmup_batches or "
        "timing.timed_batches"]
    assert not (tmp_path / "timing").exists()


def test_a_bad_setting_is_one_error_line(tmp_path):
    result = run_module("rnnlab.timing", "timing.rounds=0", f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["timing: error: timing.rounds=0 must be a positive integer"]
