"""What a run records so it can be reproduced: code, data, versions, device, and its settings as params."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytorch_lightning as pl
import torch
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from rnnlab import PACKAGE_DIR
from rnnlab.tracking import redact


def git_state() -> tuple[str | None, bool]:
    """(the commit of the code being run, whether its work tree has uncommitted changes); (None, True) outside
    git. Asked of the package's own folder: MLflow asks of the main script's, which is pytest or a notebook
    kernel when train() is called from Python."""
    git = ["git", "-C", str(PACKAGE_DIR)]
    try:
        sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, check=True).stdout.strip()
        return sha, bool(status)
    except (OSError, subprocess.CalledProcessError):
        return None, True


def data_hash(folder: str | Path) -> str:
    """sha256 over the prepared files (names and contents), so a run names the exact data it saw."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def code_hash() -> str:
    """sha256 over the rnnlab package's Python files (names and contents): the code a run executes, whether or
    not it is committed."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def device_description(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def run_tags(cell: str, impl: str, data_sha256: str | None, accelerator: str,
             sweep_id: str | None) -> dict[str, str]:
    """What a run was made with (code, data, versions, device); `redact`ed, as everything it records."""
    sha, dirty = git_state()
    tags = {
        "cell": cell,
        "impl": impl,
        "git_dirty": str(dirty).lower(),
        "device": device_description(accelerator),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "mlflow": mlflow.__version__,
    }
    if sha:
        tags["mlflow.source.git.commit"] = sha  # MLflow's own tag, which the UI shows as the run's commit
    if data_sha256 is not None:  # generated data (data=adding) have no files: their params (seed, sizes) name them
        tags["data_sha256"] = data_sha256
    if sweep_id:
        tags["sweep_id"] = sweep_id
    return {key: redact(value) for key, value in tags.items()}


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the resolved config as MLflow params, credentials in URLs `redact`ed."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = redact(value)
    return flat


# Config keys that do not change what a run trains or measures, left out of its params: other stages' settings
# (prepare's are covered by the data_sha256 tag; compare's verdict rule), where files go, how the run is named,
# shown, tagged or started.
NOT_RUN_SETTINGS = ("pipeline", "download", "prepare", "findings", "search", "compare", "paths", "logger", "tags",
                    "export_dir", "resume", "data.data_dir", "callbacks.progress_bar", "trainer.enable_progress_bar",
                    "trainer.enable_model_summary")


# What a run counts rather than is set to, recorded as params (one value each, which MLflow does not chart) under
# the section they describe; before, as metrics at step 0 under the names they map from (readers fall back to
# those). Not settings: the notebook's grouping of comparable runs leaves them out.
COUNT_PARAMS = {"n_params": "model.n_params", "epochs": "trainer.epochs_trained"}


# Sections whose class (`_target_`) is the recipe's own wiring, the same in every run: their class path is no
# param (it would be the first thing the compare view shows). Any other section's class is a choice that changes
# a run (the optimizer, a scheduler, an added callback): recorded as `<section>.class`.
WIRING = ("data", "model", "trainer", "callbacks.model_checkpoint", "callbacks.cpu_settings")


def run_params(config: dict) -> dict[str, Any]:
    """The params a run records: its resolved config `flatten`ed, without NOT_RUN_SETTINGS, Hydra's
    `_partial_` markers and the WIRING's classes; other `<section>._target_` as `<section>.class`."""
    params = {}
    for name, value in flatten(config).items():
        if name.endswith("._partial_") or any(name == key or name.startswith(f"{key}.") for key in NOT_RUN_SETTINGS):
            continue
        if name.endswith("._target_"):
            section = name.removesuffix("._target_")
            if section in WIRING:
                continue
            name = f"{section}.class"
        params[name] = value
    return params


def user_tags(tags: dict | None) -> dict[str, str]:
    """The config's `tags` mapping (`+tags.purpose=baseline`; debug configs set `debug`) as MLflow tags."""
    return {str(key): redact(str(value)) for key, value in (tags or {}).items()}


# The prepared data's splits (folders) as MLflow names their use (the dataset's context)
SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}


def log_dataset_inputs(client: mlflow.MlflowClient, run_id: str, name: str, data_dir: Path,
                       data_sha256: str) -> None:
    """Record the prepared data as the run's datasets (the run page's "Datasets"): one per split, named
    `<name>-<split>`, its source the split's folder, its digest the start of the data's sha256 (MLflow keeps
    36 characters; the full hash is tag `data_sha256`)."""
    inputs = []
    for folder, context in SPLIT_CONTEXTS.items():
        # MLflow's "local" source: resolving a bare path instead finds two matching source classes, and says so
        source = get_dataset_source_from_json(json.dumps({"uri": str((data_dir / folder).resolve())}), "local")
        dataset = MetaDataset(source, name=f"{name}-{context}", digest=data_sha256[:16])
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    # Runs started together insert the same datasets at once: a tracking server's store then refuses all but the
    # first insert (a unique-key IntegrityError). Once one has landed, logging again links the run to it.
    for attempt in range(5):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException:
            if attempt == 4:
                raise
            time.sleep(0.2 + random.Random().random())  # its own generator: the seeded global one is untouched
