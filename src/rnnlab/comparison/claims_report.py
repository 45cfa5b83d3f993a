"""claims.md: the verdicts of `rnnlab.comparison.claims` as a report to read. The functions that say a verdict
(`family_note`, `test_line`, `margin_line`) are shared with the search's claims report (rnnlab.search.final)."""

from __future__ import annotations

import math

from rnnlab.comparison.claims import CONTROLLED, FAILS, HOLDS, INCONCLUSIVE, margin_words
from rnnlab.comparison.failures import CHANCE, UNSTABLE_DROP

FORMATS = {"s": "{:+.0f}", "epoch s": "{:+.1f}", "acc": "{:+.4f}", "ratio": "{:.2f}", "log ratio": "{:+.2f}"}
SAYS = {HOLDS: "lies inside", FAILS: "lies wholly outside", INCONCLUSIVE: "is neither inside nor wholly outside"}


def interval(summary: dict | None, fmt: str = "{:.4f}", key: str = "ci95") -> str:
    if not summary or summary.get(key) is None:
        return "n/a"
    low, high = summary[key]
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def family_members_words(family: dict) -> str:
    """What a Holm family holds, from its members (rnnlab.comparison.claims.family_members): e.g. "the parts of
    (a), (b) and (c) on fused and sequence, 12, and (d)'s 2, measured once"."""
    members = family.get("members", [])
    per_impl = [m for m in members if m["impl"] is not None]
    gradient_tests = len(members) - len(per_impl)
    claims = sorted({m["claim"] for m in per_impl})
    impls = sorted({m["impl"] for m in per_impl})
    said = []
    if per_impl:  # their count too where (d)'s follow
        said.append(f"the parts of {words(f'({c})' for c in claims)} on {words(impls)}"
                    + (f", {len(per_impl)}" if gradient_tests else ""))
    if gradient_tests:
        said.append(f"(d)'s {gradient_tests}, measured once")
    return ", and ".join(said) or "none"


def words(items) -> str:
    """`x`, `x and y`, `x, y and z`."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def family_note(report: dict) -> str:
    """How many comparisons the report makes (which, and where (d) is left out, why), how they are controlled,
    and the rule."""
    family = report.get("family") or {}
    size, alpha = family.get("tests", 0), family.get("alpha", 0.05)
    with_d = any(m["claim"] == "d" for m in family.get("members", []))
    compound = ("(a) and (d) hold when all their parts hold and do not hold when one does not" if with_d
                else "(a) holds when all its parts hold and does not hold when one does not")
    left_out = f" (d) is not in it: {family['d_left_out']}." if "d_left_out" in family else ""
    return (f"Rule: a claim holds when its interval lies inside the claim's region, does not hold when it lies "
            f"wholly outside it, and is inconclusive when it straddles an edge; {compound}. This report makes {size} "
            f"interval tests ({family_members_words(family)}), "
            f"controlled as one family at family-wise error {alpha:g} with Holm's step-down adjustment: each verdict "
            f"uses the t-interval at the adjusted level shown beside it.{left_out} The tables' intervals are the "
            f"unadjusted 95% ones.")


def test_line(test: dict, verdict: bool = True) -> str:
    """`name estimate: the L% interval [lo, hi] lies inside | lies wholly outside | is neither inside nor wholly
    outside <region> (Holm p)`, then `: verdict` unless not `verdict`."""
    fmt = FORMATS.get(test.get("unit"), "{:+.4f}")
    unit = " s" if test.get("unit") in ("s", "epoch s") else ""
    if "interval" not in test:
        said = f"{test['name']} {fmt.format(test['estimate'])}{unit} ({test.get('why', 'not testable')})"
    else:
        said = (f"{test['name']} {fmt.format(test['estimate'])}{unit}: the {100 * test['level']:.3g}% interval "
                f"{interval(test, fmt, 'interval')} {SAYS[test['verdict']]} {test['region']} "
                f"(Holm p {test['p_holm']:.3g})")
    return f"{said}: {test['verdict']}" if verdict else said


def claim_line(title: str, claim: dict, where: str = "") -> str:
    """`- **title:** [where: ]verdict; the test behind it` (or why it is not testable); `where` says on which
    hardware a timing verdict was measured ("on this CPU (<model>)")."""
    said = f"{where}: {claim['verdict']}" if where else claim["verdict"]
    if "test" in claim:
        return f"- **{title}:** {said}; {test_line(claim['test'], verdict=False)}"
    return f"- **{title}:** {said}" + (f" ({claim['why']})" if "why" in claim else "")


def timing_note(report: dict) -> str:
    """Where and how the time parts of (a) and (c) were measured, and what the article measured on."""
    timing = report.get("timing") or {}
    article = ("The article's timing claims ((a)'s speed, (c)) were made on a GPU with cuDNN; the verdicts on them "
               f"here are {timing.get('where', 'on the hardware named')} only.")
    if timing.get("source") == CONTROLLED:
        state = "disturbed" if timing["disturbed"] else "quiet"
        return (f"Time: judged from the controlled timing measurement (data/timing/timing.json: every cell x "
                f"implementation on the same batches, interleaved, {timing['rounds']} rounds, paired by round) on "
                f"{timing['device']}; its window was {state} (other processes took {timing['other_cpu_pct']:.1f}% "
                f"of the CPU, load average {timing['load_avg_before']:.2f} before, {timing['load_avg_after']:.2f} "
                f"after). The tables' fit times are each run's own, under its load. {article}")
    return (f"Time: judged from the runs' own fit times (no controlled timing measurement: `dvc repro timing`), "
            f"each taken under whatever load its run met, on {timing.get('device', 'the device below')}. {article}")


def margin_line(claim: dict) -> str | None:
    """(b) at each margin shown, e.g. `at ±0.5 points: inconclusive; at ±1 point: holds`."""
    shown = claim.get("at_margins")
    if not shown:
        return None
    return "; ".join(f"at {margin_words(float(m))}: {verdict}" for m, verdict in shown.items())


def baseline_rows(report: dict, controlled: bool = False) -> list[str]:
    """The cells without recurrence as extra rows of every implementation's table: the floor the recurrent cells
    are read against (their one implementation, plain; the claims do not judge them, and the timing stage does not
    time them)."""
    return [extra_row(f"{cell} (no recurrence, impl {figures['impl']})", figures, controlled)
            for cell, figures in (report.get("baselines") or {}).items()]


def scan_rows(report: dict, controlled: bool = False) -> list[str]:
    """The parallel-scan cells (pipeline.scan_cells) as extra rows of every implementation's table: trained with
    their own implementation (scan), read beside the article's cells and never judged by the claims."""
    return [extra_row(f"{cell} (parallel scan, impl {figures['impl']}, not judged)", figures, controlled)
            for cell, figures in (report.get("scan_cells") or {}).items()]


def extra_row(label: str, figures: dict, controlled: bool) -> str:
    """A row of a cell the claims do not judge: its test accuracy and fit time over seeds, and its controlled epoch
    time where the timing stage timed it (the parallel-scan cells; the baselines it does not time)."""
    row = (f"| {label} | {figures['test_acc']['n']} | {figures['test_acc']['mean']:.4f} "
           f"{interval(figures['test_acc'])} | {figures['fit_time_s']['mean']:.0f} "
           f"{interval(figures['fit_time_s'], '{:.0f}')} |")
    if not controlled:
        return row
    epoch = figures.get("controlled_epoch_s")
    return row + (f" {epoch['mean']:.1f} {interval(epoch, '{:.1f}')} |" if epoch else " n/a |")


def run_counts_line(result: dict, drop: float) -> str | None:
    """One implementation's failed and unstable runs per cell, e.g. `Failed runs: gru 1 of 5 (seed 3). Unstable
    runs (...): gru 4 of 4 finished (seeds 0, 1, 2, 4).`; None where the figures carry no counts."""
    counted = {cell: figures["runs"] for cell, figures in result["cells"].items() if "runs" in figures}
    if not counted:
        return None
    failed = [f"{cell} {c['failed']} of {c['attempted']} (seed{'s' if c['failed'] > 1 else ''} "
              f"{', '.join(map(str, c['failed_seeds']))})" for cell, c in counted.items() if c["failed"]]
    unstable = [f"{cell} {c['unstable']} of {c['attempted'] - c['failed']} finished "
                f"(seed{'s' if c['unstable'] > 1 else ''} {', '.join(map(str, c['unstable_seeds']))})"
                for cell, c in counted.items() if c["unstable"]]
    return (f"Failed runs (diverged): {'; '.join(failed) or 'none'}. Unstable runs (last epoch's validation "
            f"accuracy more than {drop:g} below the best epoch's): {'; '.join(unstable) or 'none'}.")


def verdict_lines(result: dict, where: str) -> list[str]:
    """One implementation's verdicts on (a), (b) and (c), each with the tests behind it."""
    a = result["a_rnn_fastest_least_accurate"]
    b = result["b_lstm_gru_similar_accuracy"]
    c = result["c_lstm_twice_gru_time"]
    margin = f" (margin {margin_words(b['margin'])})" if "margin" in b else ""
    lines = [claim_line("(a) RNN fastest but least accurate", a, where)]
    lines += [f"  - {test_line(part)}" + (f" ({part['source']})" if "source" in part else "")
              for part in a.get("parts", [])]
    lines.append(claim_line(f"(b) LSTM ≈ GRU in accuracy{margin}", b))
    if margin_line(b):
        lines.append(f"  - the same test at other margins: {margin_line(b)}")
    lines.append(claim_line("(c) LSTM ≈ 2x GRU's time", c, where)
                 + (f" ({c['test']['source']})" if "source" in c.get("test", {}) else ""))
    return lines


def failures_section(report: dict) -> list[str]:
    """The verdicts again with each failed run counted at chance accuracy; one line when no run failed."""
    failures = report.get("failures")
    if failures is None:
        return []
    if not failures["failed"]:
        said = (f"All {failures['attempted']} runs finished: the verdicts above are the only ones (none would "
                "change with failures counted).")
        return ["## Failed runs: none", "", said, ""]
    as_chance = failures["as_chance"]
    lines = [f"## The verdicts with failed runs counted as chance ({CHANCE:g} accuracy)", "",
             f"{len(failures['failed'])} of {failures['attempted']} runs failed: "
             + "; ".join(failures["failed"]) + ". The verdicts above are on the runs that finished; here each "
             f"failed run counts as a test accuracy of {CHANCE:g} (the time parts stay on the finished runs). Its "
             f"own family: {as_chance['family']['tests']} interval tests, Holm at family-wise error "
             f"{as_chance['family']['alpha']:g}.", ""]
    where = (report.get("timing") or {}).get("where", "")
    for impl, result in as_chance["implementations"].items():
        lines += [f"### Implementation: {impl}, failures counted", "", *verdict_lines(result, where), ""]
    return lines


def seed_list(by_seed: dict) -> str:
    """One cell's per-seed figures in seed order, e.g. `79, 64, 101`."""
    return ", ".join(map(str, by_seed.values()))


def claims_markdown(report: dict) -> str:
    where = (report.get("timing") or {}).get("where", "")
    lines = ["# The article's claims, measured", "", family_note(report), "", timing_note(report), ""]
    for impl, result in report["implementations"].items():
        controlled = any("controlled_epoch_s" in figures for figures in result["cells"].values())
        lines += [f"## Implementation: {impl}", "", "| cell | seeds | test accuracy (mean, 95% CI) "
                  "| fit time of the run, under its load (s, mean, 95% CI) |"
                  + (" epoch time, controlled timing (s, mean, 95% CI over rounds) |" if controlled else ""),
                  "| --- | --- | --- | --- |" + (" --- |" if controlled else "")]
        for cell, figures in result["cells"].items():
            acc, time = figures["test_acc"], figures["fit_time_s"]
            flagged = figures.get("runs_not_comparable") or []  # seeds whose load makes their time not comparable
            seeds = f"seed{'s' if len(flagged) > 1 else ''} {', '.join(map(str, flagged))}"
            flag = f" ({seeds} under load)" if flagged else ""
            row = (f"| {cell} | {acc['n']} | {acc['mean']:.4f} {interval(acc)} "
                   f"| {time['mean']:.0f} {interval(time, '{:.0f}')}{flag} |")
            if controlled:
                epoch = figures.get("controlled_epoch_s")
                row += f" {epoch['mean']:.1f} {interval(epoch, '{:.1f}')} |" if epoch else " n/a |"
            lines.append(row)
        lines += scan_rows(report, controlled) + baseline_rows(report, controlled)
        counted = run_counts_line(result, (report.get("failures") or {}).get("unstable_drop", UNSTABLE_DROP))
        lines += ["", *([counted, ""] if counted else []), *verdict_lines(result, where), ""]
    lines += failures_section(report)
    d = report["d_rnn_gradients_vanish"]
    lines.append(f"## (d) RNN gradients vanish, LSTM/GRU gradients survive: {d['verdict']}")
    if "trained_reach" in d:
        lines.append("")
        reaches = [f"{cell} {seed_list(reach)} ({seed_list(d['init_reach'][cell])})"
                   for cell, reach in d["trained_reach"].items()]
        cap = f", capped at the review length, {d['cap']} steps" if d.get("cap") else ""
        threshold = d.get("threshold") or 1e-3
        lines.append(f"Reach: steps back from the end before |d loss / d x_t| falls below {threshold:g} "
                     f"of its end value{cap}; per seed, trained (at initialisation): " + "; ".join(reaches) + ".")
        lines.append("The test, per gated cell (lstm, gru; any other cell's reach is shown, not tested): log(its "
                     "reach / the RNN's) per seed, claimed above 0; a capped gated reach makes it a lower bound.")
    if "why" in d:
        lines.append(f"\n{d['why']}")
    for part in d.get("parts", []):
        ratio = f" (geometric mean ratio {math.exp(part['estimate']):.2f}x)" if math.isfinite(part["estimate"]) else ""
        lines.append(f"  - {test_line(part)}{ratio}")
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
