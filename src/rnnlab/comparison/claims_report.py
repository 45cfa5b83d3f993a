"""claims.md: the verdicts of `rnnlab.comparison.claims` as a report to read. The functions that say a verdict
(`family_note`, `test_line`, `margin_line`) are shared with the search's claims report (rnnlab.search.final)."""

from __future__ import annotations

from rnnlab.comparison.claims import FAILS, HOLDS, INCONCLUSIVE, margin_words

FORMATS = {"s": "{:+.0f}", "acc": "{:+.4f}", "ratio": "{:.2f}"}
SAYS = {HOLDS: "lies inside", FAILS: "lies wholly outside", INCONCLUSIVE: "is neither inside nor wholly outside"}


def interval(summary: dict | None, fmt: str = "{:.4f}", key: str = "ci95") -> str:
    if not summary or summary.get(key) is None:
        return "n/a"
    low, high = summary[key]
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def family_note(report: dict) -> str:
    """How many comparisons the report makes, how they are controlled, and the rule."""
    family = report.get("family") or {}
    size, alpha = family.get("tests", 0), family.get("alpha", 0.05)
    return (f"Rule: a claim holds when its interval lies inside the claim's region, does not hold when it lies "
            f"wholly outside it, and is inconclusive when it straddles an edge; (a) holds when all its parts hold "
            f"and does not hold when one does not. This report makes {size} interval tests (the parts of (a), (b) "
            f"and (c), every implementation), controlled as one family at family-wise error {alpha:g} with Holm's "
            f"step-down adjustment: each verdict uses the t-interval at the adjusted level shown beside it. The "
            f"tables' intervals are the unadjusted 95% ones. (d) has no interval.")


def test_line(test: dict, verdict: bool = True) -> str:
    """`name estimate: the L% interval [lo, hi] lies inside | lies wholly outside | is neither inside nor wholly
    outside <region> (Holm p)`, then `: verdict` unless not `verdict`."""
    fmt = FORMATS.get(test.get("unit"), "{:+.4f}")
    unit = " s" if test.get("unit") == "s" else ""
    if "interval" not in test:
        said = f"{test['name']} {fmt.format(test['estimate'])}{unit} ({test.get('why', 'not testable')})"
    else:
        said = (f"{test['name']} {fmt.format(test['estimate'])}{unit}: the {100 * test['level']:.3g}% interval "
                f"{interval(test, fmt, 'interval')} {SAYS[test['verdict']]} {test['region']} "
                f"(Holm p {test['p_holm']:.3g})")
    return f"{said}: {test['verdict']}" if verdict else said


def claim_line(title: str, claim: dict) -> str:
    """`- **title:** verdict; the test behind it` (or why it is not testable)."""
    if "test" in claim:
        return f"- **{title}:** {claim['verdict']}; {test_line(claim['test'], verdict=False)}"
    return f"- **{title}:** {claim['verdict']}" + (f" ({claim['why']})" if "why" in claim else "")


def margin_line(claim: dict) -> str | None:
    """(b) at each margin shown, e.g. `at ±0.5 points: inconclusive; at ±1 point: holds`."""
    shown = claim.get("at_margins")
    if not shown:
        return None
    return "; ".join(f"at {margin_words(float(m))}: {verdict}" for m, verdict in shown.items())


def baseline_rows(report: dict) -> list[str]:
    """The cells without recurrence as extra rows of every implementation's table: the floor the recurrent cells
    are read against (their one implementation, plain; the claims do not judge them)."""
    return [f"| {cell} (no recurrence, impl {figures['impl']}) | {figures['test_acc']['n']} "
            f"| {figures['test_acc']['mean']:.4f} {interval(figures['test_acc'])} "
            f"| {figures['fit_time_s']['mean']:.0f} {interval(figures['fit_time_s'], '{:.0f}')} |"
            for cell, figures in (report.get("baselines") or {}).items()]


def claims_markdown(report: dict) -> str:
    lines = ["# The article's claims, measured", "", family_note(report), ""]
    for impl, result in report["implementations"].items():
        lines += [f"## Implementation: {impl}", "", "| cell | seeds | test accuracy (mean, 95% CI) "
                  "| training time s (mean, 95% CI) |", "| --- | --- | --- | --- |"]
        for cell, figures in result["cells"].items():
            acc, time = figures["test_acc"], figures["fit_time_s"]
            lines.append(f"| {cell} | {acc['n']} | {acc['mean']:.4f} {interval(acc)} "
                         f"| {time['mean']:.0f} {interval(time, '{:.0f}')} |")
        lines += baseline_rows(report)
        a = result["a_rnn_fastest_least_accurate"]
        b = result["b_lstm_gru_similar_accuracy"]
        c = result["c_lstm_twice_gru_time"]
        margin = f" (margin {margin_words(b['margin'])})" if "margin" in b else ""
        lines += ["", claim_line("(a) RNN fastest but least accurate", a)]
        lines += [f"  - {test_line(part)}" for part in a.get("parts", [])]
        lines.append(claim_line(f"(b) LSTM ≈ GRU in accuracy{margin}", b))
        if margin_line(b):
            lines.append(f"  - the same test at other margins: {margin_line(b)}")
        lines.append(claim_line("(c) LSTM ≈ 2x GRU's time", c))
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
