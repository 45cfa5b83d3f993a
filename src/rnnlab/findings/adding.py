"""Where each cell stops learning: the adding problem at growing lengths, with a budget that can show it (DVC stage
`adding`; settings `findings.adding` in conf/config.yaml, each run's budget conf/experiment/adding.yaml).

The rows: every cell of `cells` (by default pipeline.cells; any recurrent cell, e.g. the parallel-scan cells
mingru, minlstm, qrnn beside the article's three), then each of `variants` (a name and its overrides, one of them
`model.cell=<cell>`: e.g. rnn-orthogonal, the simple RNN with model.init=orthogonal), each through steps 1-3.
Every run takes the implementation its config asks for (conf/experiment/adding.yaml: model.impl=sequence) where
its cell has it, else the one rnnlab.cells.run_impl gives (a parallel-scan cell: its scan); adding.json records
each row's (settings.impls) and each run's (impl).

1. Each row's learning rate: one run per lr of `lr_search.lrs` at length `lr_search.length`, seed `seeds[0]`. The
   lr that reaches the threshold in the fewest updates wins; if none does, the one with the lowest best validation
   MSE. (A run stops at the threshold, so below it its best MSE only says where it stopped.) A winner at an edge
   of the grid is not bracketed: the grid grows by the next lr past that edge (the edge's own log step, e.g.
   0.003, 0.01 -> 0.0333) and the choice is made again, up to `lr_search.max_extensions` times per row;
   `lr_grid` says per row whether its lr ended bracketed or still at an edge.
2. Every row x length x seed at its lr, through the project's own recipe (`rnnlab.train.train`, MLflow
   experiment "adding"), each composed from conf/ as `experiment=adding model.cell=<cell> data.seq_len=<T>
   seed=<s> model.optimizer.lr=<lr>`, then the variant's overrides, then `overrides` (which win). A run ends when its
   validation MSE falls below the threshold (callbacks.reach_threshold: 0.01) or when the budget
   (trainer.max_steps updates) is spent; `updates_to_threshold` is the update after which it was first below
   (validated every val_check_interval).
3. Per row and length, `learned`: some seed reached the threshold. A row's `limit` is the smallest length at
   which every seed failed: "stops learning at T" means at its best lr, with this budget, in every seed.
   `limit_margins` gives each seed's best validation MSE there against the threshold (0.0130 vs 0.01: +30%); a
   limit whose closest seed missed by at most `knife_edge` (relative) is `borderline`, not a clean limit.

The test MSE is that of the checkpoint with the best validation accuracy (within 0.04); the baseline, always
predicting 1 (the target's mean), scores about 1/6.

Resumable. adding.json is written after every run (a temporary file, then renamed), and a rerun trains only the
runs it lacks; a run is there when a run of the same resolved settings (seed, data, model, trainer, callbacks:
conf/ composed as above) is. The code is not part of that: a change of code alone retrains nothing (delete
adding.json to retrain everything, or its entries to retrain those). A run killed mid-way resumes from its last
epoch (rnnlab.run). The DVC stage keeps adding.json when it reruns (`persist`), so `dvc repro` after a code
change rewrites the report from the runs it holds; the first sweep, or one with new settings, takes long:
`make adding` runs it on its own. adding.json holds this sweep's runs only: other settings drop the rest, so point
paths.findings_dir elsewhere for an experiment.

    python -m rnnlab.findings.adding
    python -m rnnlab.findings.adding 'findings.adding.lengths=[10,25]' 'findings.adding.seeds=[0]' \
        'findings.adding.lr_search.lrs=[0.003]' 'findings.adding.overrides=["trainer.max_steps=1000"]'

Writes <paths.findings_dir>/adding.json (settings with each row's chosen lr and implementation; per row the
search's runs and its grid (lr_grid); per row, length and seed: test MSE and accuracy, updates_to_threshold, best
validation MSE, fit time, implementation, MLflow run id; per row and length: learned, medians, best validation
MSE per seed; per row: limit and limit_margins) and adding.png (test MSE and updates to the threshold by length).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from rnnlab.cells import CELL_NAMES, run_impl
from rnnlab.cli import UserError, build, first_line, hydra_app, quiet_noise
from rnnlab.composition import compose_config
from rnnlab.files import write_atomically
from rnnlab.findings.adding_report import limit_margins, plot, summarise, table
from rnnlab.identity import settings_sha256
from rnnlab.models.recurrent_module import TOLERANCE, TrainingDiverged
from rnnlab.processes import die_with_parent
from rnnlab.run.history import metric_by_step
from rnnlab.train import build_data_and_model, train

# Every run's budget. findings.adding.overrides come after it and the run's own settings, so they win.
EXPERIMENT_CONFIG = "experiment=adding"


@dataclass(frozen=True)
class Row:
    """One row of the findings: a cell with the shared model settings (model.cell=<cell>: no conf/model file
    needed), or a variant of it (its own overrides)."""

    name: str  # the cell's name, or the variant's (findings.adding.variants)
    cell: str
    overrides: tuple[str, ...] = ()


def variant_rows(variants: dict[str, list[str]], cells: list[str]) -> list[Row]:
    """findings.adding.variants as rows: each names its cell with a `model.cell=<cell>` override."""
    rows = []
    for name, overrides in variants.items():
        if name in CELL_NAMES or name in cells:
            raise UserError(f"findings.adding.variants.{name}: a variant needs a name of its own, not a cell's")
        if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
            raise UserError(f"findings.adding.variants.{name}={overrides} must list Hydra overrides "
                            "(e.g. [model.cell=rnn, model.init=orthogonal])")
        named = [o.split("=", 1)[1] for o in overrides if o.startswith("model.cell=")]
        if len(named) != 1 or named[0] not in CELL_NAMES:
            raise UserError(f"findings.adding.variants.{name}={list(overrides)} must set model.cell to one of "
                            f"{' | '.join(CELL_NAMES)}, once")
        rows.append(Row(name, named[0], tuple(overrides)))
    return rows


@dataclass(frozen=True)
class Task:
    """One run of the sweep: where its row goes in adding.json and the settings it trains with."""

    place: tuple[str, ...]  # ("lr_search", row, lr) or ("runs", row, T, seed)
    config: dict  # the run's config, composed and resolved: plain values a worker process can take
    settings_sha256: str


def compose_run(row: Row, seq_len: int, seed: int, lr: float, overrides: list[str]) -> DictConfig:
    """The run's config: the module docstring's step 2, with the implementation its cell has (run_impl) in place
    of the configured one where the cell has not that (the article's cells' configs are as they were)."""
    try:
        cfg = compose_config([EXPERIMENT_CONFIG, f"model.cell={row.cell}", f"data.seq_len={seq_len}", f"seed={seed}",
                              f"model.optimizer.lr={lr}", *row.overrides, *overrides])
    except HydraException as e:  # an override that names no setting, or does not parse
        where = f"findings.adding.variants.{row.name} or " if row.overrides else ""
        raise UserError(f"{where}findings.adding.overrides: {first_line(e)}") from e
    cfg.model.impl = run_impl(row.cell, cfg.model.impl)
    return cfg


def make_task(place: tuple[str, ...], cfg: DictConfig) -> Task:
    build_data_and_model(cfg)  # a bad setting: one line now, before any run (builds nothing big: data come later)
    if not OmegaConf.select(cfg, "callbacks.reach_threshold.stopping_threshold"):
        raise UserError("callbacks.reach_threshold.stopping_threshold is missing: the sweep's runs stop, and count "
                        "as learned, at that validation MSE (conf/experiment/adding.yaml)")
    config = OmegaConf.to_container(cfg, resolve=True)
    return Task(place, config, settings_sha256(config))


def baseline(config: dict) -> dict[str, float]:
    """Always predicting 1, the target's mean, on the run's test set (generated alone: the splits are independent
    streams, so a train split of 1 leaves it as it is)."""
    datamodule = build(OmegaConf.create({**config["data"], "train_size": 1}), "data")
    datamodule.setup("test")
    error = datamodule.datasets["test"].tensors[2] - 1.0
    return {"baseline_mse": float((error**2).mean()), "baseline_acc": float((error.abs() < TOLERANCE).float().mean())}


def validation_curve(client: mlflow.MlflowClient, run_id: str) -> list[tuple[int, float]]:
    """(updates, validation MSE) of every validation. Lightning logs a validation at the index of the update it
    follows (0-based): updates = step + 1."""
    return [(step + 1, value) for step, value in metric_by_step(client, run_id, "val_mse")]


def first_below(curve: list[tuple[int, float]], threshold: float) -> int | None:
    return next((updates for updates, mse in curve if mse < threshold), None)


def run_one(config: dict) -> dict:
    """Train one run (here or in a worker process) and measure it: its row of adding.json."""
    cfg = OmegaConf.create(config)
    row = {"lr": float(cfg.model.optimizer.lr), "impl": cfg.model.impl, **baseline(config)}
    try:
        result = train(cfg)
    except TrainingDiverged as e:  # a learning rate too high for the cell: failed, as a run that never learned
        return {**row, "test_mse": None, "test_acc": None, "updates_to_threshold": None, "best_val_mse": None,
                "updates": None, "fit_time_s": None, "mlflow_run_id": None, "diverged": str(e)}
    curve = validation_curve(mlflow.MlflowClient(result.tracking_uri), result.run_id)
    return {**row, "test_mse": result.metrics["test_mse"], "test_acc": result.metrics["test_acc"],
            "updates_to_threshold": first_below(curve, cfg.callbacks.reach_threshold.stopping_threshold),
            "best_val_mse": min((mse for _, mse in curve), default=None), "updates": curve[-1][0],
            "fit_time_s": result.metrics["fit_time_s"], "mlflow_run_id": result.run_id}


def start_worker(threads: int) -> None:
    die_with_parent()  # a sweep killed with kill -9 leaves no worker training on; its runs resume on the rerun
    torch.set_num_threads(threads)
    quiet_noise()  # a spawned interpreter starts without the filters the command set for itself


def run_task(task: Task) -> tuple[Task, dict]:
    return task, run_one(task.config)


def execute(tasks: list[Task], workers: int, threads: int, done: Callable[[Task, dict], None]) -> None:
    """Train `tasks`, `workers` at a time (each in a process of its own with `threads` torch threads; 1: here),
    calling `done` with each row as it comes."""
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            done(*run_task(task))
        return
    # spawn: fresh interpreters (torch's and MLflow's state do not survive a fork); the pool ends its workers on
    # the way out, an error or Ctrl-C included.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks)), initializer=start_worker, initargs=(threads,)) as pool:
        for task, row in pool.imap_unordered(run_task, tasks):
            done(task, row)


def choose_lr(rows: dict[str, dict]) -> float:
    """Step 1 of the module docstring: fewest updates to the threshold, else the lowest best validation MSE."""
    def rank(row: dict) -> tuple:
        reached, best = row["updates_to_threshold"], row["best_val_mse"]
        return (reached is None, reached or 0, math.inf if best is None else best, row["lr"])

    return min(rows.values(), key=rank)["lr"]


def grid_edge(grid: list[float], lr: float) -> str | None:
    """Which edge of the sorted grid `lr` sits at ("top", "bottom"), or None: bracketed by lrs on both sides."""
    return "top" if lr == grid[-1] else "bottom" if lr == grid[0] else None


def beyond_edge(grid: list[float], edge: str) -> float:
    """The next lr past `edge` of the sorted grid, one log step of the edge's own (the ratio of its two outermost
    lrs) further, rounded to 3 significant digits: 0.003, 0.01 -> 0.0333."""
    inner, outer = (grid[-2], grid[-1]) if edge == "top" else (grid[1], grid[0])
    return float(f"{outer * outer / inner:.3g}")


def read_rows(path: Path) -> dict[str, dict]:
    """The rows of an earlier adding.json, by their settings' sha256 (none from a file of another shape)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    rows = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if "settings_sha256" in node:
                rows[node["settings_sha256"]] = node
            else:
                for value in node.values():
                    walk(value)

    walk({"lr_search": earlier.get("lr_search"), "runs": earlier.get("runs")} if isinstance(earlier, dict) else None)
    return rows


def sweep(cells: list[str], lengths: list[int], seeds: list[int], lr_search: dict, overrides: list[str],
          out_dir: Path, workers: int = 1, threads: int = 1, variants: dict[str, list[str]] | None = None,
          knife_edge: float = 0.25) -> dict:
    """Steps 1-3 of the module docstring; adding.json written after every run, adding.png at the end.
    lr_search: {length, lrs, max_extensions}; variants: {name: overrides}."""
    start = time.perf_counter()
    path = out_dir / "adding.json"
    known = read_rows(path)  # finished runs by their settings' sha256: an earlier sweep's, then this one's
    lrs = sorted(lr_search["lrs"])
    rows = [Row(cell, cell) for cell in cells] + variant_rows(variants or {}, cells)
    names = [row.name for row in rows]
    # Every row's settings checked (a bad one: one line now, before any run); the budget is the same for all
    checked = [make_task((), compose_run(row, lengths[0], seeds[0], lrs[0], overrides)) for row in rows]
    budget = checked[0].config
    report: dict = {
        "settings": {"threshold": budget["callbacks"]["reach_threshold"]["stopping_threshold"],
                     "max_updates": budget["trainer"]["max_steps"],
                     "validate_every": budget["trainer"]["val_check_interval"],
                     "batch_size": budget["data"]["batch_size"], "train_size": budget["data"]["train_size"],
                     "cells": cells, "lengths": lengths, "seeds": seeds,
                     "impls": {row.name: task.config["model"]["impl"] for row, task in zip(rows, checked)},
                     "variants": {row.name: {"cell": row.cell, "overrides": list(row.overrides)}
                                  for row in rows if row.overrides},
                     "lr_search": {"length": lr_search["length"], "seed": seeds[0], "lrs": lrs,
                                   "max_extensions": lr_search["max_extensions"]}, "lr": {},
                     "knife_edge": knife_edge,
                     "overrides": [EXPERIMENT_CONFIG, *overrides], "tolerance": TOLERANCE, "threads": threads,
                     "workers": workers},
        "lr_search": {}, "lr_grid": {}, "runs": {}, "results": {}, "limits": {}, "limit_margins": {},
        "complete": False}

    def place(task: Task, row: dict) -> None:
        node = report
        for key in task.place[:-1]:
            node = node.setdefault(key, {})
        node[task.place[-1]] = known[task.settings_sha256] = {**row, "settings_sha256": task.settings_sha256}

    def done(task: Task, row: dict) -> None:
        place(task, row)
        report["wall_time_s"] = time.perf_counter() - start
        write_atomically(path, json.dumps(report, indent=2) + "\n")

    def run(tasks: list[Task]) -> None:
        """Rows of runs with the same settings where there are any; the rest trained, longest sequences first."""
        todo = []
        for task in tasks:
            if task.settings_sha256 in known:
                place(task, known[task.settings_sha256])
            else:
                todo.append(task)
        todo.sort(key=lambda task: -task.config["data"]["seq_len"])
        execute(todo, workers, threads, done)

    if len(lrs) > 1:
        search_lrs(rows, lrs, lr_search, seeds[0], overrides, report, run)
    else:
        report["settings"]["lr"] = {name: lrs[0] for name in names}
    run([make_task(("runs", row.name, str(T), str(seed)),
                   compose_run(row, T, seed, report["settings"]["lr"][row.name], overrides))
         for row in rows for T in lengths for seed in seeds])
    # in the order of the settings, whatever order the runs finished in
    report["runs"] = {name: {str(T): {str(s): report["runs"][name][str(T)][str(s)] for s in seeds} for T in lengths}
                      for name in names}
    report["results"], report["limits"] = summarise(report["runs"])
    report["limit_margins"] = limit_margins(report["runs"], report["limits"], report["settings"]["threshold"],
                                            knife_edge)
    report["complete"] = True
    report["wall_time_s"] = time.perf_counter() - start
    write_atomically(path, json.dumps(report, indent=2) + "\n")
    plot(report, out_dir / "adding.png")
    return report


def search_lrs(rows: list[Row], lrs: list[float], lr_search: dict, seed: int, overrides: list[str], report: dict,
               run: Callable[[list[Task]], None]) -> None:
    """Step 1 of the module docstring: each row's lr, its grid grown past an edge that wins, into report's
    settings.lr, lr_search (the runs, by lr) and lr_grid. Each round trains the new lrs of every row together."""
    grids = {row.name: list(lrs) for row in rows}
    extensions = dict.fromkeys(grids, 0)
    new = {row.name: list(lrs) for row in rows}  # the lrs each row has yet to run
    while any(new.values()):
        run([make_task(("lr_search", row.name, f"{lr:g}"), compose_run(row, lr_search["length"], seed, lr, overrides))
             for row in rows for lr in new[row.name]])
        new = {name: [] for name in grids}
        for name, grid in grids.items():
            chosen = choose_lr(report["lr_search"][name])
            edge = grid_edge(grid, chosen)
            if edge is not None and extensions[name] < lr_search["max_extensions"]:
                lr = beyond_edge(grid, edge)
                grid.insert(len(grid) if edge == "top" else 0, lr)
                extensions[name] += 1
                new[name].append(lr)
    for name, grid in grids.items():
        # by lr, whatever order the runs finished in
        report["lr_search"][name] = {f"{lr:g}": report["lr_search"][name][f"{lr:g}"] for lr in grid}
        chosen = choose_lr(report["lr_search"][name])
        edge = grid_edge(grid, chosen)
        report["settings"]["lr"][name] = chosen
        report["lr_grid"][name] = {"lrs": grid, "extensions": extensions[name], "chosen": chosen,
                                   "bracketed": edge is None, "edge": edge}


def validate_sweep_settings(cfg: DictConfig) -> None:
    settings = cfg.findings.adding
    lengths, seeds, lr_search = list(settings.lengths), list(settings.seeds), settings.lr_search

    def integers(values: list, low: int) -> bool:
        return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)

    if not integers(lengths, 2):
        raise UserError(f"findings.adding.lengths={lengths} must list integers >= 2")
    if not integers(seeds, 0):
        raise UserError(f"findings.adding.seeds={seeds} must list integers >= 0")
    if not integers([lr_search.length], 2):
        raise UserError(f"findings.adding.lr_search.length={lr_search.length} must be an integer >= 2")
    lrs = list(lr_search.lrs)
    if not lrs or any(isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 for lr in lrs):
        raise UserError(f"findings.adding.lr_search.lrs={lrs} must list positive learning rates")
    if len(set(lrs)) < len(lrs):
        raise UserError(f"findings.adding.lr_search.lrs={lrs} lists a learning rate twice")
    for name in ("workers", "threads"):
        if not integers([settings[name]], 1):
            raise UserError(f"findings.adding.{name}={settings[name]} must be a positive integer")
    if not integers([lr_search.max_extensions], 0):
        raise UserError(f"findings.adding.lr_search.max_extensions={lr_search.max_extensions} must be an integer >= 0")
    knife_edge = settings.knife_edge
    if isinstance(knife_edge, bool) or not isinstance(knife_edge, (int, float)) or not knife_edge >= 0:
        raise UserError(f"findings.adding.knife_edge={knife_edge} must be a number >= 0 (relative to the threshold)")
    # The recurrent cells only: the baselines (pipeline.baselines, no recurrence) have no memory to test here
    cells = list(settings.cells)
    unknown = [cell for cell in cells if cell not in CELL_NAMES]
    if unknown or not cells:
        raise UserError(f"findings.adding.cells={cells} must list recurrent cells: choose from "
                        f"{' | '.join(CELL_NAMES)}")
    if len(set(cells)) < len(cells):
        raise UserError(f"findings.adding.cells={cells} lists a cell twice")


@hydra_app("adding")
def main(cfg: DictConfig) -> None:
    validate_sweep_settings(cfg)
    settings = cfg.findings.adding
    # The runs go where the stage's own config sends them (params.yaml's logger.tracking_uri, else the default).
    overrides = list(settings.get("overrides", []))
    if cfg.logger.get("tracking_uri"):
        overrides.insert(0, f"logger.tracking_uri={cfg.logger.tracking_uri}")
    torch.set_num_threads(settings.threads)  # these matrices are too small to gain from more threads
    out_dir = Path(cfg.paths.findings_dir)
    lr_search = {"length": settings.lr_search.length, "lrs": list(settings.lr_search.lrs),
                 "max_extensions": settings.lr_search.max_extensions}
    variants = OmegaConf.to_container(settings.variants) if settings.get("variants") else {}
    if not isinstance(variants, dict):
        raise UserError(f"findings.adding.variants={variants} must map names to lists of overrides")
    report = sweep(list(settings.cells), list(settings.lengths), list(settings.seeds), lr_search, overrides,
                   out_dir, workers=settings.workers, threads=settings.threads, variants=variants,
                   knife_edge=settings.knife_edge)
    print(table(report), end="")
    print(f"wrote {out_dir / 'adding.json'} and {out_dir / 'adding.png'} ({report['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
