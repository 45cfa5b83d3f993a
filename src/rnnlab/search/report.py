"""The search's report: expected best validation accuracy against the number of trials and against training
time, per cell, with its uncertainty.

    python -m rnnlab.search.report

Reads the studies (rnnlab.search.study; it trains nothing) and writes into search.dir:
- expected_max.csv: per cell and n = 1 .. N, the expected best of n trials and its sd (the spread of one search's
  best: rnnlab.search.budget), the 95% bootstrap band of that curve over the N trials (band_low, band_high), the
  mean trial time and the expected cumulative training time of n trials (n x the mean: expected_time_s);
- expected_max_diff.csv: per pair of cells (the one ahead at n = N first) and n, the difference of their curves,
  its 95% bootstrap interval and the bootstrap P(difference > 0);
- expected_max.png: the curves with their bands, against trials and against training time;
- best.json (each cell's best trial: its setting, value, best epoch, MLflow run) and report.md, which also says
  which of a best setting's parameters sit at the edge of the space and how the cells' draws compare.
Every cell is judged on the same number of trials N: the first N completed trials of each, N being the fewest any
cell has, so a search stopped part-way still compares equal budgets. Trials drawn with common random numbers
(rnnlab.search.study.SharedDraws: the same setting for draw k of every cell) are resampled in pairs, draw by draw;
earlier trials cell by cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

from rnnlab.cells import CELLS  # noqa: E402
from rnnlab.cli import UserError, hydra_app  # noqa: E402
from rnnlab.files import replacing, write_atomically  # noqa: E402
from rnnlab.search.budget import (  # noqa: E402
    bootstrap_expected_max,
    difference_interval,
    expected_max,
    percentile_band,
)
from rnnlab.search.study import DRAW_ATTR, completed, load_study  # noqa: E402

SHOWN_BUDGETS = (1, 2, 5, 10, 20, 50)
SHOWN_TIMES = (60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)  # s: those a table can compare every cell at
RESAMPLES = 2000  # bootstrap resamples of each cell's trials
LEVEL = 0.95  # the bands' and intervals' coverage (percentile bootstrap)
BOOTSTRAP_SEED = 0
# Settings of the recurrent encoder and its pooling: the bag of embeddings ignores them (rnnlab.models.network)
NOT_FOR_A_BAG = ("model.hidden_size", "model.num_layers", "model.bidirectional", "model.pooling", "model.forget_bias")
EDGE = 0.05  # a float parameter is at an edge within this fraction of its range (of log(range) with log: true)
# Where every cell's best trials lie (README "A fair comparison"): how many of each cell's draws landed there.
REGION = {"model.optimizer.lr": (3e-3, 2e-2), "model.pooling": ("max", "mean")}
REGION_TEXT = "lr in [3e-3, 2e-2] and pooling max or mean"


def equal_budget(settings: DictConfig) -> tuple[dict[str, list[FrozenTrial]], dict]:
    """Each cell's first N completed trials (by number), N the fewest completed trials of any cell, and what
    defined the studies (rnnlab.search.study.defining; the cells' differ only in the cell and, for a cell without
    the configured implementation, its own): the first study's, with `overrides` those every study shares but the
    cell's, and `impls` each cell's implementation (`implementation`)."""
    studies = {cell: load_study(settings, cell) for cell in settings.cells}
    trials = {cell: sorted(completed(study), key=lambda t: t.number) for cell, study in studies.items()}
    fewest = min(len(done) for done in trials.values())
    if fewest == 0:
        empty = [cell for cell, done in trials.items() if not done]
        raise UserError(f"no completed trial yet for {', '.join(empty)}: run `python -m rnnlab.search.run`")
    trials = {cell: done[:fewest] for cell, done in trials.items()}
    overrides = {cell: list(study.user_attrs.get("overrides") or []) for cell, study in studies.items()}
    shared = [o for o in next(iter(overrides.values()))
              if not o.startswith(CELL_OVERRIDES) and all(o in mine for mine in overrides.values())]
    defined = {**next(iter(studies.values())).user_attrs, "overrides": shared,
               "impls": {cell: implementation(trials[cell], overrides[cell]) for cell in studies}}
    return trials, defined


CELL_OVERRIDES = ("model=", "model.cell=")  # how a study's overrides name its cell (model=: studies before model.cell)


def implementation(trials: list[FrozenTrial], overrides: list[str]) -> str | None:
    """What a cell's trials ran: the implementation they recorded (user attribute impl), else the last
    model.impl its study's overrides set (trials before the attribute); None: neither says."""
    recorded = {t.user_attrs["impl"] for t in trials if "impl" in t.user_attrs}
    if len(recorded) == 1:
        return recorded.pop()
    return next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("model.impl=")), None)


def trial_time(trial: FrozenTrial) -> float:
    """A trial's training time in seconds: the fit time train_trial records (user attribute fit_time_s), else its
    wall time in the study (datetime_start to datetime_complete); NaN when neither is there."""
    if "fit_time_s" in trial.user_attrs:
        return float(trial.user_attrs["fit_time_s"])
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return float("nan")


def shared_draws(trials: dict[str, list[FrozenTrial]]) -> bool:
    """Whether the cells' trials were drawn with common random numbers (SharedDraws), the same draws in every cell."""
    draws = [sorted(t.user_attrs.get(DRAW_ATTR, -1) for t in done) for done in trials.values()]
    return all(-1 not in d and len(set(d)) == len(d) and d == draws[0] for d in draws)


def bootstrap(trials: dict[str, list[FrozenTrial]], resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict[str, np.ndarray]:
    """Each cell's bootstrap expected-max curves (resamples, N): paired draw by draw when the trials share draws."""
    paired = shared_draws(trials)
    values = {cell: [t.value for t in (sorted(done, key=lambda t: t.user_attrs[DRAW_ATTR]) if paired else done)]
              for cell, done in trials.items()}
    return bootstrap_expected_max(values, resamples=resamples, seed=seed, paired=paired)


def curves(trials: dict[str, list[FrozenTrial]], boot: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Per cell and n: expected best, sd, the LEVEL bootstrap band, the mean trial time, n x that time."""
    boot = boot if boot is not None else bootstrap(trials)
    rows = []
    for cell, done in trials.items():
        means, sds = expected_max([t.value for t in done])
        low, high = percentile_band(boot[cell], LEVEL)
        seconds = float(np.mean([trial_time(t) for t in done]))
        rows += [{"cell": cell, "trials": n, "expected_best_val_acc": m, "sd": s, "band_low": lo, "band_high": hi,
                  "trial_time_s": seconds, "expected_time_s": n * seconds}
                 for n, (m, s, lo, hi) in enumerate(zip(means, sds, low, high), start=1)]
    return pd.DataFrame(rows)


def ranked(table: pd.DataFrame) -> list[str]:
    """The cells, highest expected best at the largest budget first."""
    last = table[table.trials == table.trials.max()]
    return list(last.sort_values("expected_best_val_acc", ascending=False, kind="stable").cell)


def differences(table: pd.DataFrame, boot: dict[str, np.ndarray]) -> pd.DataFrame:
    """Every pair of cells (the one ahead at n = N first): a - b of their curves, its bootstrap interval, P(> 0)."""
    order, rows = ranked(table), []
    point = {cell: rows_.set_index("trials").expected_best_val_acc for cell, rows_ in table.groupby("cell")}
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            found = difference_interval(boot[a], boot[b], LEVEL)
            rows += [{"a": a, "b": b, "trials": n, "difference": point[a][n] - point[b][n],
                      "low": found["low"][n - 1], "high": found["high"][n - 1],
                      "p_positive": found["p_positive"][n - 1]} for n in point[a].index]
    return pd.DataFrame(rows, columns=["a", "b", "trials", "difference", "low", "high", "p_positive"])


def winners(table: pd.DataFrame) -> dict[int, str]:
    """The cell with the highest expected best validation accuracy at each budget."""
    return {int(n): rows.loc[rows.expected_best_val_acc.idxmax(), "cell"] for n, rows in table.groupby("trials")}


def leads(table: pd.DataFrame, boot: dict[str, np.ndarray]) -> dict[int, dict[str, Any]]:
    """At each budget n: the cell ahead, the runner-up, the lead, its bootstrap interval and P(lead > 0)."""
    out = {}
    for n, rows in table.groupby("trials"):
        top = rows.sort_values("expected_best_val_acc", ascending=False, kind="stable")
        if len(top) < 2:
            continue
        first, second = top.cell.iloc[0], top.cell.iloc[1]
        found = difference_interval(boot[first][:, [n - 1]], boot[second][:, [n - 1]], LEVEL)
        out[int(n)] = {"cell": first, "over": second,
                       "lead": top.expected_best_val_acc.iloc[0] - top.expected_best_val_acc.iloc[1],
                       "low": float(found["low"][0]), "high": float(found["high"][0]),
                       "p_positive": float(found["p_positive"][0])}
    return out


def shown_times(table: pd.DataFrame) -> list[float]:
    """Time budgets (s) at which every cell's curve can be read: from the longest mean trial (one trial of the
    slowest cell) to the smallest total (all trials of the fastest), SHOWN_TIMES between and that total."""
    per_cell = table.groupby("cell").agg(one=("trial_time_s", "first"), total=("expected_time_s", "max"))
    low, high = float(per_cell.one.max()), float(per_cell.total.min())
    if not np.isfinite(low) or not np.isfinite(high) or high < low:
        return []
    return [float(t) for t in SHOWN_TIMES if low <= t < high] + [high]


def at_time(table: pd.DataFrame, seconds: float) -> dict[str, tuple[float, float, float]]:
    """Each cell's expected best (and band) after `seconds` of training: its curve against n x mean trial time,
    interpolated linearly between budgets; NaN outside one trial .. all N trials."""
    out = {}
    for cell, rows in table.groupby("cell", sort=False):
        x = rows.expected_time_s.to_numpy()
        if not (np.isfinite(x).all() and x[0] <= seconds <= x[-1] * (1 + 1e-9)):
            out[cell] = (float("nan"),) * 3
            continue
        out[cell] = tuple(float(np.interp(seconds, x, rows[column])) for column in
                          ("expected_best_val_acc", "band_low", "band_high"))
    return out


def edges(best: dict[str, dict], space: dict[str, Any], fraction: float = EDGE) -> dict[str, list[str]]:
    """Per cell, its best setting's parameters at an edge of the space: the lowest or highest of ordered
    (numeric) choices, or within `fraction` of a float range's ends (of its logarithm with log: true)."""
    found = {}
    for cell, row in best.items():
        notes = []
        for key, value in row["setting"].items():
            spec, name = space.get(key), key.split(".")[-1]
            if key in NOT_FOR_A_BAG and cell in CELLS and not CELLS[cell].recurrent:
                continue  # a setting the cell without recurrence ignores has no edge worth widening
            if isinstance(spec, list):
                numbers = [c for c in spec if isinstance(c, (int, float)) and not isinstance(c, bool)]
                if len(numbers) < 2 or len(numbers) != len(spec) or value not in numbers:
                    continue  # unordered choices (pooling) have no edge
                choices = ", ".join(str(c) for c in spec)
                if value == min(numbers):
                    notes.append(f"{name}={value} (the lowest of {choices})")
                elif value == max(numbers):
                    notes.append(f"{name}={value} (the highest of {choices})")
            elif isinstance(spec, dict) and {"low", "high"} <= set(spec):
                scale = np.log if spec.get("log") else (lambda x: x)
                where = (scale(value) - scale(spec["low"])) / (scale(spec["high"]) - scale(spec["low"]))
                if where <= fraction:
                    notes.append(f"{name}={value:.3g} (within {fraction:.0%} of the low end, {spec['low']:g})")
                elif where >= 1 - fraction:
                    notes.append(f"{name}={value:.3g} (within {fraction:.0%} of the high end, {spec['high']:g})")
        found[cell] = notes
    return found


def in_region(params: dict[str, Any], region: dict[str, tuple] = REGION) -> bool:
    """Whether a setting lies in `region`: per parameter a (low, high) range of numbers or a tuple of choices."""
    for key, allowed in region.items():
        value = params.get(key)
        if value is None:
            return False
        if all(isinstance(a, (int, float)) for a in allowed) and len(allowed) == 2 and isinstance(value, float):
            if not allowed[0] <= value <= allowed[1]:
                return False
        elif value not in allowed:
            return False
    return True


def region_counts(trials: dict[str, list[FrozenTrial]]) -> dict[str, int]:
    return {cell: sum(in_region(t.params) for t in done) for cell, done in trials.items()}


def best_trials(trials: dict[str, list[FrozenTrial]]) -> dict[str, dict]:
    best = {}
    for cell, done in trials.items():
        top = max(done, key=lambda t: t.value)
        best[cell] = {"trial": top.number, "best_val_acc": top.value, "setting": top.params,
                      "best_epoch": top.user_attrs.get("best_epoch"),
                      "mlflow_run_id": top.user_attrs.get("mlflow_run_id"), "trials": len(done),
                      "diverged": sum("diverged" in t.user_attrs for t in done)}
    return best


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    """Two panels: the curves against trials and against expected cumulative training time, each with its
    bootstrap band shaded."""
    fig, (by_trials, by_time) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for cell, rows in table.groupby("cell", sort=False):
        colour = CELLS[cell].colour if cell in CELLS else None
        for ax, x in ((by_trials, rows.trials), (by_time, rows.expected_time_s)):
            ax.plot(x, rows.expected_best_val_acc, marker=".", color=colour, label=cell)
            ax.fill_between(x, rows.band_low, rows.band_high, color=colour, alpha=0.15)
    by_trials.set(xlabel="trials (random draws from the search space)", ylabel="expected best validation accuracy")
    by_trials.xaxis.get_major_locator().set_params(integer=True)
    by_time.set(xlabel="expected training time (s): trials x the cell's mean trial time")
    for ax in (by_trials, by_time):
        ax.grid(alpha=0.3)
    by_trials.legend(title=f"cell (band: {LEVEL:.0%} bootstrap)")
    fig.suptitle(title)
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)


def points(x: float) -> str:
    return f"{100 * x:+.2f}"


def mixed_impls(defined: dict) -> bool:
    """Whether the cells ran different implementations (a cell without the configured one: rnnlab.cells.run_impl)."""
    return len(set((defined.get("impls") or {}).values())) > 1


def shared_overrides(defined: dict) -> list[str]:
    """The overrides the report says every run had: not the cell's, nor model.impl where the cells' differ."""
    return [o for o in defined["overrides"] if not o.startswith(CELL_OVERRIDES)
            and not (mixed_impls(defined) and o.startswith("model.impl="))]


def impls_sentence(defined: dict) -> str:
    if not mixed_impls(defined):
        return ""
    ran = ", ".join(f"{cell} {impl or 'not recorded'}" for cell, impl in defined["impls"].items())
    return (f"Implementation per cell (the configured one where the cell has it, else its parallel scan: "
            f"rnnlab.cells.run_impl): {ran}. ")


def markdown(defined: dict, table: pd.DataFrame, best: dict[str, dict], diffs: pd.DataFrame | None = None,
             lead: dict[int, dict] | None = None, paired: bool = False,
             region: dict[str, int] | None = None) -> str:
    n = int(table.trials.max())
    budgets = [b for b in SHOWN_BUDGETS if b < n] + [n]
    head = "| cell | " + " | ".join(f"n={b}" for b in budgets) + " |"
    rule = "|" + " --- |" * (len(budgets) + 1)
    lines = [f"# Equal-budget search: {n} trials per cell", "",
             (f"Sampler: {defined['sampler']}; proxy budget per trial: {' '.join(defined['proxy'])}; every run: "
              f"{' '.join(shared_overrides(defined))}, seed {defined['seed']}. "
              f"{impls_sentence(defined)}"
              "A trial's value: its best epoch's validation accuracy (the test split is never read)."),
             "", "Expected best validation accuracy (± sd) after n trials (Dodge et al., 2019):", "", head, rule]
    by_cell = {cell: rows.set_index("trials") for cell, rows in table.groupby("cell", sort=False)}
    for cell, by_n in by_cell.items():
        lines.append(f"| {cell} | " + " | ".join(
            f"{by_n.expected_best_val_acc[b]:.4f} ± {by_n.sd[b]:.4f}" for b in budgets) + " |")
    lines += ["", "The ± sd is the spread of the best of n draws (how much one search of n trials varies), not the "
              "uncertainty of the curve. That is the bootstrap band below: each cell's "
              f"{n} trials resampled with replacement {RESAMPLES:,} times (numpy Generator, seed {BOOTSTRAP_SEED}; "
              + ("the cells resampled together, draw by draw: their trials share draws" if paired else
                 "each cell resampled on its own: its trials are independent of the other cells'")
              + f"), the curve recomputed, the {LEVEL:.0%} percentile band:", "", head, rule]
    for cell, by_n in by_cell.items():
        lines.append(f"| {cell} | " + " | ".join(
            f"{by_n.expected_best_val_acc[b]:.4f} [{by_n.band_low[b]:.4f}, {by_n.band_high[b]:.4f}]"
            for b in budgets) + " |")
    if diffs is not None and len(diffs):
        lines += ["", (f"Differences between the cells' curves, in accuracy points: the difference, its {LEVEL:.0%} "
                       "bootstrap interval, and the bootstrap probability that it is above 0:"), "",
                  "| difference | " + " | ".join(f"n={b}" for b in budgets) + " |", rule]
        for (a, b), rows in diffs.groupby(["a", "b"], sort=False):
            by_n = rows.set_index("trials")
            lines.append(f"| {a} − {b} | " + " | ".join(
                f"{points(by_n.difference[k])} [{points(by_n.low[k])}, {points(by_n.high[k])}], "
                f"P(>0) {by_n.p_positive[k]:.2f}" for k in budgets) + " |")
        lines += [""]
        for (a, b), rows in diffs.groupby(["a", "b"], sort=False):
            above = [k for k in budgets if rows.set_index("trials").low[k] > 0]
            below = [k for k in budgets if rows.set_index("trials").high[k] < 0]
            if above and not below:
                said = (f"{a} ahead of {b} beyond the {LEVEL:.0%} interval at every budget shown"
                        if len(above) == len(budgets) else
                        f"{a} ahead of {b} beyond the {LEVEL:.0%} interval at n = {', '.join(map(str, above))}; "
                        "the interval includes 0 at the other budgets shown")
            elif below:
                said = (f"{a} − {b}: the interval is above 0 at n = {', '.join(map(str, above)) or 'none'} and "
                        f"below 0 at n = {', '.join(map(str, below))}")
            else:
                p = rows.set_index("trials").p_positive[budgets]
                said = (f"{a} − {b}: the {LEVEL:.0%} interval includes 0 at every budget shown; {a} is ahead with "
                        f"bootstrap probability {p.min():.2f}-{p.max():.2f}: not resolved by {n} trials per cell")
            lines.append(f"- {said}.")
    if lead:
        lines += ["", "Ahead at each budget (lead over the runner-up, points, bootstrap interval): " + "; ".join(
            f"n={k}: {lead[k]['cell']} {points(lead[k]['lead'])} over {lead[k]['over']} "
            f"[{points(lead[k]['low'])}, {points(lead[k]['high'])}]" for k in budgets if k in lead)]
    else:
        ahead = winners(table)
        lines += ["", "Ahead at each budget: " + ", ".join(f"n={b}: {ahead[b]}" for b in budgets)]
    times = shown_times(table)
    if times:
        lines += ["", ("Against training time: a cell's n trials take n × its mean trial time in expectation (the "
                       "trials' recorded fit times, `fit_time_s`, else their wall time in the study; measured while "
                       "other work shared the CPU: indicative). Expected best validation accuracy [bootstrap band] "
                       "after t seconds of trials (interpolated between budgets):"), "",
                  "| cell | trials | total trial time (s) | mean per trial (s) | "
                  + " | ".join(f"t={t:.0f} s" for t in times) + " |", "|" + " --- |" * (4 + len(times))]
        read = {t: at_time(table, t) for t in times}
        for cell, by_n in by_cell.items():
            lines.append(f"| {cell} | {n} | {by_n.expected_time_s[n]:.0f} | {by_n.trial_time_s[n]:.1f} | " + " | ".join(
                "–" if np.isnan(read[t][cell][0]) else
                f"{read[t][cell][0]:.4f} [{read[t][cell][1]:.4f}, {read[t][cell][2]:.4f}]" for t in times) + " |")
        lines += ["", "Ahead at each time: " + ", ".join(
            f"t={t:.0f} s: {max(read[t], key=lambda c: read[t][c][0])}" for t in times)]
    lines += ["", "Draws: " + (
        "common random numbers (every cell's k-th trial drew the same setting: rnnlab.search.study.SharedDraws)."
        if paired else
        "these trials predate common random numbers (rnnlab.search.study.SharedDraws): each cell drew its own "
        "settings, so one cell's luck in the draws can move the comparison.")]
    if region is not None and not paired:
        lines[-1] += (f" Trials with {REGION_TEXT} (where every cell's best trial lies): "
                      + ", ".join(f"{cell} {count} of {n}" for cell, count in region.items()) + ".")
    lines += ["", "| cell | best val acc | trial | best epoch | diverged trials | setting |", "|" + " --- |" * 6]
    for cell, row in best.items():
        setting = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                            for k, v in row["setting"].items())
        lines.append(f"| {cell} | {row['best_val_acc']:.4f} | {row['trial']} | {row['best_epoch']} | "
                     f"{row['diverged']} | {setting} |")
    at_edge = edges(best, defined.get("space") or {})
    if any(at_edge.values()):
        lines += ["", "At the edge of the space (the best setting may lie beyond it): " + "; ".join(
            f"{cell}: {', '.join(notes)}" for cell, notes in at_edge.items() if notes) + "."]
    return "\n".join(lines) + "\n"


def report(settings: DictConfig) -> str:
    trials, defined = equal_budget(settings)
    boot = bootstrap(trials)
    table = curves(trials, boot)
    diffs = differences(table, boot)
    best = best_trials(trials)
    out = Path(settings.dir)
    write_atomically(out / "expected_max.csv", table.to_csv(index=False, float_format="%.6f"))
    write_atomically(out / "expected_max_diff.csv", diffs.to_csv(index=False, float_format="%.6f"))
    n = len(next(iter(trials.values())))
    plot(table, out / "expected_max.png", f"IMDB: expected best validation accuracy ({n} trials per cell)")
    write_atomically(out / "best.json", json.dumps(best, indent=2) + "\n")
    text = markdown(defined, table, best, diffs, leads(table, boot), shared_draws(trials), region_counts(trials))
    write_atomically(out / "report.md", text)
    return text


@hydra_app("search.report")
def main(cfg: DictConfig) -> None:
    print(report(cfg.search), end="")
    print(f"wrote {Path(cfg.search.dir) / 'report.md'}, expected_max.csv, expected_max_diff.csv, expected_max.png, "
          "best.json")


if __name__ == "__main__":
    main()
