"""Free ports on 127.0.0.1, and a real `mlflow server` for a test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 (each held open until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_pair() -> int:
    """A port p with p and p + 1 free: slurmctld's and slurmd's."""
    for _ in range(50):
        [port] = free_ports(1)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real `mlflow server` on a new sqlite file in `folder` (artifacts in `folder`/art); yields its URL once
    /health answers, and stops it at the end."""
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", str(folder / "art")],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, f"mlflow server exited with status {server.returncode}"
                time.sleep(0.5)
        else:
            raise AssertionError(f"mlflow server did not answer at {url}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=120)  # a loaded machine: 23 s seen on 2 busy cores
