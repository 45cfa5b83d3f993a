"""DVC stage `compare`: the cells side by side, and the article's claims judged on the runs.

    python -m rnnlab.compare                                   # conf/: its pipeline, paths and settings
    python -m rnnlab.compare 'pipeline.seeds=[0]' 'pipeline.impls=[fused]'

Reads exactly the runs of the pipeline section (rnnlab.pipeline): `<paths.train_dir>/<cell>-<impl>-<seed>/`
metrics.json and config.yaml. Any other folder there (a run of an earlier pipeline) is ignored; a planned run
that is missing, or that was trained with other data, model or trainer settings than the config's, stops the
stage with one line saying which. Optional: gradients.json and adding.json in paths.findings_dir, and the
controlled timing measurement, paths.timing_dir/timing.json (stage `timing`): when it is there, the time parts
of claims (a) and (c) are judged from it (rnnlab.comparison.claims), else from the runs' own fit times.
Writes, in paths.compare_dir:
    table.md              failed (diverged) runs and their rate, unstable runs (last epoch's validation accuracy more
                          than compare.unstable_drop below the best: rnnlab.comparison.failures), accuracy, the
                          runs' own fit times (each under its load; runs whose load made them not
                          comparable flagged), throughput and parameters (all, and the recurrent layers') per
                          cell and implementation (mean ± sd over the runs that finished), then the settings, the
                          runs and the device(s) behind them; the baselines (pipeline.baselines: no recurrence) as
                          rows too, and the parallel-scan cells (pipeline.scan_cells, impl scan); then each run's
                          best and last epoch's validation accuracy
    claims.md             each of the article's four claims on the article's cells (the baselines and the
                          parallel-scan cells: extra rows, never judged):
                          figures, intervals, verdict (holds / does not hold / inconclusive, by the rule of
                          rnnlab.comparison.claims, Holm-adjusted over the report's interval tests; settings:
                          `compare`); the timing claims from the timing stage's controlled measurement; where
                          a run failed, the verdicts again with each failed run counted at chance (0.5), else one
                          line saying none failed
    claims.json           the same, as data
    scores.json           DVC metrics: per cell x implementation, the means over seeds of test_acc and fit_time_s,
                          failure_rate and the count of unstable runs
    accuracy_vs_time.png  one point per run; accuracy_vs_time.csv, the same as data (a DVC plot)
    learning_curves.csv   validation accuracy by epoch and cell (fused and plain, mean over seeds; a DVC plot)
Then it registers the pipeline's best run (highest test_acc) in the MLflow store that run went to, as
models:/rnnlab-imdb@champion, the model `python -m rnnlab.predict` uses (rnnlab.serve.registry). Without that store
(runs pulled through DVC from another machine, a moved database) it says so in one note and carries on.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.cells import CELLS, SCAN_CELL_NAMES
from rnnlab.cli import hydra_app
from rnnlab.comparison.champion import register_best
from rnnlab.comparison.claims import baseline_figures, describe, judge_counting_failures, rule_settings, timed_rounds
from rnnlab.comparison.claims_report import claims_markdown
from rnnlab.comparison.failures import finished, unstable_drop
from rnnlab.comparison.figures import plot_accuracy_vs_time
from rnnlab.comparison.runs import load_runs, load_timing, read_optional
from rnnlab.comparison.table import (
    curves_table,
    load_notes,
    markdown_table,
    what_the_table_shows,
    write_accuracy_vs_time,
    write_learning_curves,
    write_scores,
)
from rnnlab.files import write_atomically


def pipeline_claims(cfg: DictConfig) -> tuple[dict, list[dict]]:
    """The claims judged on the pipeline's runs (claims.json's report, its Holm family included), and the runs.
    The one place they are judged: the search's report shows this same report beside its tuned verdicts."""
    settings = rule_settings(cfg)  # a bad setting stops the stage before it reads anything
    drop = unstable_drop(cfg)
    runs = load_runs(cfg)
    timing = load_timing(cfg)
    findings_dir = Path(cfg.paths.findings_dir)
    gradients, adding = read_optional(findings_dir / "gradients.json"), read_optional(findings_dir / "adding.json")
    # The claims are about the article's recurrent cells (pipeline.cells' runs; judge_all tests rnn, lstm and gru
    # by name); the baselines (no recurrence) and the parallel-scan cells (pipeline.scan_cells) are extra rows
    # beside them, so neither can change a verdict or the Holm family.
    scanned = [run for run in runs if run["cell"] in SCAN_CELL_NAMES]
    recurrent = [run for run in runs if CELLS[run["cell"]].recurrent and run["cell"] not in SCAN_CELL_NAMES]
    # A failed (diverged) run is a result: counted per cell, and the claims judged again with it at chance
    report = judge_counting_failures(recurrent, gradients, adding, **settings, timing=timing, unstable_drop=drop)
    report["baselines"] = baseline_figures(finished([run for run in runs if not CELLS[run["cell"]].recurrent]))
    report["scan_cells"] = baseline_figures(finished(scanned))
    for cell, rounds in (timed_rounds(timing, "scan") or {}).items():  # the timing stage times them too
        if cell in report["scan_cells"]:
            report["scan_cells"][cell]["controlled_epoch_s"] = describe([rounds[r] for r in sorted(rounds)])
    return report, runs


def compare(cfg: DictConfig) -> str:
    """Read the pipeline's runs, write every output in paths.compare_dir; returns table.md's text."""
    report, runs = pipeline_claims(cfg)
    drop = unstable_drop(cfg)
    out = Path(cfg.paths.compare_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs, drop) + "\n" + what_the_table_shows(cfg, runs)
    if load_notes(runs):
        table += "\n" + load_notes(runs)
    table += "\n" + curves_table(runs, drop)
    write_atomically(out / "table.md", table)
    write_atomically(out / "claims.md", claims_markdown(report))
    write_atomically(out / "claims.json", json.dumps(report, indent=2) + "\n")
    write_scores(runs, out / "scores.json", drop)
    done = finished(runs)  # a failed run has no test accuracy, fit time or model to serve
    plot_accuracy_vs_time(done, out / "accuracy_vs_time.png")
    write_accuracy_vs_time(done, out / "accuracy_vs_time.csv")
    write_learning_curves(done, out / "learning_curves.csv")
    if done:
        register_best(cfg, done)
    return table


@hydra_app("compare")
def main(cfg: DictConfig) -> None:
    print(compare(cfg), end="")


if __name__ == "__main__":
    main()
