"""Run the search's trials: every cell of search.cells until it has search.trials completed trials.

    python -m rnnlab.search.run                             # all cells: a trial of each in turn
    python -m rnnlab.search.run 'search.cells=[gru]'        # one cell (another process may take another)
    python -m rnnlab.search.run search.trials=30            # more trials for every cell: the study goes on

Several workers at once, each a process of a Hydra multirun over search.worker (the study is shared through the
journal in search.dir, which every worker must reach: a shared file system on a cluster):

    python -m rnnlab.search.run -m hydra/launcher=joblib hydra.launcher.n_jobs=4 'search.worker=range(4)'
    python -m rnnlab.search.run -m hydra/launcher=slurm 'search.worker=range(8)'   # a SLURM job array of 8

Stop it at any time (Ctrl-C, kill, scancel, the end of a session) and run the same command again: it goes on
from the trials the journal holds (rnnlab.search.study); a trial whose worker died is taken over by another
worker, or by the next command, and resumes its MLflow run. After every trial, <search.dir>/trials.csv is written again,
one row per trial of every cell, so that results can be committed as they come.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pandas as pd
from omegaconf import DictConfig

from rnnlab.cells import CELLS
from rnnlab.checks import positive_int
from rnnlab.cli import UserError, hydra_app
from rnnlab.files import write_atomically
from rnnlab.search.study import (
    check_space,
    claim_trial,
    completed,
    log_progress,
    open_study,
    parent_run,
    storage,
    study_lock,
    taken,
    train_trial,
)

log = logging.getLogger(__name__)


def search(cfg: DictConfig, cells: list[str]) -> None:
    """Trials until every cell has search.trials completed, each taken from the cell with the fewest done or
    being trained (rounds across the cells, so stopping at any point leaves their budgets about equal). Any number
    of these workers may run at once on the same search.dir: each cell's budget is capped in its study
    (rnnlab.search.study.claim_trial). A worker with no trial left to take waits while other workers' trials
    run, so that if one of them dies its trial is taken over (resumed) and every cell still ends with exactly
    search.trials."""
    studies, parents = {}, {}
    for cell in cells:
        # Under the cell's lock, so workers starting together create one study and one parent run between them
        # (on a tracking server too, where the store's own lock is not there to serialize them).
        with study_lock(cfg.search, cell):
            studies[cell] = open_study(cfg, cell)
            parents[cell] = parent_run(cfg, cell)
    while [cell for cell in cells if len(completed(studies[cell])) < cfg.search.trials]:
        for cell in sorted(cells, key=lambda cell: taken(studies[cell])):
            claim = claim_trial(cfg.search, studies[cell])
            for number in claim.interrupted:
                log.warning("%s: trial %d was interrupted; its setting runs again (its MLflow run resumes)",
                            cell, number)
            if claim.trial is not None:
                try:
                    run_trial(cfg, cell, studies[cell], claim.trial, parents[cell])
                finally:
                    claim.lock.close()
                break
        else:  # every cell's remaining trials are being trained by other workers
            time.sleep(WAIT_S)


WAIT_S = 2.0  # how often a worker with nothing to take checks whether the other workers' trials ended or died


def run_trial(cfg: DictConfig, cell: str, study: optuna.Study, trial: optuna.Trial, parent_id: str) -> None:
    log.info("%s: trial %d (%d of %d done)", cell, trial.number, len(completed(study)), cfg.search.trials)
    trial.set_user_attr("worker", cfg.search.worker)  # which worker trained it (trials.csv), when several ran
    try:
        value = train_trial(cfg, cell, trial, parent_id)
    except UserError:  # a setting that cannot run: this trial failed (a kill leaves it RUNNING: requeued)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, value)
    write_trials(cfg.search)
    log_progress(cfg, parent_id, study)


def write_trials(settings: DictConfig) -> Path:
    """<search.dir>/trials.csv: every trial of every study, written whole to a temporary file, then renamed."""
    frames = []
    for summary in optuna.get_all_study_summaries(storage(settings)):
        frame = optuna.load_study(study_name=summary.study_name, storage=storage(settings)).trials_dataframe()
        frames.append(frame.assign(cell=summary.study_name))
    path = Path(settings.dir) / "trials.csv"
    write_atomically(path, pd.concat(frames).to_csv(index=False))
    return path


@hydra_app("search")
def main(cfg: DictConfig) -> None:
    try:
        positive_int("search.trials", cfg.search.trials)
    except ValueError as e:
        raise UserError(str(e)) from e
    check_space(cfg.search.space)
    unknown = [cell for cell in cfg.search.cells if cell not in CELLS]
    if unknown:
        raise UserError(f"search.cells lists unknown cells {unknown}: choose from {' | '.join(CELLS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnnlab logs each trial itself
    search(cfg, list(cfg.search.cells))
    print(f"{', '.join(cfg.search.cells)}: {cfg.search.trials} trials each; wrote {write_trials(cfg.search)}")


if __name__ == "__main__":
    main()
