"""After the search: does the proxy rank settings as the full budget does, and how do the tuned cells compare?

    python -m rnnlab.search.final

1. Confirmation (rnnlab.search.confirm): each cell's top search.final.confirm.top_k trials by proxy value are
   trained at the full budget over search.final.confirm.seeds, validation only; the cell's setting is the one
   with the best mean validation accuracy (equal budgets: every cell confirms as many).
2. Final runs: each cell's confirmed setting at the full budget over search.final.seeds, tested once each (MLflow
   experiment `search-final`, runs `tuned-<cell>-seed<k>`); one JSON per run in <search.dir>/final/.
3. Proxy check: search.final.proxy_check settings, spread evenly over the proxy's ranking (all cells' trials
   together), and the settings the cells chose, are trained again at the full budget (conf/ as it is),
   validation only; the Spearman and Kendall rank correlations of the two validation accuracies go into
   proxy_check.json.
4. claims.md: the article's claims judged on the tuned runs next to the verdicts on the pipeline's shared setting
   (`dvc repro`'s runs), both by the rule of rnnlab.comparison.claims (holds / does not hold / inconclusive, Holm
   over each report's interval tests; settings `compare`, as in the compare stage), claim (b) at several margins,
   and how likely 5, 10, 20 or 40 seeds per cell are to decide (b) (rnnlab.search.budget.decide_probability).
   A final run that diverged is counted, as compare counts the pipeline's (rnnlab.comparison.failures): each
   cell's failed and unstable runs, the verdicts again with failed runs at chance accuracy, each run's best and
   last epoch's validation accuracy.

`search.final.train=false` trains nothing: the report from the runs already there (a sitting stopped part-way); a
cell without all its confirmation runs keeps its best proxy trial, and the report says so.
Every run's result is written as soon as it ends and a rerun skips it, so this may be stopped and run again;
a run killed part-way resumes from its last epoch (rnnlab.run).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from optuna.trial import FrozenTrial
from scipy import stats

from rnnlab.cli import UserError, hydra_app
from rnnlab.compare import pipeline_claims
from rnnlab.comparison.claims import judge_counting_failures, margin_words, rule_settings
from rnnlab.comparison.claims_report import (
    failures_section,
    family_members_words,
    family_note,
    run_counts_line,
    test_line,
)
from rnnlab.comparison.failures import finished, unstable_drop
from rnnlab.comparison.table import curves_table
from rnnlab.composition import compose_config
from rnnlab.files import write_atomically
from rnnlab.identity import settings_sha256
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.search.budget import POWER_SEEDS, decide_probability, seeds_to_decide
from rnnlab.search.confirm import confirm
from rnnlab.search.report import best_trials, equal_budget
from rnnlab.search.study import EXPERIMENT, run_overrides, setting_overrides
from rnnlab.train import train

log = logging.getLogger(__name__)

FINAL_EXPERIMENT = "search-final"


def write_json(path: Path, content: dict) -> None:
    write_atomically(path, json.dumps(content, indent=2) + "\n")


def spread(trials: dict[str, list[FrozenTrial]], count: int) -> list[tuple[str, FrozenTrial]]:
    """`count` trials at evenly spaced ranks of the proxy value, over all cells' trials that trained."""
    pooled = sorted(((cell, t) for cell, done in trials.items() for t in done if "diverged" not in t.user_attrs),
                    key=lambda pair: pair[1].value)
    if count > len(pooled):
        raise UserError(f"search.final.proxy_check={count}: only {len(pooled)} trials trained")
    return [pooled[round(i)] for i in np.linspace(0, len(pooled) - 1, count)]


def proxy_check(cfg: DictConfig, trials: dict[str, list[FrozenTrial]], train_missing: bool = True,
                chosen: dict[str, int] | None = None) -> dict:
    """Settings spread over the proxy's ranking and the cells' chosen trials (cell -> trial number), retrained
    at the full budget, validation only."""
    out = Path(cfg.search.dir) / "proxy_check.json"
    done = json.loads(out.read_text()) if out.is_file() else {"settings": []}
    wanted = spread(trials, cfg.search.final.proxy_check) if train_missing else []
    for cell, number in (chosen or {}).items() if train_missing else []:
        if not any(c == cell and t.number == number for c, t in wanted):
            wanted.append((cell, next(t for t in trials[cell] if t.number == number)))
    for cell, trial in wanted:
        if any(row["cell"] == cell and row["trial"] == trial.number for row in done["settings"]):
            continue
        run_cfg = compose_config([*run_overrides(cfg, cell), *setting_overrides(trial.params), "test=false",
                                  f"logger.experiment_name={EXPERIMENT}",
                                  f"logger.run_name=proxy-check-{cell}-{trial.number}"])
        result = train(run_cfg)
        done["settings"].append({"cell": cell, "trial": trial.number, "proxy_val_acc": trial.value,
                                 "full_val_acc": result.metrics["best_val_acc"], "mlflow_run_id": result.run_id})
        write_json(out, done)
    done["chosen"] = [{"cell": cell, "trial": number,
                       "checked": any(r["cell"] == cell and r["trial"] == number for r in done["settings"])}
                      for cell, number in (chosen or {}).items()]
    proxy = [row["proxy_val_acc"] for row in done["settings"]]
    full = [row["full_val_acc"] for row in done["settings"]]
    if len(proxy) >= 3:
        done["spearman"] = float(stats.spearmanr(proxy, full).statistic)
        done["kendall"] = float(stats.kendalltau(proxy, full).statistic)
        write_json(out, done)
    return done


def final_runs(cfg: DictConfig, best: dict[str, dict], train_missing: bool = True) -> list[dict]:
    runs = []
    for seed in cfg.search.final.seeds:  # seed by seed: a sitting stopped part-way leaves every cell as many seeds
        for cell, top in best.items():
            path = Path(cfg.search.dir) / "final" / f"{cell}-seed{seed}.json"
            run_cfg = compose_config([*run_overrides(cfg, cell), *setting_overrides(top["setting"]),
                                      f"seed={seed}", f"logger.experiment_name={FINAL_EXPERIMENT}",
                                      f"logger.run_name=tuned-{cell}-seed{seed}"])
            identity = settings_sha256(run_cfg)
            if path.is_file() and json.loads(path.read_text()).get("settings_sha256") != identity:
                if not train_missing:  # a report keeps what it cannot replace, and leaves it out
                    log.warning("%s: %s was trained with another setting or other settings: left out", cell, path)
                    continue
                log.warning("%s: the best setting or the settings around it changed since %s was trained: "
                            "trained again", cell, path)
                path.unlink()
            if not path.is_file() and train_missing:
                try:
                    result = train(run_cfg, tags={"rnnlab.search_trial": f"{cell}:{top['trial']}"})
                except TrainingDiverged as e:  # a result too: this setting, this seed, gave no model
                    log.warning("%s seed %d diverged: %s", cell, seed, e)
                    write_json(path, {"cell": cell, "impl": run_cfg.model.impl, "seed": seed, "diverged": str(e),
                                      "setting": top["setting"], "trial": top["trial"], "settings_sha256": identity})
                else:
                    write_json(path, {"cell": cell, "impl": run_cfg.model.impl, "seed": seed, **result.metrics,
                                      "setting": top["setting"], "trial": top["trial"], "settings_sha256": identity,
                                      "mlflow_run_id": result.run_id, "history": result.history})
            if path.is_file():
                runs.append(json.loads(path.read_text()))
    return runs


def shared_setting_claims(cfg: DictConfig) -> dict | None:
    """The claims on the pipeline's own runs (one setting for all cells) as compare judges them -- the same report,
    Holm family and (d) included (rnnlab.compare.pipeline_claims) -- or None where they are not there."""
    try:
        return pipeline_claims(cfg)[0]
    except UserError as e:
        log.warning("the shared-setting verdicts are left out: %s", e)
        return None


TUNED_WITHOUT_D = ("the tuned runs have no gradient measurement (the gradients stage measures the shared "
                   "setting's models, and compare judges (d) on them once)")


def family_comparison(tuned: dict, shared: dict | None) -> str:
    """Which tests the tuned runs' Holm family holds, and compare's (the shared column's), each from its report's
    own record of its family's members: why their sizes differ."""
    tuned_family = tuned["family"]
    if "d_left_out" in tuned_family:
        tuned_family = {**tuned_family, "d_left_out": TUNED_WITHOUT_D}
    said = family_note({"family": tuned_family})
    if shared:
        said += (f" The shared setting's column is compare's own report (data/compare/claims.md), judged by the "
                 f"same code: a family of {shared['family']['tests']} interval tests "
                 f"({family_members_words(shared['family'])}).")
    return said


def verdicts(report: dict | None) -> dict[str, str]:
    """claim -> "<impl>: <verdict>; ..." (the shared setting was run with several implementations); claim (b) also
    at each margin shown ("b_lstm_gru_similar_accuracy at ±0.5 points")."""
    rows: dict[str, list[str]] = {}
    for impl, claims in (report or {"implementations": {}})["implementations"].items():
        for name, claim in claims.items():
            if name != "cells":
                rows.setdefault(name, []).append(f"{impl}: {claim['verdict']}")
            for margin, verdict in (claim.get("at_margins") or {}).items() if name != "cells" else []:
                rows.setdefault(f"{name} at {margin_words(float(margin))}", []).append(f"{impl}: {verdict}")
    return {name: "; ".join(shown) for name, shown in rows.items()}


def power_lines(tuned: dict, runs: list[dict]) -> list[str]:
    """How likely n seeds per cell are to decide claim (b), at the tuned runs' means and spreads."""
    accuracy: dict[str, list[float]] = {}
    for r in runs:
        accuracy.setdefault(r["cell"], []).append(r["test_acc"])
    if "lstm" not in accuracy or "gru" not in accuracy or min(len(accuracy["lstm"]), len(accuracy["gru"])) < 2:
        return []
    family = tuned["family"]
    margin, strictest = family["margin"], 1 - family["alpha"] / max(family["tests"], 1)
    alone = decide_probability(accuracy["lstm"], accuracy["gru"], margin, POWER_SEEDS)
    in_family = decide_probability(accuracy["lstm"], accuracy["gru"], margin, POWER_SEEDS, level=strictest)
    needed = seeds_to_decide(accuracy["lstm"], accuracy["gru"], margin)
    return ["", f"Claim (b) at the tuned settings (margin {margin_words(margin)}): the probability that n seeds per "
                "cell decide it (holds or does not hold), from 20,000 simulated experiments at the measured means "
                f"and standard deviations (numpy seed 0); with the interval at 95% (the test alone) and at "
                f"{100 * strictest:.3g}% (1 - alpha/m, the strictest level Holm gives in this report's family of "
                f"{family['tests']} tests).", "",
            "| seeds per cell | " + " | ".join(map(str, POWER_SEEDS)) + " |",
            "| --- |" + " --- |" * len(POWER_SEEDS),
            "| decided, 95% interval | " + " | ".join(f"{alone[n]:.0%}" for n in POWER_SEEDS) + " |",
            f"| decided, {100 * strictest:.3g}% interval | "
            + " | ".join(f"{in_family[n]:.0%}" for n in POWER_SEEDS) + " |", "",
            f"Taking the observed difference as the truth instead (optimistic: the next seeds' difference will "
            f"differ), {needed if needed else 'more than 1000'} seeds per cell would put the 95% interval wholly "
            f"inside or outside {margin_words(margin)}."]


def claims_markdown(tuned: dict, shared: dict | None, results: list[dict], proxy: dict, n_trials: int) -> str:
    """results: every final run, failed (diverged) ones included: counted, and the verdicts judged again with them
    at chance (judge_counting_failures)."""
    runs = finished(results)
    lines = ["# The article's claims: shared setting vs each cell tuned", "",
             f"Tuned: each cell's best of {n_trials} trials (equal budgets; chosen on validation), retrained at the "
             f"full budget over seeds {sorted({r['seed'] for r in results})} and tested once. Shared: `dvc repro`'s "
             "runs, one setting for every cell.", "",
             "| cell | tuned test acc (mean ± sd, 95% CI) | fit time (s) | setting |", "| --- | --- | --- | --- |"]
    for impl, claims in tuned["implementations"].items():
        for cell, figures in claims["cells"].items():
            acc, time = figures["test_acc"], figures["fit_time_s"]
            ci = f"[{acc['ci95'][0]:.4f}, {acc['ci95'][1]:.4f}]" if acc["ci95"] else "n/a"
            setting = next(r["setting"] for r in runs if r["cell"] == cell)
            shown = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                              for k, v in setting.items())
            lines.append(f"| {cell} ({impl}) | {acc['mean']:.4f} ± {acc['sd'] or 0:.4f}, {ci} | "
                         f"{time['mean']:.0f} ± {time['sd'] or 0:.0f} | {shown} |")
    drop = tuned["failures"]["unstable_drop"]
    lines += ["", *filter(None, (run_counts_line(claims, drop) for claims in tuned["implementations"].values()))]
    tuned_rows, shared_rows = verdicts(tuned), verdicts(shared)
    lines += ["", family_comparison(tuned, shared),
              "", "| claim | shared setting | tuned |", "| --- | --- | --- |"]
    for name in sorted(set(tuned_rows) | set(shared_rows)):
        lines.append(f"| {name} | {shared_rows.get(name, 'not run (dvc repro)')} | {tuned_rows.get(name, 'not run')} |")
    lines += ["", "The tuned verdicts' tests (the shared setting's: data/compare/claims.md):", ""]
    for impl, claims in tuned["implementations"].items():
        for name, claim in claims.items():
            lines += [f"- {impl}, {name[0]}: {test_line(test)}" for test in (claim.get("parts") or
                                                                           [claim.get("test")] if name != "cells" else [])
                      if test]
    lines += ["", "Tuned runs' failures (the verdicts above are on the runs that finished):", "",
              *failures_section(tuned), curves_table(results, drop)]
    lines += power_lines(tuned, runs)
    if "spearman" in proxy:
        lines += ["", f"Proxy check: {len(proxy['settings'])} settings retrained at the full budget rank as on the "
                      f"proxy with Spearman {proxy['spearman']:.2f}, Kendall {proxy['kendall']:.2f} (proxy_check.json)."]
    else:
        lines += ["", "Proxy check: not run yet (`python -m rnnlab.search.final` runs it after the final runs)."]
    return "\n".join(lines) + "\n"


def chosen_settings(best: dict[str, dict], selection: dict[str, dict]) -> dict[str, dict]:
    """Each cell's setting for the final runs: its confirmed choice, or (no complete confirmation: a report from
    runs that predate it) its best proxy trial, marked `"confirmed": False`."""
    out = {}
    for cell, row in best.items():
        confirmed = selection[cell]
        if confirmed["complete"]:
            pick = next(c for c in confirmed["candidates"] if c["chosen"])
            out[cell] = {**row, "trial": pick["trial"], "setting": pick["setting"], "best_val_acc": pick["proxy_val_acc"],
                         "confirmed": True}
        else:
            out[cell] = {**row, "confirmed": False}
    return out


def selection_markdown(selection: dict[str, dict], best: dict[str, dict], proxy: dict) -> str:
    """The candidates of every cell: proxy value, full-budget validation accuracy over seeds, the chosen one."""
    lines = ["", "## How each cell's setting was chosen (validation only)", "",
             ("Each cell's top trials by proxy value, retrained at the full budget over the same seeds with the "
              "test split never read (`confirm/` beside this report; a diverged seed counts as chance, 0.5); the "
              "chosen one has the highest mean validation accuracy."), "",
             "| cell | trial | proxy val acc | full-budget val acc (mean ± sd) | seeds | diverged | chosen |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for cell, confirmed in selection.items():
        for row in confirmed["candidates"]:
            figure = (f"{row['mean_val_acc']:.4f} ± {row['sd_val_acc'] or 0:.4f}" if row["val_accs"] else "not run")
            lines.append(f"| {cell} | {row['trial']} | {row['proxy_val_acc']:.4f} | {figure} | "
                         f"{', '.join(map(str, row['seeds'])) or '–'} | {row['diverged']} | "
                         f"{'**chosen**' if row['chosen'] else ''} |")
    counts = {cell: len(confirmed["candidates"]) for cell, confirmed in selection.items()}
    if len(set(counts.values())) > 1:  # a cell with fewer trials that trained than top_k: said, not hidden
        lines += ["", "Unequal confirmation: candidates per cell " + ", ".join(
            f"{cell} {count}" for cell, count in counts.items()) + " (the others' trials diverged on the proxy)."]
    lacking = [cell for cell, row in best.items() if not row["confirmed"]]
    if lacking:
        seeds = list(next(iter(selection.values()))["seeds"])
        fallback = ", ".join(f"{cell} trial {best[cell]['trial']}" for cell in lacking)
        lines += ["", (f"Without all their confirmation runs (seeds {seeds}): {', '.join(lacking)}; their final "
                       f"runs use the best proxy trial ({fallback}), as before the confirmation step: run "
                       "`python -m rnnlab.search.final` to confirm.")]
    unchecked = [f"{row['cell']} trial {row['trial']}" for row in proxy.get("chosen", []) if not row["checked"]]
    lines += ["", ("Proxy check: every chosen setting is among the settings retrained (proxy_check.json)."
                   if not unchecked else
                   f"Proxy check: the chosen {', '.join(unchecked)} not yet among the settings retrained "
                   "(proxy_check.json): run `python -m rnnlab.search.final` to add them.")]
    return "\n".join(lines) + "\n"


@hydra_app("search.final")
def main(cfg: DictConfig) -> None:
    trials, _ = equal_budget(cfg.search)
    n_trials = len(next(iter(trials.values())))
    best = best_trials(trials)
    failed = [cell for cell, row in best.items() if row["diverged"] == row["trials"]]
    if failed:
        raise UserError(f"every trial of {', '.join(failed)} diverged: widen search.space or run more trials")
    train_missing = bool(cfg.search.final.train)
    selection = confirm(cfg, trials, train_missing)
    best = chosen_settings(best, selection)
    results = final_runs(cfg, best, train_missing)
    if not finished(results):
        raise UserError(f"no final run in {Path(cfg.search.dir) / 'final'} yet: run with search.final.train=true")
    proxy = proxy_check(cfg, trials, train_missing, {cell: row["trial"] for cell, row in best.items()})
    # a diverged final run is a result: counted per cell, and the verdicts judged again with it at chance
    tuned = judge_counting_failures(results, **rule_settings(cfg), unstable_drop=unstable_drop(cfg))
    text = claims_markdown(tuned, shared_setting_claims(cfg), results, proxy, n_trials)
    text += selection_markdown(selection, best, proxy)
    write_atomically(Path(cfg.search.dir) / "claims.md", text)
    write_json(Path(cfg.search.dir) / "final.json", {"trials_per_cell": n_trials, "claims": tuned, "proxy": proxy,
                                                     "selection": selection})
    print(text, end="")


if __name__ == "__main__":
    main()
