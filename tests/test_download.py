"""The download stage: checksum, safe extraction, layout checks, and all-or-nothing output."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from rnnlab.cli import UserError
from rnnlab.data.download import DataError, sha256_of
from tests.helpers.archives import review_members, write_archive
from tests.helpers.project import run_module


def run_download(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None):
    """`python -m rnnlab.data.download` into tmp_path/data/raw/aclImdb, Hydra's own files kept apart."""
    out = tmp_path / "data" / "raw" / "aclImdb"
    result = run_module(
        "rnnlab.data.download", f"paths.raw_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}", *overrides,
        cwd=tmp_path, env=env,
    )
    return result, out


def download(tmp_path: Path, source: str, sha256: str | None):
    env = {"IMDB_SOURCE": source}
    if sha256 is not None:
        env["IMDB_SHA256"] = sha256
    return run_download(tmp_path, env=env)


def assert_failed_cleanly(result, out: Path, *phrases: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("download: error: ")
    for phrase in phrases:
        assert phrase in lines[0]
    assert not out.exists()
    assert not out.parent.exists() or [p.name for p in out.parent.iterdir()] == []  # no temp folders


def test_extracts_reviews_and_reports_counts(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    result, out = download(tmp_path, str(archive), sha)
    assert result.returncode == 0, result.stderr
    assert "train: 6 pos, 6 neg" in result.stdout
    assert "test: 6 pos, 6 neg" in result.stdout
    assert sorted(p.name for p in (out / "train" / "pos").iterdir())[0] == "0_7.txt"
    assert (out / "test" / "neg" / "1_2.txt").read_text().startswith("I hated it.")
    assert not (out / "README").exists()  # only the labelled reviews are extracted


def test_source_from_config(tmp_path, tiny_archive, monkeypatch):
    """Without IMDB_SOURCE / IMDB_SHA256 the config's download section is the source."""
    monkeypatch.delenv("IMDB_SOURCE", raising=False)
    monkeypatch.delenv("IMDB_SHA256", raising=False)
    archive, sha = tiny_archive
    result, out = run_download(tmp_path, f"download.url={archive.as_uri()}", f"download.sha256={sha}")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*/*/*.txt"))) == 24
    result, out = run_download(tmp_path, f"download.url={archive.as_uri()}", "download.sha256=abc")
    assert result.returncode == 1 and result.stderr.strip() == "download: error: sha256 'abc' is not 64 hex digits"


def test_checksum_is_the_archive_sha256(tiny_archive):
    archive, sha = tiny_archive
    assert sha256_of(archive) == sha == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_data_errors_are_user_errors():
    assert issubclass(DataError, UserError)  # so the entry point prints them as one line


def test_file_url_source(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    result, out = download(tmp_path, archive.as_uri(), sha)
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*/*/*.txt"))) == 24


def test_skips_unlabelled_and_extra_members(tmp_path):
    members = review_members()
    members["aclImdb/train/unsup/0_0.txt"] = b"unlabelled"
    members["aclImdb/train/labeledBow.feat"] = b"0:1"
    archive = tmp_path / "canonical-like.tar.gz"
    result, out = download(tmp_path, str(archive), write_archive(archive, members))
    assert result.returncode == 0, result.stderr
    assert not (out / "train" / "unsup").exists()


def test_checksum_mismatch(tmp_path, tiny_archive):
    archive, _ = tiny_archive
    result, out = download(tmp_path, str(archive), "0" * 64)
    assert_failed_cleanly(result, out, "sha256 mismatch", "0" * 64)


def test_missing_archive(tmp_path):
    result, out = download(tmp_path, str(tmp_path / "nowhere.tar.gz"), "0" * 64)
    assert_failed_cleanly(result, out, "does not exist", "IMDB_SOURCE")


def test_source_without_checksum(tmp_path, tiny_archive):
    archive, _ = tiny_archive
    result, out = download(tmp_path, str(archive), None)
    assert_failed_cleanly(result, out, "IMDB_SHA256")


def test_corrupt_gzip(tmp_path):
    archive = tmp_path / "corrupt.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 100)
    result, out = download(tmp_path, str(archive), hashlib.sha256(archive.read_bytes()).hexdigest())
    assert_failed_cleanly(result, out, "truncated or corrupt")


def test_truncated_archive(tmp_path, tiny_archive):
    archive, _ = tiny_archive
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result, out = download(tmp_path, str(truncated), hashlib.sha256(truncated.read_bytes()).hexdigest())
    assert_failed_cleanly(result, out, "truncated or corrupt")


def test_gzip_of_not_a_tar(tmp_path):
    archive = tmp_path / "plain.tar.gz"
    archive.write_bytes(gzip.compress(b"just some text, not a tar archive\n" * 50))
    result, out = download(tmp_path, str(archive), hashlib.sha256(archive.read_bytes()).hexdigest())
    assert_failed_cleanly(result, out)


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("aclImdb/train/pos/../../../../evil.txt", "'..'"), ("/etc/evil.txt", "absolute path")],
)
def test_refuses_escaping_members(tmp_path, name, phrase):
    members = review_members()
    members[name] = b"evil"
    archive = tmp_path / "escape.tar.gz"
    result, out = download(tmp_path, str(archive), write_archive(archive, members))
    assert_failed_cleanly(result, out, "refusing to extract", phrase)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_refuses_symlink_member(tmp_path):
    archive = tmp_path / "link.tar.gz"
    sha = write_archive(archive, review_members(), links={"aclImdb/train/pos/99_9.txt": "/etc/passwd"})
    result, out = download(tmp_path, str(archive), sha)
    assert_failed_cleanly(result, out, "link or device")


def test_missing_split(tmp_path):
    members = {k: v for k, v in review_members().items() if not k.startswith("aclImdb/test/neg/")}
    archive = tmp_path / "nosplit.tar.gz"
    result, out = download(tmp_path, str(archive), write_archive(archive, members))
    assert_failed_cleanly(result, out, "aclImdb layout", "aclImdb/test/neg")


def test_failure_keeps_previous_output(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    result, out = download(tmp_path, str(archive), sha)
    assert result.returncode == 0
    result, out = download(tmp_path, str(archive), "f" * 64)
    assert result.returncode != 0
    assert len(list(out.glob("*/*/*.txt"))) == 24  # the earlier good extraction is untouched


def big_archive(path: Path, per_folder: int) -> str:
    """A valid archive with `per_folder` reviews in each of the four labelled folders: slow enough to extract
    that a kill lands inside the extraction."""
    members = review_members()
    for split in ("train", "test"):
        for label, stars in (("pos", 8), ("neg", 2)):
            for k in range(100, 100 + per_folder):
                members[f"aclImdb/{split}/{label}/{k}_{stars}.txt"] = f"review {k} of {split}/{label}.".encode()
    return write_archive(path, members)


def test_killed_download_leaves_nothing_behind_the_next_run(tmp_path):
    """kill -9 during the extraction leaves its temporary folder; the next download removes it (and only it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    archive = tmp_path / "big.tar.gz"
    sha = big_archive(archive, per_folder=4000)
    out = tmp_path / "data" / "raw" / "aclImdb"
    neighbour = out.parent / ".download-notes.txt"  # a file, not a download's temporary folder: it stays
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("mine")
    command = [sys.executable, "-m", "rnnlab.data.download", f"paths.raw_dir={out}", f"hydra.run.dir={tmp_path}/h"]
    env = {**os.environ, "IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.parent.glob(".download-*/aclImdb/*/*")) and time.monotonic() < deadline:
            assert process.poll() is None, "the download ended before it could be killed"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    [leftover] = [p for p in out.parent.glob(".download-*") if p.is_dir()]  # what a kill leaves
    assert not out.exists()

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert not leftover.exists() and list(out.parent.glob(".download-*")) == [neighbour]
    assert neighbour.read_text() == "mine" and len(list(out.glob("*/*/*.txt"))) == 24 + 4 * 4000
