"""One run's config composed from conf/ inside a command that trains many (the search, the adding sweep).

A stage that runs this composes conf/ itself, so it lists `conf` among its DVC deps (tests/test_stages.py).
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rnnlab.params import CONFIG_DIR


def compose_config(overrides: list[str]) -> DictConfig:
    """conf/config.yaml with `overrides`, as `python -m rnnlab.train <overrides>` would run it: how a command that
    trains many runs (a search, a sweep of lengths) composes each one. Inside a Hydra app it uses the app's own
    Hydra instance (its search path); elsewhere it opens conf/."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def command_overrides(*own: str) -> list[str]:
    """The overrides this command was given, but those of its own settings (keys starting with `own`): what
    every run it trains should share (`python -m rnnlab.search.run paths.prepared_dir=... data.batch_size=32`)."""
    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(own)]
