"""Benchmark the prepare stage: wall time and peak memory (all processes together) on the real data.

    python -m rnnlab.bench.prepare [--raw data/raw/aclImdb] [--params params.yaml] [--repeats 3]

Runs `python -m rnnlab.data.prepare` as DVC would (on the params file, its `prepare` settings), writing into a
temporary folder, sampling the resident memory of the process and its workers every 10 ms. Targets (issue 2):
<= 10 s and <= 2 GB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def quoted(path: Path | str) -> str:
    """A path as a Hydra override value: quoted, so spaces, commas or `=` in it stay part of it."""
    return "'" + str(path).replace("'", "\\'") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw/aclImdb")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not Path(args.raw).is_dir():
        print(f"bench: error: {args.raw} does not exist: run `dvc repro download` first", file=sys.stderr)
        return 1
    params = Path(args.params).resolve()
    if params.suffix != ".yaml" or not params.is_file():
        print(f"bench: error: {args.params} is not a .yaml params file (e.g. params.yaml)", file=sys.stderr)
        return 1
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "rnnlab.data.prepare", "--config-dir", str(params.parent),
                   "--config-name", params.stem, f"paths.raw_dir={quoted(Path(args.raw).resolve())}",
                   f"paths.prepared_dir={quoted(f'{tmp}/prepared')}",
                   f"paths.prepare_stats={quoted(f'{tmp}/stats.json')}", f"hydra.run.dir={quoted(f'{tmp}/hydra')}"]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            watched, peak = psutil.Process(proc.pid), 0
            while proc.poll() is None:
                peak = max(peak, tree_rss(watched))
                time.sleep(0.01)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                return proc.returncode
            reviews = sum(v["reviews"] for k, v in json.loads(Path(f"{tmp}/stats.json").read_text()).items()
                          if isinstance(v, dict))
            runs.append({"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20)})
    best = min(runs, key=lambda r: r["seconds"])
    print(f"prepare of {reviews} reviews on {os.cpu_count()} cores: "
          f"{best['seconds']:.2f} s (best of {len(runs)}: {[r['seconds'] for r in runs]}), "
          f"peak memory {max(r['peak_rss_mb'] for r in runs)} MB (all processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
