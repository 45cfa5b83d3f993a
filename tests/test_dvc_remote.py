"""A DVC remote shares the pipeline's outputs: a project runs `dvc repro` on a tiny archive and pushes to a
local-directory remote; a teammate's fresh `git clone` gets the prepared data and the trained checkpoint with
`dvc pull`, and DVC sees nothing to rerun."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rnnlab.params import compose_params
from tests.helpers.project import copy_project, run_dvc

TRAIN_STAGE = "train@gru-fused-0"
# DVC-cached outputs (dvc.yaml outs without `cache: false`) of TRAIN_STAGE and the stages before it
CACHED = ("data/raw/aclImdb", "data/prepared", "data/train/gru-fused-0/model.ckpt")
GIT = ["git", "-c", "user.name=rnnlab-test", "-c", "user.email=test@rnnlab.invalid"]


def files(root: Path, out: str) -> dict[str, bytes]:
    """Every file of an output (a file or a folder), by its path in the project."""
    path = root / out
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in found}


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_fresh_clone_pulls_the_data_and_checkpoints(tmp_path, tiny_archive):
    archive, sha = tiny_archive
    project = copy_project(tmp_path / "project")
    compose_params(project / "params.yaml", [
        "pipeline.cells=[gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0]", "pipeline.baselines=[]",
        "trainer.max_epochs=1",
        "data.batch_size=4", "model.embedding_dim=8", "model.hidden_size=8", "callbacks.progress_bar=null",
        f"logger.tracking_uri=sqlite:///{project}/mlflow.db"])
    remote = tmp_path / "remote"
    succeeded(run_dvc("remote", "add", "-d", "shared", str(remote), cwd=project))
    succeeded(run_dvc("repro", TRAIN_STAGE, cwd=project, env={"IMDB_SOURCE": str(archive), "IMDB_SHA256": sha}))
    # What goes to git: dvc.lock, the remote's address, and the records DVC does not cache (metrics.json,
    # prepare_stats.json); the cached outputs are git-ignored by DVC, and go to the remote.
    succeeded(subprocess.run([*GIT, "add", "-A"], cwd=project, capture_output=True, text=True))
    succeeded(subprocess.run([*GIT, "commit", "-qm", "repro"], cwd=project, capture_output=True, text=True))
    succeeded(run_dvc("push", cwd=project))

    clone = tmp_path / "clone"
    succeeded(subprocess.run(["git", "clone", "-q", str(project), str(clone)], capture_output=True, text=True))
    assert not any((clone / out).exists() for out in CACHED)  # git alone does not bring them
    succeeded(run_dvc("pull", cwd=clone))  # no IMDB archive, no training: the remote has it all

    for out in CACHED:
        pulled = files(clone, out)
        assert pulled and pulled == files(project, out), out
    assert (clone / "data" / "train" / "gru-fused-0" / "metrics.json").is_file()  # from git
    status = succeeded(run_dvc("status", "--json", "--with-deps", TRAIN_STAGE, cwd=clone))
    assert json.loads(status.stdout) == {}, status.stdout  # every stage up to date: nothing to recompute
