"""One source of truth: params.yaml (read by DVC) must be exactly conf/ (read by Hydra) composed."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from rnnlab.cli import UserError
from rnnlab.params import compose_params
from rnnlab.pipeline import planned_runs
from rnnlab.train import check_trainer_settings
from tests.helpers.project import PROJECT_ROOT


def test_params_yaml_is_conf_composed(tmp_path):
    composed = tmp_path / "params.yaml"
    compose_params(composed)
    assert composed.read_text() == (PROJECT_ROOT / "params.yaml").read_text(), (
        "params.yaml has drifted from conf/: run `python -m rnnlab.params` and commit the result"
    )


def stage_configs(params: Path) -> dict[str, DictConfig]:
    """Each train stage's config as `dvc repro` runs it: params.yaml with the stage's own overrides (dvc.yaml)."""
    from hydra import compose, initialize_config_dir

    composed = yaml.safe_load(params.read_text())
    configs = {}
    with initialize_config_dir(str(params.parent), version_base="1.3"):
        for run in planned_runs(OmegaConf.create(composed["pipeline"])):
            configs[run.name] = compose(params.stem, overrides=[
                f"model.cell={run.cell}", f"model.impl={run.impl}", f"seed={run.seed}", f"data.seed={run.seed}"])
    return configs


def test_the_pipeline_on_gpus_as_the_readme_says(tmp_path):
    """`dvc exp run -S trainer=gpu -S 'pipeline.impls=[fused,explicit]'` (README "Scaling out"): DVC composes
    params.yaml with these overrides (hydra.enabled), and every train stage it defines trains on a GPU and is
    accepted. With the default impls the `sequence` stages would be refused (one line), not mislabelled."""
    on_gpus = tmp_path / "gpu" / "params.yaml"
    on_gpus.parent.mkdir()
    compose_params(on_gpus, ["trainer=gpu", "pipeline.impls=[fused,explicit]"])
    configs = stage_configs(on_gpus)
    # 3 cells x 2 impls x 3 seeds, and the bag of embeddings (impl plain) once per seed
    assert len(configs) == 21 and {cfg.model.impl for cfg in configs.values()} == {"fused", "explicit", "plain"}
    for cfg in configs.values():
        assert cfg.trainer.accelerator == "gpu"
        check_trainer_settings(cfg)
    plain = tmp_path / "plain" / "params.yaml"
    plain.parent.mkdir()
    compose_params(plain, ["trainer=gpu"])
    refused = []
    for name, cfg in stage_configs(plain).items():
        try:
            check_trainer_settings(cfg)
        except UserError:
            refused.append(name)
    assert refused and all("-sequence-" in name for name in refused) and len(refused) == 9
