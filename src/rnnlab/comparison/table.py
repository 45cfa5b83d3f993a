"""The comparison table (table.md) and its data files for DVC: scores.json and the plots' CSVs."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab.cells import CELLS, PLAIN, cell_rank
from rnnlab.comparison.failures import UNSTABLE_DROP, counts, curve, failed, finished
from rnnlab.files import replacing, write_atomically


def mean_sd(values: list[float], fmt: str) -> str:
    if not values:
        return "n/a"
    if len(values) < 2:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def markdown_table(runs: list[dict], drop: float = UNSTABLE_DROP) -> str:
    """One row per cell x implementation: the figures over its runs that finished, and how many of its runs failed
    (diverged) and how many of those that finished were unstable (rnnlab.comparison.failures)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["cell"], run["impl"])].append(run)
    # "vs fastest": against the fastest recurrent cell, so that adding the baselines changes no cell's figure
    # (a bag, faster than any cell, shows below 1x); over the runs that finished (a failed run's time is not a fit's)
    done_groups = {key: finished(group) for key, group in groups.items()}
    recurrent = [done for (cell, _), done in done_groups.items()
                 if done and (cell not in CELLS or CELLS[cell].recurrent)]
    fastest = min((np.mean([r["fit_time_s"] for r in done]) for done in recurrent
                   or [done for done in done_groups.values() if done]), default=None)
    columns = ["cell", "impl", "seeds", "failed (rate)", f"unstable (val drop > {drop:g})", "test accuracy",
               "fit time of the run, under its load (s)", "vs fastest",
               "train samples/s", "epochs", "parameters", "recurrent parameters", "runs not comparable in time"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for (cell, impl), group in groups.items():
        done, counted = finished(group), counts(group, drop)
        times = [r["fit_time_s"] for r in done]
        first = done[0] if done else group[0]
        throughput = f"{np.mean([r['train_samples_per_s'] for r in done]):.0f}" if done else "n/a"
        speed = f"{np.mean(times) / fastest:.2f}x" if times and fastest else "n/a"
        lines.append(
            f"| {cell} | {impl} | {len(group)} | {counted['failed']} of {counted['attempted']} "
            f"({counted['failure_rate']:.0%}) | {counted['unstable']} of {len(done)} "
            f"| {mean_sd([r['test_acc'] for r in done], '{:.4f}')} "
            f"| {mean_sd(times, '{:.0f}')} | {speed} | {throughput} "
            f"| {first.get('epochs', 'n/a')} | {first.get('n_params', 0):,} | {first['recurrent_params']:,} "
            f"| {not_comparable(done)} |"
        )
    return "\n".join(lines) + "\n"


def curves_table(runs: list[dict], drop: float = UNSTABLE_DROP) -> str:
    """Per run: its best validation epoch and accuracy beside its last epoch's (the best checkpoint is the one
    tested), and whether it is unstable; a failed run says so."""
    lines = ["| run | best val epoch | best val acc | last epoch | last val acc | unstable |",
             "|" + " --- |" * 6]
    for run in runs:
        name = f"{run['cell']}-{run['impl']}-{run['seed']}"
        brief = curve(run, drop)
        if failed(run):
            lines.append(f"| {name} | failed: {run['diverged']} | | | | |")
        elif brief is None:
            lines.append(f"| {name} | no validation history | | | | |")
        else:
            lines.append(f"| {name} | {brief['best_epoch']} | {brief['best_val_acc']:.4f} | {brief['last_epoch']} "
                         f"| {brief['last_val_acc']:.4f} | {'unstable' if brief['unstable'] else ''} |")
    return ("Each run's validation curve: the best epoch (its checkpoint is the one tested) and the last; unstable: "
            f"the last epoch's accuracy more than {drop:g} (compare.unstable_drop) below the best.\n\n"
            + "\n".join(lines) + "\n")


def not_comparable(group: list[dict]) -> str:
    """How many of a group's runs trained under a load that makes their times not comparable (rnnlab.run.load),
    of those that recorded it; runs trained before rnnlab recorded load have no record."""
    recorded = [r for r in group if r.get("timing")]
    if not recorded:
        return "not recorded"
    return f"{sum(str(r['timing']).startswith('not ') for r in recorded)} of {len(recorded)}"


def load_notes(runs: list[dict]) -> str:
    """One line per run whose times are not comparable, with why (its tag `rnnlab.timing`); empty if none."""
    flagged = [f"{r['cell']}-{r['impl']}-{r['seed']}: {r['timing']}" for r in runs
               if str(r.get("timing") or "").startswith("not ")]
    if not flagged:
        return ""
    return ("Runs whose fit time is not comparable (the load they trained under; the timing claims are judged "
            "from the controlled measurement, data/timing/, where it exists):\n"
            + "".join(f"- {line}\n" for line in flagged))


def what_the_table_shows(cfg: DictConfig, runs: list[dict]) -> str:
    """The settings every run shares (load_runs checked them), how many runs there are, and where they ran."""
    model, data, pipeline = cfg.model, cfg.data, cfg.pipeline
    layers = f"{model.num_layers} layer{'s' if model.num_layers != 1 else ''}"
    vocabulary = data.vocab_size or OmegaConf.select(cfg, "prepare.vocab_size")
    optimizer = model.get("optimizer")
    training = (f"{optimizer._target_.rsplit('.', 1)[-1]} lr {optimizer.get('lr')}" if optimizer
                else "the module's default optimizer")
    settings = (f"Settings: embedding {model.embedding_dim}, hidden {model.hidden_size}, {layers}, "
                f"{'bidirectional' if model.bidirectional else 'unidirectional'}, {model.pooling} pooling, "
                f"max_len {data.max_len}, vocabulary {vocabulary}, batch {data.batch_size}, {training}, "
                f"{cfg.trainer.max_epochs} epochs at most.")
    if model.get("match"):
        hidden = ", ".join(f"{cell} {size}" for cell, size in matched_sizes(runs).items())
        settings += (f" Hidden size matched per cell for as many recurrent parameters as the "
                     f"{model.match.cell} at hidden {model.match.hidden_size}: {hidden}.")
    lists = " x ".join(", ".join(str(v) for v in pipeline[name]) for name in ("cells", "impls", "seeds"))
    baselines = list(pipeline.get("baselines") or [])
    scan_cells = list(pipeline.get("scan_cells") or [])
    recurrent = len(pipeline.cells) * len(pipeline.impls) * len(pipeline.seeds)
    count = (f"{len(runs)} runs = {len(pipeline.cells)} cells x {len(pipeline.impls)} impls "
             f"x {len(pipeline.seeds)} seeds ({lists})")
    extra = []
    if scan_cells:
        extra.append(f"{len(scan_cells) * len(pipeline.seeds)} of parallel-scan cells, once per seed "
                     f"({', '.join(scan_cells)}: impl scan)")
    if baselines:
        extra.append(f"{len(baselines) * len(pipeline.seeds)} without recurrence, once per seed "
                     f"({', '.join(baselines)}: impl {PLAIN})")
        settings += (" Without recurrence, " + ", ".join(f"{cell} ({CELLS[cell].title})" for cell in baselines)
                     + ": the mean of the embeddings, then the linear output; hidden size, layers and pooling do "
                       "not apply to it.")
    if extra:
        count = (f"{len(runs)} runs: {recurrent} = {len(pipeline.cells)} cells x {len(pipeline.impls)} impls "
                 f"x {len(pipeline.seeds)} seeds ({lists}), and " + ", and ".join(extra))
    devices = sorted({str(r.get("device") or "unknown") for r in runs})
    return (f"{settings}\n{count}.\nParameters: the trained model's (embedding and output layer included); "
            f"recurrent: the recurrent layers' alone.\n"
            f"{'Device' if len(devices) == 1 else 'Devices'}: {'; '.join(devices)}.\n")


def matched_sizes(runs: list[dict]) -> dict[str, int]:
    """Each recurrent cell's hidden size in a parameter-matched pipeline, as its runs recorded it."""
    return {run["cell"]: run["hidden_size"] for run in sorted(runs, key=lambda r: cell_rank(r["cell"]))
            if "hidden_size" in run}


MEAN_SCORES = ("test_acc", "fit_time_s")  # what the article compares; here means over the seeds that finished


def write_scores(runs: list[dict], path: Path, drop: float = UNSTABLE_DROP) -> None:
    """DVC's metrics: per cell x implementation, the means over seeds of MEAN_SCORES, in one small file, so that
    `dvc metrics show` is one row and `dvc exp show` a dozen metric columns (a run's own numbers stay in its
    scores.json, a plain output)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[f"{run['cell']}-{run['impl']}"].append(run)
    scores = {}
    for name, members in groups.items():
        done, counted = finished(members), counts(members, drop)
        scores[name] = {key: round(float(np.mean([r[key] for r in done])), 4 if key == "test_acc" else 1)
                        if done else None for key in MEAN_SCORES}
        # failed / attempted runs; unstable: how many finished runs ended more than `drop` below their best
        scores[name].update(failure_rate=round(counted["failure_rate"], 4), unstable=counted["unstable"])
    write_atomically(path, json.dumps(scores, indent=2) + "\n")


def write_accuracy_vs_time(runs: list[dict], path: Path) -> None:
    """accuracy_vs_time.png's points as data: one row per run (`dvc plots` draws and diffs it)."""
    with replacing(path) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "cell", "impl", "seed", "fit_time_s", "test_acc"])
        for run in runs:
            writer.writerow([f"{run['cell']}-{run['impl']}-{run['seed']}", run["cell"], run["impl"], run["seed"],
                             round(float(run["fit_time_s"]), 2), round(float(run["test_acc"]), 5)])


def write_learning_curves(runs: list[dict], path: Path) -> None:
    """Validation accuracy by epoch, one row per epoch and cell (fused runs, the parallel-scan cells' scan ones and
    the baselines' plain ones; mean over seeds): the long form, so that `dvc plots` can give each cell its own
    colour."""
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for run in runs:
        if run["impl"] in ("fused", "scan", PLAIN):
            curves[run["cell"]].append(run["history"]["val_acc"])
    with replacing(path) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "cell", "val_acc"])
        for cell in sorted(curves, key=cell_rank):
            for epoch in range(max(len(seed) for seed in curves[cell])):
                values = [seed[epoch] for seed in curves[cell] if epoch < len(seed)]
                writer.writerow([epoch + 1, cell, round(float(np.mean(values)), 5)])
