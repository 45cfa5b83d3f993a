"""Runs that failed and runs that were unstable: both are results, counted rather than dropped.

A run *failed* when its training diverged (rnnlab.models.recurrent_module.TrainingDiverged): its record says so
(`diverged`: the reason) and has no test accuracy. Each cell's failure rate is failed / attempted runs. The claims
are judged twice where a run failed: on the runs that finished, and with each failed run counted as a coin
(CHANCE accuracy; the time parts stay on the finished runs, a failed run having no comparable time).

A finished run is *unstable* when its last epoch's validation accuracy lies more than `compare.unstable_drop`
below its best epoch's: the model it is tested with (the best checkpoint) is a snapshot the training then left.
"""

from __future__ import annotations

import math

from rnnlab.cli import UserError

CHANCE = 0.5  # a failed run's accuracy when failures are counted: no better than a coin on balanced classes
UNSTABLE_DROP = 0.05  # compare.unstable_drop's default


def unstable_drop(cfg) -> float:
    """compare.unstable_drop (default UNSTABLE_DROP), checked."""
    drop = (cfg.get("compare") or {}).get("unstable_drop", UNSTABLE_DROP)
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
        raise UserError(f"compare: unstable_drop={drop!r} must be a number in [0, 1)")
    return float(drop)


def failed(run: dict) -> bool:
    return "diverged" in run


def finished(runs: list[dict]) -> list[dict]:
    return [run for run in runs if not failed(run)]


def failures_as_chance(runs: list[dict]) -> list[dict]:
    """The runs with each failed one given CHANCE test accuracy (and no fit time)."""
    return [{**run, "test_acc": CHANCE} if failed(run) else run for run in runs]


def curve(run: dict, drop: float = UNSTABLE_DROP) -> dict | None:
    """The run's validation curve in brief: best epoch (1-based) and accuracy, last epoch and accuracy, and
    whether it is unstable (last more than `drop` below best). None for a failed run or one without a history."""
    values = (run.get("history") or {}).get("val_acc") or []
    if failed(run) or not values or not all(math.isfinite(v) for v in values):
        return None
    best = max(range(len(values)), key=lambda epoch: values[epoch])  # the first epoch that reached it
    return {"best_epoch": best + 1, "best_val_acc": values[best], "last_epoch": len(values),
            "last_val_acc": values[-1], "unstable": values[best] - values[-1] > drop}


def counts(runs: list[dict], drop: float = UNSTABLE_DROP) -> dict:
    """attempted, failed (and which seeds), failure_rate, and unstable: how many finished runs are unstable."""
    failed_seeds = sorted(int(run["seed"]) for run in runs if failed(run))
    curves = [curve(run, drop) for run in runs]
    return {"attempted": len(runs), "failed": len(failed_seeds), "failed_seeds": failed_seeds,
            "failure_rate": len(failed_seeds) / len(runs) if runs else 0.0,
            "unstable": sum(bool(c and c["unstable"]) for c in curves),
            "unstable_seeds": sorted(int(run["seed"]) for run, c in zip(runs, curves) if c and c["unstable"])}


def failed_names(runs: list[dict]) -> list[str]:
    """`<cell>-<impl>-<seed>: <reason>` of each failed run."""
    return [f"{run['cell']}-{run['impl']}-{run['seed']}: {run['diverged']}" for run in runs if failed(run)]
