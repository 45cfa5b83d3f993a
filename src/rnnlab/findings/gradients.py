"""Vanishing gradients, measured: how much the loss still feels a word k steps before the end of a review.

For each cell, the norm of d loss / d x_t (x_t: the embedding fed in at step t) is averaged over real
validation reviews of one common length, as a function of the distance k = T - 1 - t from the last step,
for the model at initialisation (same seed) and after training (the DVC train stage's checkpoint). With
`last` pooling all of the loss enters at the last step, so this is the gradient's survival over k steps.

`reach` is the distance at which the norm first falls below 1e-3 of its value at the last step (T when it
never does). Denormal flushing is left off here so tiny gradients are measured rather than zeroed.

    python -m rnnlab.findings.gradients data/train --out data/findings

Per cell it takes the run with the lowest seed, preferring the fused implementation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rnnlab.data.arrays import PreparedSplit  # noqa: E402
from rnnlab.data.datamodule import ReviewDataset, collate  # noqa: E402
from rnnlab.module import SentimentClassifier  # noqa: E402

THRESHOLD = 1e-3


def review_batch(data_dir: Path, length: int, count: int, vocab_size: int) -> tuple[torch.Tensor, ...]:
    """`count` validation reviews at least `length` tokens long, cut to exactly `length` (last tokens kept)."""
    dataset = ReviewDataset(PreparedSplit.load(data_dir / "val"), length, vocab_size, keep="last")
    long_enough = np.flatnonzero(dataset.lengths == length)[:count]
    if len(long_enough) == 0:
        raise SystemExit(f"gradients: error: no validation review has {length} tokens: lower --length")
    return collate([dataset[int(k)] for k in long_enough])


def gradient_by_distance(module: SentimentClassifier, batch: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Mean over reviews of |d loss / d x_t|, indexed by distance from the last step."""
    tokens, lengths, labels = batch
    module.eval()  # no dropout: the gradient of the function itself
    inputs = module.net.embedding(tokens).detach().requires_grad_(True)
    states = module.net.encoder(inputs, lengths)
    logits = module.net.decoder(module.net.pool(states, lengths)).squeeze(-1)
    F.binary_cross_entropy_with_logits(logits, labels, reduction="sum").backward()
    norms = inputs.grad.norm(dim=-1).mean(dim=0)  # [T]
    return norms.flip(0).double().numpy()  # distance 0 = the last step


def reach(norms: np.ndarray) -> int:
    below = np.flatnonzero(norms < THRESHOLD * norms[0])
    return int(below[0]) if len(below) else len(norms)


def measure(run_dirs: list[Path], data_dir: Path, length: int, count: int) -> dict:
    torch.set_flush_denormal(False)
    cells = {}
    for run_dir in run_dirs:
        trained = SentimentClassifier.load_from_checkpoint(run_dir / "model.ckpt", map_location="cpu")
        settings = dict(trained.hparams)
        if settings.get("pooling") != "last":
            print(f"gradients: note: {run_dir.name} pools with {settings.get('pooling')!r}, not 'last'; "
                  "the loss then enters at every step", file=sys.stderr)
        torch.manual_seed(json.loads((run_dir / "metrics.json").read_text())["seed"])
        initial = SentimentClassifier(**settings)  # the same seed gives the run's own starting weights
        batch = review_batch(data_dir, length, count, settings["vocab_size"])
        curves = {"init": gradient_by_distance(initial, batch), "trained": gradient_by_distance(trained, batch)}
        cells[settings["cell"]] = {
            **{name: curve.tolist() for name, curve in curves.items()},
            **{f"{name}_reach": reach(curve) for name, curve in curves.items()},
        }
    return {"distance": list(range(length)), "threshold": THRESHOLD, "reviews": count, "cells": cells}


def plot(result: dict, path: Path) -> None:
    cells = result["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.5), sharey=True, squeeze=False)
    for ax, (cell, curves) in zip(axes[0], cells.items()):
        for name in ("init", "trained"):
            values = np.maximum(np.array(curves[name]), 1e-45)  # log axis: an exact zero would vanish
            ax.plot(result["distance"], values, label=f"{name} (reach {curves[f'{name}_reach']})")
        ax.set(yscale="log", xlabel="distance from the last step", title=cell)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0][0].set_ylabel("|d loss / d x_t|, mean over reviews")
    fig.suptitle("Gradient reaching each input step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pick_runs(train_dir: Path) -> list[Path]:
    """One run folder per cell: the lowest seed, fused before explicit."""
    chosen: dict[str, tuple] = {}
    for metrics_path in sorted(train_dir.glob("*/metrics.json")):
        run = json.loads(metrics_path.read_text())
        key = (run["impl"] != "fused", run["seed"])
        if run["cell"] not in chosen or key < chosen[run["cell"]][0]:
            chosen[run["cell"]] = (key, metrics_path.parent)
    return [folder for _, folder in chosen.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path, help="folder of train stage outputs (<run>/model.ckpt, metrics.json)")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--length", type=int, default=400, help="review length (steps) measured")
    parser.add_argument("--reviews", type=int, default=128, help="how many reviews to average over")
    parser.add_argument("--out", type=Path, default=Path("data/findings"))
    args = parser.parse_args(argv)
    runs = pick_runs(args.train_dir)
    missing = [run for run in runs if not (run / "model.ckpt").is_file()]
    if not runs or missing:
        print(f"gradients: error: no trained model in {missing[0] if missing else args.train_dir}: "
              "run `dvc repro train` first", file=sys.stderr)
        return 1
    result = measure(runs, args.data, args.length, args.reviews)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gradients.json").write_text(json.dumps(result) + "\n")
    plot(result, args.out / "gradients.png")
    for cell, curves in result["cells"].items():
        print(f"{cell}: gradient falls below {THRESHOLD:g} of its end value after "
              f"{curves['init_reach']} steps at init, {curves['trained_reach']} trained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
