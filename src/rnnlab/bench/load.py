"""Other processes' share of the CPU while a measurement runs: a figure taken under load says so."""

from __future__ import annotations

import time

import psutil

# Other processes taking more of the CPU than this while a model was measured make its figures suspect:
# on 2 cores every per-timestep OpenMP barrier waits for a descheduled thread.
DISTURBED_PCT = 5.0


def cpu_busy(times) -> float:
    """Seconds the machine's CPUs were not idle (stolen by the hypervisor included)."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already counted in user/nice
    return sum(times) - idle - guest


def own_cpu(times) -> float:
    """CPU seconds of this process and its finished children (every benchmark run is a child)."""
    return times.user + times.system + times.children_user + times.children_system


class OtherLoad:
    """The share of the machine's CPU time that other processes used while the block ran, in percent."""

    def __enter__(self) -> OtherLoad:
        self.machine, self.own, self.start = psutil.cpu_times(), psutil.Process().cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        machine, own = psutil.cpu_times(), psutil.Process().cpu_times()
        busy = cpu_busy(machine) - cpu_busy(self.machine)
        own_busy = own_cpu(own) - own_cpu(self.own)
        wall = (time.perf_counter() - self.start) * psutil.cpu_count()
        self.pct = max(0.0, 100 * (busy - own_busy) / wall)
