"""Shared fixtures: tiny IMDB-layout data built on the fly, and a local SLURM cluster. What they are built from,
and every other shared helper, is in tests/helpers/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.archives import review_members, write_archive
from tests.helpers.slurm import Cluster, local_cluster, why_slurm_cannot_run


@pytest.fixture
def tiny_archive(tmp_path: Path) -> tuple[Path, str]:
    """A valid tiny archive; its test split holds one word (`zyzzyva`) never seen in train."""
    path = tmp_path / "tiny.tar.gz"
    return path, write_archive(path, review_members(test_extra="zyzzyva"))


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A one-node SLURM cluster for the module (skipped where SLURM cannot be installed)."""
    reason = why_slurm_cannot_run()
    if reason:
        pytest.skip(reason)
    with local_cluster() as started:
        yield started
