"""The tags a run records about its own life: its identity, its owner process, why it ended."""

from __future__ import annotations

RUN_KEY = "rnnlab.run_key"


END_REASON = "rnnlab.end_reason"


TIMING = "rnnlab.timing"  # whether its times compare with other runs': "comparable" or "not comparable: <why>"


ATTEMPT = "rnnlab.attempt"


HOST, PID, PID_STARTED, SLURM_JOB = "rnnlab.host", "rnnlab.pid", "rnnlab.pid_started", "rnnlab.slurm_job"


SLURM_ARRAY_TASK = "rnnlab.slurm_array_task"


DIED = "died"  # the start of the end reason the sweep records: such a run may be resumed


ERROR = "error"  # the start of the end reason of a run that failed on an error: it is not resumed
