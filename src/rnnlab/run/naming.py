"""Telling runs apart: debug runs in an experiment of their own, and a run's description (what it changed).

A debug config (conf/debug/: fdr, overfit, limit) sets `tags.debug`. Such a run goes to `<experiment>-debug`
under `<run name>-<debug>`, so that it never mixes with the runs the notebook, the search or a sweep compares,
and its name says what it was when it is looked up by id.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from rnnlab.tracking import redact

DEBUG_SUFFIX = "-debug"


def debug_kind(cfg: DictConfig) -> str | None:
    """fdr | overfit | limit for a run of a debug config (its `tags.debug`), else None."""
    tags = cfg.get("tags")
    kind = tags.get("debug") if isinstance(tags, DictConfig) else None
    return str(kind) if kind else None


def kept_apart(cfg: DictConfig) -> DictConfig:
    """`cfg`, or for a debug run a copy whose experiment and run name say so (`imdb-cells-debug`,
    `lstm-fused-seed0-fdr`). Everything downstream (the run key, the logger, the sweep's parent run) reads these."""
    kind = debug_kind(cfg)
    if kind is None or str(cfg.logger.experiment_name).endswith(DEBUG_SUFFIX):
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.logger.experiment_name = f"{cfg.logger.experiment_name}{DEBUG_SUFFIX}"
        if cfg.logger.get("run_name"):
            cfg.logger.run_name = f"{OmegaConf.select(cfg, 'logger.run_name')}-{kind}"
    return cfg


def description(overrides: Sequence[str], sweep_id: str | None = None) -> str:
    """A run's description (MLflow's `mlflow.note.content`, shown on the run's page): the command-line overrides
    of conf/config.yaml it ran with, i.e. what differs from the defaults; credentials in URLs `redact`ed, as
    everything a run records."""
    changed = "\n".join(f"- `{redact(override)}`" for override in overrides)
    text = f"Overrides of the defaults (conf/config.yaml):\n{changed}" if overrides else \
        "The defaults (conf/config.yaml), no overrides."
    if sweep_id:
        text += f"\n\nOne run of the Hydra multirun in `{sweep_id}` (its parent run)."
    return text
