"""Multi-node DDP (trainer=multinode) started by real launchers, and bf16 mixed precision.

Under torchrun and srun every process runs the whole `python -m rnnlab.train` command; rank 0 chooses and records
the MLflow run, the others follow it. Two CPU processes over gloo on this machine, started by torchrun or as the
two tasks of a SLURM job step on a local cluster (scripts/slurm_local.sh, real daemons), must train one run to the
same numbers as trainer=ddp_sim, where the main process spawns its two workers itself (ddp_spawn), with the same
seed. The same numbers exactly, not within a tolerance: both give each rank the same batches (same seed and
epoch, rank-sharded by BucketBatchSampler), the same initial weights and dropout draws, and average two gradients
with gloo, whose sum of two floats does not depend on their order; only who starts the processes differs. A
tolerance would let a rank that reads the wrong batches pass.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tests.helpers.training import compose_tiny, outcome, runs, tiny_overrides

EPOCHS = 2
# Two batches per rank and epoch, and dropout: each rank's batches and random draws are part of what must match.
SETTINGS = [f"trainer.max_epochs={EPOCHS}", "data.batch_size=2", "model.dropout=0.3"]
# trainer=multinode for 2 CPU processes on this machine, as conf/trainer/multinode.yaml documents
MULTINODE = ["trainer=multinode", "trainer.accelerator=cpu", "trainer.num_nodes=1", "trainer.devices=2"]
COMPARED = ("test_acc", "test_loss", "best_val_acc")  # the clocks (fit_time_s, ...) never match


def train_command(prepared_dir: Path, store: Path, *overrides: str) -> list[str]:
    return ["-m", "rnnlab.train", *tiny_overrides(prepared_dir, store), *SETTINGS, *overrides,
            f"hydra.run.dir={store}/out"]


def run_command(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ddp_sim(prepared_dir, tmp_path_factory) -> dict:
    """The reference: trainer=ddp_sim, the main process spawning two workers."""
    store = tmp_path_factory.mktemp("ddp-sim")
    result = run_command([sys.executable, *train_command(prepared_dir, store, "trainer=ddp_sim")], cwd=store)
    assert result.returncode == 0, result.stderr[-3000:]
    return outcome(store)


def assert_same_training(found: dict, reference: dict, stderr: str) -> None:
    """One FINISHED run, trained by ranks 0 and 1, to the reference's numbers."""
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in stderr and "GLOBAL_RANK: 1, MEMBER: 2/2" in stderr, stderr[-3000:]
    assert found["status"] == "FINISHED"
    assert found["tags"]["rnnlab.attempt"] == "1"
    assert {name: found["metrics"][name] for name in COMPARED} == {name: reference["metrics"][name]
                                                                  for name in COMPARED}
    assert found["history"] == reference["history"]  # train_loss, val_loss, val_acc: every epoch, every bit
    assert len(found["history"]["train_loss"]) == EPOCHS
    assert found["params"]["trainer.epochs_trained"] == str(EPOCHS)  # the run's counts are params
    assert found["params"]["model.n_params"] == reference["params"]["model.n_params"]
    print({name: found["metrics"][name] for name in COMPARED}, found["history"])


@pytest.mark.slow
def test_torchrun_trains_one_run_as_ddp_sim_does(prepared_dir, tmp_path, ddp_sim):
    # `python -m torch.distributed.run` is `torchrun`, with this interpreter
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               *train_command(prepared_dir, tmp_path, *MULTINODE)]
    result = run_command(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [_] = runs(tmp_path)  # two processes, one MLflow run
    assert_same_training(outcome(tmp_path), ddp_sim, result.stderr)
    assert not (tmp_path / "checkpoints").exists()  # rank 0 removed the run's checkpoints once it finished


@pytest.mark.slow
def test_a_two_task_slurm_job_trains_one_run_as_ddp_sim_does(cluster, prepared_dir, tmp_path, ddp_sim):
    # The two tasks of one job step on the one node; Lightning takes ranks, address and port from SLURM.
    command = ["srun", "--nodes=1", "--ntasks-per-node=2", "--kill-on-bad-exit=1", "--job-name=rnnlab-ddp",
               sys.executable, *train_command(prepared_dir, tmp_path, *MULTINODE)]
    result = run_command(command, cwd=tmp_path, env=cluster.env)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(tmp_path)
    job = run.data.tags["rnnlab.slurm_job"].split(".")[0]
    assert [j["JobState"] for j in cluster.jobs() if j["JobId"] == job] == ["COMPLETED"], cluster.jobs()
    assert_same_training(outcome(tmp_path), ddp_sim, result.stderr)


@pytest.mark.parametrize("impl", ["fused", "explicit", "sequence"])
def test_bf16_mixed_precision_trains_every_implementation(prepared_dir, tmp_path, impl):
    """trainer.precision=bf16-mixed on CPU: Lightning's autocast is on in training (the network's output is
    bfloat16) but the recurrent layers run in float32 (rnnlab.models.encoder), and the run finishes with finite
    numbers. The sequence kernel takes float32 only: it must still run, not fall back to the explicit cells."""
    import pytorch_lightning as pl

    from rnnlab.train import train

    class OutputDtypes(pl.Callback):
        seen: set[torch.dtype] = set()
        recurrent: set[torch.dtype] = set()

        def on_fit_start(self, trainer, pl_module) -> None:
            pl_module.net.decoder.register_forward_hook(lambda module, args, out: self.seen.add(out.dtype))
            for directions in pl_module.net.encoder.layers:
                for layer in directions:
                    layer.register_forward_hook(lambda module, args, out: self.recurrent.add(
                        (out[0] if isinstance(out, tuple) else out).dtype))

    cfg = compose_tiny(prepared_dir, tmp_path, f"model.impl={impl}", "trainer.precision=bf16-mixed",
                       "trainer.max_epochs=1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(cfg, callbacks=[OutputDtypes()])
    assert torch.bfloat16 in OutputDtypes.seen and OutputDtypes.recurrent == {torch.float32}
    assert not [w for w in caught if "running the explicit cells instead" in str(w.message)]
    [run] = runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["trainer.precision"] == "bf16-mixed"
    assert all(math.isfinite(result.metrics[name]) for name in ("test_loss", "test_acc", "best_val_acc"))
    assert all(math.isfinite(loss) for loss in result.history["train_loss"])


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_mixed_on_gpu_keeps_cudnn_packed_sequences(prepared_dir, tmp_path):
    """On a GPU, model.impl=fused feeds cuDNN packed sequences (rnnlab.models.encoder), under autocast too."""
    import pytorch_lightning as pl
    from torch.nn.utils.rnn import PackedSequence

    from rnnlab.train import train

    class PackedInputs(pl.Callback):
        seen: list[bool] = []

        def on_fit_start(self, trainer, pl_module) -> None:
            for directions in pl_module.net.encoder.layers:
                for rnn in directions:
                    rnn.register_forward_pre_hook(
                        lambda module, args: self.seen.append(isinstance(args[0], PackedSequence)))

    cfg = compose_tiny(prepared_dir, tmp_path, "trainer=gpu", "model.impl=fused", "trainer.precision=bf16-mixed")
    result = train(cfg, callbacks=[PackedInputs()])
    assert PackedInputs.seen and all(PackedInputs.seen)
    assert math.isfinite(result.metrics["test_loss"])
