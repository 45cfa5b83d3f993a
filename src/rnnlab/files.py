"""Outputs written whole or not at all: a command killed part-way never leaves a half-written file to be read.

Every file rnnlab writes as a result (stage outputs, reports, figures, checkpoints) goes through `replacing`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

UMASK = os.umask(0o022)  # read once (there is no way to read it without setting it), put back at once
os.umask(UMASK)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` (atomic on one file system) when the block
    ends without an error, removed when it raises. The temporary name keeps `path`'s suffix, so writers that go by
    it (matplotlib's savefig) write the right format, and is unique, so two writers never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.stem}-", suffix=path.suffix)
    os.close(handle)
    os.chmod(name, 0o666 & ~UMASK)  # mkstemp makes it 0600: the output gets the mode a plain write would give
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, text: str) -> None:
    with replacing(path) as temporary:
        temporary.write_text(text)


def copy_atomically(source: str | Path, path: str | Path) -> None:
    with replacing(path) as temporary:
        shutil.copyfile(source, temporary)
