"""The project's checkout, and its commands run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: Any = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, capturing its output; `stdin`: an open file (or None)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout, stdin=stdin,
    )


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the project's files (as a clone would), for real `dvc repro` runs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file() and not name.startswith("data/"):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=rnnlab-test", "-c", "user.email=test@rnnlab.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    return dest


def run_dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the venv's `dvc`, with the venv first on PATH so stage commands find its `python`."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(
        [str(Path(bin_dir) / "dvc"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=1200
    )
