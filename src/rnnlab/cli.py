"""How every command-line entry point runs: Hydra composes its settings from conf/, a user error is one line.

    @hydra_app("prepare")
    def main(cfg: DictConfig) -> None: ...

`python -m rnnlab.<module> [overrides]` composes conf/config.yaml; DVC stages add `--config-dir .
--config-name params`, so they run on params.yaml, the file DVC tracks (conf/ composed). A `UserError`
raised anywhere in the task (a bad setting, missing input) ends the process with one line on stderr,
`<command>: error: <message>`, and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlab.params import CONFIG_DIR


class UserError(Exception):
    """A mistake the user can fix; reported as one line."""


def fail(command: str, message: str) -> NoReturn:
    print(f"{command}: error: {message}", file=sys.stderr)
    sys.exit(1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands that take plain arguments (predict, bench): a usage mistake is one
    `<prog>: error: ...` line and exit status 1, as everywhere else."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)


def first_line(error: BaseException) -> str:
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def build(config: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate(config)`, a failure of the constructor becoming one `UserError` line that names the config key.

    Hydra wraps a constructor's exception in a multi-line InstantiationException; the cause is what the user needs.
    """
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise UserError(f"{key}: {first_line(cause)}") from e
    except (ValueError, TypeError, FileNotFoundError) as e:  # raised by a nested object's constructor
        raise UserError(f"{key}: {first_line(e)}") from e


# Loggers whose INFO lines are routine for a store (creating and migrating an sqlite file), not news to a user.
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic")


def hydra_app(command: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Turn `task(cfg)` into a Hydra entry point over conf/ that reports `UserError` as one line."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
        @functools.wraps(task)
        def main(cfg: DictConfig) -> Any:
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                return task(cfg)
            except UserError as e:
                fail(command, str(e))

        return main

    return decorate
