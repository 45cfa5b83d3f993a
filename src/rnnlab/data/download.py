"""DVC stage `download`: fetch the IMDB archive, verify its sha256, extract the labelled reviews safely.

The source is the canonical Stanford URL and checksum of the config's `download` section. Offline
machines point `IMDB_SOURCE` at a local archive (a path or a file:// URL) and give its checksum in
`IMDB_SHA256`. Output: `<paths.raw_dir>/{train,test}/{pos,neg}/<id>_<rating>.txt`, written to a temporary
folder (`.download-*` beside it) and renamed into place only once everything checked out, so a failure leaves
nothing. One download at a time holds the parent folder (an `flock`, which the kernel releases when its process
dies, however it dies): the temporary folders it finds there were left by downloads that were killed, and go.

    python -m rnnlab.data.download [paths.raw_dir=...]
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from rnnlab.cli import UserError, hydra_app

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
LABELS = ("neg", "pos")
REVIEW_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")  # groups: review id, rating
# Members outside the labelled reviews (train/unsup, .feat files, URL lists) are skipped, not refused.
REVIEW_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg)/([^/]+)$")
PROGRESS_EVERY = 10_000  # reviews extracted between two progress lines


class DataError(UserError):
    """A problem with the input data, reported to the user as one line."""


def resolve_source(url: str, sha256: str) -> tuple[str, str]:
    """The archive source and its checksum, with IMDB_SOURCE / IMDB_SHA256 taking precedence."""
    source = os.environ.get("IMDB_SOURCE") or url
    checksum = os.environ.get("IMDB_SHA256") or sha256
    if os.environ.get("IMDB_SOURCE") and not os.environ.get("IMDB_SHA256"):
        raise DataError("IMDB_SOURCE is set but IMDB_SHA256 is not: give the archive's sha256 too")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", checksum):
        raise DataError(f"sha256 {checksum!r} is not 64 hex digits")
    return source, checksum.lower()


def local_path(source: str) -> Path | None:
    """The filesystem path of a local source, or None for a remote URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return Path(source)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(url: str, dest: Path) -> None:
    """Stream `url` into `dest` with a progress bar."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", file=sys.stderr) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as e:
        raise DataError(
            f"cannot download {url} ({e}); offline, set IMDB_SOURCE to a local archive and IMDB_SHA256 to its sha256"
        ) from e


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse members that could write outside the extraction folder or are not plain files/folders."""
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"archive member {name!r} has an absolute path: refusing to extract")
    if ".." in Path(name).parts:
        raise DataError(f"archive member {name!r} climbs out with '..': refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"archive member {name!r} is a link or device: refusing to extract")


def extract_reviews(archive: Path, dest: Path) -> dict[str, dict[str, int]]:
    """Extract the labelled reviews of `archive` into `dest`; return review counts per split and label."""
    counts = {split: {label: 0 for label in LABELS} for split in SPLITS}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                check_member(member)
                match = REVIEW_MEMBER.match(member.name)
                if not match or not member.isfile():
                    continue
                split, label, filename = match.groups()
                if not REVIEW_NAME.match(filename):
                    raise DataError(f"archive member {member.name!r} is not named <id>_<rating>.txt")
                target = dest / split / label / filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                counts[split][label] += 1
                extracted = sum(sum(c.values()) for c in counts.values())
                if extracted % PROGRESS_EVERY == 0:
                    log.info("%d reviews extracted", extracted)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{archive} is not a readable .tar.gz ({e}): it is truncated or corrupt, fetch it again") from e
    missing = [f"{split}/{label}" for split in SPLITS for label in LABELS if counts[split][label] == 0]
    if missing:
        raise DataError(
            f"{archive} does not have the aclImdb layout: no reviews in {', '.join('aclImdb/' + m for m in missing)}"
        )
    return counts


TEMPORARY_PREFIX = ".download-"


def download(url: str, sha256: str, out_dir: Path) -> dict[str, dict[str, int]]:
    """Fetch, verify and extract the archive into `out_dir`; all or nothing."""
    source, checksum = resolve_source(url, sha256)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with holding(out_dir.parent):
        remove_leftovers(out_dir.parent)
        return download_into(source, checksum, out_dir)


@contextmanager
def holding(folder: Path) -> Iterator[None]:
    """An exclusive `flock` on `folder` itself (no lock file to leave behind) for as long as the block runs."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary folders of killed downloads: while `holding` the folder, no other download has one."""
    for leftover in folder.glob(f"{TEMPORARY_PREFIX}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def download_into(source: str, checksum: str, out_dir: Path) -> dict[str, dict[str, int]]:
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=TEMPORARY_PREFIX) as tmp:
        archive = local_path(source)
        if archive is None:
            archive = Path(tmp) / "archive.tar.gz"
            fetch(source, archive)
        elif not archive.is_file():
            raise DataError(f"archive {archive} does not exist: check IMDB_SOURCE")
        log.info("checking the sha256 of %s (%.0f MB)", archive, archive.stat().st_size / 1e6)
        actual = sha256_of(archive)
        if actual != checksum:
            raise DataError(f"sha256 mismatch for {source}: expected {checksum}, got {actual}; fetch it again")
        staging = Path(tmp) / "aclImdb"
        log.info("extracting the reviews")
        counts = extract_reviews(archive, staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    return counts


@hydra_app("download")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.raw_dir)
    counts = download(cfg.download.url, cfg.download.sha256, out_dir)
    for split in SPLITS:
        log.info("%s: %d pos, %d neg", split, counts[split]["pos"], counts[split]["neg"])
    log.info("extracted %d reviews into %s", sum(sum(c.values()) for c in counts.values()), out_dir)


if __name__ == "__main__":
    main()
