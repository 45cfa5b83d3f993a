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
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

# Defined where the served model can import them without Hydra; the commands keep importing them from here.
from rnnlab.errors import UserError, first_line  # noqa: F401
from rnnlab.params import CONFIG_DIR


def fail(command: str, message: str) -> NoReturn:
    print(f"{command}: error: {message}", file=sys.stderr)
    sys.exit(1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands that take plain arguments (predict, bench): a usage mistake is one
    `<prog>: error: ...` line and exit status 1, as everywhere else."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)


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
# MLflow's system-metrics monitor announces its start and stop, and that it samples no GPU where there is none.
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic", "mlflow.system_metrics.system_metrics_monitor")
# Lines every run would print that say nothing about this run (logger name, start of the message); every other
# message of these loggers, warnings included, still shows.
NOISE = (
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),  # an advert for litlogger
    # Lightning's inventory of accelerators, when there are none: the run's device is in its tags and job log.
    # "GPU available: True" (a GPU, used or not) still shows.
    ("pytorch_lightning.utilities.rank_zero", "GPU available: False"),
    ("pytorch_lightning.utilities.rank_zero", "TPU available: False"),
    # Lightning's default when a checkpoint is saved without saying (rnnlab.run.checkpoints' last.ckpt): full state, wanted
    ("pytorch_lightning.trainer.connectors.checkpoint_connector", "`weights_only` was not set, defaulting to `False`"),
    ("mlflow.pyfunc", "Validating input example against model signature"),  # a check that passed
    # urllib3's line per retry of a tracking server that does not answer: the wait is bounded (tracking.TRAINING_HTTP,
    # QUICK_HTTP) and its end is one line that names the server
    ("urllib3.connectionpool", "Retrying ("),
)


class DropNoise(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_noise() -> None:
    """Silence what is noise for rnnlab's users (NOISE, above), never a warning about their run."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, start in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) and f.start == start for f in logger.filters):
            logger.addFilter(DropNoise(start))
    # Lightning builds torch's LeafSpec, which torch 2.13 deprecates: Lightning's to change, nothing a user can do
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # Lightning's hint on every run outside a SLURM job where SLURM is installed (`srun` on the PATH): a run of
    # one process needs no srun, and conf/trainer/multinode.yaml shows the srun line for those that do
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # Lightning's two-line hint when an epoch has fewer batches than log_every_n_steps: rnnlab's module logs
    # per epoch only (on_step=False), so the interval never decides what is logged
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
    # MLflow's progress bars for the few small files it downloads while checking a logged model
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's "View run at <server URL>" lines, printed each time a run on a server is ended or left, with any
    # credentials of the tracking URI in them; rnnlab's job log names the run and its store (redacted) once
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def lightning_into_job_log() -> None:
    """Lightning prints through a handler of its own (added when it is imported, before Hydra sets up logging)
    and not through the root logger's: give it the root's file handlers as well, so that Hydra's job log
    (<output dir>/<command>.log) holds Lightning's messages beside rnnlab's."""
    lightning = logging.getLogger("pytorch_lightning")
    if lightning.propagate:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler not in lightning.handlers:
            lightning.addHandler(handler)


LOCAL_CONFIG = CONFIG_DIR / "local" / "default.yaml"  # this machine's settings (git-ignored), composed last


def option(argv: list[str], *names: str) -> str | None:
    """The value of a Hydra flag in `argv` (`--config-name params`, `--config-name=params`, `-cn params`)."""
    for k, arg in enumerate(argv):
        for name in names:
            if arg == name and k + 1 < len(argv):
                return argv[k + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def config_file_problem(path: Path, shown: str, global_package: bool = False) -> str | None:
    """What stops Hydra from reading `path` as a config (not UTF-8, not YAML, not a mapping; for
    conf/local/default.yaml a missing `# @package _global_`, which would put its settings under `local.`, where
    nothing reads them), in one line; None if nothing does. Hydra's own report of these is a traceback."""
    from hydra.plugins.config_source import ConfigSource
    from omegaconf import OmegaConf
    from yaml import MarkedYAMLError, YAMLError

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        return f"{shown} is not UTF-8 text ({e.reason} at byte {e.start})"
    except OSError as e:
        return f"cannot read {shown}: {e.strerror}"
    try:
        header = ConfigSource._get_header_dict(text[:512])  # Hydra's own reading of `# @package ...`
        settings = OmegaConf.create(text)  # OmegaConf's YAML loader, as Hydra's (duplicate keys refused too)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{shown} is not valid YAML: {e.problem or e.context}{where}"
    except (YAMLError, ValueError) as e:
        return f"{shown} is not valid YAML: {first_line(e)}"
    if not isinstance(settings, DictConfig):
        return f"{shown} must hold settings (key: value), not a list"
    if global_package and len(settings) and header["package"] != "_global_":
        return (f"{shown} does not start with `# @package _global_`: without it, its settings would land under "
                f"`local.` and be ignored")
    return None


def check_config_files(command: str, argv: list[str]) -> None:
    """Before Hydra composes: the config file the command runs on (conf/config.yaml, or params.yaml for DVC's
    `--config-dir . --config-name params`) and, for conf/config.yaml, this machine's conf/local/default.yaml:
    the files edited by hand, whose mistakes Hydra reports as 10-30 lines of traceback."""
    name = option(argv, "--config-name", "-cn") or "config"
    folder = option(argv, "--config-dir", "-cd")
    primary = Path(folder) / f"{name}.yaml" if folder and (Path(folder) / f"{name}.yaml").is_file() \
        else CONFIG_DIR / f"{name}.yaml"
    files = [(primary, str(primary) if folder else f"conf/{name}.yaml", False)]
    if name == "config" and LOCAL_CONFIG.is_file():
        files.append((LOCAL_CONFIG, "conf/local/default.yaml", True))
    for path, shown, global_package in files:
        problem = config_file_problem(path, shown, global_package) if path.is_file() else None
        if problem:
            fail(command, problem)


def check_composed(cfg: DictConfig) -> None:
    """Settings every command reads, whose wrong type would surface deep inside a library."""
    uri = cfg.get("logger", {}).get("tracking_uri") if isinstance(cfg.get("logger"), DictConfig) else None
    if uri is not None and not isinstance(uri, str):
        raise UserError(f"logger.tracking_uri={uri!r} must be a URI (text such as sqlite:///mlflow.db), or null")


def hydra_app(command: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Turn `task(cfg)` into a Hydra entry point over conf/ that reports `UserError` as one line."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
        @functools.wraps(task)
        def main(cfg: DictConfig) -> Any:
            quiet_noise()
            lightning_into_job_log()
            try:
                check_composed(cfg)
                return task(cfg)
            except UserError as e:
                fail(command, str(e))
            except MissingMandatoryValue as e:  # e.g. model=_base/recurrent_module, the cells' shared settings alone
                fail(command, f"{e.full_key} is not set ({first_line(e)})")

        @functools.wraps(task)
        def entry(*args: Any, **kwargs: Any) -> Any:
            check_config_files(command, sys.argv[1:])
            return main(*args, **kwargs)

        return entry

    return decorate
