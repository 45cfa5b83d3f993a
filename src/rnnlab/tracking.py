"""MLflow bookkeeping: where runs go, and what each run records so it can be reproduced and compared.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
from mlflow.exceptions import MlflowException

from rnnlab import sqlite_store
from rnnlab.errors import UserError, first_line

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The config's URI if set, else $MLFLOW_TRACKING_URI (a team's server), else ./mlflow.db."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def default_artifact_location(uri: str) -> str | None:
    """Beside a sqlite store: <its folder>/mlartifacts (MLflow would pick ./mlruns of whatever the cwd is).
    For a server, None: the server decides. Applies to experiments this creates; existing ones keep theirs."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite store; None for a server."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold the store for this process alone while it sets things up: an exclusive `flock` on `<db file>.lock`
    beside a sqlite store, released by the kernel even if the process is killed. Nothing for a server, which
    serializes its own writes. Inside, a sqlite store is whole (created or migrated beside it, then renamed into
    place), writable and with room for a run, or this raises one `UserError` line (rnnlab.sqlite_store).

    MLflow creates and migrates a new sqlite schema without a lock of its own: processes doing it at once
    break the file (duplicate columns, half-done migrations), and likewise race to create the same experiment.
    """
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    why = sqlite_store.unwritable(db)
    if why is not None:
        raise UserError(why)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            sqlite_store.make_whole(db)
            why = sqlite_store.no_room(db)
            if why is not None:
                raise UserError(why)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing (its artifacts beside a sqlite store). The first call on
    a new sqlite file also creates its schema: call it under `store_lock`."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(client.tracking_uri))
    except MlflowException:  # another process created it first (a server, where there is no lock)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


# The user info of a URL (user:password@, or a bare token@), and query parameters that usually carry secrets
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|access_token|key|password|secret|sig|signature)=)[^&\s]*")


def redact(value: Any) -> Any:
    """`value` with credentials written into URLs replaced by `***` (http://***@host, ?token=***): what is
    recorded as params and tags is readable by everyone who can read the store."""
    if not isinstance(value, str):
        return value
    return _SECRET_QUERY.sub(r"\1***", _URL_USERINFO.sub("***@", value))


# A server that does not answer: fail after a few seconds, not after MLflow's default minutes of retries.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class NoStore(Exception):
    """The store cannot be used: not there, not answering, or without the run asked for."""


def missing_store(tracking_uri: str) -> str | None:
    """Why `tracking_uri` is no store (a sqlite file that does not exist), else None.

    Opening a sqlite URI creates the database; a mistyped or moved path should be reported instead.
    """
    db = sqlite_file(tracking_uri)
    if db is not None and not db.is_file():
        return f"no MLflow store at {tracking_uri} ({db} does not exist)"
    return None


def local_artifact_folder(artifact_location: str) -> Path | None:
    """The folder of a local artifact location (a file: URI or a path, as beside a sqlite store); None for one a
    server or a cloud store holds (mlflow-artifacts:, s3:, ...), which only writing to it can check."""
    parsed = urlparse(artifact_location)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(artifact_location) if parsed.scheme == "" else None


def unwritable_artifacts(artifact_location: str) -> str | None:
    """Why a run could not write its artifacts (model, checkpoint) to `artifact_location`, else None: tried by
    writing a file there, since a run finds out only after training, and then loses what it trained."""
    folder = local_artifact_folder(artifact_location)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rnnlab-write-check-"):
            pass
    except OSError as e:
        return (f"the artifact store {folder} is not writable ({e.strerror or first_line(e)}): a run would train, "
                "then fail to record its model; make it writable, or use another store (logger.tracking_uri)")
    return None


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, load_model, and the registry's own look-ups) at `uri`, then put
    the process back as it was. `mlflow.set_tracking_uri` also writes $MLFLOW_TRACKING_URI, so that is restored too.
    """
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    uri_before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(uri_before)
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before


# While training against a server: ride out a restart, but not MLflow's default of ~4 minutes of retries per call
# (7 retries; urllib3 waits 0, 4, 8, 16, 32 s between 5 of them: about a minute), then stop, resumable.
TRAINING_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def unanswered(error: BaseException) -> str:
    """Why a request got no answer, briefly: the system's error ("[Errno 111] Connection refused") if it says."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
    return found.group(0) if found else first_line(error)[:200]


class StoreUnreachable(UserError):
    """A run's tracking server stopped answering: nothing more can be written to the run, which stays RUNNING
    there (the next start on this host ends it FAILED "died", and resumable), its checkpoints kept."""

    def __init__(self, tracking_uri: str, run_id: str, error: BaseException) -> None:
        super().__init__(f"tracking server unreachable: {redact(tracking_uri)} ({unanswered(error)}): run {run_id} "
                         "stays RUNNING there, its checkpoints kept; run the same command again once it answers, "
                         "to resume it")


class ServerDownAtStart(UserError):
    """The tracking server did not answer while a run was chosen: nothing was trained, no run started."""

    def __init__(self, tracking_uri: str, error: BaseException) -> None:
        super().__init__(f"tracking server unreachable: {redact(tracking_uri)} ({unanswered(error)}): nothing was "
                         "trained; start it, or check logger.tracking_uri / $MLFLOW_TRACKING_URI, and run the command "
                         "again")


def unreachable(error: BaseException | None) -> bool:
    """Whether `error` is a request that got no answer from a tracking server: MLflow raises its own exception,
    with requests' connection error or timeout as its cause or context."""
    import requests

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


_SET_BY_QUICK_HTTP: set[str] = set()  # the variables an enclosing `quick_http` set (not the user)


@contextmanager
def quick_http(limits: dict[str, str] = QUICK_HTTP) -> Iterator[None]:
    """`limits` (QUICK_HTTP unless given) for the duration, unless the user set those variables. Nested, the
    inner block's limits hold inside it (training's TRAINING_HTTP, QUICK_HTTP while a run is planned)."""
    before = {name: os.environ.get(name) for name in limits
              if name not in os.environ or name in _SET_BY_QUICK_HTTP}
    for name in before:
        os.environ[name] = limits[name]
    newly_set = set(before) - _SET_BY_QUICK_HTTP
    _SET_BY_QUICK_HTTP.update(newly_set)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _SET_BY_QUICK_HTTP.difference_update(newly_set)
