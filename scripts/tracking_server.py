"""A team's MLflow tracking server, its runs in PostgreSQL and its artifacts served by itself: start, stop, status.

    python scripts/tracking_server.py start        # http://127.0.0.1:5001; PostgreSQL on 127.0.0.1:5433
    python scripts/tracking_server.py status       # one line per service; exit status 3 if one is stopped
    python scripts/tracking_server.py stop         # both stop; every run and artifact stays for the next start
    python scripts/tracking_server.py start --dir /srv/rnnlab-tracking --port 5050 --pg-port 5442

then `export MLFLOW_TRACKING_URI=http://127.0.0.1:5001` (start prints the line) sends every rnnlab command to it:
training, sweeps, compare, predict, the notebook. Everything lives in --dir (default: .tracking/ in the project,
git-ignored):

    postgres/      the database cluster (created by the first start); postmaster.pid and the socket are in it
    postgres.log   PostgreSQL's log
    pgpass         the password of database role `mlflow` (mode 600). The server reads it through $PGPASSFILE,
                   so it never shows on a command line
    artifacts/     the runs' artifacts: the server stores and serves them (--artifacts-destination)
    mlflow.pid     the server's process id, then its port
    mlflow.log     the server's log

Start is idempotent: what runs already is left running. Both services listen on 127.0.0.1 only. PostgreSQL's
binaries must be installed (Debian: scripts/install_services.sh postgres). PostgreSQL refuses to run as root: run
as root, this runs them as the `postgres` system user, which then owns postgres/ and must be able to reach it.
A mistake (a port in use, no PostgreSQL) is one line, `tracking_server: error: ...`, and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DATABASE = ROLE = "mlflow"  # the database the server keeps its runs in, and the role it logs in as
SUPERUSER = "postgres"  # the cluster's own superuser: reaches it through the socket only, to create ROLE
POSTGRES_SYSTEM_USER = "postgres"  # Debian's: who runs PostgreSQL's binaries when this runs as root
STARTUP_TIMEOUT_S = 120  # for each service to answer; the first start of the server also creates its schema


class ServerError(Exception):
    """Something the user can fix; reported as one line."""


def fail(message: str) -> NoReturn:
    print(f"tracking_server: error: {message}", file=sys.stderr)
    sys.exit(1)


@dataclass(frozen=True)
class Layout:
    """Where each file of a tracking server lives, under its folder (module docstring)."""

    folder: Path
    FILES = {"cluster": "postgres", "postgres_log": "postgres.log", "pgpass": "pgpass", "artifacts": "artifacts",
             "mlflow_pid": "mlflow.pid", "mlflow_log": "mlflow.log"}

    def __getattr__(self, name: str) -> Path:  # layout.pgpass -> <folder>/pgpass
        if name in Layout.FILES:
            return self.folder / Layout.FILES[name]
        raise AttributeError(name)


# --- PostgreSQL -------------------------------------------------------------------------------------------------

def postgres_bin_dir() -> Path:
    """The folder of initdb, pg_ctl and postgres: Debian's newest /usr/lib/postgresql/<version>/bin, else PATH's."""
    debian = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if debian:
        return max(debian, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise ServerError("PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb, no initdb on PATH): "
                      "run scripts/install_services.sh postgres")


@dataclass(frozen=True)
class Postgres:
    """PostgreSQL's binaries, run as the cluster's owner: this user, or, for root, the `postgres` system user."""

    bin_dir: Path
    layout: Layout
    owner: pwd.struct_passwd | None  # None: this process's user

    @classmethod
    def find(cls, layout: Layout) -> Postgres:
        bin_dir = postgres_bin_dir()
        if os.geteuid() != 0:
            return cls(bin_dir, layout, None)
        try:
            return cls(bin_dir, layout, pwd.getpwnam(POSTGRES_SYSTEM_USER))
        except KeyError:
            raise ServerError(f"PostgreSQL refuses to run as root, and there is no {POSTGRES_SYSTEM_USER!r} system "
                              "user to run it: run scripts/install_services.sh postgres, or run this as "
                              "another user") from None

    def run(self, *command: str) -> subprocess.CompletedProcess:
        """`<bin_dir>/command[0] command[1:]` as the owner, in the cluster's folder (its binaries refuse to start
        in a folder they cannot read)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        return subprocess.run([str(self.bin_dir / command[0]), *command[1:]], cwd=self.layout.cluster, env=env,
                              capture_output=True, text=True, **self.as_owner())

    def as_owner(self) -> dict:
        """subprocess's arguments that run a command as the owner."""
        if self.owner is None:
            return {}
        return {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}

    @property
    def owner_name(self) -> str:
        return (self.owner or pwd.getpwuid(os.geteuid())).pw_name

    def give_to_owner(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of the cluster's postmaster if it runs, else None."""
        if not (self.layout.cluster / "PG_VERSION").is_file():
            return None
        if self.run("pg_ctl", "status", "-D", str(self.layout.cluster)).returncode != 0:
            return None
        # postmaster.pid: the pid on line 1, the port on line 4
        lines = (self.layout.cluster / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), int(lines[3])

    def init_cluster(self) -> None:
        """A new cluster: the superuser reaches it through its socket only (kept in the cluster's own folder, which
        only its owner may enter); over TCP a role needs its password."""
        cluster = self.layout.cluster
        cluster.mkdir(mode=0o700)
        self.give_to_owner(cluster)
        reachable = subprocess.run(["sh", "-c", 'test -r "$1" && test -w "$1" && test -x "$1"', "sh", str(cluster)],
                                   cwd="/", **self.as_owner())
        if reachable.returncode != 0:
            cluster.rmdir()
            raise ServerError(f"user {self.owner_name} cannot reach {cluster} (a folder above it is closed to it): "
                              "choose a --dir it can reach")
        done = self.run("initdb", "-D", str(cluster), f"--username={SUPERUSER}", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions")
        if done.returncode != 0:
            shutil.rmtree(cluster, ignore_errors=True)  # half made: the next start begins again
            raise ServerError(f"initdb failed: {last_line(done.stderr)}")

    def start(self, port: int) -> tuple[int, int]:
        self.layout.postgres_log.touch()
        self.give_to_owner(self.layout.postgres_log)
        # Where it listens is given at each start, not written into the cluster: the folder may move, the port change.
        options = f"-c listen_addresses={HOST} -p {port} -k {shlex.quote(str(self.layout.cluster))}"
        done = self.run("pg_ctl", "start", "-D", str(self.layout.cluster), "-l", str(self.layout.postgres_log),
                        "-w", "-t", str(STARTUP_TIMEOUT_S), "-o", options)
        running = self.running()
        if done.returncode != 0 or running is None:
            raise ServerError(f"PostgreSQL did not start: {last_line(self.layout.postgres_log.read_text())} "
                              f"(log: {self.layout.postgres_log})")
        return running

    def stop(self) -> None:
        done = self.run("pg_ctl", "stop", "-D", str(self.layout.cluster), "-m", "fast", "-w",
                        "-t", str(STARTUP_TIMEOUT_S))
        if done.returncode != 0:
            raise ServerError(f"PostgreSQL did not stop: {last_line(done.stderr)}")


def password(layout: Layout) -> str:
    """The role's password, made on first use; the pgpass file (libpq's format, mode 600) keeps it."""
    if layout.pgpass.is_file():
        return layout.pgpass.read_text().strip().rsplit(":", 1)[1]
    secret = secrets.token_urlsafe(24)  # letters, digits, - and _: nothing pgpass would need escaped
    fd = os.open(layout.pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{HOST}:*:{DATABASE}:{ROLE}:{secret}\n")
    return secret


def ensure_database(layout: Layout, port: int) -> None:
    """Role ROLE with the pgpass file's password and its database DATABASE, made if missing (as the superuser)."""
    import psycopg2  # a dependency of the project; imported here so that `status` and `stop` do without it

    secret = password(layout)
    connection = psycopg2.connect(host=str(layout.cluster), port=port, user=SUPERUSER, dbname="postgres")
    connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"  # ALTER: the pgpass file is the one source of truth
            cursor.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD %s", (secret,))
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if not cursor.fetchone():
                cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    finally:
        connection.close()


# --- the MLflow server ----------------------------------------------------------------------------------------------

def mlflow_command() -> str:
    """The `mlflow` of this Python's environment (the project's venv), else PATH's."""
    beside = Path(sys.executable).parent / "mlflow"
    found = str(beside) if beside.is_file() else shutil.which("mlflow")
    if not found:
        raise ServerError(f"no `mlflow` command beside {sys.executable} or on PATH: run `make setup` and use the "
                          "project's Python (.venv/bin/python)")
    return found


def url(port: int) -> str:
    return f"http://{HOST}:{port}"


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"{url(port)}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def mlflow_running(layout: Layout) -> tuple[psutil.Process, int] | None:
    """(the server's process, its port) if the one mlflow.pid names still runs, else None."""
    try:
        pid, port = (int(field) for field in layout.mlflow_pid.read_text().split())
        process = psutil.Process(pid)
        # The pid may have been reused by another program since
        if process.status() != psutil.STATUS_ZOMBIE and "server" in process.cmdline() and any(
                "mlflow" in part for part in process.cmdline()):
            return process, port
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def start_mlflow(layout: Layout, port: int, postgres_port: int, workers: int) -> int:
    """`mlflow server` in the background (a session of its own, so that `stop` ends its workers with it)."""
    layout.artifacts.mkdir(exist_ok=True)
    # psycopg2 named: SQLAlchemy 2.1 defaults to psycopg 3. No password: libpq reads it from $PGPASSFILE
    store = f"postgresql+psycopg2://{ROLE}@{HOST}:{postgres_port}/{DATABASE}"
    command = [mlflow_command(), "server", "--backend-store-uri", store, "--artifacts-destination",
               str(layout.artifacts), "--host", HOST, "--port", str(port), "--workers", str(workers)]
    # The server's job runner (a pool of worker processes for GenAI evaluations and trace archiving) serves
    # nothing rnnlab logs: off, unless the user's environment says otherwise.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "PGPASSFILE": str(layout.pgpass)}
    with open(layout.mlflow_log, "ab") as log:
        process = subprocess.Popen(command, cwd=layout.folder, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not answers(port):
        if process.poll() is not None:
            raise ServerError(f"mlflow server exited with status {process.returncode}: "
                              f"{last_line(layout.mlflow_log.read_text())} (log: {layout.mlflow_log})")
        if time.monotonic() > deadline:
            stop_process_group(psutil.Process(process.pid))
            raise ServerError(f"mlflow server did not answer within {STARTUP_TIMEOUT_S} s (log: {layout.mlflow_log})")
        time.sleep(0.5)
    layout.mlflow_pid.write_text(f"{process.pid}\n{port}\n")
    return process.pid


def stop_process_group(leader: psutil.Process) -> None:
    """SIGTERM to the server and its workers, SIGKILL to any still there after 30 s."""
    members = [leader, *leader.children(recursive=True)]
    try:
        os.killpg(leader.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _, alive = psutil.wait_procs(members, timeout=30)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=10)


# --- the commands ---------------------------------------------------------------------------------------------------

def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def check_free(port: int, option: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to listen on
        try:
            probe.bind((HOST, port))
        except OSError:
            raise ServerError(f"port {port} on {HOST} is in use: choose another with {option}") from None


def start(layout: Layout, port: int, postgres_port: int, workers: int) -> None:
    postgres = Postgres.find(layout)
    mlflow_command()  # missing: say so before anything starts
    layout.folder.mkdir(parents=True, exist_ok=True)
    database, server = postgres.running(), mlflow_running(layout)
    # Both ports checked before anything starts, so that a mistake leaves nothing half started
    if database is None:
        check_free(postgres_port, "--pg-port")
    if server is None:
        check_free(port, "--port")
    if database is None:
        if not (layout.cluster / "PG_VERSION").is_file():
            postgres.init_cluster()
        database = postgres.start(postgres_port)
        print(f"postgres: started on {HOST}:{database[1]} (pid {database[0]}, data in {layout.cluster})")
    else:
        print(f"postgres: already running on {HOST}:{database[1]} (pid {database[0]})")
    ensure_database(layout, database[1])
    if server is None:
        pid = start_mlflow(layout, port, database[1], workers)
        print(f"mlflow server: started at {url(port)} (pid {pid}, artifacts in {layout.artifacts})")
    else:
        port = server[1]
        print(f"mlflow server: already running at {url(port)} (pid {server[0].pid})")
    print(f"export MLFLOW_TRACKING_URI={url(port)}")


def stop(layout: Layout) -> None:
    server = mlflow_running(layout)
    if server is None:
        print("mlflow server: not running")
    else:
        stop_process_group(server[0])
        print(f"mlflow server: stopped (was pid {server[0].pid})")
    layout.mlflow_pid.unlink(missing_ok=True)
    if not (layout.cluster / "PG_VERSION").is_file():
        print(f"postgres: no cluster in {layout.cluster}")
        return
    postgres = Postgres.find(layout)
    if postgres.running() is None:
        print("postgres: not running")
    else:
        postgres.stop()
        print(f"postgres: stopped (data kept in {layout.cluster})")


def status(layout: Layout) -> bool:
    """One line per service; whether both run."""
    server = mlflow_running(layout)
    if server is None:
        print("mlflow server: stopped")
    else:
        health = "answering" if answers(server[1]) else "NOT answering"
        print(f"mlflow server: running at {url(server[1])} (pid {server[0].pid}, {health})")
    database = Postgres.find(layout).running() if (layout.cluster / "PG_VERSION").is_file() else None
    if database is None:
        print(f"postgres: stopped (cluster: {layout.cluster})")
    else:
        print(f"postgres: running on {HOST}:{database[1]} (pid {database[0]}, data in {layout.cluster})")
    return server is not None and database is not None


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as every other mistake
        fail(message)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="tracking_server", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=PROJECT_ROOT / ".tracking",
                        help="the server's folder (default: .tracking/ in the project)")
    parser.add_argument("--port", type=int, default=5001, help="the MLflow server's port (default 5001)")
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port (default 5433)")
    parser.add_argument("--workers", type=int, default=2, help="the MLflow server's worker processes (default 2)")
    args = parser.parse_args(argv)
    for option, value in (("--port", args.port), ("--pg-port", args.pg_port)):
        if not 1 <= value <= 65535:
            fail(f"{option} {value}: a port is a number from 1 to 65535")
    if args.port == args.pg_port:
        fail(f"--port and --pg-port are both {args.port}: the two services need a port each")
    if args.workers < 1:
        fail(f"--workers {args.workers}: at least 1")
    layout = Layout(args.dir.resolve())
    try:
        if args.command == "start":
            start(layout, args.port, args.pg_port, args.workers)
        elif args.command == "stop":
            stop(layout)
        else:
            return 0 if status(layout) else 3  # 3: "not running", as pg_ctl status and LSB init scripts say
    except ServerError as e:
        fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
