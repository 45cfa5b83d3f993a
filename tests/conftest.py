"""Shared fixtures: tiny IMDB-layout archives built on the fly, and a way to run the project's commands."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

POSITIVE = [
    "A wonderful film.<br /><br />The acting is great and the story is moving.",
    "I loved it! Great cast, great music, a truly great movie.",
    "Brilliant and touching; one of the best films of the year.",
    "Great fun from start to end. I would watch it again.",
    "The director did a wonderful job, the best work of his career.",
    "An excellent, heartfelt story. Loved every minute.",
]
NEGATIVE = [
    "A terrible film.<br />The acting is awful and the plot is boring.",
    "I hated it. Bad cast, bad music, a truly bad movie.",
    "Dull and pointless; one of the worst films of the year.",
    "Boring from start to end. I would never watch it again.",
    "The director did an awful job, the worst work of his career.",
    "A waste of time, badly written. Hated every minute.",
]


def review_members(test_extra: str | None = None) -> dict[str, bytes]:
    """Archive member name -> content for a tiny but complete aclImdb tree."""
    members = {"aclImdb/README": b"tiny test copy\n", "aclImdb/imdb.vocab": b"film\nmovie\n"}
    for split in ("train", "test"):
        for label, texts, stars in (("pos", POSITIVE, (7, 8, 9, 10)), ("neg", NEGATIVE, (1, 2, 3, 4))):
            for k, text in enumerate(texts):
                if split == "test" and k == 0 and test_extra:
                    text = f"{text} {test_extra}"
                members[f"aclImdb/{split}/{label}/{k}_{stars[k % 4]}.txt"] = text.encode()
    return members


def write_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    """Write a .tar.gz of `members` (plus symlinks name -> target); return its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_archive(tmp_path: Path) -> tuple[Path, str]:
    """A valid tiny archive; its test split holds one word (`zyzzyva`) never seen in train."""
    path = tmp_path / "tiny.tar.gz"
    return path, write_archive(path, review_members(test_extra="zyzzyva"))


def run_module(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, capturing its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the project's files (as a clone would), for real `dvc repro` runs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file() and not name.startswith("data/"):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=rnnlab-test", "-c", "user.email=test@rnnlab.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    return dest


def run_dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the venv's `dvc`, with the venv first on PATH so stage commands find its `python`."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(
        [str(Path(bin_dir) / "dvc"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory) -> Path:
    """The tiny archive downloaded and prepared as the pipeline would: 8 train, 4 val, 12 test reviews."""
    from rnnlab.data.download import extract_reviews
    from rnnlab.data.prepare import prepare

    root = tmp_path_factory.mktemp("data")
    write_archive(root / "a.tar.gz", review_members())
    extract_reviews(root / "a.tar.gz", root / "raw")
    settings = {"vocab_size": 100, "min_frequency": 1, "val_fraction": 0.34, "split_seed": 0}
    prepare(root / "raw", root / "prepared", root / "stats.json", settings, workers=1)
    return root / "prepared"


class InterruptTraining:
    """A Lightning callback that presses Ctrl-C after the first training batch."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Interrupt(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                raise KeyboardInterrupt

        return _Interrupt()
