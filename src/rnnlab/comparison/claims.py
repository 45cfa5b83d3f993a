"""The article's four claims, tested against measured runs over seeds.

(a) the simple RNN trains fastest but is least accurate: four interval tests, RNN - LSTM and RNN - GRU in
    training time and in test accuracy, each claimed below 0;
(b) LSTM and GRU reach similar accuracy: an equivalence test, LSTM - GRU claimed inside ±margin (the setting
    `compare.similar_accuracy`, 0.01 = ±1 accuracy point by default; the report also shows the verdict at the
    margins of `compare.margins_shown`);
(c) the LSTM takes about twice the GRU's training time: the mean per-seed ratio LSTM / GRU claimed inside
    TIME_RATIO_RANGE, [1.5, 2.5];
(d) RNN gradients vanish over long spans while LSTM/GRU gradients survive (from the gradient-decay
    measurement, rnnlab.findings.gradients, and the adding problem when its results are given, to read): two
    interval tests, per seed log(gated reach / RNN reach) for LSTM and for GRU over the seeds both measured,
    each claimed above 0. A trained model's reach: the steps back from the end before |d loss / d x_t| falls
    below 1e-3 of its end value, capped at the review length (400 by default).

The rule, one for every interval test: a claim's quantity has a region (below 0, inside ±margin, inside [1.5,
2.5]). The test *holds* when its interval lies inside the region, *does not hold* when it lies wholly outside
it (inside the complement), and is *inconclusive* when it straddles an edge. A compound claim ((a)) holds when
every part holds, does not hold when some part does not hold, and is inconclusive otherwise. With fewer than
two seeds a test is "not testable".

Multiple comparisons: the interval tests of one report (every part of (a), (b) and (c), per implementation, and
(d)'s two, measured once) are one family, controlled at family-wise level 1 - `compare.alpha` (5% by default)
with Holm's step-down method. Each test's p-value is the smallest alpha at which its two-sided (1 - alpha)
t-interval decides it (inside the region or inside the complement); sorted p_(1) <= ... <= p_(m), the test of
rank i is decided while p_(j) <= alpha / (m - j + 1) for every j <= i, and the step-down stops at the first rank
k that fails. A test is judged on its t-interval at level 1 - alpha / (m - min(i, k) + 1): decided tests on the
level at which they were decided, the others on the level at which the step-down stopped (their interval then
straddles an edge).
An equivalence test by this rule is two one-sided tests at alpha/2 each (conservative).

Figures are mean ± sd with unadjusted 95% t-intervals over seeds (`ci95`, to read); the verdicts use the
adjusted intervals (`interval`, `level`). Each claim is judged per implementation (fused, sequence, explicit).

Time: given the controlled timing measurement (`python -m rnnlab.timing`, timing.json), the time parts of (a) and
(c) are judged from it, paired by round: per round, RNN - other in epoch time, and LSTM / GRU, each over the
rounds. Without one, from the runs' own fit times, each taken under whatever load its run met. Either way the
verdict is about the hardware it was measured on (`timing_source` names it); the article's were a GPU's, cuDNN's.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from scipy import stats

from rnnlab.cells import cell_rank
from rnnlab.cli import UserError
from rnnlab.comparison.failures import UNSTABLE_DROP, counts, failed, failed_names, failures_as_chance, finished

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable"
ALPHA = 0.05  # family-wise error rate of one report's interval tests (compare.alpha)
SIMILAR_ACCURACY = 0.01  # (b)'s default margin, ±1 accuracy point (compare.similar_accuracy)
MARGINS_SHOWN = (0.005, 0.01, 0.02)  # (b) is also shown at these margins (compare.margins_shown)
TIME_RATIO_RANGE = (1.5, 2.5)  # (c): "about twice"


def rule_settings(cfg) -> dict:
    """judge_all's margin, margins_shown and alpha from a config's `compare` section (defaults where absent)."""
    section = cfg.get("compare") or {}
    margin = float(section.get("similar_accuracy", SIMILAR_ACCURACY))
    shown = [float(m) for m in section.get("margins_shown", MARGINS_SHOWN)]
    alpha = float(section.get("alpha", ALPHA))
    if not all(m > 0 for m in [margin, *shown]):
        raise UserError(f"compare: similar_accuracy={margin} and margins_shown={shown} must be positive")
    if not 0 < alpha < 1:
        raise UserError(f"compare: alpha={alpha} must be in (0, 1)")
    return {"margin": margin, "margins_shown": shown, "alpha": alpha}


def describe(values: list[float]) -> dict:
    """n, mean, sd, the standard error and degrees of freedom of the mean, and its 95% t-interval
    (None when n < 2)."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "ci95": None, "se": None, "dof": None}
    sd = float(np.std(values, ddof=1))
    with quiet_when_identical():
        low, high = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    return {"n": n, "mean": mean, "sd": sd, "ci95": [float(low), float(high)], "se": sd / math.sqrt(n),
            "dof": float(n - 1)}


def difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with Welch's 95% interval (unequal variances), its standard error and
    Welch-Satterthwaite degrees of freedom."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "ci95": None, "se": None, "dof": None}
    with quiet_when_identical():
        low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se2 = float(va + vb)
    dof = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se2 > 0 else float(len(a) + len(b) - 2)
    return {"diff": diff, "ci95": [float(low), float(high)], "se": math.sqrt(se2), "dof": float(dof)}


@contextmanager
def quiet_when_identical() -> Iterator[None]:
    """Seeds can agree exactly (a deterministic metric): scipy then warns of precision loss, yet the
    interval it gives, of width 0, is the right one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


# The rule (module docstring): an interval against a claim's region.

def t_interval(estimate: float, se: float, dof: float, level: float) -> list[float]:
    """The two-sided t-interval of `estimate` at confidence `level`."""
    half = float(stats.t.ppf(1 - (1 - level) / 2, dof)) * se if se > 0 else 0.0
    return [estimate - half, estimate + half]


def locate(interval: list[float], low: float | None, high: float | None, closed: bool = True) -> str:
    """holds: the interval lies inside the region [low, high] (None: unbounded; closed=False: (low, high));
    does not hold: it lies inside the complement; inconclusive: it straddles an edge."""
    lo, hi = interval
    if closed:
        inside = (low is None or lo >= low) and (high is None or hi <= high)
        outside = (low is not None and hi < low) or (high is not None and lo > high)
    else:
        inside = (low is None or lo > low) and (high is None or hi < high)
        outside = (low is not None and hi <= low) or (high is not None and lo >= high)
    return HOLDS if inside else FAILS if outside else INCONCLUSIVE


def deciding_p(estimate: float, se: float, dof: float, low: float | None, high: float | None) -> float:
    """The smallest alpha at which the two-sided (1 - alpha) t-interval lies inside the region or inside its
    complement: the interval's half-width must not reach the edge nearest to the estimate."""
    distance = min(abs(estimate - edge) for edge in (low, high) if edge is not None)
    if se == 0:
        return 0.0 if distance > 0 else 1.0
    return float(min(1.0, 2 * stats.t.sf(distance / se, dof)))


def interval_test(name: str, figure: dict, low: float | None, high: float | None, region: str,
                  closed: bool = True) -> dict:
    """One interval test, to be judged with the others of its report (`holm`); `figure`: describe's or
    difference's result; region: how the report names [low, high] (e.g. "±1 point", "(−∞, 0)")."""
    estimate = figure["diff"] if "diff" in figure else figure["mean"]
    test = {"name": name, "estimate": estimate, "se": figure["se"], "dof": figure["dof"], "low": low,
            "high": high, "closed": closed, "region": region}
    if figure["se"] is None:
        return {**test, "verdict": NOT_TESTABLE, "why": "fewer than two seeds"}
    return {**test, "p": deciding_p(estimate, figure["se"], figure["dof"], low, high)}


def holm(tests: Iterable[dict], alpha: float = ALPHA) -> int:
    """Judge a family of interval tests with Holm's step-down adjustment (module docstring), in place: each
    testable one gets its rank, Holm-adjusted p-value, level, interval and verdict. Returns the family's size."""
    family = sorted((t for t in tests if t.get("p") is not None), key=lambda t: t["p"])
    m = len(family)
    stopped = next((i for i, t in enumerate(family, 1) if t["p"] > alpha / (m - i + 1)), m + 1)
    adjusted = 0.0
    for i, test in enumerate(family, 1):
        adjusted = max(adjusted, min(1.0, (m - i + 1) * test["p"]))
        level = 1 - alpha / (m - min(i, stopped) + 1)
        test.update(rank=i, family=m, p_holm=adjusted, level=level,
                    interval=t_interval(test["estimate"], test["se"], test["dof"], level))
        test["verdict"] = locate(test["interval"], test["low"], test["high"], test["closed"])
    return m


def combine(verdicts: Iterable[str]) -> str:
    """A compound claim: holds when every part holds, does not hold when some part does not hold, else
    inconclusive (not testable when a part is and none fails)."""
    verdicts = list(verdicts)
    if FAILS in verdicts:
        return FAILS
    if NOT_TESTABLE in verdicts or not verdicts:
        return NOT_TESTABLE
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def margin_words(margin: float) -> str:
    points = margin * 100
    return f"±{points:g} point" + ("" if points == 1 else "s")


def fit_times(runs: Iterable[dict]) -> list[float]:
    """The fit times of the runs that finished: a failed run's time (to its divergence) is not comparable."""
    return [r["fit_time_s"] for r in runs if not failed(r)]


def group_runs(runs: list[dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """impl -> cell -> seed -> run (the last one wins if a seed repeats)."""
    grouped: dict = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        grouped[run["impl"]][run["cell"]][int(run["seed"])] = run
    return grouped


CONTROLLED, RUNS = "controlled timing", "fit time of the runs"  # where a time part's figures come from


def timed_rounds(timing: dict | None, impl: str) -> dict[str, dict[int, float]] | None:
    """cell -> round -> epoch time (s) in the controlled timing measurement of `impl`; None without one."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    for m in (timing or {}).get("measurements", []):
        if m["impl"] == impl:
            found[m["cell"]][int(m["round"])] = float(m["epoch_s"])
    return dict(found) or None


def paired(timed: dict[str, dict[int, float]], a: str, b: str, pair) -> list[float]:
    """pair(a's, b's epoch time) for every round that timed both."""
    return [pair(timed[a][r], timed[b][r]) for r in sorted(set(timed[a]) & set(timed[b]))]


def judge_fastest_least_accurate(cells: dict[str, dict[int, dict]],
                                 timed: dict[str, dict[int, float]] | None = None) -> dict:
    """(a)'s four parts, unjudged (`holm` judges them with the rest of the report). timed: `timed_rounds`'s, for
    the time parts (per round, RNN - other; else Welch over the runs' fit times)."""
    others = [c for c in ("lstm", "gru") if c in cells]
    if "rnn" not in cells or not others:
        return {"verdict": NOT_TESTABLE, "why": "needs rnn and lstm or gru runs"}
    parts = []
    for other in others:
        if timed and "rnn" in timed and other in timed:
            figure = describe(paired(timed, "rnn", other, lambda a, b: a - b))
            name, unit, source = f"rnn − {other} epoch time", "epoch s", CONTROLLED
        else:
            figure = difference(fit_times(cells["rnn"].values()), fit_times(cells[other].values()))
            name, unit, source = f"rnn − {other} time", "s", RUNS
        parts.append({**interval_test(name, figure, None, 0.0, "(−∞, 0)", closed=False), "unit": unit,
                      "ci95": figure["ci95"], "source": source})
    for other in others:
        figure = difference([r["test_acc"] for r in cells["rnn"].values()],
                            [r["test_acc"] for r in cells[other].values()])
        parts.append({**interval_test(f"rnn − {other} accuracy", figure, None, 0.0, "(−∞, 0)", closed=False),
                      "unit": "acc", "ci95": figure["ci95"]})
    return {"parts": parts}


def judge_similar_accuracy(cells: dict[str, dict[int, dict]], margin: float = SIMILAR_ACCURACY) -> dict:
    """(b), unjudged: LSTM - GRU in accuracy inside ±margin (an equivalence test)."""
    if "lstm" not in cells or "gru" not in cells:
        return {"verdict": NOT_TESTABLE, "why": "needs lstm and gru runs"}
    diff = difference([r["test_acc"] for r in cells["lstm"].values()], [r["test_acc"] for r in cells["gru"].values()])
    test = interval_test("lstm − gru accuracy", diff, -margin, margin, margin_words(margin))
    return {"margin": margin, "test": {**test, "unit": "acc", "ci95": diff["ci95"]}, "lstm_minus_gru_acc": diff}


def judge_time_ratio(cells: dict[str, dict[int, dict]], timed: dict[str, dict[int, float]] | None = None) -> dict:
    """(c), unjudged: the mean ratio LSTM / GRU of training time inside TIME_RATIO_RANGE; per round of the
    controlled timing (timed: `timed_rounds`'s), else per seed of the runs' fit times."""
    if "lstm" not in cells or "gru" not in cells:
        return {"verdict": NOT_TESTABLE, "why": "needs lstm and gru runs"}
    if timed and "lstm" in timed and "gru" in timed:
        ratios, source = paired(timed, "lstm", "gru", lambda a, b: a / b), CONTROLLED
    else:
        seeds = sorted(s for s in set(cells["lstm"]) & set(cells["gru"])  # paired: same seed, sweep, machine
                       if not failed(cells["lstm"][s]) and not failed(cells["gru"][s]))
        ratios = [cells["lstm"][s]["fit_time_s"] / cells["gru"][s]["fit_time_s"] for s in seeds]
        source = RUNS
    if not ratios:
        return {"verdict": NOT_TESTABLE, "why": "no seed has both an lstm and a gru run"}
    summary = describe(ratios)
    low, high = TIME_RATIO_RANGE
    test = interval_test("lstm / gru time", summary, low, high, f"[{low:g}, {high:g}]")
    return {"test": {**test, "unit": "ratio", "ci95": summary["ci95"], "source": source},
            "lstm_over_gru_time": summary}


def tests_of(claim: dict) -> list[dict]:
    return claim.get("parts") or ([claim["test"]] if "test" in claim else [])


def judge_gradients(gradients: dict | None, adding: dict | None = None) -> dict:
    """(d), unjudged (`holm` judges its parts with the rest of the report): per gated cell, the mean over seeds of
    log(gated reach / RNN reach), paired by seed, claimed above 0 (the gated cell's gradient reaches further back).

    The reach is capped at the review length (`cap`), and the gated cells' trained reach often is the cap in every
    seed. The cap only shortens a reach, so a capped gated reach makes the difference a lower bound: an interval
    that lies wholly above 0 still says "holds" -- including one of width zero, when every seed's difference is the
    same (deciding_p and t_interval give zero spread a zero width; a repeated difference is what was measured).
    Where both reaches are at the cap in every seed nothing is measured, so the part is inconclusive without a test.
    An older gradients.json (one seed, reaches as numbers) reads as one seed: not testable."""
    if not gradients:
        return {"verdict": NOT_TESTABLE, "why": "no gradient measurement (dvc repro gradients)"}
    measured = gradients["cells"]
    reaches = {cell: by_seed(curves, "trained_reach") for cell, curves in measured.items()}
    result: dict = {"trained_reach": reaches, "init_reach": {c: by_seed(v, "init_reach") for c, v in measured.items()},
                    "threshold": gradients.get("threshold"), "cap": gradients.get("cap")}
    gated = [c for c in ("lstm", "gru") if c in reaches]
    if "rnn" not in reaches or not gated:
        return {**result, "verdict": NOT_TESTABLE, "why": "needs rnn and lstm or gru gradients"}
    parts = []
    for other in gated:
        seeds = sorted(set(reaches["rnn"]) & set(reaches[other]))
        pairs = [(reaches[other][s], reaches["rnn"][s]) for s in seeds]
        figure = describe([math.log(g / r) for g, r in pairs] or [math.nan])
        test = interval_test(f"{other} / rnn reach", figure, 0.0, None, "(0, ∞) in log", closed=False)
        cap = gradients.get("cap")
        if len(pairs) >= 2 and cap is not None and all(g == r == cap for g, r in pairs):
            test = {k: v for k, v in test.items() if k != "p"}  # left out of the family: nothing to test
            test.update(verdict=INCONCLUSIVE, why=f"both reach the cap ({cap} steps) in every seed")
        parts.append({**test, "unit": "log ratio", "ci95": figure["ci95"], "seeds": seeds})
    result["parts"] = parts
    if adding and adding.get("complete"):  # a finished sweep of rnnlab.findings.adding (an older file: none)
        result["adding_learned_up_to"] = adding_reach(adding)
        result["adding_limit"] = adding["limits"]
    return result


def by_seed(curves: dict, key: str) -> dict[int, int]:
    """seed -> reach of one cell's measurement; an older file's single reach (one seed, unnamed) under seed 0."""
    if isinstance(curves[key], list):
        return dict(zip(curves["seeds"], curves[key]))
    return {0: curves[key]}


def adding_reach(adding: dict) -> dict[str, int]:
    """Per cell, the longest sequence length at which it learned the adding problem (0: none): some seed reached
    the sweep's threshold (validation MSE < 0.01) within its budget (rnnlab.findings.adding)."""
    return {cell: max((int(T) for T, row in by_length.items() if row["learned"]), default=0)
            for cell, by_length in adding["results"].items()}


CLAIMS = ("a_rnn_fastest_least_accurate", "b_lstm_gru_similar_accuracy", "c_lstm_twice_gru_time")


def judge_claims(runs: list[dict], margin: float = SIMILAR_ACCURACY, alpha: float = ALPHA,
                 timing: dict | None = None, gradients: dict | None = None,
                 adding: dict | None = None) -> tuple[dict, dict, int]:
    """impl -> claim -> judged claim, and (d) judged from `gradients`: every interval test of every implementation
    and (d)'s one Holm family; and the family's size. timing: the controlled timing measurement (timing.json), for
    the time parts of (a) and (c)."""
    claims = {}
    for impl, cells in sorted(group_runs(runs).items()):
        timed = timed_rounds(timing, impl)
        claims[impl] = {CLAIMS[0]: judge_fastest_least_accurate(cells, timed),
                        CLAIMS[1]: judge_similar_accuracy(cells, margin), CLAIMS[2]: judge_time_ratio(cells, timed)}
    vanish = judge_gradients(gradients, adding)
    every_claim = [*(claim for judged in claims.values() for claim in judged.values()), vanish]
    size = holm((t for claim in every_claim for t in tests_of(claim)), alpha)
    for claim in every_claim:
        if tests_of(claim):
            claim["verdict"] = combine(t["verdict"] for t in tests_of(claim))
    return claims, vanish, size


def family_members(claims: dict, vanish: dict) -> list[dict]:
    """The Holm family's tests, the one record of what a report's family holds (its count is their number):
    {"claim": "a" | "b" | "c" | "d", "impl": the implementation (None for (d), measured once), "test": its name},
    for every test `holm` judged (a test without a p-value, not testable or with nothing measured, is not one)."""
    members = [{"claim": name[0], "impl": impl, "test": test["name"]}
               for impl, judged in claims.items() for name, claim in judged.items() for test in tests_of(claim)
               if "p_holm" in test]
    return members + [{"claim": "d", "impl": None, "test": test["name"]} for test in tests_of(vanish)
                      if "p_holm" in test]


def members_of(family: dict, claim: str) -> list[dict]:
    return [m for m in family.get("members", []) if m["claim"] == claim]


def judge_all(runs: list[dict], gradients: dict | None = None, adding: dict | None = None,
              margin: float = SIMILAR_ACCURACY, margins_shown: Iterable[float] = MARGINS_SHOWN,
              alpha: float = ALPHA, timing: dict | None = None) -> dict:
    """Every claim, per implementation, with the figures behind each verdict; (b) also at `margins_shown`
    (each with the whole family judged again at that margin). timing: the controlled timing measurement
    (timing.json), which the time parts of (a) and (c) are judged from when given."""
    claims, vanish, _ = judge_claims(runs, margin, alpha, timing, gradients, adding)
    at_margins = {m: judge_claims(runs, m, alpha, timing, gradients)[0] for m in sorted({*margins_shown, margin})}
    report: dict = {"implementations": {}}
    for impl, cells in sorted(group_runs(runs).items()):
        figures = {cell: {"test_acc": describe([r["test_acc"] for r in cells[cell].values()]),
                          "fit_time_s": describe(fit_times(cells[cell].values()) or [math.nan]),
                          "seeds": sorted(cells[cell]),
                          "runs_not_comparable": sorted(seed for seed, r in cells[cell].items()
                                                        if str(r.get("timing") or "").startswith("not "))}
                   for cell in sorted(cells, key=cell_rank)}
        for cell, rounds in (timed_rounds(timing, impl) or {}).items():
            if cell in figures:
                figures[cell]["controlled_epoch_s"] = describe([rounds[r] for r in sorted(rounds)])
        report["implementations"][impl] = {"cells": figures, **claims[impl]}
        report["implementations"][impl][CLAIMS[1]]["at_margins"] = {
            f"{m:g}": judged[impl][CLAIMS[1]]["verdict"] for m, judged in at_margins.items()}
    members = family_members(claims, vanish)
    report["family"] = {"tests": len(members), "members": members, "alpha": alpha, "method": "Holm step-down",
                        "margin": margin, "margins_shown": sorted({*margins_shown, margin}),
                        "gradient_tests": sum(m["claim"] == "d" for m in members)}
    if not members_of(report["family"], "d"):  # said where the family is described (claims_report.family_note)
        report["family"]["d_left_out"] = vanish.get("why") or "no interval test: " + vanish["verdict"]
    report["d_rnn_gradients_vanish"] = vanish
    report["devices"] = sorted({str(r.get("device") or "unknown") for r in runs})
    report["timing"] = timing_source(timing, report["devices"])
    return report


def baseline_figures(runs: list[dict]) -> dict:
    """The cells without recurrence (the floor): per cell, test accuracy and training time over seeds, as the
    claims' tables describe each cell. The claims are about the article's recurrent cells and never judge these."""
    cells: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        cells[run["cell"]].append(run)
    return {cell: {"impl": cells[cell][0]["impl"], "test_acc": describe([r["test_acc"] for r in cells[cell]]),
                   "fit_time_s": describe([r["fit_time_s"] for r in cells[cell]]),
                   "seeds": sorted(int(r["seed"]) for r in cells[cell])} for cell in sorted(cells, key=cell_rank)}


def timing_source(timing: dict | None, devices: list[str]) -> dict:
    """Where the time verdicts were measured: `where` ("on this CPU (<model>)", or the GPU), and from what (the
    controlled measurement, with its rounds and the load of its window, or the runs' own fit times)."""
    if timing:
        machine, window = timing["machine"], timing["window"]
        on_cpu = machine.get("accelerator", "cpu") == "cpu"
        where = f"on this CPU ({machine['cpu_model']})" if on_cpu else f"on {machine['device']}"
        return {"source": CONTROLLED, "where": where, "device": machine["device"], "rounds": timing["rounds"],
                "disturbed": window["disturbed"], "other_cpu_pct": window["other_cpu_pct"],
                "load_avg_before": window["load_avg_before"][0], "load_avg_after": window["load_avg_after"][0]}
    device = devices[0] if len(devices) == 1 else "; ".join(devices)
    if device.startswith("CPU "):
        where = f"on this CPU ({device[4:].split(' (')[0]})"
    elif device == "unknown":  # runs recorded before the device was (the search's older final runs)
        where = "on hardware these runs did not record"
    else:
        where = f"on {device}"
    return {"source": RUNS, "where": where, "device": device}


def judge_counting_failures(runs: list[dict], gradients: dict | None = None, adding: dict | None = None,
                            margin: float = SIMILAR_ACCURACY, margins_shown: Iterable[float] = MARGINS_SHOWN,
                            alpha: float = ALPHA, timing: dict | None = None,
                            unstable_drop: float = UNSTABLE_DROP) -> dict:
    """judge_all on the runs that finished, each cell's figures with its failures and unstable runs counted
    (rnnlab.comparison.failures.counts); and, where a run failed, `failures["as_chance"]`: every claim judged again
    (its own Holm family) with each failed run counted at chance accuracy."""
    report = judge_all(finished(runs), gradients, adding, margin, margins_shown, alpha, timing)
    for impl, cells in group_runs(runs).items():
        for cell, by_seed in cells.items():
            figures = report["implementations"].get(impl, {}).get("cells", {}).get(cell)
            if figures is not None:
                figures["runs"] = counts(list(by_seed.values()), unstable_drop)
    report["failures"] = {"attempted": len(runs), "failed": failed_names(runs), "unstable_drop": unstable_drop}
    if report["failures"]["failed"]:
        # (d) stays in the family (the same tests; its measurement leaves diverged runs out either way)
        as_chance = judge_all(failures_as_chance(runs), gradients, None, margin, margins_shown, alpha, timing)
        report["failures"]["as_chance"] = {key: as_chance[key] for key in ("implementations", "family")}
    return report
