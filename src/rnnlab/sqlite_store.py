"""A local sqlite MLflow store, made ready before a run is written to it: writable, whole, with room.

MLflow creates a new store's schema, and migrates an older one, in the file itself, statement by statement (sqlite
commits each CREATE at once): a full disk part-way leaves a half-made schema that every later open refuses
("table ... already exists"). Here the schema is built in a file beside the store and renamed over it, so the store
is either as it was or complete. A store that cannot be written, or whose disk is full, is one line before a run
exists, rather than a traceback once MLflow first writes.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from rnnlab.errors import UserError, first_line
from rnnlab.files import replacing

MIN_FREE_BYTES = 1 << 20  # less room than this where the store is, and a run's first records (MLflow's schema alone
# is ~1 MB) would fail part-way


def disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it came from, is a full disk (sqlite's own words, or the system's ENOSPC)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "database or disk is full" in str(error):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def unwritable(db: Path) -> str | None:
    """Why the store `db` cannot be written (its folder, or the file itself, read-only), else None: tried by
    creating a file beside it and opening it for writing, since chmod does not stop root, and chattr +i does."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=db.parent, prefix=".rnnlab-write-check-"):
            pass
    except OSError as e:
        return read_only(db, db.parent, e)
    try:
        if db.exists():
            with open(db, "r+b"):
                pass
    except OSError as e:
        return read_only(db, db, e)
    return None


def read_only(db: Path, where: Path, error: OSError) -> str:
    return (f"the MLflow store {db} is read-only ({where}: {error.strerror or first_line(error)}): a run could not "
            "be recorded; make it writable, or use another store (logger.tracking_uri)")


def no_room(db: Path) -> str | None:
    """Why no run can be recorded in `db` for want of disk space, else None."""
    free = free_bytes(db.parent)
    if free >= MIN_FREE_BYTES:
        return None
    return (f"disk full: {free // 1024} KB free where the MLflow store {db} is (a run needs at least "
            f"{MIN_FREE_BYTES // 1024} KB): free some space, or use another store (logger.tracking_uri)")


def mlflow_schema(db: Path) -> tuple[bool, bool]:
    """Whether `db` has every table of MLflow's schema, and whether it is at MLflow's latest revision."""
    from mlflow.store.db.utils import (
        _all_tables_exist,
        _get_latest_schema_revision,
        _get_schema_version,
        create_sqlalchemy_engine,
    )

    if not db.is_file() or db.stat().st_size == 0:
        return False, False
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")
    try:
        return _all_tables_exist(engine), _get_schema_version(engine) == _get_latest_schema_revision()
    finally:
        engine.dispose()


def holds_records(db: Path) -> bool:
    """Whether `db` holds any experiment or run (MLflow's "Default" experiment aside): a store made part-way by a
    failed creation holds none, and is made again from nothing."""
    if not db.is_file() or db.stat().st_size == 0:
        return False
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {name for [name] in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        experiments = (connection.execute("SELECT count(*) FROM experiments WHERE experiment_id != 0").fetchone()[0]
                       if "experiments" in tables else 0)
    finally:
        connection.close()
    return runs + experiments > 0


def make_whole(db: Path) -> None:
    """Create the store `db`, or bring it to MLflow's schema, in a file beside it renamed over it once complete
    (`files.replacing`): a failure (a full disk) leaves the store as it was, and a full disk is one line. A store
    of an older MLflow that has all its tables is left to MLflow, which asks for `mlflow db upgrade`."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    all_tables, at_head = mlflow_schema(db)
    if all_tables and at_head:
        return
    keeps = holds_records(db)  # its records are migrated in a copy; an empty or half-made schema is made again
    if keeps and all_tables:
        return
    try:
        with replacing(db) as building:
            try:
                if keeps:
                    source, copy = sqlite3.connect(f"file:{db}?mode=ro", uri=True), sqlite3.connect(building)
                    try:
                        source.backup(copy)
                    finally:
                        source.close()
                        copy.close()
                engine = create_sqlalchemy_engine(f"sqlite:///{building}")
                try:
                    _initialize_tables(engine)  # MLflow's own: the initial tables, then every migration
                finally:
                    engine.dispose()
                with open(building, "rb+") as f:
                    os.fsync(f.fileno())  # on disk before the rename
            finally:
                Path(f"{building}-journal").unlink(missing_ok=True)
    except Exception as e:
        if disk_full(e):
            raise UserError(f"disk full: the MLflow store {db} could not be {'migrated' if keeps else 'created'} "
                            f"({free_bytes(db.parent) // 1024} KB free there); nothing was changed: free some "
                            "space, or use another store (logger.tracking_uri)") from e
        raise
