"""MLflow's system metrics (CPU, memory, disk, network, and GPU where there is one) for a training run:
`system/cpu_utilization_percentage`, ..., on the run page's "System metrics" tab, the load a timing ran under.

`mlflow.start_run(log_system_metrics=True)` starts MLflow's monitor; rnnlab's runs are created through
Lightning's logger and a client, so the monitor is started here, on the run's id, in rank 0's process.
"""

from __future__ import annotations

import logging
from types import TracebackType

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = logging.getLogger(__name__)


class SystemMetrics:
    """MLflow's monitor on one run: a sample every `interval_s` seconds, logged as it is taken (step 0, 1, ...;
    a resumed run goes on from its last step). MLflow's monitor drops the sample it is taking when stopped: that
    one is logged as the monitor stops, so a run shorter than the interval still records one."""

    def __init__(self, run_id: str, tracking_uri: str, interval_s: float, resumed: bool) -> None:
        self.monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=resumed,
                                            tracking_uri=tracking_uri)

    def __enter__(self) -> SystemMetrics:
        self.monitor.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.monitor.finish()
        last = self.monitor.aggregate_metrics()  # what was sampled since the last logged step
        # A run ending on an error may have lost its store (a server down): MLflow would retry the last sample
        # for about a minute before the run's own ending could say so. Only a run that ends well logs it.
        if not last or kind is not None:
            return
        try:
            self.monitor.publish_metrics(last)
            self.monitor.mlflow_logger.flush()
        except Exception as e:  # a store that stopped answering: the run's own ending says so
            log.warning("system metrics: the last sample was not logged (%s)", e)
