"""A local one-node SLURM cluster (scripts/slurm_local.sh: real slurmctld, slurmd and munged on this machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.project import PROJECT_ROOT
from tests.helpers.servers import free_port_pair

SLURM_LOCAL = PROJECT_ROOT / "scripts" / "slurm_local.sh"
INSTALL = PROJECT_ROOT / "scripts" / "install_services.sh"


@dataclass
class Cluster:
    """A cluster `slurm_local.sh up` started: its folder, and the environment its commands need."""

    folder: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF (and the folder and port, for slurm_local.sh itself)

    def jobs(self) -> list[dict[str, str]]:
        """SLURM's job completion log: one record per job end (a requeue ends one too), oldest first."""
        log = self.folder / "log" / "jobs.txt"
        lines = log.read_text().splitlines() if log.exists() else []
        return [dict(field.split("=", 1) for field in line.split() if "=" in field) for line in lines]

    def command(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=120)

    def wait_until_no_jobs(self, seconds: float = 120) -> None:
        """Wait for every job to have ended: the launcher returns once a job wrote its result, while SLURM may
        still be completing it."""
        deadline = time.monotonic() + seconds
        while self.command("squeue", "--noheader", "--format=%A").stdout.strip():
            assert time.monotonic() < deadline, self.command("squeue").stdout
            time.sleep(0.5)


def why_slurm_cannot_run() -> str | None:
    """Why SLURM cannot be installed here (None: it is, or it can be): the reason a test is skipped."""
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed, and installing it (apt-get) needs root"
    if not shutil.which("apt-get"):
        return "SLURM is not installed, and there is no apt-get to install it with"
    installed = subprocess.run([str(INSTALL), "slurm"], capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        return f"SLURM could not be installed: {installed.stderr.strip().splitlines()[-1:]}"
    return None


@contextmanager
def local_cluster() -> Iterator[Cluster]:
    """A one-node cluster of its own (folder and ports), so a cluster started by hand can run beside it."""
    # Not under pytest's tmp_path: munged wants every folder above its socket searchable by all users, and
    # pytest's base folder is private to its user.
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-slurm-test-", dir="/tmp"))
    folder.chmod(0o755)
    env = {**os.environ, "SLURM_LOCAL_DIR": str(folder), "SLURM_LOCAL_PORT": str(free_port_pair()),
           "SLURM_CONF": str(folder / "slurm.conf")}
    try:
        up = subprocess.run([str(SLURM_LOCAL), "up"], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield Cluster(folder, env)
    finally:
        subprocess.run([str(SLURM_LOCAL), "down"], env=env, capture_output=True, timeout=180)
        shutil.rmtree(folder, ignore_errors=True)
