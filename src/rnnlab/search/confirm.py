"""Confirming the search's choice at the full budget, on validation only, before anything is tested.

The search's proxy (fewer epochs, shorter reviews) rewards settings that learn fast, which may be unstable when
they train longer. So each cell's top search.final.confirm.top_k trials by proxy value (the candidates) are
trained again at the full budget (conf/ as it is) over search.final.confirm.seeds, `test=false` (the test split
is never read), and the cell's setting is the candidate with the highest mean validation accuracy over those
seeds. Every cell confirms the same number of candidates over the same seeds: the budgets stay equal.

A seed whose training diverged counts as chance (rnnlab.search.study.CHANCE): a setting that fails is worse, not
absent. One JSON per run in <search.dir>/confirm/<cell>-trial<n>-seed<k>.json, written as the run ends, skipped
on a rerun (MLflow experiment `search-confirm`, runs `confirm-<cell>-<n>-seed<k>`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from rnnlab.cli import UserError, first_line
from rnnlab.composition import compose_config
from rnnlab.files import write_atomically
from rnnlab.identity import settings_sha256
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.search.study import CHANCE, run_overrides, setting_overrides
from rnnlab.train import train

log = logging.getLogger(__name__)

CONFIRM_EXPERIMENT = "search-confirm"


def candidates(trials: dict[str, list[FrozenTrial]], top_k: int) -> dict[str, list[FrozenTrial]]:
    """Each cell's top_k trials that trained, highest proxy value first (the earlier trial first among equals)."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise UserError(f"search.final.confirm.top_k={top_k!r}: give a positive integer")
    return {cell: sorted((t for t in done if "diverged" not in t.user_attrs),
                         key=lambda t: (-t.value, t.number))[:top_k] for cell, done in trials.items()}


def run_path(settings: DictConfig, cell: str, trial: int, seed: int) -> Path:
    return Path(settings.dir) / "confirm" / f"{cell}-trial{trial}-seed{seed}.json"


def confirm_run(cfg: DictConfig, cell: str, trial: FrozenTrial, seed: int, train_missing: bool) -> dict | None:
    """One candidate at one seed: its result from disk, trained first where it is missing (and train_missing)."""
    path = run_path(cfg.search, cell, trial.number, seed)
    run_cfg = compose_config([*run_overrides(cfg, cell), *setting_overrides(trial.params), f"seed={seed}",
                              "test=false", f"logger.experiment_name={CONFIRM_EXPERIMENT}",
                              f"logger.run_name=confirm-{cell}-{trial.number}-seed{seed}"])
    identity = settings_sha256(run_cfg)
    if path.is_file():
        found = json.loads(path.read_text())
        if found.get("settings_sha256") == identity:
            return found
        if not train_missing:  # kept: a report must not delete what it cannot replace
            log.warning("%s was trained with other settings: left out", path)
            return None
        log.warning("%s was trained with other settings: trained again", path)
    if not train_missing:
        return None
    row = {"cell": cell, "trial": trial.number, "seed": seed, "proxy_val_acc": trial.value,
           "setting": trial.params, "settings_sha256": identity}
    try:
        result = train(run_cfg, tags={"rnnlab.search_trial": f"{cell}:{trial.number}"})
    except TrainingDiverged as e:  # a result too: this setting, this seed, gave no model
        log.warning("%s trial %d seed %d diverged: %s", cell, trial.number, seed, e)
        row["diverged"] = first_line(e)
    else:
        row.update(best_val_acc=result.metrics["best_val_acc"], history=result.history,
                   mlflow_run_id=result.run_id)
    write_atomically(path, json.dumps(row, indent=2) + "\n")
    return row


def confirm(cfg: DictConfig, trials: dict[str, list[FrozenTrial]], train_missing: bool = True) -> dict[str, dict]:
    """Per cell: its candidates, each with its confirmation runs and their mean and sd of validation accuracy,
    and the chosen one (None where some candidate lacks a run: `complete` is then False)."""
    settings = cfg.search.final.confirm
    seeds = list(settings.seeds)
    if not seeds:
        raise UserError("search.final.confirm.seeds is empty: give at least one seed")
    top = candidates(trials, settings.top_k)
    rows: dict[str, list[dict]] = {cell: [] for cell in top}
    for seed in seeds:  # seed by seed: a sitting stopped part-way leaves every candidate as many seeds
        for cell, chosen_from in top.items():
            for trial in chosen_from:
                run = confirm_run(cfg, cell, trial, seed, train_missing)
                if run is not None:
                    rows[cell].append(run)
    return {cell: select(top[cell], rows[cell], seeds) for cell in top}


def validation(run: dict) -> float:
    """A confirmation run's validation accuracy; a diverged run counts as chance."""
    return CHANCE if "diverged" in run else float(run["best_val_acc"])


def select(chosen_from: list[FrozenTrial], runs: list[dict], seeds: list[int]) -> dict:
    """The candidates of one cell with their figures, and the one with the highest mean validation accuracy over
    `seeds` (the higher proxy value among equal means). None is chosen unless every candidate has every seed."""
    listed = []
    for trial in chosen_from:
        mine = sorted((r for r in runs if r["trial"] == trial.number), key=lambda r: r["seed"])
        accuracies = [validation(r) for r in mine]
        listed.append({"trial": trial.number, "setting": trial.params, "proxy_val_acc": trial.value,
                       "seeds": [r["seed"] for r in mine], "val_accs": accuracies,
                       "diverged": sum("diverged" in r for r in mine),
                       "mean_val_acc": float(np.mean(accuracies)) if accuracies else None,
                       "sd_val_acc": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None})
    complete = bool(listed) and all(sorted(row["seeds"]) == sorted(seeds) for row in listed)
    best = max(listed, key=lambda row: row["mean_val_acc"]) if complete else None  # max keeps the first of equals
    for row in listed:
        row["chosen"] = row is best
    return {"candidates": listed, "complete": complete, "chosen": best["trial"] if best else None,
            "seeds": seeds}
