"""The benchmark's verdicts against its targets, and its table on the terminal."""

from __future__ import annotations

from collections.abc import Callable

from rnnlab.run.load import DISTURBED_PCT

TARGETS = {"peak_fraction": 0.5, "speedup": 2.5, "overhead_pct": 5.0}


# Issue 14's, at E=H=128 unless said: the sequence kernel's GRU and LSTM against the peak, its RNN against the
# fused one; and the explicit cells' time against the fused cells', at both settings.
SEQUENCE_TARGETS = {"gru_peak_fraction": 0.4, "lstm_peak_fraction": 0.5, "rnn_h128_vs_fused": 2.0,
                    "explicit_time_vs_fused": 1.5}


def check_targets(results: list[dict]) -> dict:
    """Issue 4's targets (the fused cells, the default) and issue 14's (the sequence kernel against the others),
    each with the measured value and whether it is met. Those whose rows were not run are left out."""
    checks = {}

    def check(name: str, value: float, met: bool) -> None:
        checks[name] = {"value": value, "met": met}

    rows = {(r["cell"], r["setting"], r["impl"]): r["variants"]["project"] for r in results}
    for r in results:
        key = f"{r['cell']}/{r['setting']}/{r['impl']}"
        if r["impl"] != "fused":
            continue
        if r["cell"] in ("lstm", "gru") and r["setting"] == "h128":
            pct = r["variants"]["project"]["peak_pct"]
            check(f"{key} % of sgemm peak >= {100 * TARGETS['peak_fraction']:.0f}", pct,
                  pct >= 100 * TARGETS["peak_fraction"])
        if "speedup" in r:
            check(f"{key} speed-up >= {TARGETS['speedup']}", r["speedup"], r["speedup"] >= TARGETS["speedup"])
        if "overhead_pct" in r:
            check(f"{key} overhead % <= {TARGETS['overhead_pct']:.0f}", r["overhead_pct"],
                  r["overhead_pct"] <= TARGETS["overhead_pct"])

    def at_least(name: str, value: float, target: float) -> None:
        check(f"{name} >= {target:g}", value, value >= target)

    if ("gru", "h128", "sequence") in rows:
        gru = rows[("gru", "h128", "sequence")]
        at_least("gru/h128/sequence % of sgemm peak", gru["peak_pct"], 100 * SEQUENCE_TARGETS["gru_peak_fraction"])
        if ("lstm", "h128", "fused") in rows:
            at_least("gru/h128/sequence GFLOP/s over lstm/h128/fused's", gru["useful_gflops"]
                     / rows[("lstm", "h128", "fused")]["useful_gflops"], 1.0)
    if ("lstm", "h128", "sequence") in rows:
        at_least("lstm/h128/sequence % of sgemm peak", rows[("lstm", "h128", "sequence")]["peak_pct"],
                 100 * SEQUENCE_TARGETS["lstm_peak_fraction"])
    if ("rnn", "h128", "sequence") in rows and ("rnn", "h128", "fused") in rows:
        at_least("rnn/h128/sequence speed over fused", rows[("rnn", "h128", "sequence")]["samples_per_s"]
                 / rows[("rnn", "h128", "fused")]["samples_per_s"], SEQUENCE_TARGETS["rnn_h128_vs_fused"])
    for (cell, setting, impl), row in rows.items():
        others = [rows[(cell, setting, other)]["samples_per_s"] for other in ("fused", "explicit")
                  if (cell, setting, other) in rows]
        if impl == "sequence" and setting == "article" and others:
            at_least(f"{cell}/article/sequence speed over the fastest other", row["samples_per_s"] / max(others), 1.0)
        if impl == "explicit" and (cell, setting, "fused") in rows:
            time_ratio = rows[(cell, setting, "fused")]["samples_per_s"] / row["samples_per_s"]
            limit = SEQUENCE_TARGETS["explicit_time_vs_fused"]
            check(f"{cell}/{setting}/explicit time over fused's <= {limit}", time_ratio, time_ratio <= limit)
    return checks


# Issue 19's, on each CPU kind: the project path within 5% of the plain loop on the same batches and settings, for
# every cell, setting and implementation; the sequence kernel at least as fast as fused everywhere; at E=H=128 each
# cell's best implementation at >= 50% of the sgemm peak, and the GRU's best at the LSTM's best GFLOP/s or more.
CPU_TARGETS = {"overhead_pct": 5.0, "sequence_vs_fused": 1.0, "best_peak_pct": 50.0, "gru_vs_lstm": 1.0}


def cpu_targets(results: list[dict]) -> dict:
    """Issue 19's targets, each with its figure and whether it is met; those whose rows were not run left out."""
    checks = {}
    project = {(r["cell"], r["setting"], r["impl"]): r["variants"]["project"] for r in results}
    for r in results:
        if "overhead_pct" in r:
            checks[f"{r['cell']}/{r['setting']}/{r['impl']} project over plain_project time, % <= "
                   f"{CPU_TARGETS['overhead_pct']:g}"] = {"value": r["overhead_pct"],
                                                           "met": r["overhead_pct"] <= CPU_TARGETS["overhead_pct"]}
    cells_settings = sorted({(cell, setting) for cell, setting, _ in project})
    for cell, setting in cells_settings:
        if (cell, setting, "sequence") in project and (cell, setting, "fused") in project:
            ratio = (project[(cell, setting, "sequence")]["samples_per_s"]
                     / project[(cell, setting, "fused")]["samples_per_s"])
            checks[f"{cell}/{setting} sequence speed over fused >= {CPU_TARGETS['sequence_vs_fused']:g}"] = {
                "value": ratio, "met": ratio >= CPU_TARGETS["sequence_vs_fused"]}
    best = {}  # (cell, setting): (impl, its project figures), the fastest in useful GFLOP/s
    for (cell, setting, impl), figures in project.items():
        if (cell, setting) not in best or figures["useful_gflops"] > best[(cell, setting)][1]["useful_gflops"]:
            best[(cell, setting)] = (impl, figures)
    for (cell, setting), (impl, figures) in sorted(best.items()):
        if setting == "h128":
            checks[f"{cell}/h128 best impl ({impl}) % of sgemm peak >= {CPU_TARGETS['best_peak_pct']:g}"] = {
                "value": figures["peak_pct"], "met": figures["peak_pct"] >= CPU_TARGETS["best_peak_pct"]}
    if ("gru", "h128") in best and ("lstm", "h128") in best:
        (gru_impl, gru), (lstm_impl, lstm) = best[("gru", "h128")], best[("lstm", "h128")]
        ratio = gru["useful_gflops"] / lstm["useful_gflops"]
        checks[f"gru/h128 best ({gru_impl}) GFLOP/s over lstm/h128 best's ({lstm_impl}) >= "
               f"{CPU_TARGETS['gru_vs_lstm']:g}"] = {"value": ratio, "met": ratio >= CPU_TARGETS["gru_vs_lstm"]}
    return checks


def where_time_goes(r: dict) -> dict:
    """One row's samples/s and useful GFLOP/s (% of peak) four ways, from the layer's own speed to the project's:
    the layer alone at the mean length, the layer alone on the timed batches' real shapes, the plain loop with
    the project's batches and settings, and the project path. Between neighbours lies, in turn, what varying
    lengths cost, what the rest of a step (embedding, loss, clipping, optimizer) costs, and Lightning + MLflow."""
    stages = {}
    if "layer_only" in r:
        k = r["layer_only"]
        stages["layer@mean"] = {"samples_per_s": r["batch_size"] / k["seconds"], "useful_gflops": k["useful_gflops"],
                                "peak_pct": k["peak_pct"]}
    if "layer_on_batches" in r:
        k = r["layer_on_batches"]
        stages["layer@real"] = {"samples_per_s": r["variants"]["project"]["samples"] / k["seconds"],
                                "useful_gflops": k["useful_gflops"], "peak_pct": k["peak_pct"]}
    for stage, variant in (("plain loop", "plain_project"), ("project", "project")):
        if variant in r["variants"]:
            v = r["variants"][variant]
            stages[stage] = {key: v[key] for key in ("samples_per_s", "useful_gflops", "peak_pct")}
    return stages


def against_previous(results: list[dict], previous: dict | None) -> dict | None:
    """Each row's project samples/s over the same row's in the result this run replaces (same kind of machine),
    and the two sgemm peaks: a regression shows as a ratio below 1. None without an earlier result."""
    if previous is None:
        return None
    before = {(r["cell"], r["setting"], r["impl"]): r["variants"]["project"]["samples_per_s"]
              for r in previous.get("results", [])}
    return {"previous_sgemm_peak_gflops": previous.get("sgemm_peak_gflops"),
            "previous_commit": previous.get("commit"),
            "project_samples_per_s_ratio": {
                f"{r['cell']}/{r['setting']}/{r['impl']}": r["variants"]["project"]["samples_per_s"] / before[key]
                for r in results if (key := (r["cell"], r["setting"], r["impl"])) in before}}


# Issue 23's, on a GPU at the article setting: the time of an LSTM epoch of 25,000 reviews (on an H200), and the
# LSTM/GRU time ratio beside the article's "about 2x" and DeepBench's ~1.3x (V100, fp32), reported without a verdict.
CUDA_LSTM_EPOCH_S = 3.0
EPOCH_REVIEWS = 25_000


def cuda_targets(results: list[dict]) -> dict:
    """The GPU's targets from the fused cells' project rows: an epoch's time estimated from the timed window's
    samples/s (met is None, a figure to read, where no target is set)."""
    rows = {(r["cell"], r["setting"]): r["variants"]["project"] for r in results if r["impl"] == "fused"}
    checks = {}
    if ("lstm", "article") in rows:
        seconds = EPOCH_REVIEWS / rows[("lstm", "article")]["samples_per_s"]
        checks[f"lstm/article/fused epoch of {EPOCH_REVIEWS:,} reviews (s, estimated) <= {CUDA_LSTM_EPOCH_S:g} on an "
               "H200"] = {"value": seconds, "met": seconds <= CUDA_LSTM_EPOCH_S}
    for setting in ("article", "h128"):
        if ("lstm", setting) in rows and ("gru", setting) in rows:
            ratio = rows[("gru", setting)]["samples_per_s"] / rows[("lstm", setting)]["samples_per_s"]
            checks[f"lstm/{setting}/fused time over gru's (article ~2, DeepBench V100 ~1.3)"] = {"value": ratio,
                                                                                               "met": None}
    return checks


def print_table(report: dict) -> None:
    machine = report["machine"]
    kind = machine.get("cpu_kind", "unknown kind")
    peak_kind = report.get("peak_kind", "sgemm")
    print(f"\n{machine['device']} [{kind}{', AVX-512' if machine.get('avx512') else ''}]; {peak_kind} peak "
          f"{report['sgemm_peak_gflops']:.1f} GFLOP/s "
          f"(start, end: {report['sgemm_peak_start_end_gflops']}); load average "
          f"{machine['load_before']} before, {machine['load_after']} after")
    print("The project path's samples/s, real tokens/s, useful GFLOP/s and % of the sgemm peak, and its speed "
          "against the fused cells' (same batches, interleaved runs); for the fused cells its speed-up over the plain "
          "padded loop, the plain loop's own speed-up from flush-denormal, bucketing, both, and all the project's "
          "settings, and Lightning + MLflow overhead; other processes' share of the CPU meanwhile.")
    columns = [("flush", "plain_padded_flush"), ("bucket", "plain_bucketed"), ("both", "plain_bucketed_flush"),
               ("all", "plain_project")]
    head = (f"{'cell':5} {'setting':8} {'impl':8} {'samples/s':>9} {'tokens/s':>9} {'GFLOP/s':>7} {'%peak':>5} "
            f"{'vs fused':>8} {'speedup':>7} " + " ".join(f"{name:>6}" for name, _ in columns)
            + f" {'overhead':>8} {'other':>6}")
    print(head)
    print("-" * len(head))
    fmt = lambda v, spec, unit="": "-" if v is None else format(v, spec) + unit
    for r in report["results"]:
        p, b = r["variants"]["project"], r.get("breakdown", {})
        gains = " ".join(f"{fmt(b.get(f'{variant}_vs_plain_padded'), '5.2f', 'x'):>6}" for _, variant in columns)
        print(f"{r['cell']:5} {r['setting']:8} {r['impl']:8} {p['samples_per_s']:9.1f} {p['real_tokens_per_s']:9.0f} "
              f"{p['useful_gflops']:7.1f} {p['peak_pct']:5.1f} {fmt(r.get('vs_fused'), '7.2f', 'x'):>8} "
              f"{fmt(r.get('speedup'), '6.2f', 'x'):>7} {gains} "
              f"{fmt(r.get('overhead_pct'), '7.1f', '%'):>8} {r['other_processes_cpu_pct']:5.1f}%"
              + ("  (disturbed)" if r["other_processes_cpu_pct"] > DISTURBED_PCT else ""))
    print_rows(report, "\nthe matmul ceiling (flops.matmul_ceiling_gflops): the per-step [B, H] x [H, g*H] matmul's "
               "own GFLOP/s, the useful GFLOP/s if every matmul ran at its ceiling and nothing else took time, and the "
               "project's share:", ceiling_row)
    print_rows(report, "\nthe layer alone (forward + backward, no embedding, loss, clipping or optimizer; mean length; "
               "a cell's implementations interleaved in one process), and other processes' share of the CPU meanwhile:",
               layer_row)
    print_rows(report, "\nthe layer alone on the timed batches' own shapes (bucketed, each padded to its longest "
               "review: the layer's share of exactly the project's work), and other processes' share meanwhile:",
               batches_row)
    print_rows(report, "\nsamples/s of every variant:",
               lambda r: "  ".join(f"{name} {v['samples_per_s']:.1f}" for name, v in r["variants"].items()))
    print_rows(report, "\nwhere the time goes: samples/s and useful GFLOP/s (% of peak) of the layer alone at the mean "
               "length, the layer alone on the real batches' shapes, the plain loop (the project's batches and "
               "settings) and the project path:", where_row)
    compared = report.get("against_previous")
    if compared:
        peak = compared["previous_sgemm_peak_gflops"]
        print(f"\nagainst the result this run replaces (same {machine.get('cpu_kind', 'machine')} kind; its sgemm peak "
              f"{'-' if peak is None else format(peak, '.1f')} GFLOP/s): project samples/s now over then "
              "(below 1: slower)")
        for name, ratio in compared["project_samples_per_s_ratio"].items():
            print(f"  {name:22} {ratio:5.2f}x{'  SLOWER' if ratio < REGRESSION_RATIO else ''}")
    print_checks("targets (issues 4 and 14):", report["targets"])
    if "cpu_targets" in report:
        print_checks(f"issue 19's targets on this CPU ({machine.get('cpu_model', machine['device'])}):",
                     report["cpu_targets"])


# A row this much slower than in the result it replaces is flagged: beyond this VM's run-to-run noise.
REGRESSION_RATIO = 0.9


def print_checks(heading: str, checks: dict) -> None:
    """PASS / MISS and the figure for each target (a blank verdict where there is a figure but no target)."""
    print(f"\n{heading}")
    for name, check in checks.items():
        verdict = "    " if check["met"] is None else "PASS" if check["met"] else "MISS"
        print(f"  {verdict} {name}: {check['value']:.2f}")


def where_row(r: dict) -> str:
    return "  ".join(f"{stage} {v['samples_per_s']:7.1f}/s {v['useful_gflops']:6.1f} ({v['peak_pct']:4.1f}%)"
                     for stage, v in where_time_goes(r).items())


def print_rows(report: dict, heading: str, row: Callable[[dict], str]) -> None:
    """A heading, then one line per cell, setting and implementation."""
    print(heading)
    for r in report["results"]:
        print(f"  {r['cell']:5} {r['setting']:8} {r['impl']:8} {row(r)}")


def ceiling_row(r: dict) -> str:
    c = r["matmul_ceiling"]
    step = c["step_matmul_gflops"]  # None: no recurrent matmul (gates from x_t only, the parallel-scan cells)
    step_text = "  none" if step is None else f"{step:6.1f}"
    return (f"step matmul {step_text} GFLOP/s  ceiling {c['ceiling_gflops']:6.1f} GFLOP/s "
            f"({c['ceiling_peak_pct']:4.1f}% of peak)  project {c['project_pct_of_ceiling']:5.1f}% of the ceiling")


def layer_row(r: dict) -> str:
    k = r["layer_only"]
    other = k.get("other_processes_cpu_pct")  # not recorded by results from before issue 19
    disturbed = "  (disturbed)" if other is not None and other > DISTURBED_PCT else ""
    return (f"T={k['length']:3}  {k['useful_gflops']:6.1f} GFLOP/s ({k['peak_pct']:4.1f}% of peak)  project "
            f"{k['project_pct_of_layer']:5.1f}% of it  {'-' if other is None else format(other, '5.1f') + '%'}"
            f"{disturbed}")


def batches_row(r: dict) -> str:
    k = r.get("layer_on_batches")
    if k is None:  # a result from before this measurement
        return "not measured"
    disturbed = "  (disturbed)" if k["other_processes_cpu_pct"] > DISTURBED_PCT else ""
    padding = 100 * (1 - k["real_tokens"] / k["padded_tokens"])
    return (f"{k['batches']:3} batches, {padding:4.1f}% padding  {k['useful_gflops']:6.1f} GFLOP/s "
            f"({k['peak_pct']:4.1f}% of peak)  project {k['project_pct_of_layer']:5.1f}% of it  "
            f"{k['other_processes_cpu_pct']:5.1f}%{disturbed}")
