"""params.yaml, the file DVC tracks, is conf/ composed: `python -m rnnlab.params` writes it after editing conf/.

`dvc exp run -S ...` composes it the same way itself (hydra.enabled in .dvc/config); a test fails if the two drift.
"""

from __future__ import annotations

import sys
from pathlib import Path


CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_params(output: str | Path = "params.yaml", overrides: list[str] | None = None) -> None:
    """Write conf/ composed into `output` with DVC's own Hydra composition (what `dvc exp run` does)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(CONFIG_DIR), None, "config", str(CONFIG_DIR), overrides or [])


def main(overrides: list[str]) -> None:
    """python -m rnnlab.params [OVERRIDE ...]: the hand-edited config files checked as `train` checks them (one
    `params: error:` line, params.yaml left as it was), then params.yaml composed."""
    from rnnlab.cli import check_config_files  # not at the top: rnnlab.cli imports CONFIG_DIR from here

    check_config_files("params", overrides)
    compose_params("params.yaml", overrides)
    print("params.yaml composed from conf/")


if __name__ == "__main__":
    main(sys.argv[1:])
