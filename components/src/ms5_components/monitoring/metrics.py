"""Names shared by the exporter queries, the Prometheus config, the rules and the dashboard.

The four exporter scrape jobs reproduce the old system's (core 30 s, hypertables 60 s, compression
300 s, performance 30 s). The batch metrics of later issues (backups, restore drills, benchmarks)
are declared here, so the rules and dashboards that use them exist before their producers: those
jobs push them to the Pushgateway under the ``job`` label named here, with exactly these names,
types and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ------------------------------------------------------------------------------------------------
# Prometheus scrape jobs
# ------------------------------------------------------------------------------------------------

JOB_CORE = "timescaledb-core"
"""Availability, connections, transactions, cache, locks, sizes, wraparound (every 30 s)."""
JOB_HYPERTABLES = "timescaledb-hypertables"
"""Hypertables, chunks, continuous aggregates and background jobs (every 60 s)."""
JOB_COMPRESSION = "timescaledb-compression"
"""Compression (columnstore) sizes, ratio and overdue chunks (every 300 s)."""
JOB_PERFORMANCE = "timescaledb-performance"
"""Statement latency, WAL, checkpointer and background writer (every 30 s)."""
JOB_PUSHGATEWAY = "pushgateway"
"""Batch results (backups, restore drills, benchmarks) pushed to the Pushgateway."""
JOB_PROMETHEUS = "prometheus"
"""Prometheus itself."""

EXPORTER_JOBS: tuple[str, ...] = (JOB_CORE, JOB_HYPERTABLES, JOB_COMPRESSION, JOB_PERFORMANCE)
"""The jobs that scrape postgres_exporter, each keeping its own share of the metrics."""

OTHER_LABEL = "_other"
"""Label value of the row that aggregates everything beyond the top-N of a bounded query."""

# ------------------------------------------------------------------------------------------------
# Metrics pushed by batch jobs (later issues)
# ------------------------------------------------------------------------------------------------

PUSH_JOB_BACKUP = "ms5_backup"
"""Pushgateway grouping ``job`` of the backup runner."""
PUSH_JOB_RESTORE_DRILL = "ms5_restore_drill"
"""Pushgateway grouping ``job`` of the restore drill."""
PUSH_JOB_BENCHMARK = "ms5_benchmark"
"""Pushgateway grouping ``job`` of the benchmark runner."""


@dataclass(frozen=True, kw_only=True)
class PushedMetric:
    """A metric a batch job pushes to the Pushgateway."""

    name: str
    """Metric name."""
    kind: Literal["gauge", "counter"]
    """Prometheus type."""
    help: str
    """HELP text."""
    labels: tuple[str, ...]
    """Label names besides the grouping key (``job``, ``instance``)."""
    push_job: str
    """The Pushgateway ``job`` the producer pushes under."""


BACKUP_LAST_SUCCESS = PushedMetric(
    name="ms5_backup_last_success_timestamp_seconds",
    kind="gauge",
    help="Unix time the last verified backup of the database was published.",
    labels=("database",),
    push_job=PUSH_JOB_BACKUP,
)
BACKUP_LAST_RUN_SUCCESS = PushedMetric(
    name="ms5_backup_last_run_success",
    kind="gauge",
    help="1 when the last backup run published a verified backup, 0 when it failed.",
    labels=("database",),
    push_job=PUSH_JOB_BACKUP,
)
BACKUP_SIZE = PushedMetric(
    name="ms5_backup_size_bytes",
    kind="gauge",
    help="Size of the last published backup.",
    labels=("database",),
    push_job=PUSH_JOB_BACKUP,
)
BACKUP_DURATION = PushedMetric(
    name="ms5_backup_duration_seconds",
    kind="gauge",
    help="Wall time of the last backup run.",
    labels=("database",),
    push_job=PUSH_JOB_BACKUP,
)
RESTORE_DRILL_LAST_SUCCESS = PushedMetric(
    name="ms5_restore_drill_last_success_timestamp_seconds",
    kind="gauge",
    help="Unix time the last restore drill restored a backup and verified it.",
    labels=("database",),
    push_job=PUSH_JOB_RESTORE_DRILL,
)
RESTORE_DRILL_LAST_RUN_SUCCESS = PushedMetric(
    name="ms5_restore_drill_last_run_success",
    kind="gauge",
    help="1 when the last restore drill succeeded, 0 when it failed.",
    labels=("database",),
    push_job=PUSH_JOB_RESTORE_DRILL,
)
RESTORE_DRILL_DURATION = PushedMetric(
    name="ms5_restore_drill_duration_seconds",
    kind="gauge",
    help="Restore time (RTO) of the last successful restore drill: create, restore, post-restore.",
    labels=("database",),
    push_job=PUSH_JOB_RESTORE_DRILL,
)
BENCHMARK_THROUGHPUT = PushedMetric(
    name="ms5_benchmark_throughput_rows_per_second",
    kind="gauge",
    help="Rows per second measured by the last run of an ingest benchmark.",
    labels=("benchmark",),
    push_job=PUSH_JOB_BENCHMARK,
)
BENCHMARK_THROUGHPUT_BASELINE = PushedMetric(
    name="ms5_benchmark_throughput_baseline_rows_per_second",
    kind="gauge",
    help="Accepted baseline of an ingest benchmark (rows per second).",
    labels=("benchmark",),
    push_job=PUSH_JOB_BENCHMARK,
)
BENCHMARK_LATENCY = PushedMetric(
    name="ms5_benchmark_latency_seconds",
    kind="gauge",
    help="Query latency at a quantile measured by the last run of a query benchmark.",
    labels=("benchmark", "quantile"),
    push_job=PUSH_JOB_BENCHMARK,
)
BENCHMARK_LATENCY_BASELINE = PushedMetric(
    name="ms5_benchmark_latency_baseline_seconds",
    kind="gauge",
    help="Accepted baseline latency of a query benchmark at a quantile.",
    labels=("benchmark", "quantile"),
    push_job=PUSH_JOB_BENCHMARK,
)
BENCHMARK_LAST_RUN = PushedMetric(
    name="ms5_benchmark_last_run_timestamp_seconds",
    kind="gauge",
    help="Unix time the benchmark last completed.",
    labels=("benchmark",),
    push_job=PUSH_JOB_BENCHMARK,
)

PUSHED_METRICS: tuple[PushedMetric, ...] = (
    BACKUP_LAST_SUCCESS,
    BACKUP_LAST_RUN_SUCCESS,
    BACKUP_SIZE,
    BACKUP_DURATION,
    RESTORE_DRILL_LAST_SUCCESS,
    RESTORE_DRILL_LAST_RUN_SUCCESS,
    RESTORE_DRILL_DURATION,
    BENCHMARK_THROUGHPUT,
    BENCHMARK_THROUGHPUT_BASELINE,
    BENCHMARK_LATENCY,
    BENCHMARK_LATENCY_BASELINE,
    BENCHMARK_LAST_RUN,
)
"""Every metric the batch jobs of later issues must push (the contract the rules rely on)."""
