"""One cell's Optuna study: where it is stored, how a trial's setting is drawn, and how a trial trains.

The study of cell `c` is named `c` in an Optuna journal file (`<search.dir>/journal.log`): an append-only log
of JSON lines, which git stores well and which another sitting opens where the last one stopped. Any number of
worker processes may run trials of one study at once (rnnlab.search.run, on one machine or as the jobs of a
cluster sharing the file system): a worker takes the next trial of a cell (`claim_trial`) under the cell's lock
(`study_lock`, held for that moment only), and only while the cell's completed and running trials are fewer
than search.trials, so every cell ends with exactly search.trials whatever order the workers finish in. While it
trains the trial, the worker holds the trial's own lock (`trial_lock`), which the kernel releases when the worker
dies however it dies (SIGKILL, scancel, a lost node's lock lease): a RUNNING trial whose lock nobody holds was
left by a dead worker, so the next claim marks it FAIL and queues its setting again (the same draw), and training
it again resumes its MLflow run from the last completed epoch (rnnlab.run), under the same parent run.

Every trial is an MLflow run (experiment `search`, named `search-<cell>-<number>`) under one parent run per
cell (`search-<cell>`), so the UI groups them.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import mlflow
import optuna
from mlflow.entities import Metric, Param
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from rnnlab.cells import CELLS, run_impl
from rnnlab.cli import UserError, first_line
from rnnlab.composition import command_overrides, compose_config
from rnnlab.models.recurrent_module import TrainingDiverged
from rnnlab.tracking import open_experiment, resolve_tracking_uri, store_lock
from rnnlab.train import train

EXPERIMENT = "search"
CHANCE = 0.5  # the value of a trial whose training diverged: its setting gives no model better than a coin
PARENT_TAG = "rnnlab.search_parent"  # marks a cell's parent run: "<journal path>:<cell>"


def journal_path(settings: DictConfig) -> Path:
    return Path(settings.dir) / "journal.log"


def storage(settings: DictConfig) -> JournalStorage:
    path = journal_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


DRAW_ATTR = "draw"  # a trial's user attribute: which draw of the shared sequence it took (SharedDraws)


class SharedDraws(optuna.samplers.RandomSampler):
    """Random search with common random numbers across cells: the k-th draw of every cell's study takes the same
    setting, each parameter drawn from a generator seeded by (search.seed, k, the parameter's name) and not by
    the cell, so no cell's luck in the draws decides the ranking and the cells' curves can be compared draw by
    draw. k counts a study's trials but its retries: a retry (an interrupted trial queued again, its user
    attribute `retry_of`) repeats its original's setting and draw, so the cells stay in step. Each trial records
    its k as user attribute `draw`. Each parameter is still an independent uniform draw from the space (what the
    expected-maximum estimate assumes)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._base = seed
        self._draws: dict[int, int] = {}

    def draw(self, study: optuna.Study, trial: FrozenTrial) -> int:
        if trial._trial_id not in self._draws:
            others = study.get_trials(deepcopy=False)
            original = trial.user_attrs.get("retry_of")
            if original is not None:
                first = next((t for t in others if t.number == original), None)
                draw = first.user_attrs.get(DRAW_ATTR) if first is not None else None
                if draw is None:  # the original predates shared draws
                    draw = sum(t.number < original and "retry_of" not in t.user_attrs for t in others)
            else:
                draw = sum(t.number < trial.number and "retry_of" not in t.user_attrs for t in others)
            self._draws[trial._trial_id] = int(draw)
        return self._draws[trial._trial_id]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, DRAW_ATTR, self.draw(study, trial))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        key = f"{self._base}:{self.draw(study, trial)}:{param_name}"
        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        return optuna.samplers.RandomSampler(seed=seed).sample_independent(study, trial, param_name,
                                                                            param_distribution)


def sampler(settings: DictConfig, cell: str, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """The configured sampler. random: SharedDraws, seeded by search.seed alone, so trial k of every cell draws
    the same setting (common random numbers) and a later sitting goes on with the next draws. tpe: seeded from
    (search.seed, cell, trials so far), so a later sitting draws new settings (TPE's draws follow each cell's own
    results: they cannot be shared)."""
    if settings.sampler == "random":
        return SharedDraws(seed=int(settings.seed))
    seed = int(hashlib.sha256(f"{settings.seed}:{cell}:{trials_so_far}".encode()).hexdigest()[:8], 16)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise UserError(f"search.sampler={settings.sampler!r}: choose random | tpe")


def open_study(cfg: DictConfig, cell: str) -> optuna.Study:
    """`cell`'s study, created the first time with what defines its trials (`defining`); a later sitting with other
    settings is refused, so one study never mixes trials of two budgets or spaces (search.trials may grow)."""
    store = storage(cfg.search)
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(store)}
    study = optuna.create_study(study_name=cell, storage=store, direction="maximize", load_if_exists=True,
                                sampler=sampler(cfg.search, cell, existing.get(cell, 0)))
    wanted = defining(cfg, cell)
    if cell not in existing:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
    for key, value in wanted.items():
        stored = study.user_attrs.get(key)
        if stored != value and not (key == "overrides" and same_overrides(stored, value)):
            raise UserError(f"{journal_path(cfg.search)}: the study of {cell} was run with {key}="
                            f"{study.user_attrs.get(key)!r}, not {value!r}: use another search.dir for new settings")
    return study


def defining(cfg: DictConfig, cell: str) -> dict[str, Any]:
    """What a study's trials share and its report states: the space, the proxy budget, the run overrides."""
    where = ("logger.", "paths.")  # where runs are recorded and data read from: not what they compute
    return {"space": OmegaConf.to_container(cfg.search.space), "proxy": list(cfg.search.proxy),
            "overrides": [o for o in run_overrides(cfg, cell) if not o.startswith(where)],
            "sampler": cfg.search.sampler, "seed": cfg.seed}


def load_study(settings: DictConfig, cell: str) -> optuna.Study:
    """An existing study, read only (the report and the final runs)."""
    if not journal_path(settings).is_file():
        raise UserError(f"{journal_path(settings)} is missing: run `python -m rnnlab.search.run` first")
    try:
        return optuna.load_study(study_name=cell, storage=storage(settings))
    except KeyError as e:
        raise UserError(f"{journal_path(settings)} has no study for cell {cell!r}: "
                        "run `python -m rnnlab.search.run` for it") from e


def lock_path(settings: DictConfig, name: str) -> Path:
    path = Path(settings.dir) / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def study_lock(settings: DictConfig, cell: str) -> Iterator[None]:
    """Held while a worker opens `cell`'s study or claims its next trial: a moment, never a trial's training."""
    with open(lock_path(settings, cell), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def trial_lock(settings: DictConfig, cell: str, number: int) -> TextIO | None:
    """The lock of trial `number` of `cell`, taken (the open file: close it to let go), or None when a live
    worker holds it."""
    lock = open(lock_path(settings, f"{cell}-{number}"), "w")  # noqa: SIM115 (returned open: it is the lock)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def requeue_interrupted(settings: DictConfig, study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a worker that died (their lock is free; the caller holds the study's lock): FAIL,
    their setting queued again."""
    interrupted = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lock = trial_lock(settings, study.study_name, trial.number)
        if lock is None:
            continue  # its worker is training it
        lock.close()
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        interrupted.append(trial.number)
    return interrupted


def taken(study: optuna.Study) -> int:
    """The trials of the budget that are done or being trained (a queued retry replaces a FAIL: not counted)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)))


@dataclass
class Claim:
    """What `claim_trial` found: the trial this worker is to train, with its lock held (None: the cell's budget
    is all done or being trained), and the trials it found interrupted and queued again."""

    trial: optuna.Trial | None
    lock: TextIO | None
    interrupted: list[int]


def claim_trial(settings: DictConfig, study: optuna.Study) -> Claim:
    """The cell's next trial, while its completed and running trials are fewer than search.trials."""
    with study_lock(settings, study.study_name):
        interrupted = requeue_interrupted(settings, study)
        if taken(study) >= settings.trials:
            return Claim(None, None, interrupted)
        trial = study.ask()
        # Taken before the study's lock is let go: outside it, every RUNNING trial's lock is held while its
        # worker lives (one that dies in between leaves the lock free, and its trial is requeued).
        lock = trial_lock(settings, study.study_name, trial.number)
        if lock is None:
            raise UserError(f"{lock_path(settings, f'{study.study_name}-{trial.number}')} is held by a process "
                            "other than the one that just created the trial: is search.dir shared by two copies?")
        return Claim(trial, lock, interrupted)


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def check_space(space: DictConfig) -> None:
    for key, spec in space.items():
        if isinstance(spec, ListConfig):
            if len(spec) == 0:
                raise UserError(f"search.space.{key}: an empty list of choices")
        elif not (isinstance(spec, DictConfig) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}):
            raise UserError(f"search.space.{key}: give a list of choices or {{low, high[, log]}}")
        elif not spec.low < spec.high or (spec.get("log") and spec.low <= 0):
            raise UserError(f"search.space.{key}: needs low < high (and low > 0 with log: true)")


def suggest(trial: optuna.Trial, space: DictConfig) -> dict[str, Any]:
    """One setting from `space` (search.space: a list = choices, {low, high, log} = a float range)."""
    setting = {}
    for key, spec in space.items():
        if isinstance(spec, ListConfig):
            setting[key] = trial.suggest_categorical(key, list(spec))
        else:
            setting[key] = trial.suggest_float(key, spec.low, spec.high, log=bool(spec.get("log", False)))
    return setting


def setting_overrides(setting: dict[str, Any]) -> list[str]:
    """A setting as Hydra overrides; floats in full precision, so the run key sees exactly the drawn value."""
    return [f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}" for key, value in setting.items()]


def parent_run(cfg: DictConfig, cell: str) -> str:
    """The id of `cell`'s parent run in the `search` experiment (found by its tag, created the first time)."""
    uri = resolve_tracking_uri(cfg.logger.get("tracking_uri"))
    marker = f"{journal_path(cfg.search).resolve()}:{cell}"
    with store_lock(uri):
        client = mlflow.MlflowClient(uri)
        experiment_id = open_experiment(client, EXPERIMENT)
        found = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{marker}'", max_results=1)
        if found:
            return found[0].info.run_id
        run = client.create_run(experiment_id, run_name=f"search-{cell}", tags={PARENT_TAG: marker, "cell": cell})
        search = {"trials": cfg.search.trials, "sampler": cfg.search.sampler, "proxy": " ".join(cfg.search.proxy),
                  "overrides": " ".join(cfg.search.overrides),
                  "impl": compose_config(run_overrides(cfg, cell)).model.impl,  # this cell's (run_impl)
                  "space": OmegaConf.to_yaml(cfg.search.space).strip().replace("\n", "; ")}
        client.log_batch(run.info.run_id, params=[Param(f"search.{k}", str(v)) for k, v in search.items()])
        # A folder for its trials, not a process: it is never RUNNING (the best value so far is logged on it).
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


def log_progress(cfg: DictConfig, parent_id: str, study: optuna.Study) -> None:
    """The parent run's summary: trials completed and the best validation accuracy so far."""
    done = completed(study)
    client = mlflow.MlflowClient(resolve_tracking_uri(cfg.logger.get("tracking_uri")))
    client.log_batch(parent_id, metrics=[Metric("trials_completed", len(done), int(time.time() * 1000), 0),
                                         Metric("best_val_acc", max(t.value for t in done), int(time.time() * 1000), 0)])


def run_overrides(cfg: DictConfig, cell: str) -> list[str]:
    """What every run of the search shares: the cell (`model.cell=<cell>`: the same config as `model=<cell>`, and
    no conf/model file needed), search.overrides, and the command's own overrides but search.*
    (`python -m rnnlab.search.run paths.prepared_dir=... data.batch_size=32`: every trial has them).

    The implementation these configure is one for every cell (search.overrides: model.impl=sequence); a cell
    that has no such implementation runs the one rnnlab.cells.run_impl gives it (a parallel-scan cell its scan,
    the bag its one, plain), appended as `model.impl=<impl>` so that the study's overrides and every run's
    params say what ran. The space's hidden size and pooling do not apply to the bag (rnnlab.models.network)."""
    overrides = [*command_overrides("search."), f"model.cell={cell}", *cfg.search.overrides]
    if cell in CELLS:
        configured = compose_config(overrides).model.impl
        impl = run_impl(cell, configured)
        if impl != configured:
            overrides.append(f"model.impl={impl}")
    return overrides


def same_overrides(stored: list[str] | None, wanted: list[str]) -> bool:
    """Whether a study's stored overrides are `wanted`, reading `model=<cell>` (what studies before model.cell
    stored: the same config, tests/test_config.py) as `model.cell=<cell>`."""
    if not isinstance(stored, list):
        return False
    return ["model.cell=" + o.removeprefix("model=") if o.startswith("model=") else o for o in stored] == wanted


def train_trial(cfg: DictConfig, cell: str, trial: optuna.Trial, parent_id: str) -> float:
    """Train one trial on the proxy budget, validation only; its value is the best epoch's validation accuracy."""
    setting = suggest(trial, cfg.search.space)
    run_cfg = compose_config([*run_overrides(cfg, cell), *cfg.search.proxy, *setting_overrides(setting), "test=false",
                              f"logger.experiment_name={EXPERIMENT}",
                              f"logger.run_name=search-{cell}-{trial.number}"])
    trial.set_user_attr("impl", run_cfg.model.impl)  # what runs (its MLflow run's params say so too: model.impl)
    try:
        result = train(run_cfg, tags={"mlflow.parentRunId": parent_id, "rnnlab.trial": str(trial.number)})
    except TrainingDiverged as e:
        trial.set_user_attr("diverged", first_line(e))
        return CHANCE
    accuracies = result.history["val_acc"]
    trial.set_user_attr("mlflow_run_id", result.run_id)
    trial.set_user_attr("best_epoch", accuracies.index(max(accuracies)) + 1)
    trial.set_user_attr("fit_time_s", round(result.metrics["fit_time_s"], 2))
    value = result.metrics["best_val_acc"]
    if not math.isfinite(value):
        raise UserError(f"trial {trial.number} of {cell}: best_val_acc is {value}")
    return value
