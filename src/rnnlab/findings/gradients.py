"""Vanishing gradients, measured: how much the loss still feels a word k steps before the end of a review.

For each cell, the norm of d loss / d x_t (x_t: the embedding fed in at step t) is averaged over real
validation reviews of one common length, as a function of the distance k = T - 1 - t from the last step,
for the model at initialisation (same seed) and after training (the DVC train stage's checkpoint). With
`last` pooling all of the loss enters at the last step, so this is the gradient's survival over k steps.

`reach` is the distance at which the norm first falls below THRESHOLD (1e-3) of its value at the last step
(T, the review length, when it never does: a reach is capped at T). Tiny gradients are measured, not zeroed:
denormal flushing is a training setting (the `cpu_settings` callback) that lives and dies with the training
process, and this process never turns it on.

Per cell of `pipeline.cells` it reads every planned run of one implementation (rnnlab.pipeline), fused if
`pipeline.impls` has it, else its first: one per seed of `pipeline.seeds`, each measured trained and at its own
initialisation; and per parallel-scan cell (`pipeline.scan_cells`) its runs with their one implementation, scan,
measured alike: their reach is shown beside the others', while claim (d) tests the article's cells only. A run
whose training diverged has no trained model: it is left out and named (`diverged`).
gradients.json keeps each seed's curves and reaches (claim (d) judges the reaches over seeds); the figure shows
each cell's geometric mean curve over seeds with the band from the lowest to the highest seed.
Settings: `findings.gradients` (length, reviews) and `paths`.
The baselines (`pipeline.baselines`: the bag of embeddings) are left out: without recurrence a token's gradient
does not depend on its distance from the end (the mean weighs every token alike), so there is no decay to measure.

    python -m rnnlab.findings.gradients [findings.gradients.length=...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from rnnlab.cells import cell_rank  # noqa: E402
from rnnlab.checks import positive_int  # noqa: E402
from rnnlab.cli import UserError, hydra_app  # noqa: E402
from rnnlab.data.arrays import PreparedSplit  # noqa: E402
from rnnlab.data.imdb import ReviewDataset, collate  # noqa: E402
from rnnlab.files import replacing, write_atomically
from rnnlab.models.recurrent_module import RecurrentModule  # noqa: E402
from rnnlab.pipeline import PlannedRun, planned_runs, run_folder  # noqa: E402

THRESHOLD = 1e-3  # the reach: steps back until the norm falls below this fraction of its end value
FLOOR = 1e-45  # about the smallest float32 (a denormal): where an exact zero is drawn and averaged


def review_batch(data_dir: Path, length: int, count: int, vocab_size: int) -> tuple[torch.Tensor, ...]:
    """`count` validation reviews at least `length` tokens long, cut to exactly `length` (last tokens kept)."""
    dataset = ReviewDataset(PreparedSplit.load(data_dir / "val"), length, vocab_size, keep="last")
    long_enough = np.flatnonzero(dataset.lengths == length)[:count]
    if len(long_enough) == 0:
        raise UserError(f"no validation review has {length} tokens: lower findings.gradients.length")
    return collate([dataset[int(k)] for k in long_enough])


def gradient_by_distance(module: RecurrentModule, batch: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Mean over reviews of |d loss / d x_t|, indexed by distance from the last step."""
    tokens, lengths, labels = batch
    module.eval()  # no dropout: the gradient of the function itself
    net = module.net
    inputs = net.embedding(tokens).detach().requires_grad_(True)
    states = net.encoder(inputs, lengths)
    logits = net.decoder(net.pool(states, lengths)).squeeze(-1)
    F.binary_cross_entropy_with_logits(logits, labels, reduction="sum").backward()
    norms = inputs.grad.norm(dim=-1).mean(dim=0)  # [T]
    return norms.flip(0).double().numpy()  # distance 0 = the last step


def reach(norms: np.ndarray) -> int:
    below = np.flatnonzero(norms < THRESHOLD * norms[0])
    return int(below[0]) if len(below) else len(norms)


def measure_run(run_dir: Path, data_dir: Path, length: int, count: int) -> tuple[str, int, dict, int]:
    """One run's cell, seed, both curves (at its initialisation and trained) and how many reviews were averaged."""
    trained = RecurrentModule.load_from_checkpoint(run_dir / "model.ckpt", map_location="cpu", weights_only=True)
    settings = dict(trained.hparams)
    if settings.get("pooling") != "last":
        print(f"gradients: note: {run_dir.name} pools with {settings.get('pooling')!r}, not 'last'; "
              "the loss then enters at every step", file=sys.stderr)
    seed = int(json.loads((run_dir / "metrics.json").read_text())["seed"])
    torch.manual_seed(seed)
    initial = RecurrentModule(**settings)  # the same seed gives the run's own starting weights
    batch = review_batch(data_dir, length, count, settings["vocab_size"])
    curves = {"init": gradient_by_distance(initial, batch), "trained": gradient_by_distance(trained, batch)}
    return settings["cell"], seed, curves, len(batch[0])


def mean_curve(curves: list[np.ndarray]) -> np.ndarray:
    """The geometric mean over seeds: the curves span many decades, so they are averaged on the log scale the
    figure shows (an exact zero counts as the smallest float32, FLOOR)."""
    return np.exp(np.mean(np.log(np.maximum(np.array(curves), FLOOR)), axis=0))


def measure(run_dirs: dict[str, list[Path]], data_dir: Path, length: int, count: int,
            diverged: dict[str, list[str]] | None = None) -> dict:
    """Per cell, every run's curves and reaches by seed (`seeds`, and `*_reach` / `*_by_seed` in that order), the
    mean curves (`init`, `trained`) and the diverged runs left out; `reviews`: how many reviews were averaged."""
    cells = {}
    for cell_dirs in run_dirs.values():
        measured = [measure_run(run_dir, data_dir, length, count) for run_dir in cell_dirs]
        cell = measured[0][0]
        found = {"seeds": [seed for _, seed, _, _ in measured], "diverged": (diverged or {}).get(cell, [])}
        for name in ("init", "trained"):
            curves = [curve[name] for _, _, curve, _ in measured]
            found[name] = mean_curve(curves).tolist()
            found[f"{name}_reach"] = [reach(curve) for curve in curves]
            found[f"{name}_by_seed"] = [curve.tolist() for curve in curves]
        cells[cell] = found
        reviews = measured[0][3]  # the same reviews for every run: those of the validation split this long
    return {"distance": list(range(length)), "threshold": THRESHOLD, "cap": length, "reviews": reviews,
            "cells": cells}


def plot(result: dict, path: Path) -> None:
    cells = result["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.5), sharey=True, squeeze=False)
    for ax, (cell, curves) in zip(axes[0], cells.items()):
        for name in ("init", "trained"):
            by_seed = np.maximum(np.array(curves[f"{name}_by_seed"]), FLOOR)  # log axis: a zero would vanish
            reaches = ", ".join(map(str, curves[f"{name}_reach"]))
            line, = ax.plot(result["distance"], np.maximum(curves[name], FLOOR), label=f"{name} (reach {reaches})")
            ax.fill_between(result["distance"], by_seed.min(axis=0), by_seed.max(axis=0), color=line.get_color(),
                            alpha=0.2, linewidth=0)
        seeds = curves["seeds"]
        ax.set(yscale="log", xlabel="distance from the last step",
               title=f"{cell} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0][0].set_ylabel("|d loss / d x_t|, mean over reviews")
    fig.suptitle("Gradient reaching each input step: geometric mean over seeds, band from lowest to highest")
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)


def pick_runs(pipeline: DictConfig) -> list[PlannedRun]:
    """The cells' planned runs of one implementation, fused if the pipeline trains it, else its first, and the
    parallel-scan cells' (scan, their one implementation in the pipeline); by seed."""
    try:
        runs = planned_runs(pipeline)
    except ValueError as e:
        raise UserError(str(e)) from e
    impl = "fused" if "fused" in pipeline.impls else pipeline.impls[0]
    return sorted((run for run in runs if run.impl == impl or run.cell in (pipeline.get("scan_cells") or [])),
                  key=lambda run: run.seed)


def run_dirs(train_dir: Path, runs: list[PlannedRun]) -> tuple[dict[str, list[Path]], dict[str, list[str]]]:
    """Per cell (in cell order), the train stage's folders of its runs (in `runs`' order) whose training did not
    diverge, and the names of those that diverged: a diverged run's model (rnnlab.run.export.export_diverged) is
    no trained model. UserError if a run lacks its checkpoint or metrics, or every run of a cell diverged."""
    folders: dict[str, list[Path]] = {}
    diverged: dict[str, list[str]] = {}
    for run in runs:
        folder = run_folder(train_dir, run)
        for name in ("model.ckpt", "metrics.json"):
            if not (folder / name).is_file():
                raise UserError(f"{folder / name} does not exist: run `dvc repro {run.stage}` first")
        if "diverged" in json.loads((folder / "metrics.json").read_text()):
            diverged.setdefault(run.cell, []).append(run.name)
        else:
            folders.setdefault(run.cell, []).append(folder)
    failed = sorted(set(diverged) - set(folders))
    if failed:
        names = [name for cell in failed for name in diverged[cell]]
        raise UserError(f"every run of {', '.join(failed)} diverged ({', '.join(names)}): no trained model to measure")
    return {cell: folders[cell] for cell in sorted(folders, key=cell_rank)}, diverged


@hydra_app("gradients")
def main(cfg: DictConfig) -> None:
    settings, paths = cfg.findings.gradients, cfg.paths
    try:
        length = positive_int("findings.gradients.length", settings.length)
        count = positive_int("findings.gradients.reviews", settings.reviews)
    except ValueError as e:
        raise UserError(str(e)) from e
    folders, diverged = run_dirs(Path(paths.train_dir), pick_runs(cfg.pipeline))
    for cell, names in diverged.items():
        print(f"gradients: note: left out, training diverged: {', '.join(names)}", file=sys.stderr)
    result = measure(folders, Path(paths.prepared_dir), length, count, diverged)
    out = Path(paths.findings_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "gradients.json", json.dumps(result) + "\n")
    plot(result, out / "gradients.png")
    for cell, curves in result["cells"].items():
        print(f"{cell}, seeds {curves['seeds']}: gradient falls below {THRESHOLD:g} of its end value after "
              f"{curves['init_reach']} steps at init, {curves['trained_reach']} trained (cap {length})")


if __name__ == "__main__":
    main()
