"""The README's "Scaling out" figures: one 9-run sweep (3 cells x 3 seeds, tiny data as the tests use, 1 epoch) run
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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SLURM_LOCAL = PROJECT_ROOT / "scripts" / "slurm_local.sh"

SWEEP = ["model=rnn,lstm,gru", "seed=0,1,2", "trainer.max_epochs=1"]
RUNS = 9
PATHS = {  # what each path adds to the sweep's command
    "sequential (basic launcher)": [],
    "joblib, n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "local SLURM, 1 node, 2 CPUs (cpus_per_task=1)": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"],
}
# The tests' tiny data (tests/helpers/archives.py): six reviews per label and split, rated as their label says
REVIEWS = {
    "pos": ["A wonderful film.<br /><br />The acting is great and the story is moving.",
            "I loved it! Great cast, great music, a truly great movie.",
            "Brilliant and touching; one of the best films of the year.",
            "Great fun from start to end. I would watch it again.",
            "The director did a wonderful job, the best work of his career.",
            "An excellent, heartfelt story. Loved every minute."],
    "neg": ["A terrible film.<br />The acting is awful and the plot is boring.",
            "I hated it. Bad cast, bad music, a truly bad movie.",
            "Dull and pointless; one of the worst films of the year.",
            "Boring from start to end. I would never watch it again.",
            "The director did an awful job, the worst work of his career.",
            "A waste of time, badly written. Hated every minute."],
}
STARS = {"pos": (7, 8, 9, 10), "neg": (1, 2, 3, 4)}


def tiny_overrides(prepared: Path, store: Path) -> list[str]:
    """The tests' tiny runs (tests/helpers/training.py), recorded in `store`/mlflow.db."""
    return [f"paths.prepared_dir={prepared}", f"logger.tracking_uri=sqlite:///{store}/mlflow.db",
            "trainer.max_epochs=2", "data.batch_size=4", "data.eval_batch_size=4", "model.embedding_dim=8",
            "model.hidden_size=8", "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]


def prepare_tiny_data(root: Path) -> Path:
    """The tiny reviews laid out as the download stage extracts them, prepared as the pipeline would (8 train)."""
    from rnnlab.data.prepare import prepare

    for split in ("train", "test"):
        for label, texts in REVIEWS.items():
            (root / "raw" / split / label).mkdir(parents=True)
            for k, text in enumerate(texts):
                (root / "raw" / split / label / f"{k}_{STARS[label][k % 4]}.txt").write_text(text)
    settings = {"vocab_size": 100, "min_frequency": 1, "val_fraction": 0.34, "split_seed": 0}
    prepare(root / "raw", root / "prepared", root / "stats.json", settings, workers=1)
    return root / "prepared"


def free_port_pair() -> int:
    """A port p with p and p + 1 free: slurmctld's and slurmd's."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


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
