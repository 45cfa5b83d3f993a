"""The tags a run records about its own life: its identity, its owner process, why it ended."""

from __future__ import annotations

RUN_KEY = "rnnlab.run_key"


END_REASON = "rnnlab.end_reason"


TIMING = "rnnlab.timing"  # whether its times compare with other runs': "comparable" or "not comparable: <why>"


ATTEMPT = "rnnlab.attempt"


HOST, PID, PID_STARTED, SLURM_JOB = "rnnlab.host", "rnnlab.pid", "rnnlab.pid_started", "rnnlab.slurm_job"


SLURM_ARRAY_TASK = "rnnlab.slurm_array_task"


DIED = "died"  # the start of the end reason the sweep records: such a run may be resumed


UNRECORDED = "not recorded"  # a run that trained but whose record failed at its end (its model not logged): resumed


def resumable_failure(reason: str) -> bool:
    """Whether a FAILED run with this end reason may be resumed: its process died, or only its record failed."""
    return reason.startswith((DIED, UNRECORDED))


ERROR = "error"  # the start of the end reason of a run that failed on an error: it is not resumed


SWEEP_PARENT = "rnnlab.sweep_parent"  # marks the parent run of a Hydra multirun; its value is the sweep id
