"""Screenshots of the MLflow UI for the README: the runs list and the chart view of one experiment.

    python scripts/screenshots.py                                  # the project's mlflow.db, experiment imdb-cells
    python scripts/screenshots.py --store mlflow.db --out docs/screenshots

Starts `mlflow server` on 127.0.0.1 against the store (a free port), waits until it answers, and has headless
Chromium (Debian's `chromium`; `apt-get install chromium`) load each page and save it as a PNG. The UI is a
JavaScript app that fetches the runs after the page loads: `--virtual-time-budget` lets it finish before the
picture is taken. The server is stopped at the end, whatever happens.
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
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
# What each screenshot shows: (file name, the experiment page's view)
VIEWS = (("mlflow_runs.png", "TABLE"), ("mlflow_charts.png", "CHART"))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(store: Path, port: int) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:port over the sqlite store; yields its URL once /health answers."""
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"screenshots: error: mlflow server on port {port} did not start")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)  # its own session: the server and the workers it started
        server.wait(timeout=30)


def screenshot(chromium: str, url: str, path: Path, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rnnlab-chromium-") as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}",
                        "--window-size=1600,1000", f"--virtual-time-budget={budget_ms}", url],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "mlflow.db", help="the sqlite file (default: mlflow.db)")
    parser.add_argument("--experiment", default="imdb-cells")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--budget-ms", type=int, default=20000, help="virtual time the page gets to render")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshots: error: chromium not found (Debian: apt-get install chromium)")
    if not args.store.is_file():
        raise SystemExit(f"screenshots: error: no MLflow store at {args.store}")
    experiment = mlflow.MlflowClient(f"sqlite:///{args.store.resolve()}").get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"screenshots: error: {args.store} has no experiment {args.experiment!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_server(args.store.resolve(), free_port()) as url:
        for name, view in VIEWS:
            page = f"{url}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode={view}"
            screenshot(chromium, page, args.out / name, args.budget_ms)
            print(f"{args.out / name}: {page}")


if __name__ == "__main__":
    main()
