"""The runs the pipeline planned, read from their folders and checked against the current settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rnnlab.cells import CELLS, cell_rank, impl_rank
from rnnlab.cli import UserError, first_line
from rnnlab.identity import RESULT_SECTIONS, result_settings, sha256_of, timing_settings_sha256
from rnnlab.parameters import recurrent_parameters, with_matched_model
from rnnlab.pipeline import PlannedRun, planned_runs, run_folder

# What the train stage writes in metrics.json and this stage reads ("a.b": key b of the mapping a).
REQUIRED_METRICS = ("cell", "impl", "seed", "test_acc", "fit_time_s", "train_samples_per_s", "epochs", "n_params",
                    "device", "history.val_acc")
# What the record of a run whose training diverged holds (rnnlab.run.export.export_diverged): no test, no model
REQUIRED_IF_DIVERGED = ("cell", "impl", "seed", "diverged")




REPRO = "run `dvc repro`"


def load_runs(cfg: DictConfig) -> list[dict]:
    """The metrics of every run the pipeline section plans, each checked against the current settings, with
    `recurrent_params` added: its recurrent layers' parameter count, from the sizes it was trained with. A run whose
    training diverged is there too, its record marked `diverged` (rnnlab.comparison.failures)."""
    try:
        planned = planned_runs(cfg.pipeline)
    except ValueError as e:
        raise UserError(str(e)) from e
    runs = []
    for run in planned:
        folder = run_folder(cfg.paths.train_dir, run)
        if not folder.is_dir():
            raise UserError(f"{folder} is missing: run {run.name} of the pipeline has not been trained; {REPRO}")
        metrics = read_metrics(folder / "metrics.json", run)
        model = trained_as_planned(cfg, run, folder / "config.yaml")["model"]
        metrics["recurrent_params"] = recurrent_parameters(run.cell, model["embedding_dim"], model["hidden_size"],
                                                           model["num_layers"], model["bidirectional"])
        if CELLS[run.cell].recurrent:  # the bag has no hidden layer: its hidden_size is not a size of anything
            metrics["hidden_size"] = model["hidden_size"]
        runs.append(metrics)
    return sorted(runs, key=lambda r: (impl_rank(r["impl"]), cell_rank(r["cell"]), r["seed"]))


def read_metrics(path: Path, run: PlannedRun) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: {REPRO} to train {run.name}")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): {REPRO} to train {run.name} again") from e
    if not isinstance(metrics, dict):
        raise UserError(f"{path} is not a JSON object: {REPRO} to train {run.name} again")
    for key in REQUIRED_IF_DIVERGED if "diverged" in metrics else REQUIRED_METRICS:
        if not has_key(metrics, key):
            raise UserError(f"{path} lacks key '{key}': {REPRO} to train {run.name} again")
    written_for = f"{metrics['cell']}-{metrics['impl']}-{metrics['seed']}"
    if written_for != run.name:
        raise UserError(f"{path} holds run {written_for}, not {run.name}: {REPRO} to train {run.name} again")
    return metrics


def has_key(mapping: dict, dotted: str) -> bool:
    value: Any = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def trained_as_planned(cfg: DictConfig, run: PlannedRun, path: Path) -> dict:
    """The run's config.yaml, as data; UserError unless it has the result settings (rnnlab.identity) the pipeline
    would train it with now: the current config with the run's cell, implementation and seed (and, with
    `model.match`, the cell's matched hidden size, as rnnlab.train solves it). The message names the first
    setting that differs."""
    trained = read_config(path, run)
    expected = copy.deepcopy(cfg)
    with open_dict(expected):
        expected.model.cell, expected.model.impl, expected.seed = run.cell, run.impl, run.seed
        if "seed" in expected.data:  # params.yaml holds it resolved; the train stage sets it as dvc.yaml says
            expected.data.seed = run.seed
    try:
        expected = with_matched_model(expected)
    except ValueError as e:
        raise UserError(f"model.match: {first_line(e)}") from e
    for section in RESULT_SECTIONS:
        if section not in trained:
            raise UserError(f"{path} lacks key '{section}': {REPRO} to train {run.name} again")
    try:
        now = result_settings(expected)
    except OmegaConfBaseException as e:
        raise UserError(f"{first_line(e)}") from e
    then = result_settings(trained)
    if sha256_of(then) == sha256_of(now):
        return trained
    for section in RESULT_SECTIONS:
        difference = first_difference(then[section], now[section], section)
        if difference:
            key, before, current = difference
            raise UserError(f"run {run.name} ({path}) was trained with {key}={shown(before)}; "
                            f"the pipeline now says {shown(current)}: {REPRO}")


def read_config(path: Path, run: PlannedRun) -> dict:
    """A run's config.yaml as plain data: the train stage writes it already resolved."""
    if not path.is_file():
        raise UserError(f"{path} is missing: {REPRO} to train {run.name} again")
    try:
        config = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as e:
        raise UserError(f"{path} is not valid YAML ({first_line(e)}): {REPRO} to train {run.name} again") from e
    if not isinstance(config, DictConfig):
        raise UserError(f"{path} is not a mapping of settings: {REPRO} to train {run.name} again")
    return OmegaConf.to_container(config, resolve=False)


NOT_SET = object()  # a key one side of a comparison lacks


def first_difference(then: Any, now: Any, key: str) -> tuple[str, Any, Any] | None:
    """(dotted key, value then, value now) of the first setting that differs, in the current config's order."""
    if isinstance(then, dict) and isinstance(now, dict):
        for name in [*now, *(name for name in then if name not in now)]:
            found = first_difference(then.get(name, NOT_SET), now.get(name, NOT_SET), f"{key}.{name}")
            if found:
                return found
        return None
    return None if then == now else (key, then, now)


def shown(value: Any) -> str:
    if value is NOT_SET:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value)


def read_optional(path: Path) -> dict | None:
    """A findings file if that stage has run (None if not)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): {REPRO} to measure it again") from e


def load_timing(cfg: DictConfig) -> dict | None:
    """The controlled timing measurement (`python -m rnnlab.timing`: paths.timing_dir/timing.json), None if that
    stage has not run. One made with other settings than the pipeline's, or lacking one of its cells x
    implementations, is refused in one line: its times would not be those of the runs it is judged beside."""
    timing_dir = cfg.paths.get("timing_dir")
    path = Path(timing_dir) / "timing.json" if timing_dir else None
    if path is None or not path.is_file():
        return None
    timing = read_optional(path)
    again = "run `dvc repro timing`"
    if not isinstance(timing, dict) or not {"settings_sha256", "measurements", "machine", "window",
                                            "rounds"} <= timing.keys():
        raise UserError(f"{path} is not a timing measurement of rnnlab.timing: {again}")
    if timing["settings_sha256"] != timing_settings_sha256(cfg):
        raise UserError(f"{path} was measured with other data, model, trainer or callbacks settings than the "
                        f"pipeline now has: {again}")
    measured = {(m["cell"], m["impl"]) for m in timing["measurements"]}
    try:
        planned = planned_runs(cfg.pipeline)
    except ValueError as e:
        raise UserError(str(e)) from e
    missing = sorted({(run.cell, run.impl) for run in planned} - measured)
    if missing:
        raise UserError(f"{path} lacks {', '.join(f'{cell}-{impl}' for cell, impl in missing)}: {again}")
    return timing
