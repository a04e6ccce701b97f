"""The MS5.0 TimescaleDB Grafana dashboard, built in Python with grafana-foundation-sdk.

The dashboard is first described as typed :class:`PanelSpec` rows (title, kind, queries, unit,
colored thresholds), then built with the SDK's builders and serialized with sorted keys. The
first row holds the eleven panels users had in the old dashboard (:data:`ORIGINAL_PANELS`); the
others add WAL, wraparound, long transactions, background jobs, backups and benchmarks.

Prometheus queries use Grafana's ``$__rate_interval`` and the ``$datname`` variable;
:func:`promql_for_check` substitutes them so the integration tests can send every expression to a
real Prometheus. SQL panels read through the read-only PostgreSQL datasource and use no Grafana
macros, so the tests can run them as the read-only role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from ms5_components.errors import MonitoringError
from ms5_components.monitoring import metrics

PROMETHEUS_UID = "ms5-prometheus"
"""uid of the provisioned Prometheus datasource."""
POSTGRES_UID = "ms5-timescaledb"
"""uid of the provisioned read-only PostgreSQL datasource."""
DASHBOARD_UID = "ms5-timescaledb"
"""uid of the dashboard (stable links)."""
DASHBOARD_TITLE = "MS5.0 TimescaleDB"
"""Title of the dashboard (the verification checks it)."""

ORIGINAL_PANELS: tuple[str, ...] = (
    "Cache hit ratio",
    "Transactions",
    "Active connections",
    "Hypertable chunks",
    "Data modification rate",
    "Compression",
    "Database size",
    "Query latency",
    "Data operations",
    "Deadlocks",
    "I/O",
)
"""The eleven panels of the old dashboard, by title (all in the first row)."""

PanelKind = Literal["timeseries", "stat", "bargauge", "table"]


@dataclass(frozen=True, kw_only=True)
class PromTarget:
    """A Prometheus query of a panel."""

    expr: str
    """PromQL; may use ``$datname`` and ``$__rate_interval``."""
    legend: str
    """Legend format."""
    expected_empty: str | None = None
    """Why it may return no data on a healthy server (integration check), else None."""


@dataclass(frozen=True, kw_only=True)
class SqlTarget:
    """A SQL query of a table panel (read-only datasource)."""

    sql: str
    """Plain SQL, no Grafana macros."""


@dataclass(frozen=True, kw_only=True)
class Step:
    """A threshold step: from ``value`` upwards, color ``color`` (None: the base step)."""

    value: float | None
    """Lower bound."""
    color: str
    """Grafana color name."""


@dataclass(frozen=True, kw_only=True)
class PanelSpec:
    """One panel."""

    title: str
    """Title (the eleven originals keep their old names)."""
    kind: PanelKind
    """Visualization."""
    targets: tuple[PromTarget | SqlTarget, ...]
    """Queries."""
    unit: str
    """Grafana unit id."""
    description: str
    """Panel help text."""
    thresholds: tuple[Step, ...] = (Step(value=None, color="green"),)
    """Colored thresholds (base first)."""
    width: int = 8
    """Grid columns (of 24)."""
    height: int = 8
    """Grid rows."""
    min_value: float | None = None
    """Axis/gauge minimum."""
    max_value: float | None = None
    """Axis/gauge maximum."""


@dataclass(frozen=True, kw_only=True)
class RowSpec:
    """A row of panels."""

    title: str
    """Row title."""
    panels: tuple[PanelSpec, ...]
    """Its panels, left to right."""


@dataclass(frozen=True, kw_only=True)
class DashboardInputs:
    """Stack values the dashboard shows."""

    database: str = "ms5"
    """Default of the ``$datname`` variable: the application database."""
    backup_max_age_hours: int = 26
    """Backup age that turns the backup panel red."""
    storage_budget_bytes: int = 50 * 1024**3
    """Storage budget the size panel is colored against."""


def _green_yellow_red(yellow: float, red: float) -> tuple[Step, ...]:
    return (
        Step(value=None, color="green"),
        Step(value=yellow, color="yellow"),
        Step(value=red, color="red"),
    )


def _red_yellow_green(red_below: float, green_from: float) -> tuple[Step, ...]:
    return (
        Step(value=None, color="red"),
        Step(value=red_below, color="yellow"),
        Step(value=green_from, color="green"),
    )


_DB = 'datname="$datname"'
_RI = "$__rate_interval"


def _original_row(inputs: DashboardInputs) -> RowSpec:
    budget = inputs.storage_budget_bytes
    return RowSpec(
        title="Overview (the eleven original panels)",
        panels=(
            PanelSpec(
                title="Cache hit ratio",
                kind="stat",
                unit="percent",
                description="Share of block reads served from shared buffers.",
                targets=(
                    PromTarget(
                        expr=f"100 * sum(rate(pg_stat_database_blks_hit{{{_DB}}}[{_RI}]))"
                        f" / (sum(rate(pg_stat_database_blks_hit{{{_DB}}}[{_RI}]))"
                        f" + sum(rate(pg_stat_database_blks_read{{{_DB}}}[{_RI}])))",
                        legend="cache hit %",
                    ),
                ),
                thresholds=_red_yellow_green(90, 95),
                min_value=0,
                max_value=100,
                width=6,
            ),
            PanelSpec(
                title="Transactions",
                kind="timeseries",
                unit="ops",
                description="Commits and rollbacks per second.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_xact_commit{{{_DB}}}[{_RI}]))",
                        legend="commits",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_xact_rollback{{{_DB}}}[{_RI}]))",
                        legend="rollbacks",
                    ),
                ),
                width=9,
            ),
            PanelSpec(
                title="Active connections",
                kind="timeseries",
                unit="short",
                description="Sessions by state, and max_connections; the thresholds are the "
                "75 % / 90 % alert levels.",
                targets=(
                    PromTarget(
                        expr=f"sum by (state) (pg_stat_activity_count{{{_DB}}})",
                        legend="{{state}}",
                    ),
                    PromTarget(expr="max(pg_settings_max_connections)", legend="max_connections"),
                    PromTarget(
                        expr="100 * max(ms5:pg_connections:ratio)",
                        legend="% of max_connections (all databases)",
                    ),
                ),
                thresholds=_green_yellow_red(75, 90),
                width=9,
            ),
            PanelSpec(
                title="Hypertable chunks",
                kind="bargauge",
                unit="short",
                description="Chunks per hypertable (largest hypertables; _other aggregates the "
                "rest).",
                targets=(
                    PromTarget(
                        expr="sum by (hypertable) (timescaledb_hypertable_chunks)",
                        legend="{{hypertable}}",
                    ),
                ),
                thresholds=_green_yellow_red(1000, 10000),
                width=6,
            ),
            PanelSpec(
                title="Data modification rate",
                kind="timeseries",
                unit="ops",
                description="Rows inserted, updated and deleted per second.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_tup_inserted{{{_DB}}}[{_RI}]))",
                        legend="inserted",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_tup_updated{{{_DB}}}[{_RI}]))",
                        legend="updated",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_tup_deleted{{{_DB}}}[{_RI}]))",
                        legend="deleted",
                    ),
                ),
                width=9,
            ),
            PanelSpec(
                title="Compression",
                kind="stat",
                unit="bytes",
                description="Bytes of compressed chunks before and after compression, the "
                "ratio, and the share of chunks in the columnstore (all 0 on the Apache build, "
                "which cannot compress).",
                targets=(
                    PromTarget(
                        expr="sum(timescaledb_compression_before_bytes)",
                        legend="before compression",
                    ),
                    PromTarget(
                        expr="sum(timescaledb_compression_after_bytes)",
                        legend="after compression",
                    ),
                    PromTarget(
                        expr="sum(timescaledb_compression_before_bytes)"
                        " / clamp_min(sum(timescaledb_compression_after_bytes), 1)",
                        legend="ratio",
                    ),
                    PromTarget(
                        expr="100 * sum(timescaledb_compression_compressed_chunks)"
                        " / clamp_min(sum(timescaledb_compression_compressed_chunks)"
                        " + sum(timescaledb_compression_uncompressed_chunks), 1)",
                        legend="% chunks compressed",
                    ),
                ),
                width=9,
            ),
            PanelSpec(
                title="Database size",
                kind="timeseries",
                unit="bytes",
                description="Size of the database, and everything the server stores (databases "
                "+ WAL) against the storage budget (thresholds at 80 % / 90 %).",
                targets=(
                    PromTarget(expr=f"sum(pg_database_size_bytes{{{_DB}}})", legend="$datname"),
                    PromTarget(expr="sum(ms5:storage_bytes)", legend="databases + WAL"),
                ),
                thresholds=_green_yellow_red(0.8 * budget, 0.9 * budget),
                width=8,
            ),
            PanelSpec(
                title="Query latency",
                kind="timeseries",
                unit="s",
                description="Mean statement time from pg_stat_statements (top statements), and "
                "active time per transaction.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_statements_seconds_total{{{_DB}}}[{_RI}]))"
                        f" / sum(rate(pg_stat_statements_calls_total{{{_DB}}}[{_RI}]))",
                        legend="mean statement time",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_active_time_seconds_total{{{_DB}}}"
                        f"[{_RI}])) / sum(rate(pg_stat_database_xact_commit{{{_DB}}}[{_RI}]))",
                        legend="active time per commit",
                    ),
                ),
                thresholds=_green_yellow_red(0.1, 0.5),
                width=8,
            ),
            PanelSpec(
                title="Data operations",
                kind="timeseries",
                unit="ops",
                description="Rows returned by scans and fetched by index lookups per second.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_tup_returned{{{_DB}}}[{_RI}]))",
                        legend="returned",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_tup_fetched{{{_DB}}}[{_RI}]))",
                        legend="fetched",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                title="Deadlocks",
                kind="stat",
                unit="short",
                description="Deadlocks in the last hour (any is red).",
                targets=(
                    PromTarget(
                        expr=f"sum(increase(pg_stat_database_deadlocks{{{_DB}}}[1h]))",
                        legend="deadlocks / 1h",
                    ),
                ),
                thresholds=(Step(value=None, color="green"), Step(value=1, color="red")),
                width=6,
            ),
            PanelSpec(
                title="I/O",
                kind="timeseries",
                unit="ops",
                description="Blocks read from disk, buffers allocated and written by the "
                "background writer and the checkpointer, per second.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_database_blks_read{{{_DB}}}[{_RI}]))",
                        legend="blocks read",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_bgwriter_buffers_alloc_total[{_RI}]))",
                        legend="buffers allocated",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_bgwriter_buffers_clean_total[{_RI}]))",
                        legend="written by bgwriter",
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_checkpointer_buffers_written_total[{_RI}]))",
                        legend="written by checkpointer",
                    ),
                ),
                width=18,
            ),
        ),
    )


def _health_row(inputs: DashboardInputs) -> RowSpec:
    return RowSpec(
        title="WAL, wraparound and long transactions",
        panels=(
            PanelSpec(
                title="WAL activity",
                kind="timeseries",
                unit="Bps",
                description="WAL bytes generated per second; WAL on disk is in the next panel.",
                targets=(
                    PromTarget(
                        expr=f"sum(rate(pg_stat_wal_bytes_total[{_RI}]))", legend="WAL written"
                    ),
                    PromTarget(
                        expr=f"sum(rate(pg_stat_wal_fpi_total[{_RI}]))",
                        legend="full page images / s",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                title="WAL on disk",
                kind="stat",
                unit="percent",
                description="pg_wal size as a percentage of max_wal_size (alert at 150 % / "
                "300 %), and checkpoints requested per hour.",
                targets=(
                    PromTarget(
                        expr="100 * max(pg_wal_size_bytes) / max(pg_settings_max_wal_size_bytes)",
                        legend="% of max_wal_size",
                    ),
                    PromTarget(
                        expr="sum(increase(pg_stat_checkpointer_num_requested_total[1h]))",
                        legend="requested checkpoints / 1h",
                    ),
                ),
                thresholds=_green_yellow_red(150, 300),
                width=4,
            ),
            PanelSpec(
                title="Transaction-ID wraparound",
                kind="bargauge",
                unit="percent",
                description="Age of the oldest unfrozen transaction ID (or multixact) as a "
                "percentage of the 2^31 horizon, per database (alert at 25 % / 50 %).",
                targets=(
                    PromTarget(
                        expr="100 * max by (datname) ({__name__=~"
                        '"pg_database_wraparound_age_(datfrozenxid|datminmxid)_seconds"})'
                        " / 2147483648",
                        legend="{{datname}}",
                    ),
                ),
                thresholds=_green_yellow_red(25, 50),
                min_value=0,
                max_value=100,
                width=6,
            ),
            PanelSpec(
                title="Long transactions",
                kind="timeseries",
                unit="s",
                description="Age of the oldest open transaction, and of the oldest session "
                "idle in transaction (alert at 5 min / 30 min).",
                targets=(
                    PromTarget(
                        expr="max(pg_long_running_transactions_oldest_timestamp_seconds)",
                        legend="oldest transaction",
                    ),
                    PromTarget(
                        expr="max(pg_stat_activity_max_tx_duration"
                        '{state=~"idle in transaction.*"})',
                        legend="idle in transaction",
                    ),
                ),
                thresholds=_green_yellow_red(300, 1800),
                width=6,
            ),
        ),
    )


_JOBS_SQL = """SELECT j.job_id,
       j.proc_name,
       coalesce(ca.view_schema || '.' || ca.view_name,
                j.hypertable_schema || '.' || j.hypertable_name, '') AS target,
       j.scheduled,
       CASE WHEN st.last_run_success IS FALSE THEN 'Failed'
            ELSE s.last_run_status END AS last_run_status,
       CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END
         AS last_success,
       s.total_runs,
       s.total_failures,
       CASE WHEN st.last_run_success IS FALSE THEN e.err_message END AS last_error,
       CASE WHEN isfinite(s.next_start) THEN s.next_start END AS next_start
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.continuous_aggregates ca
  ON ca.materialization_hypertable_schema = j.hypertable_schema
 AND ca.materialization_hypertable_name = j.hypertable_name
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN _timescaledb_internal.bgw_job_stat st ON st.job_id = j.job_id
LEFT JOIN LATERAL (
  SELECT je.err_message FROM timescaledb_information.job_errors je
  WHERE je.job_id = j.job_id ORDER BY je.start_time DESC LIMIT 1
) e ON true
ORDER BY (st.last_run_success IS FALSE) DESC, j.job_id
LIMIT 50"""

_HYPERTABLES_SQL = """WITH sizes AS (
  SELECT hypertable_schema, hypertable_name,
         sum(total_bytes + coalesce(compressed_total_size, 0)) AS bytes
  FROM _timescaledb_internal.hypertable_chunk_local_size
  GROUP BY 1, 2
)
SELECT h.hypertable_schema || '.' || h.hypertable_name AS hypertable,
       h.num_chunks AS chunks,
       h.compression_enabled,
       pg_size_pretty(coalesce(s.bytes, 0)) AS size
FROM timescaledb_information.hypertables h
LEFT JOIN sizes s
  ON s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
ORDER BY coalesce(s.bytes, 0) DESC, 1
LIMIT 50"""


def _timescale_row() -> RowSpec:
    return RowSpec(
        title="TimescaleDB background jobs and hypertables",
        panels=(
            PanelSpec(
                title="Background jobs",
                kind="timeseries",
                unit="short",
                description="Jobs by procedure, and those failing (license-blocked jobs of the "
                "Apache build are shown apart).",
                targets=(
                    PromTarget(
                        expr="sum by (proc_name) (timescaledb_jobs_count)", legend="{{proc_name}}"
                    ),
                    PromTarget(expr="sum(timescaledb_jobs_failing)", legend="failing"),
                    PromTarget(
                        expr="sum(timescaledb_jobs_license_blocked)", legend="license-blocked"
                    ),
                    PromTarget(
                        expr="max(timescaledb_continuous_aggregate_lag_seconds)",
                        legend="largest continuous-aggregate lag (s)",
                        expected_empty="the Apache build (test server) cannot create "
                        "continuous aggregates",
                    ),
                ),
                thresholds=(Step(value=None, color="green"), Step(value=1, color="red")),
                width=8,
            ),
            PanelSpec(
                title="Background job runs",
                kind="table",
                unit="short",
                description="Every job with its last run and, when it failed, the server's "
                "error (failing first); continuous-aggregate jobs are named by the aggregate. "
                "From timescaledb_information (read-only datasource).",
                targets=(SqlTarget(sql=_JOBS_SQL),),
                width=16,
            ),
            PanelSpec(
                title="Hypertables",
                kind="table",
                unit="short",
                description="The 50 largest hypertables (read-only datasource).",
                targets=(SqlTarget(sql=_HYPERTABLES_SQL),),
                width=24,
            ),
        ),
    )


def _batch_row(inputs: DashboardInputs) -> RowSpec:
    age = inputs.backup_max_age_hours
    return RowSpec(
        title="Backups and benchmarks",
        panels=(
            PanelSpec(
                title="Backups",
                kind="stat",
                unit="h",
                description=f"Hours since the last verified backup (red beyond {age} h, the "
                "backupMaxAgeHours setting), and hours since the last successful restore drill.",
                targets=(
                    PromTarget(
                        expr=f"(time() - max({metrics.BACKUP_LAST_SUCCESS.name})) / 3600",
                        legend="since last backup",
                    ),
                    PromTarget(
                        expr=f"(time() - max({metrics.RESTORE_DRILL_LAST_SUCCESS.name})) / 3600",
                        legend="since last restore drill",
                    ),
                    PromTarget(
                        expr=f"min({metrics.BACKUP_LAST_RUN_SUCCESS.name})",
                        legend="last backup run ok (1/0)",
                    ),
                ),
                thresholds=_green_yellow_red(age * 0.75, age),
                width=8,
            ),
            PanelSpec(
                title="Backup size",
                kind="timeseries",
                unit="bytes",
                description="Size of the last published backup.",
                targets=(
                    PromTarget(
                        expr=f"max by (database) ({metrics.BACKUP_SIZE.name})",
                        legend="{{database}}",
                    ),
                ),
                width=4,
            ),
            PanelSpec(
                title="Backup duration and drill RTO",
                kind="timeseries",
                unit="s",
                description="Wall time of the last backup run, and the restore time (RTO) of the "
                "last successful restore drill.",
                targets=(
                    PromTarget(
                        expr=f"max by (database) ({metrics.BACKUP_DURATION.name})",
                        legend="backup {{database}}",
                    ),
                    PromTarget(
                        expr=f"max by (database) ({metrics.RESTORE_DRILL_DURATION.name})",
                        legend="drill RTO {{database}}",
                    ),
                ),
                width=4,
            ),
            PanelSpec(
                title="Benchmark results",
                kind="timeseries",
                unit="percent",
                description="Last benchmark runs as a percentage of their baselines: ingest "
                "throughput (higher is better) and query latency (lower is better).",
                targets=(
                    PromTarget(
                        expr=f"100 * {metrics.BENCHMARK_THROUGHPUT.name}"
                        f" / {metrics.BENCHMARK_THROUGHPUT_BASELINE.name}",
                        legend="throughput {{benchmark}}",
                    ),
                    PromTarget(
                        expr=f"100 * {metrics.BENCHMARK_LATENCY.name}"
                        f" / {metrics.BENCHMARK_LATENCY_BASELINE.name}",
                        legend="latency {{benchmark}} q{{quantile}}",
                    ),
                ),
                thresholds=_green_yellow_red(125, 200),
                width=8,
            ),
        ),
    )


def _benchmark_row() -> RowSpec:
    """The Benchmark resource's results (pushed after every run; thresholds as baselines)."""
    return RowSpec(
        title="Benchmarks",
        panels=(
            PanelSpec(
                title="Benchmark ingest throughput",
                kind="timeseries",
                unit="rows/s",
                description="Rows per second of the last binary COPY ingest benchmark and the "
                "stack's floor (ms5:benchmarkMinIngestRowsPerSecond).",
                targets=(
                    PromTarget(
                        expr=f"max by (benchmark) ({metrics.BENCHMARK_THROUGHPUT.name})",
                        legend="{{benchmark}}",
                    ),
                    PromTarget(
                        expr=f"max by (benchmark) ({metrics.BENCHMARK_THROUGHPUT_BASELINE.name})",
                        legend="floor {{benchmark}}",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                title="Benchmark query latency (p95)",
                kind="timeseries",
                unit="s",
                description="p95 latency of each benchmark query in the last run and the "
                "stack's ceiling (ms5:benchmarkMaxQueryP95Ms).",
                targets=(
                    PromTarget(
                        expr=f'max by (benchmark) ({metrics.BENCHMARK_LATENCY.name}{{quantile="0.95"}})',
                        legend="{{benchmark}}",
                    ),
                    PromTarget(
                        expr=f'max({metrics.BENCHMARK_LATENCY_BASELINE.name}{{quantile="0.95"}})',
                        legend="ceiling",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                title="Benchmark age",
                kind="stat",
                unit="h",
                description="Hours since the benchmark last completed (it runs on deploys "
                "that change the image, the schema or its settings).",
                targets=(
                    PromTarget(
                        expr=f"(time() - max({metrics.BENCHMARK_LAST_RUN.name})) / 3600",
                        legend="since last benchmark",
                    ),
                ),
                width=8,
            ),
        ),
    )


def _exporter_row() -> RowSpec:
    return RowSpec(
        title="Monitoring health",
        panels=(
            PanelSpec(
                title="Exporter scrapes",
                kind="timeseries",
                unit="s",
                description="Scrape duration per job (timeout 20 s) and whether the target is up.",
                targets=(
                    PromTarget(
                        expr='max by (job) (scrape_duration_seconds{job=~"timescaledb-.*"})',
                        legend="{{job}}",
                    ),
                    PromTarget(
                        expr='min by (job) (up{job=~"timescaledb-.*|pushgateway"})',
                        legend="up {{job}}",
                    ),
                ),
                thresholds=_green_yellow_red(5, 15),
                width=24,
            ),
        ),
    )


def dashboard_spec(inputs: DashboardInputs) -> tuple[RowSpec, ...]:
    """Every row and panel of the dashboard."""
    rows = (
        _original_row(inputs),
        _health_row(inputs),
        _timescale_row(),
        _batch_row(inputs),
        _benchmark_row(),
        _exporter_row(),
    )
    titles = [p.title for r in rows for p in r.panels]
    missing = [t for t in ORIGINAL_PANELS if t not in titles]
    if missing:
        raise MonitoringError(f"dashboard lost original panel(s): {missing}")
    return rows


# ------------------------------------------------------------------------------------------------
# Building with grafana-foundation-sdk
# ------------------------------------------------------------------------------------------------


class SqlQuery(cogvariants.Dataquery):
    """A PostgreSQL datasource query (the SDK ships no builder for it)."""

    def __init__(self, *, ref_id: str, raw_sql: str) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql

    def to_json(self) -> dict[str, object]:
        """Grafana's JSON for the query."""
        return {
            "datasource": {"type": "grafana-postgresql-datasource", "uid": POSTGRES_UID},
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    """Typed builder of :class:`SqlQuery`."""

    def __init__(self, *, ref_id: str, raw_sql: str) -> None:
        self._query = SqlQuery(ref_id=ref_id, raw_sql=raw_sql)

    def build(self) -> cogvariants.Dataquery:
        """The query."""
        return self._query


_PROM_DS = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
_PG_DS = dm.DataSourceRef(type_val="grafana-postgresql-datasource", uid=POSTGRES_UID)

PanelBuilder = timeseries.Panel | stat.Panel | bargauge.Panel | table.Panel


def _thresholds(steps: tuple[Step, ...]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=s.value, color=s.color) for s in steps])
    )


def _panel(spec: PanelSpec, panel_id: int) -> PanelBuilder:
    builder: PanelBuilder
    if spec.kind == "timeseries":
        builder = (
            timeseries.Panel()
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphTresholdsStyleMode.DASHED
                )
            )
        )
    elif spec.kind == "stat":
        builder = (
            stat.Panel()
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.AREA)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    elif spec.kind == "bargauge":
        builder = (
            bargauge.Panel()
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .orientation(common.VizOrientation.HORIZONTAL)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    else:
        builder = table.Panel()
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .unit(spec.unit)
        .height(spec.height)
        .span(spec.width)
        .thresholds(_thresholds(spec.thresholds))
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    if spec.min_value is not None:
        builder = builder.min(spec.min_value)
    if spec.max_value is not None:
        builder = builder.max(spec.max_value)
    refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    uses_sql = any(isinstance(t, SqlTarget) for t in spec.targets)
    builder = builder.datasource(_PG_DS if uses_sql else _PROM_DS)
    for index, target in enumerate(spec.targets):
        if isinstance(target, SqlTarget):
            builder = builder.with_target(SqlQueryBuilder(ref_id=refs[index], raw_sql=target.sql))
        else:
            builder = builder.with_target(
                prom.Dataquery()
                .expr(target.expr)
                .legend_format(target.legend)
                .ref_id(refs[index])
                .range()
                .datasource(_PROM_DS)
            )
    return builder


def build_dashboard(inputs: DashboardInputs) -> dict[str, object]:
    """The dashboard JSON model (a plain dict)."""
    builder = (
        dash.Dashboard(DASHBOARD_TITLE)
        .uid(DASHBOARD_UID)
        .description(
            "MS5.0 manufacturing platform: TimescaleDB health, TimescaleDB features, "
            "backups and benchmarks. Generated by ms5_components.monitoring.dashboard."
        )
        .tags(["ms5", "timescaledb", "generated"])
        .refresh("10s")
        .time("now-6h", "now")
        .timezone("browser")
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dash.QueryVariable("datname")
            .label("Database")
            .datasource(_PROM_DS)
            .query("label_values(pg_database_size_bytes, datname)")
            .current(dm.VariableOption(selected=True, text=inputs.database, value=inputs.database))
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
            .regex("/^(?!template).*/")
        )
    )
    panel_id = 1
    for row in dashboard_spec(inputs):
        builder = builder.with_row(dash.Row(row.title).id(panel_id))
        panel_id += 1
        for spec in row.panels:
            builder = builder.with_panel(_panel(spec, panel_id))
            panel_id += 1
    encoded = json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True)
    document = json.loads(encoded)
    assert isinstance(document, dict)
    return document


def render_dashboard(inputs: DashboardInputs) -> str:
    """The dashboard file text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build_dashboard(inputs), sort_keys=True, indent=2) + "\n"


# ------------------------------------------------------------------------------------------------
# For the checks against a real Prometheus / PostgreSQL
# ------------------------------------------------------------------------------------------------


def promql_for_check(expr: str, *, database: str, rate_interval: str = "1m") -> str:
    """``expr`` with the dashboard variables replaced by concrete values."""
    return expr.replace("$__rate_interval", rate_interval).replace("$datname", database)


def panel_targets(document: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
    """``(panel title, target)`` of every query in a built dashboard JSON."""
    panels = document.get("panels")
    if not isinstance(panels, list):
        raise MonitoringError("dashboard JSON has no panels list")
    out: list[tuple[str, dict[str, object]]] = []
    for panel in panels:
        if not isinstance(panel, dict):
            continue
        for target in panel.get("targets") or []:
            if isinstance(target, dict):
                out.append((str(panel.get("title")), target))
    return out


def expected_empty(inputs: DashboardInputs) -> dict[str, str]:
    """Expression -> reason, for the queries allowed to return no data on a healthy server."""
    return {
        t.expr: t.expected_empty
        for row in dashboard_spec(inputs)
        for p in row.panels
        for t in p.targets
        if isinstance(t, PromTarget) and t.expected_empty
    }
