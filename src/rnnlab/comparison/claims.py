"""The article's four claims, tested against measured runs over seeds.

(a) the simple RNN trains fastest but is least accurate;
(b) LSTM and GRU reach similar accuracy (here: the 95% interval of their difference lies within ±1 point);
(c) the LSTM takes about twice the GRU's training time (here: the mean per-seed ratio lies in [1.5, 2.5]
    and its 95% interval excludes 1);
(d) RNN gradients vanish over long spans while LSTM/GRU gradients survive (from the gradient-decay
    measurement, and the adding problem when its results are given).

Each claim is judged per implementation (fused, sequence, explicit) on the runs given; figures are mean ± sd with
a 95% t-interval over seeds. With fewer than two seeds a claim can only be "not testable".
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy import stats

from rnnlab.cells import cell_rank

SIMILAR_ACCURACY = 0.01  # (b): "similar" = the difference's 95% interval inside ±1 accuracy point


TIME_RATIO_RANGE = (1.5, 2.5)  # (c): "about twice"


def describe(values: list[float]) -> dict:
    """n, mean, sd and the 95% t-interval of the mean (None when n < 2)."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "ci95": None}
    with quiet_when_identical():
        low, high = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    return {"n": n, "mean": mean, "sd": float(np.std(values, ddof=1)), "ci95": [float(low), float(high)]}


def difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with Welch's 95% interval (unequal variances)."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "ci95": None}
    with quiet_when_identical():
        low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return {"diff": diff, "ci95": [float(low), float(high)]}


@contextmanager
def quiet_when_identical() -> Iterator[None]:
    """Seeds can agree exactly (a deterministic metric): scipy then warns of precision loss, yet the
    interval it gives, of width 0, is the right one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


def group_runs(runs: list[dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """impl -> cell -> seed -> run (the last one wins if a seed repeats)."""
    grouped: dict = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        grouped[run["impl"]][run["cell"]][int(run["seed"])] = run
    return grouped


def judge_fastest_least_accurate(cells: dict[str, dict[int, dict]]) -> dict:
    time = {c: [r["fit_time_s"] for r in runs.values()] for c, runs in cells.items()}
    acc = {c: [r["test_acc"] for r in runs.values()] for c, runs in cells.items()}
    others = [c for c in ("lstm", "gru") if c in cells]
    if "rnn" not in cells or not others:
        return {"verdict": "not testable", "why": "needs rnn and lstm or gru runs"}
    time_diffs = {c: difference(time["rnn"], time[c]) for c in others}
    acc_diffs = {c: difference(acc["rnn"], acc[c]) for c in others}
    if any(d["ci95"] is None for d in [*time_diffs.values(), *acc_diffs.values()]):
        verdict = "not testable"
    else:
        faster = all(d["ci95"][1] < 0 for d in time_diffs.values())
        less_accurate = all(d["ci95"][1] < 0 for d in acc_diffs.values())
        verdict = {(True, True): "holds", (True, False): "half: fastest, not least accurate",
                   (False, True): "half: least accurate, not fastest"}.get((faster, less_accurate), "does not hold")
    return {"verdict": verdict, "rnn_minus_other_time_s": time_diffs, "rnn_minus_other_acc": acc_diffs}


def judge_similar_accuracy(cells: dict[str, dict[int, dict]]) -> dict:
    if "lstm" not in cells or "gru" not in cells:
        return {"verdict": "not testable", "why": "needs lstm and gru runs"}
    diff = difference([r["test_acc"] for r in cells["lstm"].values()], [r["test_acc"] for r in cells["gru"].values()])
    if diff["ci95"] is None:
        verdict = "not testable"
    elif -SIMILAR_ACCURACY <= diff["ci95"][0] and diff["ci95"][1] <= SIMILAR_ACCURACY:
        verdict = "holds"
    elif diff["ci95"][0] > SIMILAR_ACCURACY or diff["ci95"][1] < -SIMILAR_ACCURACY:
        verdict = "does not hold"
    else:
        verdict = "inconclusive (interval wider than ±1 point)"
    return {"verdict": verdict, "lstm_minus_gru_acc": diff}


def judge_time_ratio(cells: dict[str, dict[int, dict]]) -> dict:
    if "lstm" not in cells or "gru" not in cells:
        return {"verdict": "not testable", "why": "needs lstm and gru runs"}
    seeds = sorted(set(cells["lstm"]) & set(cells["gru"]))  # paired: same seed, same sweep, same machine
    ratios = [cells["lstm"][s]["fit_time_s"] / cells["gru"][s]["fit_time_s"] for s in seeds]
    if not ratios:
        return {"verdict": "not testable", "why": "no seed has both an lstm and a gru run"}
    summary = describe(ratios)
    low, high = TIME_RATIO_RANGE
    if summary["ci95"] is None:
        verdict = "not testable"
    elif low <= summary["mean"] <= high and summary["ci95"][0] > 1:
        verdict = "holds"
    else:
        verdict = "does not hold"
    return {"verdict": verdict, "lstm_over_gru_time": summary}


def judge_gradients(gradients: dict | None, adding: dict | None) -> dict:
    if not gradients:
        return {"verdict": "not testable", "why": "no gradient measurement (dvc repro gradients)"}
    reach = {cell: curves["trained_reach"] for cell, curves in gradients["cells"].items()}
    gated = [c for c in ("lstm", "gru") if c in reach]
    if "rnn" not in reach or not gated:
        return {"verdict": "not testable", "why": "needs rnn and lstm or gru gradients", "trained_reach": reach}
    holds = all(reach["rnn"] < reach[c] for c in gated)
    result = {"verdict": "holds" if holds else "does not hold", "trained_reach": reach,
              "init_reach": {c: v["init_reach"] for c, v in gradients["cells"].items()}}
    if adding and adding.get("complete"):  # a finished sweep of rnnlab.findings.adding (an older file: none)
        result["adding_learned_up_to"] = adding_reach(adding)
        result["adding_limit"] = adding["limits"]
    return result


def adding_reach(adding: dict) -> dict[str, int]:
    """Per cell, the longest sequence length at which it learned the adding problem (0: none): some seed reached
    the sweep's threshold (validation MSE < 0.01) within its budget (rnnlab.findings.adding)."""
    return {cell: max((int(T) for T, row in by_length.items() if row["learned"]), default=0)
            for cell, by_length in adding["results"].items()}


def judge_all(runs: list[dict], gradients: dict | None = None, adding: dict | None = None) -> dict:
    """Every claim, per implementation, with the figures behind each verdict."""
    report: dict = {"implementations": {}}
    for impl, cells in sorted(group_runs(runs).items()):
        figures = {cell: {"test_acc": describe([r["test_acc"] for r in cells[cell].values()]),
                          "fit_time_s": describe([r["fit_time_s"] for r in cells[cell].values()]),
                          "seeds": sorted(cells[cell])} for cell in sorted(cells, key=cell_rank)}
        report["implementations"][impl] = {
            "cells": figures,
            "a_rnn_fastest_least_accurate": judge_fastest_least_accurate(cells),
            "b_lstm_gru_similar_accuracy": judge_similar_accuracy(cells),
            "c_lstm_twice_gru_time": judge_time_ratio(cells),
        }
    report["d_rnn_gradients_vanish"] = judge_gradients(gradients, adding)
    report["devices"] = sorted({str(r.get("device") or "unknown") for r in runs})
    return report
