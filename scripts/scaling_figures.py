"""The README's "Scaling out" figures: one 9-run sweep (3 cells x 3 seeds, the tests' tiny data, 1 epoch) run
three ways, each into a fresh MLflow store, and printed as a markdown table (wall time of the whole command, and
how many of its runs MLflow recorded FINISHED):

- one run after another in one process (Hydra's basic launcher, the default);
- two at a time on this machine (hydra/launcher=joblib hydra.launcher.n_jobs=2);
- as jobs of a local one-node SLURM cluster (hydra/launcher=slurm, one CPU per job: two at a time on 2 CPUs),
  brought up by scripts/slurm_local.sh in a folder of its own and taken down at the end.

    python scripts/scaling_figures.py        # as root, SLURM installed (scripts/install_services.sh slurm)

The runs are tiny, so the figures mostly measure what each path costs per run: the basic launcher starts Python
once, joblib once per worker, SLURM once per job (plus scheduling).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SLURM_LOCAL = PROJECT_ROOT / "scripts" / "slurm_local.sh"
sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # the tests' tiny data and settings: what the slow tests run

from conftest import review_members, write_archive  # noqa: E402
from test_slurm import free_port_pair  # noqa: E402
from test_train import tiny_overrides  # noqa: E402

SWEEP = ["model=rnn,lstm,gru", "seed=0,1,2", "trainer.max_epochs=1"]
RUNS = 9
PATHS = {  # what each path adds to the sweep's command
    "sequential (basic launcher)": [],
    "joblib, n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "local SLURM, 1 node, 2 CPUs (cpus_per_task=1)": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"],
}


def prepare_tiny_data(root: Path) -> Path:
    """The tests' tiny IMDB-layout archive, extracted and prepared as the pipeline would (8 train reviews)."""
    from rnnlab.data.download import extract_reviews
    from rnnlab.data.prepare import prepare

    root.mkdir(parents=True, exist_ok=True)
    write_archive(root / "tiny.tar.gz", review_members())
    extract_reviews(root / "tiny.tar.gz", root / "raw")
    settings = {"vocab_size": 100, "min_frequency": 1, "val_fraction": 0.34, "split_seed": 0}
    prepare(root / "raw", root / "prepared", root / "stats.json", settings, workers=1)
    return root / "prepared"


def finished_runs(store: Path, sweep_dir: Path) -> int:
    """How many runs of the sweep in `sweep_dir` the store in `store` holds FINISHED."""
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"tags.sweep_id = '{sweep_dir}'") if experiments else []
    return sum(run.info.status == "FINISHED" for run in found)


def run_sweep(name: str, extra: list[str], prepared: Path, store: Path, env: dict[str, str]) -> tuple[float, int]:
    """Run the sweep one way; its wall time in seconds and its FINISHED runs."""
    store.mkdir(parents=True)
    sweep_dir = store / "sweep"
    command = [sys.executable, "-m", "rnnlab.train", "-m", *extra, *tiny_overrides(prepared, store), *SWEEP,
               f"hydra.sweep.dir={sweep_dir}"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=store, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        print(f"scaling_figures: {name}: the sweep failed (exit {result.returncode}):\n{result.stderr[-2000:]}",
              file=sys.stderr)
    return wall, finished_runs(store, sweep_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the working folder (stores, sweep folders)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rnnlab-scaling-", dir="/tmp"))
    work.chmod(0o755)  # munged wants every folder above its socket searchable by all
    cluster_env = {**os.environ, "SLURM_LOCAL_DIR": str(work / "slurm"), "SLURM_LOCAL_PORT": str(free_port_pair())}
    cluster_env["SLURM_CONF"] = str(work / "slurm" / "slurm.conf")
    rows = []
    try:
        prepared = prepare_tiny_data(work / "data")
        for number, (name, extra) in enumerate(PATHS.items()):
            env = dict(os.environ)
            if "hydra/launcher=slurm" in extra:
                up = subprocess.run([str(SLURM_LOCAL), "up"], env=cluster_env, capture_output=True, text=True)
                if up.returncode != 0:
                    rows.append(f"| {name} | not measured: {up.stderr.strip()} | |")
                    continue
                env = cluster_env
            wall, finished = run_sweep(name, extra, prepared, work / f"path{number}", env)
            rows.append(f"| {name} | {wall:.0f} | {finished}/{RUNS} |")
    finally:
        subprocess.run([str(SLURM_LOCAL), "down"], env=cluster_env, capture_output=True, text=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{RUNS}-run sweep ({' '.join(SWEEP)}; tiny data), {os.cpu_count()} CPUs, "
          f"`python scripts/scaling_figures.py`:\n")
    print("| path | wall time (s) | runs recorded FINISHED |")
    print("| --- | ---: | ---: |")
    print("\n".join(rows))
    if args.keep:
        print(f"\n(stores and sweep folders kept in {work})")


if __name__ == "__main__":
    main()
