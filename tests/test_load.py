"""The load a training run ran under (rnnlab.run.load): recorded by a real tiny run in MLflow and in the train
stage's metrics.json, and when a run's times are flagged as not comparable."""

from __future__ import annotations

import json

import psutil
import pytest

from rnnlab.run.load import DISTURBED_PCT, load_problem, other_pct
from rnnlab.run.tags import TIMING
from rnnlab.train import train
from tests.helpers.training import client_of, compose_tiny


@pytest.mark.parametrize(("load_avg", "other", "cores", "problem"), [
    (1.9, 1.0, 2, None),  # a training process's own 2 threads on 2 cores, little else: comparable
    (2.0, DISTURBED_PCT, 2, None),  # at the limits, not over them
    (3.1, 1.0, 2, "load average 3.10 > 2 cores"),
    (1.0, 30.0, 2, "other processes took 30% of the CPU (> 5%)"),
    (5.0, 60.0, 4, "load average 5.00 > 4 cores; other processes took 60% of the CPU (> 5%)"),
    (None, None, 2, None),  # nothing measured says nothing
    (None, 12.0, 2, "other processes took 12% of the CPU (> 5%)"),  # DDP records no other-process share; here one
])
def test_which_runs_are_not_comparable(load_avg, other, cores, problem):
    assert load_problem(load_avg, other, cores) == problem


def test_other_processes_share():
    cores = psutil.cpu_count()
    assert other_pct(busy_s=cores * 10.0, own_s=cores * 5.0, wall_s=10.0) == pytest.approx(50.0)
    assert other_pct(busy_s=3.0, own_s=4.0, wall_s=10.0) == 0.0  # own time counted before the machine's: never < 0
    assert other_pct(busy_s=1.0, own_s=0.0, wall_s=0.0) == 0.0


def test_a_run_records_the_load_it_trained_under(prepared_dir, tmp_path):
    export_dir = tmp_path / "export"
    result = train(compose_tiny(prepared_dir, tmp_path, f"export_dir={export_dir}"))
    run = client_of(tmp_path).get_run(result.run_id)
    for name in ("fit_load_avg", "fit_cpu_share", "fit_other_cpu_pct"):
        assert name in result.metrics and run.data.metrics[name] == result.metrics[name] >= 0, name
    client = client_of(tmp_path)
    for name in ("epoch_load_avg", "epoch_cpu_share", "epoch_other_cpu_pct"):  # one value per epoch (2)
        assert len(client.get_metric_history(result.run_id, name)) == 2, name
    problem = load_problem(result.metrics["fit_load_avg"], result.metrics["fit_other_cpu_pct"], psutil.cpu_count())
    tag = run.data.tags[TIMING]
    assert tag == ("comparable" if problem is None else f"not comparable: {problem}")
    metrics = json.loads((export_dir / "metrics.json").read_text())
    assert metrics["timing"] == tag and metrics["fit_other_cpu_pct"] == result.metrics["fit_other_cpu_pct"]
    assert "fit_load_avg" not in json.loads((export_dir / "scores.json").read_text())  # DVC's metrics: scores only
