"""Benchmark training speed: the project's path against a plain PyTorch loop, and against the matmul peak.

    python -m rnnlab.bench                                   # all cells, settings, impls: ~10 minutes
    python -m rnnlab.bench --cells mingru,qrnn --impls scan  # the parallel-scan cells alone
    python -m rnnlab.bench --cells lstm --settings h128 --impls fused,sequence --steps 3
    python -m rnnlab.bench --data-dir path/to/prepared data.vocab_size=null data.batch_size=4   # Hydra overrides

For each cell and setting it trains the same real IMDB batches (after `--warmup` untimed ones) several ways,
each in a fresh process:

    project               the real path, rnnlab.train.train: Lightning + MLflow + TrainingTimer, the datamodule's
                          bucketed batches, the config's Trainer settings and callbacks (the progress bar aside;
                          CPUSettings applies the process settings); once per implementation (--impls), a row each
and, with the fused cells (the default):
    plain_padded          plain loop, random batches padded to max_len, PyTorch defaults: the reference
    plain_padded_flush    the reference + flush-denormal
    plain_bucketed        the reference on the project's bucketed batches
    plain_bucketed_flush  the reference on the project's bucketed batches + flush-denormal
    plain_project         plain loop with the project's batches and all its settings (rnnlab.run.cpu, deterministic):
                          the project path less Lightning + MLflow, so the two differ by their overhead; run for
                          every implementation (the others with fused only)

and reports samples/s, real (non-padding) tokens/s, useful GFLOP/s (forward + backward matmuls of the real
tokens only, see `flops.py`) against the sgemm peak, each implementation's speed against the fused cells', the
speed-up over the reference and its breakdown, and where the time goes (the layer alone at the mean length and on
the real batches' shapes, the plain loop, the project). Each cell runs the implementations of --impls it has (the
parallel-scan cells: explicit and scan; the classic cells: fused, explicit, sequence); a cell with none of them is
refused. Writes JSON to --results-dir (data/bench)/train-<CPU
kind>.json: one result per kind, intel or amd, each naming its CPU, flags and denormal cost; a file holding another
kind's result is refused, and each row is compared with the result it replaces. Issue 19's targets are printed
as PASS/MISS lines (report.CPU_TARGETS). Issue 4's targets,
on the project's 2-core CPU, for the fused cells: LSTM and GRU at E=H=128 >= 50% of the sgemm peak; >= 2.5x the
reference everywhere; overhead <= 5%. Issue 14's (SEQUENCE_TARGETS): at E=H=128 the sequence kernel's GRU at
the fused LSTM's GFLOP/s or more and >= 40% of the peak, its LSTM >= 50%, its RNN >= 2x the fused RNN's speed;
at the article's setting every cell's kernel at least as fast as its fastest other implementation; the explicit
cells within 1.5x of the fused cells' time.

    python -m rnnlab.bench --device cuda                     # on a GPU: fused and explicit cells, trainer=gpu

On a GPU (--device cuda) every run is a spawned process, the project path runs with trainer=gpu, the plain loops
and layers on the GPU, and every clock read follows a torch.cuda.synchronize. The flush-denormal variants (a CPU
matter) and the sequence kernel (CPU only) are left out; the peak is the GPU's matmul in TF32 (what cuDNN's
recurrent layers run in by default), with fp32 and bf16 beside it. Writes data/bench/train-cuda-<GPU model>.json
with the GPU, its driver and torch's CUDA and cuDNN versions. Issue 23's targets, reported: an LSTM epoch of 25,000
reviews at the article setting <= 3 s (on an H200; estimated from the timed window's samples/s), and the LSTM/GRU
time ratio (the article: about 2x; DeepBench, V100: about 1.3x).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import torch

from rnnlab.bench import variants as variants_module
from rnnlab.bench.flops import (
    flops_per_token,
    gpu_matmul_peaks,
    matmul_ceiling_gflops,
    recurrent_step_gflops,
    sgemm_peak,
)
from rnnlab.bench.machine import cpu_identity, cpu_kind, denormal_cost, gpu_description, gpu_kind
from rnnlab.bench.report import against_previous, check_targets, cpu_targets, cuda_targets, print_table
from rnnlab.bench.variants import (
    BatchPlan,
    Measurement,
    batch_shapes,
    in_fresh_process,
    plan_batches,
    run_layers_on_shapes,
    run_layers_only,
    run_plain,
    run_project,
)
from rnnlab.cells import BASELINE_NAMES, CELL_NAMES, CELLS, IMPL_NAMES
from rnnlab.cli import UserError, build, fail
from rnnlab.composition import compose_config
from rnnlab.files import write_atomically
from rnnlab.models.sequence import load_kernel
from rnnlab.run.load import OtherLoad
from rnnlab.run.provenance import device_description, git_state

# The article's Keras setup (experiment=article: E=H=32, max_len 500, batch 128, 10k words, RMSprop),
# and the same with E=H=128, where the matmuls are big enough to approach the machine's peak.
BENCH_SETTINGS = {
    "article": ["experiment=article"],
    "h128": ["experiment=article", "model.embedding_dim=128", "model.hidden_size=128"],
}
# Warm-up and timed batches per variant unless --warmup/--steps say otherwise. A small model's step is short,
# so it needs many for a window long enough to time; an E=H=128 step is long from the first batch on. On a
# shared VM one run of a variant can be much slower than the next, hence 3 repeats, the fastest counting.
DEFAULT_WARMUP = {"article": 2, "h128": 1}
DEFAULT_STEPS = {"article": 32, "h128": 4}
VARIANTS = ("project", "plain_padded", "plain_padded_flush", "plain_bucketed", "plain_bucketed_flush",
            "plain_project")
# The variants the targets compare run --repeats times, the fastest counting; those that only break the
# speed-up down run once, to keep the benchmark to a few minutes.
REPEATED = ("project", "plain_padded", "plain_project")
# On a GPU: denormal floats are a CPU's cost, and the sequence kernel runs on CPUs only.
CPU_ONLY_VARIANTS = ("plain_padded_flush", "plain_bucketed_flush")
CPU_ONLY_IMPLS = ("sequence",)


def bench_config(cell: str, setting: str, data_dir: str | None, tracking_uri: str, overrides: list[str],
                 device: str = "cpu"):
    """The run the benchmark times: conf/ with the cell, the setting's sizes and a store of its own; on a GPU,
    trainer=gpu."""
    # model.cell=<cell>: the shared model settings with this cell (a cell needs no conf/model file)
    args = [f"model.cell={cell}", *BENCH_SETTINGS[setting], f"logger.tracking_uri={tracking_uri}",
            "logger.experiment_name=bench", *(["trainer=gpu"] if device == "cuda" else [])]
    if data_dir:
        args.append(f"paths.prepared_dir={data_dir}")
    return compose_config([*args, *overrides])


def figures(runs: list[Measurement], cell: str, embedding_dim: int, hidden_size: int) -> dict:
    """A variant's figures from its fastest repeat: other processes only ever slow a run down."""
    m = min(runs, key=lambda run: run.seconds)
    useful = m.real_tokens * flops_per_token(cell, embedding_dim, hidden_size) / m.seconds / 1e9
    return {
        "seconds": round(m.seconds, 4),
        "seconds_each_repeat": [round(run.seconds, 4) for run in runs],
        "samples": m.samples,
        "real_tokens": m.real_tokens,
        "computed_tokens": m.computed_tokens,
        "samples_per_s": m.samples / m.seconds,
        "real_tokens_per_s": m.real_tokens / m.seconds,
        "useful_gflops": useful,
        "final_loss": m.losses[-1],
    }


def bench_cell(cell: str, setting: str, args: argparse.Namespace, tracking_uri: str) -> list[dict]:
    """One result per implementation in args.impls that the cell has, all trained on the same planned batches,
    interleaved."""
    impls = cell_impls(cell, args.impls)
    cfgs = {impl: bench_config(cell, setting, args.data_dir, tracking_uri, [*args.overrides, f"model.impl={impl}"],
                               args.device) for impl in impls}
    cfg = cfgs[impls[0]]
    try:
        datamodule = build(cfg.data, "data")  # not the model: this process must not start OpenMP's threads
    except UserError as e:
        fail("bench", str(e))
    plan: BatchPlan = plan_batches(datamodule, args.warmup or DEFAULT_WARMUP[setting],
                                   args.steps or DEFAULT_STEPS[setting], cfg.seed)
    # name: (batches, padded to max_len, flush-denormal, the project's settings). plain_project runs right
    # after the project path, so that the overhead compares runs close in time; it runs for every implementation
    # (issue 19: the project within 5% of it for each). The other plain loops break the fused cells' speed-up down.
    plain = {
        "plain_project": (plan.bucketed, False, True, True),
        "plain_padded": (plan.shuffled, True, False, False),
        "plain_padded_flush": (plan.shuffled, True, True, False),
        "plain_bucketed": (plan.bucketed, False, False, False),
        "plain_bucketed_flush": (plan.bucketed, False, True, False),
    }
    measured: dict[str, dict[str, list[Measurement]]] = {
        impl: {"project": [], **({"plain_project": []} if "plain_project" in args.variants else {})}
        for impl in impls}
    if "fused" in measured:
        measured["fused"].update({name: [] for name in plain if name in args.variants})
    fits: dict[str, list[dict]] = {impl: [] for impl in impls}
    # Interleaved, so a burst of other work hits one repeat, not one variant or implementation.
    for repeat in range(args.repeats):
        for impl in impls:
            measurement, fit = in_fresh_process(run_project, cfgs[impl], plan)
            measured[impl]["project"].append(measurement)
            fits[impl].append(fit)
            for name, (batches, pad, flush, project_settings) in plain.items():
                if name in measured[impl] and (repeat == 0 or name in REPEATED):
                    measured[impl][name].append(in_fresh_process(run_plain, cfgs[impl], batches, plan.warmup, pad,
                                                                 flush, project_settings, args.device))
    shapes = batch_shapes(datamodule, plan)
    return [{**summarise(cell, setting, impl, cfgs[impl], datamodule, plan, args, measured[impl], fits[impl]),
             "timed_batch_shapes": shapes} for impl in impls]


def cell_impls(cell: str, asked: list[str]) -> list[str]:
    """The implementations of `asked` that `cell` has, in `asked`'s order (a cell has no layer for the others)."""
    return [impl for impl in asked if impl in CELLS[cell].impls]


def summarise(cell: str, setting: str, impl: str, cfg, datamodule, plan: BatchPlan, args: argparse.Namespace,
              measured: dict[str, list[Measurement]], fits: list[dict]) -> dict:
    E, H = cfg.model.embedding_dim, cfg.model.hidden_size
    variants = {name: figures(runs, cell, E, H) for name, runs in measured.items()}
    result = {
        "cell": cell, "setting": setting, "impl": impl, "embedding_dim": E, "hidden_size": H,
        "max_len": cfg.data.max_len, "batch_size": cfg.data.batch_size, "vocab_size": datamodule.vocab_size,
        "optimizer": cfg.model.optimizer._target_, "warmup_steps": plan.warmup,
        "steps": len(plan.bucketed) - plan.warmup, "repeats": args.repeats,
        "flops_per_token": flops_per_token(cell, E, H), "project_fit": min(fits, key=lambda f: f["fit_seconds"]),
        "variants": variants,
    }
    # Every variant's window holds the same reviews, so samples/s ratios are time ratios.
    ratio = lambda a, b: variants[a]["samples_per_s"] / variants[b]["samples_per_s"]
    if "plain_padded" in variants:
        result["speedup"] = ratio("project", "plain_padded")
        result["breakdown"] = {f"{name}_vs_plain_padded": ratio(name, "plain_padded")
                               for name in variants if name not in ("project", "plain_padded")}
    if "plain_project" in variants:
        result["overhead_pct"] = 100 * (variants["project"]["seconds"] / variants["plain_project"]["seconds"] - 1)
        # Same batches, weights and settings: Lightning must have computed what the plain loop did.
        reference = measured["plain_project"][0].losses
        runs = measured["project"] + measured["plain_project"]
        result["project_losses_match_plain"] = all(run.losses == reference for run in runs)
        result["max_loss_difference"] = max(abs(a - b) for run in runs for a, b in zip(run.losses, reference))
    return result


RESULTS_DIR = "data/bench"


def default_out(gpu_name: str | None = None, results_dir: str = RESULTS_DIR) -> str:
    """One committed result per CPU kind (a run on an Intel machine never overwrites the AMD figures), and per
    GPU model."""
    return f"{results_dir}/train-{gpu_kind(gpu_name) if gpu_name else cpu_kind()}.json"


def result_kind(report: dict) -> str | None:
    """The kind of machine a result file was measured on: its GPU's or its CPU's (None if it does not say)."""
    machine = report.get("machine", {})
    return gpu_kind(machine["gpu"]["name"]) if machine.get("gpu") else machine.get("cpu_kind")


def previous_result(out: Path, kind: str) -> dict | None:
    """The result `out` holds now, which this run will replace: None if there is none. A file measured on another
    kind of machine is refused (UserError): each kind keeps its own file, and a run never replaces another's."""
    if not out.exists():
        return None
    try:
        previous = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{out} is not a benchmark result ({e}); move it away or choose another --out") from e
    if not isinstance(previous, dict) or result_kind(previous) not in (kind, None):
        held = result_kind(previous) if isinstance(previous, dict) else "something else"
        raise UserError(f"{out} holds the result of a {held} machine and this is a {kind} one: each kind keeps its "
                        "own file; choose another --out")
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=None,
                        help=f"comma-separated: {','.join(CELL_NAMES)} (default: every cell that has one of --impls)")
    parser.add_argument("--settings", default=",".join(BENCH_SETTINGS), help="comma-separated: article,h128")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the first GPU, spawned processes, synchronized clock reads")
    parser.add_argument("--impls", default=None,
                        help=f"comma-separated: {','.join(IMPL_NAMES)} (default: all; on cuda those but "
                             f"{','.join(CPU_ONLY_IMPLS)}; each cell runs those it has; the plain-loop variants "
                             "run with fused)")
    steps_help = ", ".join(f"{setting} {steps}" for setting, steps in DEFAULT_STEPS.items())
    parser.add_argument("--steps", type=int, default=None, help=f"timed batches per variant (default: {steps_help})")
    warmup_help = ", ".join(f"{setting} {steps}" for setting, steps in DEFAULT_WARMUP.items())
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed batches before them (default: {warmup_help})")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"runs of {', '.join(REPEATED)}, interleaved; the fastest counts")
    parser.add_argument("--variants", default=None,
                        help="plain-loop variants to run besides the project path (comma-separated, may be empty; "
                             f"default: all; on cuda those but {','.join(CPU_ONLY_VARIANTS)})")
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix size of the sgemm peak measurement")
    parser.add_argument("--data-dir", default=None, help="prepared data (default: the config's paths.prepared_dir)")
    parser.add_argument("--results-dir", default=RESULTS_DIR,
                        help="the folder of results, one per kind of machine: train-<CPU kind>.json, here "
                             f"train-{cpu_kind()}.json; on cuda train-cuda-<GPU model>.json (default: {RESULTS_DIR})")
    parser.add_argument("--out", default=None,
                        help="where the JSON goes instead (refused if it holds another kind of machine's result)")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides applied after the setting's, e.g. data.batch_size=64")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if args.impls is None:
        args.impls = ",".join(i for i in IMPL_NAMES if not (cuda and i in CPU_ONLY_IMPLS))
    if args.variants is None:
        args.variants = ",".join(v for v in VARIANTS[1:] if not (cuda and v in CPU_ONLY_VARIANTS))
    settings, args.impls = args.settings.split(","), args.impls.split(",")
    cells = (args.cells.split(",") if args.cells is not None
             else [cell for cell in CELL_NAMES if cell_impls(cell, args.impls)])
    args.variants = [v for v in args.variants.split(",") if v]
    without_recurrence = [cell for cell in cells if cell in BASELINE_NAMES]
    if without_recurrence:  # the bench times recurrent layers against their FLOPs: the bag has neither
        parser.error(f"{', '.join(without_recurrence)} has no recurrence to benchmark: choose from "
                     f"{', '.join(CELL_NAMES)} (its training time is in compare's table)")
    for name, given, known in (("cell", cells, CELL_NAMES), ("setting", settings, BENCH_SETTINGS),
                               ("impl", args.impls, IMPL_NAMES), ("variant", args.variants, VARIANTS[1:])):
        unknown = [g for g in given if g not in known]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}: choose from {', '.join(known)}")
    if cuda:
        cpu_only = [x for x in [*args.impls, *args.variants] if x in CPU_ONLY_IMPLS + CPU_ONLY_VARIANTS]
        if cpu_only:
            parser.error(f"--device cuda: {', '.join(cpu_only)} run on a CPU only")
    without_impls = [cell for cell in cells if not cell_impls(cell, args.impls)]
    if without_impls or not cells:
        parser.error("; ".join(f"{cell} has none of the implementations {', '.join(args.impls)}: it has "
                               f"{', '.join(CELLS[cell].impls)}" for cell in without_impls)
                     or f"no cell has any of the implementations {', '.join(args.impls)}")
    for name in ("steps", "warmup", "repeats", "peak_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")

    # Lightning, MLflow and alembic talk a lot at INFO; the bench prints its own table.
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    started, load_before = time.perf_counter(), os.getloadavg()
    gpu = None
    if cuda:
        # This process never touches CUDA itself: the GPU is described and used by spawned children only.
        variants_module.START_METHOD = "spawn"
        gpu = in_fresh_process(gpu_description)
        if gpu is None:
            fail("bench", "--device cuda: torch sees no CUDA device here")
    # The result this run will replace: refused before anything runs if it is another kind of machine's.
    out = Path(args.out or default_out(gpu["name"] if cuda else None, args.results_dir))
    try:
        previous = previous_result(out, gpu_kind(gpu["name"]) if cuda else cpu_kind())
    except UserError as e:
        fail("bench", str(e))
    measure_peak = partial(in_fresh_process, gpu_matmul_peaks) if cuda else partial(in_fresh_process, sgemm_peak)
    # Nothing in this process may start OpenMP's threads before the runs are forked: see in_fresh_process.
    # The peak is taken at the start and at the end: a shared VM's varies over minutes.
    peaks = [measure_peak(args.peak_size)]
    # Compiled (first use) or loaded here, once, rather than in each run's warm-up: no OpenMP threads start.
    kernel_problem = load_kernel() if "sequence" in args.impls else None
    if kernel_problem:
        print(f"bench: warning: the sequence kernel is unavailable ({kernel_problem}): its rows measure the explicit "
              "cells", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        for setting in settings:
            for cell in cells:
                print(f"bench: {cell} / {setting} ({', '.join(cell_impls(cell, args.impls))}) ...", file=sys.stderr,
                      flush=True)
                with OtherLoad() as other:
                    rows = bench_cell(cell, setting, args, tracking_uri)
                fused = next((row for row in rows if row["impl"] == "fused"), None)
                for row in rows:
                    row["other_processes_cpu_pct"] = round(other.pct, 1)
                    if fused is not None:
                        row["vs_fused"] = (row["variants"]["project"]["samples_per_s"]
                                           / fused["variants"]["project"]["samples_per_s"])
                results += rows
    peaks.append(measure_peak(args.peak_size))
    # On a GPU the reference is TF32's peak: what cuDNN's recurrent layers run in unless told otherwise.
    peak = max(p["tf32"] for p in peaks) if cuda else max(peaks)
    step_rates = {}
    for result in results:
        for variant in result["variants"].values():
            variant["peak_pct"] = 100 * variant["useful_gflops"] / peak
        # What stops a cell short of the peak: the sequential per-step matmuls, measured at this shape.
        shape = (result["batch_size"], result["hidden_size"], CELLS[result["cell"]].recurrent_blocks)
        if shape not in step_rates:  # a cell whose gates read x_t only (recurrent_blocks 0) has no step matmul
            step_rates[shape] = (in_fresh_process(recurrent_step_gflops, *shape, 400, 5, args.device) if shape[2]
                                 else None)
        ceiling = matmul_ceiling_gflops(result["cell"], result["embedding_dim"], result["hidden_size"], peak,
                                        step_rates[shape])
        result["matmul_ceiling"] = {
            "step_matmul_gflops": step_rates[shape], "ceiling_gflops": ceiling, "ceiling_peak_pct": 100 * ceiling / peak,
            "project_pct_of_ceiling": 100 * result["variants"]["project"]["useful_gflops"] / ceiling,
        }
    # And each implementation's own layer: alone, on a batch of the window's mean review length, all of a cell's
    # in one process, interleaved.
    for (cell, setting), rows in itertools.groupby(results, key=lambda r: (r["cell"], r["setting"])):
        rows = list(rows)
        first = rows[0]["variants"]["project"]
        length = round(first["real_tokens"] / first["samples"])
        with OtherLoad() as other:
            seconds = in_fresh_process(run_layers_only, cell, [r["impl"] for r in rows], rows[0]["batch_size"],
                                       length, rows[0]["embedding_dim"], rows[0]["hidden_size"], 5, args.device)
        for result in rows:
            layer_gflops = result["batch_size"] * length * result["flops_per_token"] / seconds[result["impl"]] / 1e9
            result["layer_only"] = {
                "length": length, "seconds": seconds[result["impl"]], "useful_gflops": layer_gflops,
                "peak_pct": 100 * layer_gflops / peak,
                "project_pct_of_layer": 100 * result["variants"]["project"]["useful_gflops"] / layer_gflops,
                "other_processes_cpu_pct": round(other.pct, 1)}
        # The same layers on the timed batches' own shapes (bucketed, each padded to its longest review): the
        # layer-alone cost of exactly the work the project path did. Between the two layer figures lies what
        # varying lengths cost; between this one and the project's, everything outside the layer.
        shapes = [tuple(shape) for shape in rows[0]["timed_batch_shapes"]]
        with OtherLoad() as other:
            seconds = in_fresh_process(run_layers_on_shapes, cell, [r["impl"] for r in rows], shapes,
                                       rows[0]["embedding_dim"], rows[0]["hidden_size"], 3, args.device)
        for result in rows:
            real_tokens = result["variants"]["project"]["real_tokens"]
            layer_gflops = real_tokens * result["flops_per_token"] / seconds[result["impl"]] / 1e9
            result["layer_on_batches"] = {
                "batches": len(shapes), "padded_tokens": sum(b * t for b, t in shapes), "real_tokens": real_tokens,
                "seconds": seconds[result["impl"]], "useful_gflops": layer_gflops, "peak_pct": 100 * layer_gflops / peak,
                "project_pct_of_layer": 100 * result["variants"]["project"]["useful_gflops"] / layer_gflops,
                "other_processes_cpu_pct": round(other.pct, 1)}
    machine = {"device": f"{gpu['name']} (CUDA)" if cuda else device_description("cpu"), **cpu_identity(),
               # Denormal floats cost some CPUs many times more than others (issue 19): measured, not assumed.
               "denormals": denormal_cost(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "load_before": [round(x, 2) for x in load_before],
               "load_after": [round(x, 2) for x in os.getloadavg()]}
    if cuda:
        machine["gpu"] = gpu
    commit, dirty = git_state()
    report = {
        "machine": machine,
        "commit": commit, "uncommitted_changes": dirty,
        "sgemm_peak_gflops": peak,
        "peak_kind": "tf32 matmul on the GPU" if cuda else "sgemm",
        "sequence_kernel_problem": kernel_problem,
        "sgemm_peak_start_end_gflops": peaks if cuda else [round(p, 1) for p in peaks],
        "wall_seconds": time.perf_counter() - started,
        "targets": cuda_targets(results) if cuda else check_targets(results),
        **({} if cuda else {"cpu_targets": cpu_targets(results)}),
        "against_previous": against_previous(results, previous),
        "results": results,
    }
    print_table(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
