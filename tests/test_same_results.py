"""A layout change changes no result: tiny runs give the metrics recorded before it, to the bit on the CPU that
recorded them.

tests/data/reference_runs.json holds, per CPU model, the final metrics of one tiny run per cell x implementation
(seed 0, the tests' tiny data). Float results are bitwise on one machine only: on the CPU that recorded them the
test asks for equality; on another it asks for agreement to 1e-3 (summation orders differ between CPU kinds).
Record this machine's after a change that is meant to change results: RNNLAB_RECORD_REFERENCE=1 pytest
tests/test_same_results.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rnnlab.train import train
from tests.helpers.training import compose_tiny

REFERENCE = Path(__file__).with_name("data") / "reference_runs.json"
COMPARED = ("test_acc", "test_loss", "best_val_acc", "epochs", "n_params")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@pytest.mark.parametrize("impl", ["fused", "explicit", "sequence"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_tiny_run_gives_the_recorded_metrics(prepared_dir, tmp_path, cell, impl):
    result = train(compose_tiny(prepared_dir, tmp_path, f"model={cell}", f"model.impl={impl}"))
    measured = {name: result.metrics[name] for name in COMPARED}
    measured["train_loss"] = result.history["train_loss"]
    name, cpu = f"{cell}-{impl}", cpu_model()
    reference = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
    if os.environ.get("RNNLAB_RECORD_REFERENCE"):
        reference = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}  # other workers' entries
        reference.setdefault(cpu, {})[name] = measured
        REFERENCE.write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
        return
    assert reference, f"{REFERENCE} is missing: record it (module docstring)"
    if cpu in reference:
        assert measured == reference[cpu][name]
    else:
        recorded = next(iter(reference.values()))[name]
        assert measured["n_params"] == recorded["n_params"] and measured["epochs"] == recorded["epochs"]
        for key in ("test_loss", "best_val_acc", "train_loss"):
            assert measured[key] == pytest.approx(recorded[key], rel=1e-3, abs=1e-3)
