"""Reading stage parameters from params.yaml, the file DVC tracks (composed from conf/ by Hydra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ParamsError(Exception):
    """params.yaml is missing, unreadable or lacks a section a stage needs."""


def load_params(path: str | Path, section: str) -> dict[str, Any]:
    """Return one top-level section of a params file."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ParamsError(f"{path} not found: run from the project root") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(params, dict) or not isinstance(params.get(section), dict):
        raise ParamsError(f"{path} has no `{section}` section")
    return params[section]


CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_params(output: str | Path = "params.yaml", overrides: list[str] | None = None) -> None:
    """Write conf/ composed into `output` with DVC's own Hydra composition (what `dvc exp run` does)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(CONFIG_DIR), None, "config", str(CONFIG_DIR), overrides or [])


if __name__ == "__main__":
    import sys

    # python -m rnnlab.params [OVERRIDE ...]: regenerate params.yaml after editing conf/.
    compose_params("params.yaml", sys.argv[1:])
    print("params.yaml composed from conf/")
