"""DVC stage `compare`: the cells side by side, and the article's claims judged on the runs.

    python -m rnnlab.compare                                   # conf/: its pipeline, paths and settings
    python -m rnnlab.compare 'pipeline.seeds=[0]' 'pipeline.impls=[fused]'

Reads exactly the runs of the pipeline section (rnnlab.pipeline): `<paths.train_dir>/<cell>-<impl>-<seed>/`
metrics.json and config.yaml. Any other folder there (a run of an earlier pipeline) is ignored; a planned run
that is missing, or that was trained with other data, model or trainer settings than the config's, stops the
stage with one line saying which. Optional: gradients.json and adding.json in paths.findings_dir.
Writes, in paths.compare_dir:
    table.md              accuracy, training time and throughput per cell and implementation (mean ± sd),
                          then the settings, the runs and the device(s) behind them
    claims.md             each of the article's four claims: figures, 95% intervals, verdict
    claims.json           the same, as data
    scores.json           DVC metrics: per cell x implementation, the means over seeds of test_acc and fit_time_s
    accuracy_vs_time.png  one point per run; accuracy_vs_time.csv, the same as data (a DVC plot)
    learning_curves.csv   validation accuracy by epoch and cell (fused, mean over seeds; a DVC plot)
Then it registers the pipeline's best run (highest test_acc) in the MLflow store that run went to, as
models:/rnnlab-imdb@champion, the model `python -m rnnlab.predict` uses (rnnlab.registry). Without that store
(runs pulled through DVC from another machine, a moved database) it says so in one note and carries on.
"""

from __future__ import annotations

import copy
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rnnlab.cells import IMPL_NAMES, cell_rank
from rnnlab.cli import UserError, first_line, hydra_app
from rnnlab.findings.claims import judge_all
from rnnlab.pipeline import PlannedRun, planned_runs, run_folder
from rnnlab.plots import plot_accuracy_vs_time

# What the train stage writes in metrics.json and this stage reads ("a.b": key b of the mapping a).
REQUIRED_METRICS = ("cell", "impl", "seed", "test_acc", "fit_time_s", "train_samples_per_s", "epochs", "n_params",
                    "device", "history.val_acc")
# The config sections that decide a run's result; a run trained with other values is not this pipeline's.
COMPARED_SECTIONS = ("data", "model", "trainer")
REPRO = "run `dvc repro`"


def compare(cfg: DictConfig) -> str:
    """Read the pipeline's runs, write every output in paths.compare_dir; returns table.md's text."""
    runs = load_runs(cfg)
    findings_dir = Path(cfg.paths.findings_dir)
    gradients, adding = read_optional(findings_dir / "gradients.json"), read_optional(findings_dir / "adding.json")
    report = judge_all(runs, gradients, adding)
    out = Path(cfg.paths.compare_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs) + "\n" + what_the_table_shows(cfg, runs)
    (out / "table.md").write_text(table)
    (out / "claims.md").write_text(claims_markdown(report))
    (out / "claims.json").write_text(json.dumps(report, indent=2) + "\n")
    write_scores(runs, out / "scores.json")
    plot_accuracy_vs_time(runs, out / "accuracy_vs_time.png")
    write_accuracy_vs_time(runs, out / "accuracy_vs_time.csv")
    write_learning_curves(runs, out / "learning_curves.csv")
    register_best(cfg, runs)
    return table


def load_runs(cfg: DictConfig) -> list[dict]:
    """The metrics of every run the pipeline section plans, each checked against the current settings."""
    try:
        planned = planned_runs(cfg.pipeline)
    except ValueError as e:
        raise UserError(str(e)) from e
    runs = []
    for run in planned:
        folder = run_folder(cfg.paths.train_dir, run)
        if not folder.is_dir():
            raise UserError(f"{folder} is missing: run {run.name} of the pipeline has not been trained; {REPRO}")
        runs.append(read_metrics(folder / "metrics.json", run))
        check_settings(cfg, run, folder / "config.yaml")
    return sorted(runs, key=lambda r: (IMPL_NAMES.index(r["impl"]), cell_rank(r["cell"]), r["seed"]))


def register_best(cfg: DictConfig, runs: list[dict]) -> None:
    """Point the champion alias at the best run (highest test_acc; the first of equals in the table's order),
    in the store its config.yaml's logger.tracking_uri names (null: the same default training resolved)."""
    best = max(runs, key=lambda r: r["test_acc"])
    planned = PlannedRun(best["cell"], best["impl"], best["seed"])
    folder = run_folder(cfg.paths.train_dir, planned)
    not_registered = f"the best run, {planned.name}, is not registered as the champion"
    run_id = best.get("mlflow_run_id")
    if not isinstance(run_id, str) or not run_id:
        print(f"compare: note: {not_registered}: {folder / 'metrics.json'} names no mlflow_run_id", file=sys.stderr)
        return
    logger = read_config(folder / "config.yaml", planned).get("logger")
    # Imported here: MLflow and torch, which the comparison itself does without.
    from rnnlab.registry import CHAMPION_URI, NoStore, register_champion
    from rnnlab.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(logger.get("tracking_uri") if isinstance(logger, dict) else None)
    try:
        version, moved = register_champion(uri, run_id, {"pipeline_run": planned.name,
                                                         "test_acc": str(best["test_acc"])})
    except NoStore as e:
        print(f"compare: note: {not_registered}: {e}", file=sys.stderr)
        return
    print(f"compare: {CHAMPION_URI} {'is now' if moved else 'is still'} {planned.name} "
          f"(run {run_id}, version {version.version})", file=sys.stderr)


def read_metrics(path: Path, run: PlannedRun) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: {REPRO} to train {run.name}")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): {REPRO} to train {run.name} again") from e
    if not isinstance(metrics, dict):
        raise UserError(f"{path} is not a JSON object: {REPRO} to train {run.name} again")
    for key in REQUIRED_METRICS:
        if not has_key(metrics, key):
            raise UserError(f"{path} lacks key '{key}': {REPRO} to train {run.name} again")
    written_for = f"{metrics['cell']}-{metrics['impl']}-{metrics['seed']}"
    if written_for != run.name:
        raise UserError(f"{path} holds run {written_for}, not {run.name}: {REPRO} to train {run.name} again")
    return metrics


def has_key(mapping: dict, dotted: str) -> bool:
    value: Any = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def check_settings(cfg: DictConfig, run: PlannedRun, path: Path) -> None:
    """UserError unless the run's config.yaml holds the data, model and trainer settings the pipeline would
    train it with now: the current config with the run's cell, implementation and seed, resolved."""
    trained = read_config(path, run)
    expected = copy.deepcopy(cfg)
    with open_dict(expected):
        expected.model.cell, expected.model.impl, expected.seed = run.cell, run.impl, run.seed
        if "seed" in expected.data:  # params.yaml holds it resolved; the train stage sets it as dvc.yaml says
            expected.data.seed = run.seed
    for section in COMPARED_SECTIONS:
        if section not in trained:
            raise UserError(f"{path} lacks key '{section}': {REPRO} to train {run.name} again")
        try:
            now = OmegaConf.to_container(expected[section], resolve=True)
        except OmegaConfBaseException as e:
            raise UserError(f"{section}: {first_line(e)}") from e
        difference = first_difference(trained[section], now, section)
        if difference:
            key, then, current = difference
            raise UserError(f"run {run.name} ({path}) was trained with {key}={shown(then)}; "
                            f"the pipeline now says {shown(current)}: {REPRO}")


def read_config(path: Path, run: PlannedRun) -> dict:
    """A run's config.yaml as plain data: the train stage writes it already resolved."""
    if not path.is_file():
        raise UserError(f"{path} is missing: {REPRO} to train {run.name} again")
    try:
        config = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as e:
        raise UserError(f"{path} is not valid YAML ({first_line(e)}): {REPRO} to train {run.name} again") from e
    if not isinstance(config, DictConfig):
        raise UserError(f"{path} is not a mapping of settings: {REPRO} to train {run.name} again")
    return OmegaConf.to_container(config, resolve=False)


NOT_SET = object()  # a key one side of a comparison lacks


def first_difference(then: Any, now: Any, key: str) -> tuple[str, Any, Any] | None:
    """(dotted key, value then, value now) of the first setting that differs, in the current config's order."""
    if isinstance(then, dict) and isinstance(now, dict):
        for name in [*now, *(name for name in then if name not in now)]:
            found = first_difference(then.get(name, NOT_SET), now.get(name, NOT_SET), f"{key}.{name}")
            if found:
                return found
        return None
    return None if then == now else (key, then, now)


def shown(value: Any) -> str:
    if value is NOT_SET:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value)


def read_optional(path: Path) -> dict | None:
    """A findings file if that stage has run (None if not)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): {REPRO} to measure it again") from e


def mean_sd(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def markdown_table(runs: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["cell"], run["impl"])].append(run)
    fastest = min(np.mean([r["fit_time_s"] for r in group]) for group in groups.values())
    columns = ["cell", "impl", "seeds", "test accuracy", "training time (s)", "vs fastest", "train samples/s",
               "epochs", "parameters"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for (cell, impl), group in groups.items():
        times = [r["fit_time_s"] for r in group]
        lines.append(
            f"| {cell} | {impl} | {len(group)} | {mean_sd([r['test_acc'] for r in group], '{:.4f}')} "
            f"| {mean_sd(times, '{:.0f}')} | {np.mean(times) / fastest:.2f}x "
            f"| {np.mean([r['train_samples_per_s'] for r in group]):.0f} | {group[0]['epochs']} "
            f"| {group[0]['n_params']:,} |"
        )
    return "\n".join(lines) + "\n"


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
    lists = " x ".join(", ".join(str(v) for v in pipeline[name]) for name in ("cells", "impls", "seeds"))
    count = (f"{len(runs)} runs = {len(pipeline.cells)} cells x {len(pipeline.impls)} impls "
             f"x {len(pipeline.seeds)} seeds ({lists}).")
    devices = sorted({str(r["device"] or "unknown") for r in runs})
    return f"{settings}\n{count}\n{'Device' if len(devices) == 1 else 'Devices'}: {'; '.join(devices)}.\n"


def interval(summary: dict | None, fmt: str = "{:.4f}") -> str:
    if not summary or summary.get("ci95") is None:
        return "n/a"
    low, high = summary["ci95"]
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def claims_markdown(report: dict) -> str:
    lines = ["# The article's claims, measured", ""]
    for impl, result in report["implementations"].items():
        lines += [f"## Implementation: {impl}", "", "| cell | seeds | test accuracy (mean, 95% CI) "
                  "| training time s (mean, 95% CI) |", "| --- | --- | --- | --- |"]
        for cell, figures in result["cells"].items():
            acc, time = figures["test_acc"], figures["fit_time_s"]
            lines.append(f"| {cell} | {acc['n']} | {acc['mean']:.4f} {interval(acc)} "
                         f"| {time['mean']:.0f} {interval(time, '{:.0f}')} |")
        a = result["a_rnn_fastest_least_accurate"]
        b = result["b_lstm_gru_similar_accuracy"]
        c = result["c_lstm_twice_gru_time"]
        lines += ["", f"- **(a) RNN fastest but least accurate:** {a['verdict']}."]
        for other, diff in a.get("rnn_minus_other_time_s", {}).items():
            acc_diff = a["rnn_minus_other_acc"][other]
            lines.append(f"  rnn − {other}: time {diff['diff']:+.0f} s {interval(diff, '{:+.0f}')}, "
                         f"accuracy {acc_diff['diff']:+.4f} {interval(acc_diff, '{:+.4f}')}")
        diff, ratio = b.get("lstm_minus_gru_acc"), c.get("lstm_over_gru_time")
        lines.append(f"- **(b) LSTM ≈ GRU in accuracy:** {b['verdict']}" + (
            f"; lstm − gru {diff['diff']:+.4f} {interval(diff, '{:+.4f}')}" if diff else ""))
        lines.append(f"- **(c) LSTM ≈ 2x GRU's time:** {c['verdict']}" + (
            f"; per-seed ratio {ratio['mean']:.2f} {interval(ratio, '{:.2f}')}" if ratio else ""))
        lines.append("")
    d = report["d_rnn_gradients_vanish"]
    lines.append(f"## (d) RNN gradients vanish, LSTM/GRU gradients survive: {d['verdict']}")
    if "trained_reach" in d:
        lines.append("")
        reaches = [f"{cell} {reach} ({d['init_reach'].get(cell)})" for cell, reach in d["trained_reach"].items()]
        lines.append("Steps back from the end before |d loss / d x_t| falls below 1e-3 of its end value "
                     "(trained; at initialisation): " + ", ".join(reaches))
    elif "why" in d:
        lines.append(f"\n{d['why']}")
    if "adding_learned_up_to" in d:
        lines.append("")
        lines.append("Adding problem, longest sequence length learned (some seed reached validation MSE < 0.01 "
                     "within the budget): "
                     + ", ".join(f"{cell} {T or 'none'}" for cell, T in d["adding_learned_up_to"].items()))
    if d.get("adding_limit"):
        lines.append("Where each cell stops learning (the shortest length at which every seed failed): "
                     + ", ".join(f"{cell} {T or 'none within the lengths tried'}"
                                 for cell, T in d["adding_limit"].items()))
    lines += ["", f"Device(s): {'; '.join(report['devices'])}", ""]
    return "\n".join(lines)


SCORES = ("test_acc", "fit_time_s")  # what the article compares; here means over seeds


def write_scores(runs: list[dict], path: Path) -> None:
    """DVC's metrics: per cell x implementation, the means over seeds of SCORES, in one small file, so that
    `dvc metrics show` is one row and `dvc exp show` a dozen metric columns (a run's own numbers stay in its
    scores.json, a plain output)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[f"{run['cell']}-{run['impl']}"].append(run)
    scores = {name: {key: round(float(np.mean([r[key] for r in members])), 4 if key == "test_acc" else 1)
                     for key in SCORES} for name, members in groups.items()}
    path.write_text(json.dumps(scores, indent=2) + "\n")


def write_accuracy_vs_time(runs: list[dict], path: Path) -> None:
    """accuracy_vs_time.png's points as data: one row per run (`dvc plots` draws and diffs it)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "cell", "impl", "seed", "fit_time_s", "test_acc"])
        for run in runs:
            writer.writerow([f"{run['cell']}-{run['impl']}-{run['seed']}", run["cell"], run["impl"], run["seed"],
                             round(float(run["fit_time_s"]), 2), round(float(run["test_acc"]), 5)])


def write_learning_curves(runs: list[dict], path: Path) -> None:
    """Validation accuracy by epoch, one row per epoch and cell (fused runs, mean over seeds): the long form,
    so that `dvc plots` can give each cell its own colour."""
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for run in runs:
        if run["impl"] == "fused":
            curves[run["cell"]].append(run["history"]["val_acc"])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "cell", "val_acc"])
        for cell in sorted(curves, key=cell_rank):
            for epoch in range(max(len(seed) for seed in curves[cell])):
                values = [seed[epoch] for seed in curves[cell] if epoch < len(seed)]
                writer.writerow([epoch + 1, cell, round(float(np.mean(values)), 5)])


@hydra_app("compare")
def main(cfg: DictConfig) -> None:
    print(compare(cfg), end="")


if __name__ == "__main__":
    main()
