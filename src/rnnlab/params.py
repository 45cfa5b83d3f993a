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


if __name__ == "__main__":
    # python -m rnnlab.params [OVERRIDE ...]
    compose_params("params.yaml", sys.argv[1:])
    print("params.yaml composed from conf/")
