"""DVC stage `timing`: the cells' training speed, measured under control, for the timing claims (a) and (c).

    python -m rnnlab.timing                         # conf/: the pipeline's cells x impls and settings
    python -m rnnlab.timing timing.rounds=3

A pipeline run times itself under whatever else the machine does, so its fit time is a property of that
moment as much as of the cell (two repros of the same code gave the LSTM / GRU time ratio 1.80 and 1.17). This
stage measures instead: every cell x implementation of the pipeline (`pipeline.cells`, `pipeline.impls`; then the
parallel-scan cells of `pipeline.scan_cells` under scan, rows beside the others that no claim judges; the
baselines of `pipeline.baselines` under their one implementation, last) with the
train stage's settings (params.yaml's data, model, trainer and callbacks; the first of `pipeline.seeds`) trains
the same planned batches through the project's own path, `rnnlab.train.train` (the benchmark's `project`
variant: rnnlab.bench.variants), each measurement in a fresh process: `timing.warmup_batches` untimed, then
`timing.timed_batches` timed (forward, backward, clipping, optimizer step, data loading). One round runs every
cell x implementation once, in the pipeline's order (A B C A B C ...), `timing.rounds` rounds in one window, so
load that comes and goes falls on rounds rather than on cells; compare pairs the cells within each round.

Each measurement's figure is its samples/s over the window and the same as the time of one epoch of the training
split at that rate (`epoch_s`: comparable with a run's epoch time, validation aside). Writes, in paths.timing_dir:
    timing.json   the machine (CPU model and kind), the settings' hash (compare checks it), every measurement in
                  the order it ran, the load each one and the whole window ran under (other processes' share of
                  the CPU, the load average before and after, this process tree's CPU time against the wall
                  time; a window where others took more than rnnlab.run.load.DISTURBED_PCT is `disturbed`),
                  and per cell x implementation the mean, sd and 95% t-interval over the rounds
    timing.md     the same as a table
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from rnnlab.bench.machine import cpu_kind, cpu_model, has_avx512
from rnnlab.bench.variants import BatchPlan, in_fresh_process, plan_batches, run_project
from rnnlab.checks import positive_int
from rnnlab.cli import UserError, build, hydra_app
from rnnlab.comparison.claims import describe
from rnnlab.files import write_atomically
from rnnlab.identity import timing_settings_sha256
from rnnlab.models.sequence import load_kernel
from rnnlab.pipeline import planned_runs
from rnnlab.run.load import DISTURBED_PCT, OtherLoad
from rnnlab.run.provenance import device_description

log = logging.getLogger(__name__)


def timing_settings(cfg: DictConfig) -> tuple[int, int, int]:
    """(rounds, warmup_batches, timed_batches) from the `timing` section, each checked."""
    section = cfg.get("timing") or {}
    try:
        return tuple(positive_int(f"timing.{name}", section.get(name))
                     for name in ("rounds", "warmup_batches", "timed_batches"))
    except ValueError as e:
        raise UserError(str(e)) from e


def measured_config(cfg: DictConfig, cell: str, impl: str, seed: int, tracking_uri: str) -> DictConfig:
    """The train stage's config for this cell and implementation (as dvc.yaml sets them), recorded in a store of
    the measurement's own; no test split and no export (the measurement is the training window)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model.cell, cfg.model.impl, cfg.seed = cell, impl, seed
        if "seed" in cfg.data:
            cfg.data.seed = seed
        cfg.logger.tracking_uri, cfg.logger.experiment_name = tracking_uri, "timing"
        cfg.logger.run_name = f"{cell}-{impl}-timing"
        cfg.test, cfg.export_dir, cfg.paths.checkpoint_dir = False, None, None
    return cfg


def measure(cfg: DictConfig) -> dict:
    """Every planned cell x implementation, `rounds` times, interleaved; the report timing.json holds."""
    rounds, warmup, timed = timing_settings(cfg)
    try:
        planned = planned_runs(cfg.pipeline)
    except ValueError as e:
        raise UserError(str(e)) from e
    seed = planned[0].seed
    pairs = list(dict.fromkeys((run.cell, run.impl) for run in planned))  # the pipeline's order, seeds aside
    started = time.perf_counter()
    with OtherLoad() as window, tempfile.TemporaryDirectory(prefix="rnnlab-timing-") as tmp:
        configs = {(cell, impl): measured_config(cfg, cell, impl, seed, f"sqlite:///{tmp}/mlflow.db")
                   for cell, impl in pairs}
        # Nothing in this process may start OpenMP's threads before the measurements are forked (in_fresh_process):
        # the data only, and the sequence kernel compiled or loaded here, once.
        datamodule = build(configs[pairs[0]].data, "data")
        try:
            plan = plan_batches(datamodule, warmup, timed, seed)
        except ValueError as e:
            raise UserError(f"{e}: lower timing.warmup_batches or timing.timed_batches") from e
        kernel_problem = load_kernel() if any(impl == "sequence" for _, impl in pairs) else None
        if kernel_problem:
            log.warning("the sequence kernel is unavailable (%s): its rows measure the explicit cells", kernel_problem)
        train_samples = len(datamodule.datasets["train"])
        measurements = [{"round": round_ + 1, "position": position + 1, **figures}
                        for round_ in range(rounds)
                        for position, figures in enumerate(one_round(configs, plan, train_samples, round_, rounds))]
    summary: dict = {}
    for cell, impl in pairs:
        mine = [m for m in measurements if (m["cell"], m["impl"]) == (cell, impl)]
        summary.setdefault(impl, {})[cell] = {
            "epoch_s": describe([m["epoch_s"] for m in mine]),
            "samples_per_s": describe([m["samples_per_s"] for m in mine]),
            "disturbed_rounds": sorted(m["round"] for m in mine if m["load"]["disturbed"])}
    accelerator = cfg.trainer.get("accelerator", "cpu")
    return {
        "machine": {"device": device_description(accelerator), "cpu_model": cpu_model(), "cpu_kind": cpu_kind(),
                    "avx512": has_avx512(), "accelerator": accelerator, "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "settings_sha256": timing_settings_sha256(cfg),
        "rounds": rounds, "warmup_batches": warmup, "timed_batches": timed, "seed": seed,
        "train_samples": train_samples, "window_samples": measurements[0]["samples"],
        "sequence_kernel_problem": kernel_problem,
        "order": [f"{m['cell']}-{m['impl']}" for m in measurements],
        "window": {**window.record(), "seconds": round(time.perf_counter() - started, 1)},
        "measurements": measurements,
        "summary": summary,
    }


def one_round(configs: dict[tuple[str, str], DictConfig], plan: BatchPlan, train_samples: int, round_: int,
              rounds: int) -> list[dict]:
    """Each cell x implementation once, in order, each in a fresh process: its window's figures and load."""
    figures = []
    for (cell, impl), cfg in configs.items():
        print(f"timing: round {round_ + 1} of {rounds}: {cell} {impl}", file=sys.stderr, flush=True)
        with OtherLoad() as other:
            window, _ = in_fresh_process(run_project, cfg, plan)
        rate = window.samples / window.seconds
        figures.append({"cell": cell, "impl": impl, "seconds": window.seconds, "samples": window.samples,
                        "real_tokens": window.real_tokens, "samples_per_s": rate, "epoch_s": train_samples / rate,
                        "load": other.record()})
    return figures


def timing_markdown(report: dict) -> str:
    machine, window = report["machine"], report["window"]
    lines = ["# Training speed, measured under control", "",
             f"{report['rounds']} rounds, each cell x implementation once per round in this order: "
             f"{', '.join(report['order'][: len(report['order']) // report['rounds']])}. Each measurement: "
             f"{report['warmup_batches']} untimed batches, then {report['timed_batches']} timed "
             f"({report['window_samples']} samples), in a fresh process; epoch time = the training split's "
             f"{report['train_samples']} samples at the window's rate.", "",
             "| cell | impl | samples/s (mean ± sd) | epoch time s (mean, 95% CI) | disturbed rounds |",
             "| --- | --- | --- | --- | --- |"]
    for impl, cells in report["summary"].items():
        for cell, figures in cells.items():
            rate, epoch = figures["samples_per_s"], figures["epoch_s"]
            sd = f" ± {rate['sd']:.0f}" if rate["sd"] is not None else ""
            ci = f" [{epoch['ci95'][0]:.1f}, {epoch['ci95'][1]:.1f}]" if epoch["ci95"] else ""
            disturbed = ", ".join(map(str, figures["disturbed_rounds"])) or "none"
            lines.append(f"| {cell} | {impl} | {rate['mean']:.0f}{sd} | {epoch['mean']:.1f}{ci} | {disturbed} |")
    state = "disturbed" if window["disturbed"] else "quiet"
    lines += ["", f"Machine: {machine['device']} ({machine['cpu_kind']}, AVX-512 {machine['avx512']}), "
              f"torch {machine['torch']}.",
              f"Window: {window['seconds']:.0f} s, {state}: other processes took {window['other_cpu_pct']:.1f}% of "
              f"the CPU (disturbed above {DISTURBED_PCT:g}%), load average {window['load_avg_before'][0]:.2f} "
              f"before and {window['load_avg_after'][0]:.2f} after ({window['cores']} cores); this process and its "
              f"measurements used {window['own_cpu_per_wall']:.2f} CPU seconds per wall second.", ""]
    return "\n".join(lines)


@hydra_app("timing")
def main(cfg: DictConfig) -> None:
    report = measure(cfg)
    out = Path(cfg.paths.timing_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "timing.json", json.dumps(report, indent=2) + "\n")
    text = timing_markdown(report)
    write_atomically(out / "timing.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
