"""MLflow bookkeeping: where runs go, and what each run records so it can be reproduced and compared."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

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
    serializes its own writes.

    MLflow creates and migrates a new sqlite schema without a lock of its own: processes doing it at once
    break the file (duplicate columns, half-done migrations), and likewise race to create the same experiment.
    """
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
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


# Metrics a run has one value of, at its end (plus its size): logged once, at step 0, so that MLflow shows them as
# the run's summary (a bar per run in the chart view) rather than as stray points on the epochs' step axis.
SUMMARY_METRICS = ("fit_time_s", "train_samples_per_s", "best_val_acc", "epochs", "n_params")


def is_summary(name: str) -> bool:
    return name in SUMMARY_METRICS or name.startswith("test_")


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, except that
    - it never ends the run: Lightning would mark it FINISHED after `fit`, before the test and the record.
      `rnnlab.recording.RunRecord` decides the final status, in one place;
    - the run's params are the resolved config, logged once by `RunRecord` (`log_config`): what Lightning logs
      itself (the module's `save_hyperparameters`, a copy of model.* under other names) is left out;
    - summary metrics (`is_summary`) go to step 0, each once: a resumed run that logs one again keeps the first;
    - `epoch` is logged once per step.
    """

    def __init__(self, experiment_name: str, tracking_uri: str | None = None, run_name: str | None = None,
                 **kwargs: Any) -> None:
        uri = resolve_tracking_uri(tracking_uri)
        kwargs.setdefault("artifact_location", default_artifact_location(uri))
        super().__init__(experiment_name=experiment_name, tracking_uri=uri, run_name=run_name, **kwargs)

    def finalize(self, status: str = "success") -> None:
        pass

    epoch_logged_at: int | None = None  # the step of the last `epoch` value logged

    def log_hyperparams(self, params: Any) -> None:
        pass  # Lightning's call; the checkpoint still holds the module's hparams (predict and resume read them)

    def log_config(self, params: dict[str, Any]) -> None:
        super().log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        per_step = {name: value for name, value in metrics.items() if not is_summary(name)}
        summary = {name: value for name, value in metrics.items() if is_summary(name)}
        if summary:
            per_step.pop("epoch", None)  # Lightning adds the epoch to every call: the test's would be a stray point
            logged = self.experiment.get_run(self.run_id).data.metrics
            summary = {name: value for name, value in summary.items() if name not in logged}
            if summary:
                super().log_metrics(summary, step=0)
        if "epoch" in per_step:  # Lightning adds it to the training and the validation metrics of one step alike
            if step == self.epoch_logged_at:
                del per_step["epoch"]
            self.epoch_logged_at = step
        if per_step:
            super().log_metrics(per_step, step=step)


PACKAGE_DIR = Path(__file__).resolve().parent


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
# (prepare's are covered by the data_sha256 tag), where files go, how the run is named, shown, tagged or started.
NOT_RUN_SETTINGS = ("pipeline", "download", "prepare", "findings", "search", "paths", "logger", "tags",
                    "export_dir", "resume", "data.data_dir", "callbacks.progress_bar", "trainer.enable_progress_bar",
                    "trainer.enable_model_summary")


def run_params(config: dict) -> dict[str, Any]:
    """The params a run records: its resolved config `flatten`ed, without NOT_RUN_SETTINGS and Hydra's
    `_partial_` markers."""
    return {name: value for name, value in flatten(config).items()
            if not name.endswith("._partial_")
            and not any(name == key or name.startswith(f"{key}.") for key in NOT_RUN_SETTINGS)}


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
