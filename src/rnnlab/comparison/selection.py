"""Which setting `experiment=best` trains: every measured candidate judged on validation accuracy alone.

    python -m rnnlab.comparison.selection

The candidates are the settings this project has trained over several seeds and committed: the pipeline's shared
setting, per cell x implementation (<paths.train_dir>/<cell>-<impl>-<seed>/scores.json), and the equal-budget
search's tuned settings (<search.dir>/final/<cell>-seed<k>.json). Each is summarised by the mean and sd of its
best-epoch validation accuracy over its seeds (a seed whose training diverged counts as chance, 0.5); the highest
mean is chosen, and only the chosen one's test accuracy is shown (each of its seeds was tested once, when it
trained). Candidates named in UNRECORDED (tried once, with no committed run) are listed and cannot be chosen.
The floor without recurrence (the pipeline's baselines, the bag of embeddings: <train_dir>/bag-plain-<seed>/) is
listed among them, marked, with its rank, and the chosen cell's lead over it on validation (a Welch 95% interval
over the seeds); it cannot be chosen: `experiment=best` is the best *recurrent* setting, what this project is
about, and the floor is what it is measured against.
Writes <search.dir>/experiment_best.md and experiment_best.json; conf/experiment/best.yaml must set the chosen
candidate's settings (tests/test_selection.py checks it against these files' sources).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from scipy import stats

from rnnlab.cli import UserError, hydra_app
from rnnlab.files import write_atomically
from rnnlab.pipeline import planned_runs, run_folder

CHANCE = 0.5  # a diverged seed's validation accuracy: its setting gave no model better than a coin
# Tried before selection was done on validation alone; no data file records their runs.
UNRECORDED = {
    "bidirectional GRU, H 128, E 128, mean pooling, dropout 0.3, Adam 3e-3, max_len 800, 6 epochs "
    "(conf/experiment/best.yaml until issue 20)": "no committed run",
}


@dataclass
class Candidate:
    name: str
    # Hydra overrides that train it (conf/ as it is besides these): model.cell=<cell> and model.impl=<the impl it
    # ran>, so a cell needs no conf/model file (the same config as model=<cell>: tests/test_config.py)
    overrides: list[str]
    val_accs: list[float] = field(default_factory=list)  # one per seed; a diverged seed counts as CHANCE
    test_accs: list[float] = field(default_factory=list)  # the seeds that trained
    seeds: list[int] = field(default_factory=list)
    diverged: int = 0
    note: str = ""
    floor: bool = False  # a cell without recurrence (pipeline.baselines): listed and ranked, never chosen

    @property
    def mean_val_acc(self) -> float | None:
        return float(np.mean(self.val_accs)) if self.val_accs else None

    @property
    def sd_val_acc(self) -> float | None:
        return float(np.std(self.val_accs, ddof=1)) if len(self.val_accs) > 1 else None


def read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} cannot be read as JSON: {e}") from e
    if not isinstance(found, dict):
        raise UserError(f"{path} is not a JSON object")
    return found


def shared_candidates(cfg: DictConfig) -> list[Candidate]:
    """The pipeline's shared setting, one candidate per cell x implementation, over the seeds trained so far."""
    by_setting: dict[tuple[str, str], Candidate] = {}
    baselines = set(cfg.pipeline.get("baselines") or [])
    for run in planned_runs(cfg.pipeline):
        path = run_folder(cfg.paths.train_dir, run) / "scores.json"
        if not path.is_file():
            continue  # not trained (yet): the candidate has the seeds that are
        scores = read_json(path)
        floor = run.cell in baselines
        name = (f"floor without recurrence, {run.cell} ({run.impl})" if floor
                else f"shared setting, {run.cell} ({run.impl})")
        candidate = by_setting.setdefault((run.cell, run.impl), Candidate(
            name, [f"model.cell={run.cell}", f"model.impl={run.impl}"], floor=floor))
        candidate.val_accs.append(float(scores["best_val_acc"]))
        candidate.test_accs.append(float(scores["test_acc"]))
        candidate.seeds.append(run.seed)
    return list(by_setting.values())


def tuned_candidates(search_dir: Path) -> list[Candidate]:
    """The search's final runs, one candidate per cell x search trial x implementation."""
    by_setting: dict[tuple[str, int, str], Candidate] = {}
    for path in sorted((search_dir / "final").glob("*.json")):
        run = read_json(path)
        setting = run["setting"]
        shown = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in setting.items())
        candidate = by_setting.setdefault((run["cell"], run["trial"], run["impl"]), Candidate(
            f"tuned {run['cell']} (search trial {run['trial']}, {run['impl']}): {shown}",
            [f"model.cell={run['cell']}", f"model.impl={run['impl']}",
             *(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())]))
        if "diverged" in run:
            candidate.val_accs.append(CHANCE)
            candidate.diverged += 1
        else:
            candidate.val_accs.append(float(run["best_val_acc"]))
            candidate.test_accs.append(float(run["test_acc"]))
        candidate.seeds.append(int(run["seed"]))
    return list(by_setting.values())


def choose(candidates: list[Candidate]) -> Candidate:
    """The recurrent candidate with the highest mean validation accuracy (the first listed among equals); test
    accuracy plays no part, and the floor without recurrence is no candidate (module docstring)."""
    measured = [c for c in candidates if c.val_accs and not c.floor]
    if not measured:
        raise UserError("no recurrent candidate has a recorded run: run `dvc repro` or "
                        "`python -m rnnlab.search.final`")
    return max(measured, key=lambda c: c.mean_val_acc)


def ranked(candidates: list[Candidate]) -> list[Candidate]:
    """By mean validation accuracy, highest first; the unmeasured last."""
    return sorted(candidates, key=lambda c: -(c.mean_val_acc if c.val_accs else -1.0))


def floor_comparison(candidates: list[Candidate], chosen: Candidate) -> list[dict]:
    """Per floor with runs: its rank among the measured candidates, and the chosen one's lead over it in mean
    validation accuracy with a Welch 95% interval over the seeds (None with fewer than two seeds on a side)."""
    measured = [c for c in ranked(candidates) if c.val_accs]
    rows = []
    for floor in (c for c in measured if c.floor):
        lead = chosen.mean_val_acc - floor.mean_val_acc
        interval = None
        if len(chosen.val_accs) > 1 and len(floor.val_accs) > 1:
            welch = stats.ttest_ind(chosen.val_accs, floor.val_accs, equal_var=False)
            low, high = welch.confidence_interval(0.95)
            interval = [float(low), float(high)]
        rows.append({"name": floor.name, "rank": measured.index(floor) + 1, "of": len(measured),
                     "lead": lead, "lead_ci95": interval})
    return rows


def floor_lines(rows: list[dict], chosen: Candidate) -> list[str]:
    if not rows:
        return ["The floor without recurrence (pipeline.baselines) has no runs here: nothing to rank it against."]
    lines = []
    for row in rows:
        ci = (f", 95% interval [{100 * row['lead_ci95'][0]:+.2f}, {100 * row['lead_ci95'][1]:+.2f}]"
              if row["lead_ci95"] else "")
        above = "above" if row["lead"] >= 0 else "below"
        said = ("" if not row["lead_ci95"] else
                ": the interval lies above 0, the recurrent cell beats the floor" if row["lead_ci95"][0] > 0 else
                ": the interval lies below 0, the floor beats the recurrent cell" if row["lead_ci95"][1] < 0 else
                ": the interval includes 0, so on validation the chosen cell is not shown to beat the floor")
        lines.append(f"The {row['name']} ranks {row['rank']} of {row['of']} measured settings; the chosen "
                     f"{chosen.name.split(':')[0]} is {abs(100 * row['lead']):.2f} points {above} it on validation "
                     f"(mean lead {100 * row['lead']:+.2f} points{ci}, Welch, over the seeds){said}.")
    return lines


def markdown(candidates: list[Candidate], chosen: Candidate) -> str:
    lines = ["# `experiment=best`: chosen on validation accuracy alone", "",
             ("Every setting trained over several seeds here, ranked by mean best-epoch validation accuracy (a "
              "diverged seed counts as chance, 0.5). Only the chosen one's test accuracy is shown. A tuned setting "
              "was picked by the search on this validation split, so its figure flatters it (the shared setting's "
              "does not); compare leads with the seeds' spread. The floor without recurrence (the bag of "
              "embeddings) is ranked with them but cannot be chosen: `experiment=best` is a recurrent cell."), "",
             "| candidate | seeds | val acc (mean ± sd) | diverged | |", "| --- | --- | --- | --- | --- |"]
    for c in ranked(candidates):
        figure = f"{c.mean_val_acc:.4f} ± {c.sd_val_acc or 0:.4f}" if c.val_accs else c.note
        seeds = ", ".join(map(str, sorted(c.seeds))) or "–"
        mark = "**chosen**" if c is chosen else "floor (not a candidate)" if c.floor else ""
        lines.append(f"| {c.name} | {seeds} | {figure} | {c.diverged} | {mark} |")
    test = (f"{np.mean(chosen.test_accs):.4f} ± {np.std(chosen.test_accs, ddof=1):.4f}"
            if len(chosen.test_accs) > 1 else f"{chosen.test_accs[0]:.4f}" if chosen.test_accs else "not tested")
    tested = len(chosen.test_accs)
    lines += ["", (f"Chosen: {chosen.name}. Its test accuracy (each of its {tested} trained seeds tested once, "
                   f"when it trained): {test}."),
              f"`experiment=best` sets: {' '.join(chosen.overrides)}.", "",
              *floor_lines(floor_comparison(candidates, chosen), chosen)]
    return "\n".join(lines) + "\n"


def select(cfg: DictConfig) -> tuple[list[Candidate], Candidate]:
    candidates = [*shared_candidates(cfg), *tuned_candidates(Path(cfg.search.dir)),
                  *(Candidate(name, [], note=note) for name, note in UNRECORDED.items())]
    return candidates, choose(candidates)


@hydra_app("comparison.selection")
def main(cfg: DictConfig) -> None:
    candidates, chosen = select(cfg)
    text = markdown(candidates, chosen)
    out = Path(cfg.search.dir)
    write_atomically(out / "experiment_best.md", text)
    write_atomically(out / "experiment_best.json", json.dumps({
        "chosen": chosen.name, "overrides": chosen.overrides, "test_accs": chosen.test_accs,
        "floor": floor_comparison(candidates, chosen),
        "candidates": [{"name": c.name, "overrides": c.overrides, "seeds": c.seeds, "val_accs": c.val_accs,
                        "mean_val_acc": c.mean_val_acc, "sd_val_acc": c.sd_val_acc, "diverged": c.diverged,
                        "note": c.note, "floor": c.floor} for c in candidates]}, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
