"""`dvc repro` of the data stages on a tiny archive, in a fresh copy of the project."""

from __future__ import annotations

import json

import pytest

from conftest import copy_project, run_dvc


@pytest.mark.slow
def test_dvc_repro_data_stages(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    env = {"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}

    first = run_dvc("repro", "prepare", cwd=project, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'download'" in first.stdout and "Running stage 'prepare'" in first.stdout
    stats = json.loads((project / "data" / "prepare_stats.json").read_text())
    assert stats["test"]["reviews"] == 12
    assert (project / "data" / "prepared" / "tokenizer.json").is_file()

    second = run_dvc("repro", "prepare", cwd=project, env=env)
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout  # nothing changed, nothing re-runs
    status = run_dvc("status", "prepare", cwd=project)
    assert "up to date" in status.stdout, status.stdout

    shown = json.loads(run_dvc("metrics", "show", "--json", cwd=project).stdout)
    assert shown["workspace"]["data"]["data/prepare_stats.json"]["data"]["test"]["reviews"] == 12
