"""claims.md: the verdicts of `rnnlab.comparison.claims` as a report to read."""

from __future__ import annotations


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
