"""The search's report: expected best validation accuracy against the number of trials, per cell.

    python -m rnnlab.search.report

Reads the studies (rnnlab.search.study) and writes into search.dir: expected_max.csv and expected_max.png
(mean ± sd of the best of n trials, n = 1 .. N: rnnlab.search.budget), best.json (each cell's best trial: its
setting, value, best epoch, MLflow run) and report.md. Every cell is judged on the same number of trials N:
the first N completed trials of each, N being the fewest any cell has, so a search stopped part-way still
compares equal budgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

from rnnlab.cells import CELLS  # noqa: E402
from rnnlab.cli import UserError, hydra_app  # noqa: E402
from rnnlab.files import (
    replacing,
    write_atomically,  # noqa: E402
)
from rnnlab.search.budget import expected_max  # noqa: E402
from rnnlab.search.study import completed, load_study  # noqa: E402

SHOWN_BUDGETS = (1, 2, 5, 10, 20, 50)


def equal_budget(settings: DictConfig) -> tuple[dict[str, list[FrozenTrial]], dict]:
    """Each cell's first N completed trials (by number), N the fewest completed trials of any cell, and what
    defined the studies (rnnlab.search.study.defining; the cells' differ only in the cell)."""
    studies = {cell: load_study(settings, cell) for cell in settings.cells}
    trials = {cell: sorted(completed(study), key=lambda t: t.number) for cell, study in studies.items()}
    fewest = min(len(done) for done in trials.values())
    if fewest == 0:
        empty = [cell for cell, done in trials.items() if not done]
        raise UserError(f"no completed trial yet for {', '.join(empty)}: run `python -m rnnlab.search.run`")
    return {cell: done[:fewest] for cell, done in trials.items()}, next(iter(studies.values())).user_attrs


def curves(trials: dict[str, list[FrozenTrial]]) -> pd.DataFrame:
    rows = []
    for cell, done in trials.items():
        means, sds = expected_max([t.value for t in done])
        rows += [{"cell": cell, "trials": n, "expected_best_val_acc": m, "sd": s}
                 for n, (m, s) in enumerate(zip(means, sds), start=1)]
    return pd.DataFrame(rows)


def best_trials(trials: dict[str, list[FrozenTrial]]) -> dict[str, dict]:
    best = {}
    for cell, done in trials.items():
        top = max(done, key=lambda t: t.value)
        best[cell] = {"trial": top.number, "best_val_acc": top.value, "setting": top.params,
                      "best_epoch": top.user_attrs.get("best_epoch"),
                      "mlflow_run_id": top.user_attrs.get("mlflow_run_id"), "trials": len(done),
                      "diverged": sum("diverged" in t.user_attrs for t in done)}
    return best


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, rows in table.groupby("cell", sort=False):
        colour = CELLS[cell].colour if cell in CELLS else None
        ax.plot(rows.trials, rows.expected_best_val_acc, marker=".", color=colour, label=cell)
        ax.fill_between(rows.trials, rows.expected_best_val_acc - rows.sd, rows.expected_best_val_acc + rows.sd,
                        color=colour, alpha=0.15)
    ax.set(xlabel="trials (random draws from the search space)", ylabel="expected best validation accuracy",
           title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(title="cell (band: ± sd)")
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)


def winners(table: pd.DataFrame) -> dict[int, str]:
    """The cell with the highest expected best validation accuracy at each budget."""
    return {int(n): rows.loc[rows.expected_best_val_acc.idxmax(), "cell"] for n, rows in table.groupby("trials")}


def markdown(defined: dict, table: pd.DataFrame, best: dict[str, dict]) -> str:
    n = int(table.trials.max())
    budgets = [b for b in SHOWN_BUDGETS if b < n] + [n]
    lines = [f"# Equal-budget search: {n} trials per cell", "",
             f"Sampler: {defined['sampler']}; proxy budget per trial: {' '.join(defined['proxy'])}; every run: "
             f"{' '.join(o for o in defined['overrides'] if not o.startswith('model='))}, seed {defined['seed']}. "
             "A trial's value: its best epoch's validation accuracy (the test split is never read).",
             "", "Expected best validation accuracy (± sd) after n trials (Dodge et al., 2019):", "",
             "| cell | " + " | ".join(f"n={b}" for b in budgets) + " |", "|" + " --- |" * (len(budgets) + 1)]
    for cell, rows in table.groupby("cell", sort=False):
        by_n = rows.set_index("trials")
        lines.append(f"| {cell} | " + " | ".join(
            f"{by_n.expected_best_val_acc[b]:.4f} ± {by_n.sd[b]:.4f}" for b in budgets) + " |")
    lead = winners(table)
    lines += ["", "Ahead at each budget: " + ", ".join(f"n={b}: {lead[b]}" for b in budgets), "",
              "| cell | best val acc | trial | best epoch | diverged trials | setting |", "|" + " --- |" * 6]
    for cell, row in best.items():
        setting = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                            for k, v in row["setting"].items())
        lines.append(f"| {cell} | {row['best_val_acc']:.4f} | {row['trial']} | {row['best_epoch']} | "
                     f"{row['diverged']} | {setting} |")
    return "\n".join(lines) + "\n"


def report(settings: DictConfig) -> str:
    trials, defined = equal_budget(settings)
    table = curves(trials)
    best = best_trials(trials)
    out = Path(settings.dir)
    write_atomically(out / "expected_max.csv", table.to_csv(index=False, float_format="%.6f"))
    n = len(next(iter(trials.values())))
    plot(table, out / "expected_max.png", f"IMDB: expected best validation accuracy ({n} trials per cell)")
    write_atomically(out / "best.json", json.dumps(best, indent=2) + "\n")
    text = markdown(defined, table, best)
    write_atomically(out / "report.md", text)
    return text


@hydra_app("search.report")
def main(cfg: DictConfig) -> None:
    print(report(cfg.search), end="")
    print(f"wrote {Path(cfg.search.dir) / 'report.md'}, expected_max.csv, expected_max.png, best.json")


if __name__ == "__main__":
    main()
