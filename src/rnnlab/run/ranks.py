"""One plan for every DDP rank: under torchrun or srun every rank runs the training command, rank 0 plans."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only

from rnnlab.cli import UserError
from rnnlab.run.plan import RunPlan, plan_run


def every_rank_runs_this_command(trainer: pl.Trainer) -> bool:
    """Whether a launcher started each DDP process, and each runs the whole command (torchrun, srun:
    trainer=multinode), rather than this process training alone or starting its workers itself (ddp_spawn)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None or trainer.world_size == 1:
        return False
    if environment.creates_processes_externally:
        return True
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher):
        # Lightning would start the other ranks itself, by running this command again in each, only once this
        # process is training: they could not follow its plan (and under -m each would rerun the whole sweep)
        raise UserError("trainer.strategy=ddp needs a launcher that starts every process (torchrun, srun: "
                        "trainer=multinode); on one machine use trainer=ddp or trainer=ddp_sim (ddp_spawn)")
    return False


def plan_on_rank_zero(cfg: DictConfig, data_sha256: str | None, model: torch.nn.Module) -> RunPlan | None:
    """`plan_run` in the process of global rank 0; None in the others. Under torchrun or srun every rank runs the
    training command, numbered by its launcher (RANK, SLURM_PROCID: Lightning's `rank_zero_only.rank`), and only
    rank 0 may choose the run and claim it in the store; the others learn its plan from it (`follow_rank_zero`).
    Called before the trainer exists, so that a bad `resume` is refused before Lightning prints anything."""
    return plan_run(cfg, data_sha256, model) if rank_zero_only.rank == 0 else None


def follow_rank_zero(trainer: pl.Trainer, plan: RunPlan | None) -> RunPlan:
    """Rank 0's plan on every rank when each runs this command (`every_rank_runs_this_command`): sent through
    Lightning's process group, set up here as `fit` would (and reused by it), so that every rank resumes the same
    run from the same checkpoint. A new run is created by rank 0's logger alone."""
    if not every_rank_runs_this_command(trainer):
        if plan is None:
            raise UserError(f"this process is rank {rank_zero_only.rank} of those a launcher (torchrun, srun) "
                            "started, but its trainer trains alone: use trainer=multinode, or start one process")
        return plan
    trainer.strategy.setup_environment()
    # An MLflow client does not travel: each rank opens its own (the store exists by now, made by rank 0)
    decided = (replace(plan, client=None), plan.checkpoint) if plan is not None else None
    followed, checkpoint = trainer.strategy.broadcast(decided)
    if plan is not None:
        return plan
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"rank {trainer.global_rank} cannot read {checkpoint}, the checkpoint the run resumes from: "
                        "set paths.checkpoint_dir to a folder every node shares")
    return replace(followed, client=mlflow.MlflowClient(followed.tracking_uri))
