"""The article's own setup, reproduced: each cell trained as the article's Keras models were, over seeds.

    python -m rnnlab.findings.article
    python -m rnnlab.findings.article 'findings.article.seeds=[0,1,2,3,4]' model.init=pytorch

Every cell of `pipeline.cells` runs `experiment=article` (conf/experiment/article.yaml: Keras's vocabulary, lengths,
sizes, RMSprop, epochs and initialisation) for each seed of `findings.article.seeds`, with
`findings.article.overrides` and this command's own overrides (MLflow experiment `article`). Each run's result
goes to <paths.findings_dir>/article/<cell>-seed<k>.json as it ends, and a rerun trains only the runs missing (or
whose settings changed), so the command may be stopped and run again. Then article.md: test accuracy per cell
(mean ± sd, 95% interval over seeds) and training time, next to the figure the article reported where rnnlab
records it.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.cells import CELL_NAMES, CELLS, cell_rank
from rnnlab.cli import UserError, hydra_app
from rnnlab.comparison.claims import describe
from rnnlab.composition import command_overrides, compose_config
from rnnlab.files import write_atomically
from rnnlab.identity import result_settings, settings_sha256
from rnnlab.train import train

EXPERIMENT = "article"
# What the article reported with Keras on a GPU, as far as rnnlab's records go (issue 11 quotes the SimpleRNN's).
REPORTED_TEST_ACC = {"rnn": 0.82}


def run_config(cfg: DictConfig, cell: str, seed: int) -> DictConfig:
    return compose_config(["experiment=article", *command_overrides("findings."), f"model.cell={cell}", f"seed={seed}",
                           *cfg.findings.article.overrides, f"logger.experiment_name={EXPERIMENT}",
                           f"logger.run_name=article-{cell}-seed{seed}"])


def run_all(cfg: DictConfig, out: Path) -> list[dict]:
    """Every cell x seed, seed by seed (a sitting stopped part-way leaves every cell as many seeds)."""
    results = []
    for seed in cfg.findings.article.seeds:
        for cell in cfg.pipeline.cells:
            run_cfg = run_config(cfg, cell, seed)
            path = out / f"{cell}-seed{seed}.json"
            stored = json.loads(path.read_text()) if path.is_file() else None
            if stored is None or stored.get("settings_sha256") != settings_sha256(run_cfg):
                result = train(run_cfg)
                stored = {"cell": cell, "seed": seed, "impl": run_cfg.model.impl, "init": run_cfg.model.init,
                          **result.metrics, "mlflow_run_id": result.run_id, "history": result.history,
                          "settings": result_settings(run_cfg), "settings_sha256": settings_sha256(run_cfg)}
                write_atomically(path, json.dumps(stored, indent=2) + "\n")
            results.append(stored)
    return results


def markdown(results: list[dict]) -> str:
    first = results[0]["settings"]
    model, data = first["model"], first["data"]
    lines = ["# The article's setup, reproduced", "",
             f"`experiment=article`: vocabulary {data['vocab_size']}, max_len {data['max_len']}, embedding "
             f"{model['embedding_dim']}, hidden {model['hidden_size']}, {model['pooling']} pooling, "
             f"{model['optimizer']['_target_'].split('.')[-1]} lr {model['optimizer']['lr']}, batch "
             f"{data['batch_size']}, {first['trainer']['max_epochs']} epochs, init {model['init']}, impl "
             f"{model['impl']}.", "",
             "| cell | seeds | test accuracy (mean ± sd) | 95% interval | training time (s) | the article |",
             "| --- | --- | --- | --- | --- | --- |"]
    for cell in sorted({r["cell"] for r in results}, key=cell_rank):
        runs = [r for r in results if r["cell"] == cell]
        acc, time = describe([r["test_acc"] for r in runs]), describe([r["fit_time_s"] for r in runs])
        interval = f"[{acc['ci95'][0]:.4f}, {acc['ci95'][1]:.4f}]" if acc["ci95"] else "n/a"
        reported = f"{REPORTED_TEST_ACC[cell]:.2f}" if cell in REPORTED_TEST_ACC else "not recorded here"
        lines.append(f"| {CELLS[cell].title} | {acc['n']} | {acc['mean']:.4f} ± {acc['sd'] or 0:.4f} | {interval} | "
                     f"{time['mean']:.0f} | {reported} |")
    return "\n".join(lines) + "\n"


@hydra_app("article")
def main(cfg: DictConfig) -> None:
    settings = cfg.findings.article
    if not settings.seeds or any(not isinstance(s, int) for s in settings.seeds):
        raise UserError(f"findings.article.seeds={list(settings.seeds)} must list integer seeds")
    # The recurrent cells only: the baselines (pipeline.baselines, no recurrence) have no memory to test here
    unknown = [cell for cell in cfg.pipeline.cells if cell not in CELL_NAMES]
    if unknown:
        raise UserError(f"pipeline.cells lists unknown cells {unknown}: choose from {' | '.join(CELL_NAMES)}")
    out = Path(cfg.paths.findings_dir) / "article"
    results = run_all(cfg, out)
    text = markdown(results)
    write_atomically(out.parent / "article.md", text)
    write_atomically(out.parent / "article.json", json.dumps(
        {"runs": [{k: v for k, v in r.items() if k != "history"} for r in results]}, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
