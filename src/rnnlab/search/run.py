"""Run the search's trials: every cell of search.cells until it has search.trials completed trials.

    python -m rnnlab.search.run                             # all cells: a trial of each in turn
    python -m rnnlab.search.run 'search.cells=[gru]'        # one cell (another process may take another)
    python -m rnnlab.search.run search.trials=30            # more trials for every cell: the study goes on

Stop it at any time (Ctrl-C, kill, the end of a session) and run the same command again: it goes on from the
trials the journal holds (rnnlab.search.study). After every trial, <search.dir>/trials.csv is written again,
one row per trial of every cell, so that results can be committed as they come.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import optuna
import pandas as pd
from omegaconf import DictConfig

from rnnlab.cells import CELLS
from rnnlab.checks import positive_int
from rnnlab.cli import UserError, hydra_app
from rnnlab.files import write_atomically
from rnnlab.search.study import (
    cell_lock,
    check_space,
    completed,
    log_progress,
    open_study,
    parent_run,
    requeue_interrupted,
    storage,
    train_trial,
)

log = logging.getLogger(__name__)


def search(cfg: DictConfig, cells: list[str]) -> None:
    """Trials in rounds, one per cell in turn, so that stopping at any point leaves the cells' budgets equal
    (or one apart)."""
    with ExitStack() as locks:
        studies, parents = {}, {}
        for cell in cells:
            locks.enter_context(cell_lock(cfg.search, cell))
            studies[cell] = open_study(cfg, cell)
            for number in requeue_interrupted(studies[cell]):
                log.warning("%s: trial %d was interrupted; its setting runs again (its MLflow run resumes)",
                            cell, number)
            parents[cell] = parent_run(cfg, cell)
        while behind := [cell for cell in cells if len(completed(studies[cell])) < cfg.search.trials]:
            fewest = min(len(completed(studies[cell])) for cell in behind)
            for cell in [cell for cell in behind if len(completed(studies[cell])) == fewest]:
                run_trial(cfg, cell, studies[cell], parents[cell])


def run_trial(cfg: DictConfig, cell: str, study: optuna.Study, parent_id: str) -> None:
    trial = study.ask()
    log.info("%s: trial %d (%d of %d done)", cell, trial.number, len(completed(study)), cfg.search.trials)
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
