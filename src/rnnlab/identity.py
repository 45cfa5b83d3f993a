"""What makes two runs the same run: one definition, used wherever rnnlab asks "was this computed already?".

A run's *result settings* are its resolved config's sections that decide what it trains and measures
(RESULT_SECTIONS), less the settings that only change what is shown while it trains (DISPLAY_ONLY). Two configs
with the same `settings_sha256` train the same model to the same numbers, given the same data and code.

- resume (`rnnlab.run.plan`): the *run key* adds the prepared data's hash, the code's hash, the experiment, the
  export folder and whether the run is tested: a command with the same key continues or reuses its run.
- the adding sweep, the article's runs and the search's final runs store `settings_sha256` beside each result
  and train again only where it differs.
- compare (`rnnlab.comparison.runs`) refuses a run whose stored config has other result settings than the
  pipeline's, naming the first setting that differs, and a timing measurement made with other settings
  (`timing_settings_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

RESULT_SECTIONS = ("seed", "data", "model", "trainer", "callbacks")
# Settings that change what is shown while training, not what is trained: never part of a run's identity.
DISPLAY_ONLY = {"callbacks": ("progress_bar",), "trainer": ("enable_progress_bar", "enable_model_summary")}


def plain(config: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A config as plain data, interpolations resolved."""
    if OmegaConf.is_config(config):
        return OmegaConf.to_container(config, resolve=True)
    return json.loads(json.dumps(dict(config), default=str))  # a deep copy, safe to trim


def result_settings(config: DictConfig | Mapping[str, Any], sections: tuple[str, ...] = RESULT_SECTIONS
                    ) -> dict[str, Any]:
    """The resolved `sections` of `config` (missing ones as None), DISPLAY_ONLY settings left out."""
    resolved = plain(config)
    settings = {name: resolved.get(name) for name in sections}
    for section, keys in DISPLAY_ONLY.items():
        for key in keys:
            if isinstance(settings.get(section), dict):
                settings[section].pop(key, None)
    return settings


def sha256_of(settings: Mapping[str, Any]) -> str:
    """The hash of plain settings, independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def settings_sha256(config: DictConfig | Mapping[str, Any]) -> str:
    """The identity of a run's result settings (module docstring)."""
    return sha256_of(result_settings(config))


def run_key(cfg: DictConfig, data_sha256: str | None, code_sha256: str) -> str:
    """A training command's identity (tag `rnnlab.run_key`): its result settings with the number of processes it
    trains on resolved (`trainer.devices: -1` means the GPUs this machine has), whether it is tested, where it is
    recorded and exported, and the data and code it runs on. The same key is the same run: a resume on another
    number of GPUs, which shards the batches otherwise, is a new run."""
    settings = result_settings(cfg)
    settings["trainer"]["devices"] = devices_per_node(settings["trainer"])
    settings.update(test=cfg.get("test"), export_dir=cfg.get("export_dir"), experiment=cfg.logger.experiment_name,
                    data_sha256=data_sha256, code_sha256=code_sha256, world_size=world_size(settings["trainer"]))
    return sha256_of(settings)


def timing_settings_sha256(config: DictConfig | Mapping[str, Any]) -> str:
    """The identity of the settings a timing measurement of the pipeline's cells ran with (`python -m rnnlab.timing`):
    the result settings less the cell, the implementation and the seeds, which the measurement sets itself. compare
    uses the measurement only where this equals the pipeline's."""
    settings = result_settings(config)
    settings["seed"] = None
    if isinstance(settings.get("model"), dict):
        settings["model"] = {k: v for k, v in settings["model"].items() if k not in ("cell", "impl")}
    if isinstance(settings.get("data"), dict):
        settings["data"].pop("seed", None)
    return sha256_of(settings)


def world_size(trainer: Mapping[str, Any]) -> int:
    """How many processes a resolved trainer section trains on: `num_nodes` x `devices_per_node`."""
    return int(trainer.get("num_nodes") or 1) * devices_per_node(trainer)


def devices_per_node(trainer: Mapping[str, Any]) -> int:
    """How many devices of one node a resolved trainer section trains on, as Lightning reads `devices`: a count,
    -1 or "auto", a list of ids or a comma-separated string of them."""
    import torch  # here: the rest of this module is plain data

    devices, accelerator = trainer.get("devices", "auto"), trainer.get("accelerator", "auto")
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    on_gpus = accelerator in ("gpu", "cuda")
    if isinstance(devices, str) and "," in devices:
        per_node = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, (list, tuple)):
        per_node = len(devices)
    elif devices in (-1, "-1"):  # every device: the GPUs torch sees, or (Lightning's reading on CPU) every core
        per_node = torch.cuda.device_count() if on_gpus else os.cpu_count() or 1
    elif devices == "auto":
        per_node = torch.cuda.device_count() if on_gpus else 1
    else:
        per_node = int(devices)
    return per_node
