"""The load a measurement ran under: a time taken while other processes shared the CPU says so.

- `OtherLoad` (a `with` block): other processes' share of the machine's CPU while the block ran, the load average
  before and after, and this process's own CPU time (its finished children included) against the wall time.
  The benchmark and the timing stage (`python -m rnnlab.timing`) wrap each measurement in one.
- `RunLoad` (a callback of every training run, beside `TrainingTimer`): the same per epoch and over the fit,
  logged to MLflow (`epoch_load_avg`, `epoch_cpu_share`, `epoch_other_cpu_pct` by step; `fit_load_avg`,
  `fit_cpu_share`, `fit_other_cpu_pct` once) with the tag `rnnlab.timing`: "comparable", or "not comparable: <why>"
  (`load_problem`). The train stage's metrics.json carries both, and compare's table flags such runs.
"""

from __future__ import annotations

import os
import time

import psutil
import pytorch_lightning as pl
import torch

from rnnlab.run.tags import TIMING

# Other processes taking more of the CPU than this while a model was measured make its figures suspect:
# on 2 cores every per-timestep OpenMP barrier waits for a descheduled thread.
DISTURBED_PCT = 5.0
COMPARABLE = "comparable"


def cpu_busy(times) -> float:
    """Seconds the machine's CPUs were not idle (stolen by the hypervisor included)."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already counted in user/nice
    return sum(times) - idle - guest


def own_cpu(times) -> float:
    """CPU seconds of this process and its finished children (every benchmark run is a child)."""
    return times.user + times.system + times.children_user + times.children_system


def other_pct(busy_s: float, own_s: float, wall_s: float) -> float:
    """Other processes' share of the machine's CPU time over `wall_s`, in percent (0 when nothing elapsed)."""
    capacity = wall_s * psutil.cpu_count()
    return max(0.0, 100 * (busy_s - own_s) / capacity) if capacity > 0 else 0.0


class OtherLoad:
    """What the block ran under: `pct` (other processes' share of the machine's CPU time, in percent),
    `load_before` / `load_after` (the 1, 5, 15-minute load averages), `own_cpu_s` and `wall_s`."""

    def __enter__(self) -> OtherLoad:
        self.load_before = os.getloadavg()
        self.machine, self.own, self.start = psutil.cpu_times(), psutil.Process().cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        machine, own = psutil.cpu_times(), psutil.Process().cpu_times()
        self.wall_s = time.perf_counter() - self.start
        self.own_cpu_s = own_cpu(own) - own_cpu(self.own)
        self.pct = other_pct(cpu_busy(machine) - cpu_busy(self.machine), self.own_cpu_s, self.wall_s)
        self.load_after = os.getloadavg()

    def record(self) -> dict:
        """As data, for a JSON report."""
        return {"other_cpu_pct": round(self.pct, 1), "disturbed": self.pct > DISTURBED_PCT,
                "load_avg_before": [round(x, 2) for x in self.load_before],
                "load_avg_after": [round(x, 2) for x in self.load_after],
                "own_cpu_s": round(self.own_cpu_s, 2), "wall_s": round(self.wall_s, 2),
                "own_cpu_per_wall": round(self.own_cpu_s / self.wall_s, 3) if self.wall_s else None,
                "cores": psutil.cpu_count()}


def load_problem(load_avg: float | None, other_cpu_pct: float | None, cores: int) -> str | None:
    """Why a run's times are not comparable with others' (None: they are): its mean 1-minute load average
    above the machine's cores (more runnable threads than cores), or other processes taking more than
    DISTURBED_PCT of the machine's CPU while it trained. A figure not measured (None) says nothing."""
    problems = []
    if load_avg is not None and load_avg > cores:
        problems.append(f"load average {load_avg:.2f} > {cores} cores")
    if other_cpu_pct is not None and other_cpu_pct > DISTURBED_PCT:
        problems.append(f"other processes took {other_cpu_pct:.0f}% of the CPU (> {DISTURBED_PCT:g}%)")
    return "; ".join(problems) or None


class RunLoad(pl.Callback):
    """Records the load each epoch and the fit ran under (module docstring). Its totals are part of a checkpoint's
    state, as TrainingTimer's: a resumed run's figures cover every epoch it kept.

    cpu share: this process's CPU seconds over (wall seconds x torch's threads); below 1 when its threads waited
    for a core, or for each other. Under DDP the other ranks are other processes: the other-process share is
    not recorded there.
    """

    def __init__(self) -> None:
        self.totals = {"wall_s": 0.0, "own_cpu_s": 0.0, "busy_s": 0.0, "load_sum": 0.0, "epochs": 0}
        self.mark: tuple | None = None

    def state_dict(self) -> dict:
        return dict(self.totals)

    def load_state_dict(self, state_dict: dict) -> None:
        self.totals.update(state_dict)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.mark = (time.perf_counter(), own_cpu(psutil.Process().cpu_times()), cpu_busy(psutil.cpu_times()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.mark is None:
            return
        start, own_start, busy_start = self.mark
        wall = time.perf_counter() - start
        own = own_cpu(psutil.Process().cpu_times()) - own_start
        busy = cpu_busy(psutil.cpu_times()) - busy_start
        load = os.getloadavg()[0]
        for key, value in (("wall_s", wall), ("own_cpu_s", own), ("busy_s", busy), ("load_sum", load),
                           ("epochs", 1)):
            self.totals[key] += value
        epoch = {"epoch_load_avg": load, "epoch_cpu_share": own / (wall * torch.get_num_threads()) if wall else 0.0}
        if trainer.world_size == 1:
            epoch["epoch_other_cpu_pct"] = other_pct(busy, own, wall)
        for name, value in epoch.items():
            pl_module.log(name, value, on_epoch=True, rank_zero_only=True)

    def summary(self, world_size: int) -> dict[str, float]:
        """The fit's figures: mean load average over its epochs, CPU share and other processes' share over them."""
        t = self.totals
        if not t["epochs"] or not t["wall_s"]:
            return {}
        figures = {"fit_load_avg": t["load_sum"] / t["epochs"],
                   "fit_cpu_share": t["own_cpu_s"] / (t["wall_s"] * torch.get_num_threads())}
        if world_size == 1:
            figures["fit_other_cpu_pct"] = other_pct(t["busy_s"], t["own_cpu_s"], t["wall_s"])
        return figures

    def on_fit_end(self, trainer, pl_module) -> None:
        figures = self.summary(trainer.world_size)
        if not figures:
            return
        problem = load_problem(figures["fit_load_avg"], figures.get("fit_other_cpu_pct"), psutil.cpu_count())
        for logger in trainer.loggers:
            logger.log_metrics(figures, step=trainer.global_step)
            if trainer.is_global_zero and hasattr(logger, "run_id") and logger.run_id:
                logger.experiment.set_tag(logger.run_id, TIMING,
                                          COMPARABLE if problem is None else f"not {COMPARABLE}: {problem}")
