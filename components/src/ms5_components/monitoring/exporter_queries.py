"""What postgres_exporter collects: its built-in collectors and the custom TimescaleDB queries.

Built-in collectors are switched on and off deliberately (:data:`COLLECTORS`, each with its
reason). The TimescaleDB metrics are typed :class:`CustomQuery` specs rendered to the exporter's
queries file (``--extend.query-path``; 0.17 still supports it but logs it as deprecated, and it is
the only way 0.17 runs custom SQL — see ``docs/monitoring.md``).

Every custom query:

- is gated by version at generation time: :func:`custom_queries` takes the TimescaleDB version of
  the deployed image and picks the catalog objects that version has (PostgreSQL features are gated
  at run time with the exporter's ``runonserver``);
- works under both licenses: it reads ``timescaledb_information`` views, which exist in the
  Apache build too, and returns zeros (or no rows) where the Apache build has no compression,
  policies or continuous aggregates — never an error;
- has bounded cardinality: at most ``top_n`` rows ranked by what matters (size, failures, lag),
  the rest aggregated into one row labelled :data:`~ms5_components.monitoring.metrics.OTHER_LABEL`;
- is cached for a little less than its scrape job's interval, so the four jobs that scrape the
  one exporter do not multiply the load on the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import yaml

from ms5_components.errors import MonitoringError
from ms5_components.monitoring import metrics

Usage = Literal["LABEL", "GAUGE", "COUNTER"]

MIN_TIMESCALEDB: tuple[int, int, int] = (2, 11, 0)
"""Oldest TimescaleDB the queries support: 2.11 stores continuous-aggregate watermarks in a
catalog table that every role may read; before it only ``cagg_watermark()`` gives them, and that
function needs SELECT on the aggregate (read access to its data, which the exporter must not
have)."""

ERROR_MESSAGE_CHARS = 200
"""Longest server error message carried as a label (whitespace collapsed)."""

DEFAULT_TOP_N = 20
"""Default number of hypertables, jobs and continuous aggregates reported one by one."""


@dataclass(frozen=True, kw_only=True)
class Collector:
    """A built-in postgres_exporter collector and the decision about it."""

    name: str
    """Collector name as in ``--collector.<name>``."""
    enabled: bool
    """Whether the exporter runs it."""
    reason: str
    """Why (shown in the docs)."""

    @property
    def flag(self) -> str:
        """The command-line flag that states the decision explicitly."""
        return f"--{'' if self.enabled else 'no-'}collector.{self.name}"


COLLECTORS: tuple[Collector, ...] = (
    Collector(name="database", enabled=True, reason="database sizes (size and growth alerts)"),
    Collector(
        name="database_wraparound",
        enabled=True,
        reason="age of datfrozenxid/datminmxid per database (wraparound alerts)",
    ),
    Collector(name="locks", enabled=True, reason="locks by mode (lock pile-ups)"),
    Collector(
        name="long_running_transactions",
        enabled=True,
        reason="count and age of the oldest long transaction",
    ),
    Collector(name="postmaster", enabled=True, reason="server start time (restart detection)"),
    Collector(
        name="process_idle",
        enabled=False,
        reason="histogram per state; idle-in-transaction is covered by pg_stat_activity",
    ),
    Collector(name="replication", enabled=False, reason="single server, no standby"),
    Collector(
        name="replication_slot",
        enabled=True,
        reason="a forgotten slot retains WAL until the disk fills",
    ),
    Collector(name="roles", enabled=True, reason="connection limits per role (cheap)"),
    Collector(
        name="stat_activity_autovacuum",
        enabled=False,
        reason="one series per table being vacuumed; chunks make it unbounded",
    ),
    Collector(name="stat_bgwriter", enabled=True, reason="background writer (I/O panel)"),
    Collector(
        name="stat_checkpointer",
        enabled=True,
        reason="checkpoints moved to pg_stat_checkpointer in PostgreSQL 17 (WAL panel)",
    ),
    Collector(
        name="stat_database",
        enabled=True,
        reason="transactions, cache hits, tuples, deadlocks, temp files, I/O time",
    ),
    Collector(
        name="stat_statements",
        enabled=True,
        reason="statement latency (top statements only; needs pg_stat_statements)",
    ),
    Collector(
        name="stat_user_tables",
        enabled=False,
        reason="one series per table and every chunk is a table: unbounded with TimescaleDB",
    ),
    Collector(name="stat_wal_receiver", enabled=False, reason="no standby"),
    Collector(
        name="statio_user_indexes",
        enabled=False,
        reason="one series per index of every chunk: unbounded with TimescaleDB",
    ),
    Collector(
        name="statio_user_tables",
        enabled=False,
        reason="one series per chunk: unbounded; hypertable sizes come from the custom queries",
    ),
    Collector(name="wal", enabled=True, reason="WAL segment count and size on disk"),
    Collector(name="xlog_location", enabled=False, reason="WAL rate comes from pg_stat_wal"),
)
"""Every built-in collector of postgres_exporter 0.17, with the decision and its reason."""


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column of a custom query: a label or a metric."""

    name: str
    """Column name; a metric is named ``<namespace>_<name>``."""
    usage: Usage
    """LABEL, GAUGE or COUNTER."""
    description: str
    """HELP text of the metric."""


@dataclass(frozen=True, kw_only=True)
class CustomQuery:
    """One entry of the exporter's queries file."""

    namespace: str
    """Metric name prefix (the queries-file key)."""
    sql: str
    """The query; its columns are exactly :attr:`columns`."""
    columns: tuple[Column, ...]
    """Labels and metrics, in the query's column order."""
    scrape_job: str
    """The Prometheus job that keeps these metrics."""
    cache_seconds: int
    """How long the exporter reuses a result (0: every scrape)."""
    min_postgres_major: int | None = None
    """Runs only on servers of at least this PostgreSQL major (``runonserver``)."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Names of the metrics the query emits."""
        return tuple(f"{self.namespace}_{c.name}" for c in self.columns if c.usage != "LABEL")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names of the labels of its metrics (the exporter adds ``server``)."""
        return tuple(c.name for c in self.columns if c.usage == "LABEL")


def parse_timescaledb_version(text: str) -> tuple[int, int, int]:
    """``2.19.3`` or an image tag such as ``2.19.3-pg17`` -> ``(2, 19, 3)``."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise MonitoringError(
            f"cannot read a TimescaleDB version from {text!r}; expected a tag such as 2.19.3-pg17"
        )
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _cache(job: str) -> int:
    # A little less than the job's interval: every scrape of that job sees a fresh result, the
    # other jobs' scrapes reuse it.
    return {
        metrics.JOB_CORE: 0,
        metrics.JOB_PERFORMANCE: 0,
        metrics.JOB_HYPERTABLES: 55,
        metrics.JOB_COMPRESSION: 290,
    }[job]


def _label(name: str, description: str) -> Column:
    return Column(name=name, usage="LABEL", description=description)


def _gauge(name: str, description: str) -> Column:
    return Column(name=name, usage="GAUGE", description=description)


def _counter(name: str, description: str) -> Column:
    return Column(name=name, usage="COUNTER", description=description)


_HYPERTABLE_LABEL = "Hypertable as schema.name, or _other for everything beyond the top N."
_JOB_TARGET_LABEL = (
    "Hypertable or continuous aggregate (its view) the job works on, as schema.name; empty for "
    "none."
)


def _info_query() -> CustomQuery:
    sql = """
SELECT e.extversion AS version,
       coalesce(current_setting('timescaledb.license', true), 'unknown') AS license,
       1::float8 AS info
FROM pg_catalog.pg_extension e
WHERE e.extname = 'timescaledb'
"""
    return CustomQuery(
        namespace="timescaledb",
        sql=sql,
        columns=(
            _label("version", "Installed TimescaleDB extension version."),
            _label("license", "timescaledb.license: apache or timescale."),
            _gauge("info", "Always 1 when TimescaleDB is installed in the monitored database."),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


def _hypertable_query(top_n: int) -> CustomQuery:
    # Sizes in one pass over the chunk-size view: hypertable_size() per hypertable re-reads every
    # chunk each time (about 30 ms per hypertable, i.e. minutes for thousands).
    sql = f"""
WITH sizes AS (
  SELECT s.hypertable_schema, s.hypertable_name,
         sum(s.total_bytes + coalesce(s.compressed_total_size, 0)) AS bytes
  FROM _timescaledb_internal.hypertable_chunk_local_size s
  GROUP BY 1, 2
), policies AS (
  SELECT j.hypertable_schema, j.hypertable_name,
         bool_or(j.proc_name = 'policy_compression') AS compression_policy,
         bool_or(j.proc_name = 'policy_retention') AS retention_policy
  FROM timescaledb_information.jobs j
  WHERE j.hypertable_name IS NOT NULL
  GROUP BY 1, 2
), ht AS (
  SELECT h.hypertable_schema || '.' || h.hypertable_name AS hypertable,
         h.num_chunks AS chunks,
         h.compression_enabled,
         coalesce(s.bytes, 0) AS size_bytes,
         coalesce(p.compression_policy, false) AS compression_policy,
         coalesce(p.retention_policy, false) AS retention_policy
  FROM timescaledb_information.hypertables h
  LEFT JOIN sizes s
    ON s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
  LEFT JOIN policies p
    ON p.hypertable_schema = h.hypertable_schema AND p.hypertable_name = h.hypertable_name
), ranked AS (
  SELECT ht.*, row_number() OVER (ORDER BY size_bytes DESC, hypertable) AS rank FROM ht
)
SELECT CASE WHEN rank <= {top_n} THEN hypertable ELSE '{metrics.OTHER_LABEL}' END AS hypertable,
       count(*)::float8 AS count,
       sum(chunks)::float8 AS chunks,
       sum(size_bytes)::float8 AS size_bytes,
       sum(compression_enabled::int)::float8 AS compression_enabled,
       sum((NOT compression_policy)::int)::float8 AS without_compression_policy,
       sum((NOT retention_policy)::int)::float8 AS without_retention_policy
FROM ranked
GROUP BY 1
"""
    return CustomQuery(
        namespace="timescaledb_hypertable",
        sql=sql,
        columns=(
            _label("hypertable", _HYPERTABLE_LABEL),
            _gauge("count", "Hypertables in the row (1, or how many _other aggregates)."),
            _gauge("chunks", "Chunks of the hypertable(s)."),
            _gauge("size_bytes", "Total size (tables, indexes, TOAST) of the hypertable(s)."),
            _gauge("compression_enabled", "Hypertables with compression (columnstore) enabled."),
            _gauge("without_compression_policy", "Hypertables with no compression policy."),
            _gauge("without_retention_policy", "Hypertables with no retention policy."),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


def _compression_query(top_n: int) -> CustomQuery:
    # One pass over the per-chunk compression statistics (a per-hypertable stats function call
    # would re-read them for every hypertable).
    sql = f"""
WITH stats AS (
  SELECT s.hypertable_schema, s.hypertable_name,
         sum(s.uncompressed_total_size) FILTER (WHERE s.compressed_total_size IS NOT NULL)
           AS before_bytes,
         sum(s.compressed_total_size) AS after_bytes,
         count(*) FILTER (WHERE s.compressed_total_size IS NOT NULL) AS compressed_chunks
  FROM _timescaledb_internal.compressed_chunk_stats s
  GROUP BY 1, 2
), overdue AS (
  SELECT j.hypertable_schema, j.hypertable_name, count(*) AS overdue
  FROM timescaledb_information.jobs j
  JOIN timescaledb_information.chunks c
    ON c.hypertable_schema = j.hypertable_schema AND c.hypertable_name = j.hypertable_name
  WHERE j.proc_name = 'policy_compression'
    AND j.scheduled
    AND NOT c.is_compressed
    AND c.range_end < now() - 2 * j.schedule_interval
        - CASE WHEN jsonb_typeof(j.config -> 'compress_after') = 'string'
               THEN (j.config ->> 'compress_after')::interval END
  GROUP BY 1, 2
), ht AS (
  SELECT h.hypertable_schema || '.' || h.hypertable_name AS hypertable,
         h.num_chunks,
         coalesce(s.before_bytes, 0) AS before_bytes,
         coalesce(s.after_bytes, 0) AS after_bytes,
         coalesce(s.compressed_chunks, 0) AS compressed_chunks,
         coalesce(o.overdue, 0) AS overdue_chunks
  FROM timescaledb_information.hypertables h
  LEFT JOIN stats s
    ON s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
  LEFT JOIN overdue o
    ON o.hypertable_schema = h.hypertable_schema AND o.hypertable_name = h.hypertable_name
), ranked AS (
  SELECT ht.*, row_number() OVER (ORDER BY before_bytes DESC, num_chunks DESC, hypertable)
         AS rank
  FROM ht
)
SELECT CASE WHEN rank <= {top_n} THEN hypertable ELSE '{metrics.OTHER_LABEL}' END AS hypertable,
       sum(before_bytes)::float8 AS before_bytes,
       sum(after_bytes)::float8 AS after_bytes,
       CASE WHEN sum(after_bytes) > 0 THEN sum(before_bytes)::float8 / sum(after_bytes)
            ELSE 0 END AS ratio,
       sum(compressed_chunks)::float8 AS compressed_chunks,
       sum(num_chunks - compressed_chunks)::float8 AS uncompressed_chunks,
       sum(overdue_chunks)::float8 AS overdue_chunks
FROM ranked
GROUP BY 1
"""
    return CustomQuery(
        namespace="timescaledb_compression",
        sql=sql,
        columns=(
            _label("hypertable", _HYPERTABLE_LABEL),
            _gauge("before_bytes", "Size of the compressed chunks before compression."),
            _gauge("after_bytes", "Size of the compressed chunks after compression."),
            _gauge("ratio", "before_bytes / after_bytes; 0 when nothing is compressed."),
            _gauge("compressed_chunks", "Chunks in the columnstore (compressed)."),
            _gauge("uncompressed_chunks", "Chunks in the rowstore (not compressed)."),
            _gauge(
                "overdue_chunks",
                "Uncompressed chunks older than the policy's compress_after plus two "
                "schedule intervals.",
            ),
        ),
        scrape_job=metrics.JOB_COMPRESSION,
        cache_seconds=_cache(metrics.JOB_COMPRESSION),
    )


def _jobs_cte() -> str:
    # One row per background job with its run history and its last recorded error.
    # - target: what the job works on. Policies of a continuous aggregate are attached to its
    #   internal materialization hypertable; they are named by the aggregate's view instead.
    # - license_blocked: the job's last error is TimescaleDB's "not supported under the current
    #   'apache' license" (the job-history retention job of the Apache build). Such jobs are
    #   reported but do not count as failing. Every other failure counts, whatever its cause
    #   (e.g. the "cannot drop portal" error of every scheduled job on PostgreSQL 17.12).
    # - last_run_success comes from the scheduler's own statistics: job_stats shows no status
    #   for a job whose runs all failed before finishing.
    return """
WITH j AS (
  SELECT jb.job_id,
         jb.proc_name,
         coalesce(ca.view_schema || '.' || ca.view_name,
                  jb.hypertable_schema || '.' || jb.hypertable_name, '') AS hypertable,
         jb.scheduled,
         coalesce(st.last_run_success, true) AS last_run_success,
         s.last_successful_finish,
         coalesce(st.consecutive_failures, 0) AS consecutive_failures,
         e.sqlerrcode AS last_error_code,
         e.err_message AS last_error_message,
         coalesce(current_setting('timescaledb.license', true), '') = 'apache'
           AND e.sqlerrcode = '0A000'
           AND e.err_message LIKE '%license%' AS license_blocked
  FROM timescaledb_information.jobs jb
  LEFT JOIN timescaledb_information.continuous_aggregates ca
    ON ca.materialization_hypertable_schema = jb.hypertable_schema
   AND ca.materialization_hypertable_name = jb.hypertable_name
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = jb.job_id
  LEFT JOIN _timescaledb_internal.bgw_job_stat st ON st.job_id = jb.job_id
  LEFT JOIN LATERAL (
    SELECT je.sqlerrcode, je.err_message
    FROM timescaledb_information.job_errors je
    WHERE je.job_id = jb.job_id
    ORDER BY je.start_time DESC
    LIMIT 1
  ) e ON true
)"""


def _job_query(top_n: int) -> CustomQuery:
    sql = f"""{_jobs_cte()}, ranked AS (
  SELECT j.*, row_number() OVER (
           ORDER BY (consecutive_failures > 0 AND NOT coalesce(license_blocked, false)) DESC,
                    consecutive_failures DESC, job_id) AS rank
  FROM j
)
SELECT job_id::text AS job_id,
       proc_name,
       hypertable,
       last_run_success::int::float8 AS last_run_success,
       consecutive_failures::float8 AS consecutive_failures,
       CASE WHEN last_successful_finish IS NOT NULL AND isfinite(last_successful_finish)
            THEN extract(epoch FROM now() - last_successful_finish) ELSE -1 END::float8
         AS seconds_since_last_success,
       scheduled::int::float8 AS scheduled,
       coalesce(license_blocked, false)::int::float8 AS license_blocked
FROM ranked
WHERE rank <= {top_n}
"""
    return CustomQuery(
        namespace="timescaledb_job",
        sql=sql,
        columns=(
            _label("job_id", "Background job id."),
            _label("proc_name", "Procedure the job runs (policy_compression, ...)."),
            _label("hypertable", _JOB_TARGET_LABEL),
            _gauge("last_run_success", "0 when the last run failed, else 1 (also never run)."),
            _gauge("consecutive_failures", "Failed runs since the last success."),
            _gauge("seconds_since_last_success", "Seconds since the last success; -1 when never."),
            _gauge("scheduled", "1 when the job is scheduled (enabled)."),
            _gauge(
                "license_blocked",
                "1 when the job's last error is a feature missing from the Apache license.",
            ),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


def _jobs_summary_query(top_n: int) -> CustomQuery:
    sql = f"""{_jobs_cte()}, per_proc AS (
  SELECT proc_name,
         count(*) AS count,
         count(*) FILTER (WHERE consecutive_failures > 0
                          AND NOT coalesce(license_blocked, false)) AS failing,
         count(*) FILTER (WHERE coalesce(license_blocked, false)) AS license_blocked,
         max(consecutive_failures) AS max_consecutive_failures
  FROM j GROUP BY proc_name
), ranked AS (
  SELECT p.*, row_number() OVER (ORDER BY failing DESC, count DESC, proc_name) AS rank
  FROM per_proc p
)
SELECT CASE WHEN rank <= {top_n} THEN proc_name ELSE '{metrics.OTHER_LABEL}' END AS proc_name,
       sum(count)::float8 AS count,
       sum(failing)::float8 AS failing,
       sum(license_blocked)::float8 AS license_blocked,
       max(max_consecutive_failures)::float8 AS max_consecutive_failures
FROM ranked
GROUP BY 1
"""
    return CustomQuery(
        namespace="timescaledb_jobs",
        sql=sql,
        columns=(
            _label("proc_name", "Procedure the jobs run, or _other beyond the top N."),
            _gauge("count", "Background jobs."),
            _gauge("failing", "Jobs whose last run failed (license-blocked jobs excluded)."),
            _gauge("license_blocked", "Jobs failing only because the license lacks a feature."),
            _gauge("max_consecutive_failures", "Largest consecutive_failures among the jobs."),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


def _job_error_query(top_n: int) -> CustomQuery:
    sql = f"""{_jobs_cte()}, failing AS (
  SELECT j.*, row_number() OVER (
           ORDER BY NOT coalesce(license_blocked, false) DESC, consecutive_failures DESC, job_id)
         AS rank
  FROM j
  WHERE consecutive_failures > 0
)
SELECT job_id::text AS job_id,
       proc_name,
       hypertable,
       coalesce(last_error_code, '') AS sqlerrcode,
       left(regexp_replace(coalesce(last_error_message, 'no error recorded'), '\\s+', ' ', 'g'),
            {ERROR_MESSAGE_CHARS}) AS message,
       coalesce(license_blocked, false)::int::float8 AS license_blocked,
       1::float8 AS info
FROM failing
WHERE rank <= {top_n}
"""
    return CustomQuery(
        namespace="timescaledb_job_last_error",
        sql=sql,
        columns=(
            _label("job_id", "Background job id."),
            _label("proc_name", "Procedure the job runs."),
            _label("hypertable", _JOB_TARGET_LABEL),
            _label("sqlerrcode", "SQLSTATE of the job's last error."),
            _label(
                "message",
                f"The server's message for the job's last error (first {ERROR_MESSAGE_CHARS} "
                "characters).",
            ),
            _gauge(
                "license_blocked",
                "1 when the error is a feature missing from the Apache license.",
            ),
            _gauge("info", "1 for every job whose last run failed (failing first, top N)."),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


_NEVER_MATERIALIZED = "4714-11-24 00:00:00+00 BC"
"""The watermark of a continuous aggregate that was never refreshed (PostgreSQL's earliest
timestamp; ``timescaledb_information.job_stats`` uses the same sentinel)."""


def _cagg_query(top_n: int, version: tuple[int, int, int]) -> CustomQuery:
    # The watermark is the end of the materialized range, in the internal time representation;
    # it is meaningful as a timestamp only for time-typed hypertables. It is read from the
    # catalog table (readable by every role), not with cagg_watermark(), which refuses a role
    # without SELECT on the aggregate: the exporter reports how far behind an aggregate is and
    # needs no access to its rows, and an aggregate added later is covered with no grant. No
    # watermark row, or TimescaleDB's "nothing materialized yet" value (the earliest timestamp
    # PostgreSQL has), reads as never materialized. The internal functions
    # moved from _timescaledb_internal to _timescaledb_functions in 2.12.
    fn = "_timescaledb_functions" if version >= (2, 12, 0) else "_timescaledb_internal"
    sql = f"""
WITH c AS (
  SELECT ca.user_view_schema || '.' || ca.user_view_name AS view,
         CASE WHEN {fn}.to_timestamp(w.watermark) > '{_NEVER_MATERIALIZED}'::timestamptz
              THEN {fn}.to_timestamp(w.watermark) ELSE '-infinity'::timestamptz END AS watermark
  FROM _timescaledb_catalog.continuous_agg ca
  LEFT JOIN _timescaledb_catalog.continuous_aggs_watermark w
    ON w.mat_hypertable_id = ca.mat_hypertable_id
  JOIN _timescaledb_catalog.hypertable raw ON raw.id = ca.raw_hypertable_id
  JOIN timescaledb_information.dimensions d
    ON d.hypertable_schema = raw.schema_name AND d.hypertable_name = raw.table_name
   AND d.dimension_number = 1
  WHERE d.column_type IN ('timestamp with time zone'::regtype,
                          'timestamp without time zone'::regtype, 'date'::regtype)
), lagged AS (
  SELECT view,
         CASE WHEN isfinite(watermark) THEN extract(epoch FROM now() - watermark) ELSE -1 END
           AS lag_seconds
  FROM c
), ranked AS (
  SELECT l.*, row_number() OVER (ORDER BY lag_seconds DESC, view) AS rank FROM lagged l
)
SELECT CASE WHEN rank <= {top_n} THEN view ELSE '{metrics.OTHER_LABEL}' END AS view,
       count(*)::float8 AS count,
       max(lag_seconds)::float8 AS lag_seconds
FROM ranked
GROUP BY 1
"""
    return CustomQuery(
        namespace="timescaledb_continuous_aggregate",
        sql=sql,
        columns=(
            _label("view", "Continuous aggregate view (schema.name), or _other."),
            _gauge("count", "Continuous aggregates in the row."),
            _gauge(
                "lag_seconds",
                "Seconds between now and the materialization watermark (largest for _other); "
                "-1 when never materialized.",
            ),
        ),
        scrape_job=metrics.JOB_HYPERTABLES,
        cache_seconds=_cache(metrics.JOB_HYPERTABLES),
    )


def _stat_wal_query() -> CustomQuery:
    sql = """
SELECT wal_records::float8 AS records_total,
       wal_fpi::float8 AS fpi_total,
       wal_bytes::float8 AS bytes_total,
       wal_buffers_full::float8 AS buffers_full_total
FROM pg_catalog.pg_stat_wal
"""
    return CustomQuery(
        namespace="pg_stat_wal",
        sql=sql,
        columns=(
            _counter("records_total", "WAL records generated."),
            _counter("fpi_total", "WAL full page images generated."),
            _counter("bytes_total", "WAL bytes generated."),
            _counter("buffers_full_total", "Times WAL was written because WAL buffers were full."),
        ),
        scrape_job=metrics.JOB_PERFORMANCE,
        cache_seconds=_cache(metrics.JOB_PERFORMANCE),
        min_postgres_major=14,
    )


def custom_queries(
    *, timescaledb_version: tuple[int, int, int], top_n: int = DEFAULT_TOP_N
) -> tuple[CustomQuery, ...]:
    """The custom queries for a server running TimescaleDB ``timescaledb_version``.

    Raises :class:`MonitoringError` for a version older than :data:`MIN_TIMESCALEDB` or a
    ``top_n`` outside 1..1000.
    """
    if timescaledb_version < MIN_TIMESCALEDB:
        shown = ".".join(map(str, timescaledb_version))
        raise MonitoringError(
            f"TimescaleDB {shown} is older than the monitoring queries support "
            f"({'.'.join(map(str, MIN_TIMESCALEDB))}); upgrade the extension first"
        )
    if not 1 <= top_n <= 1000:
        raise MonitoringError(f"top_n {top_n} out of range; expected 1 to 1000")
    return (
        _info_query(),
        _hypertable_query(top_n),
        _compression_query(top_n),
        _job_query(top_n),
        _jobs_summary_query(top_n),
        _job_error_query(top_n),
        _cagg_query(top_n, timescaledb_version),
        _stat_wal_query(),
    )


def render_queries_yaml(queries: tuple[CustomQuery, ...]) -> str:
    """The exporter's queries file: built as data, serialized with sorted keys."""
    document: dict[str, object] = {}
    for query in queries:
        if query.namespace in document:
            raise MonitoringError(f"custom query namespace {query.namespace!r} is defined twice")
        entry: dict[str, object] = {
            "query": "\n".join(line.rstrip() for line in query.sql.strip().splitlines()) + "\n",
            "master": True,
            "metrics": [
                {c.name: {"usage": c.usage, "description": c.description}} for c in query.columns
            ],
        }
        if query.cache_seconds:
            entry["cache_seconds"] = query.cache_seconds
        if query.min_postgres_major is not None:
            entry["runonserver"] = f">={query.min_postgres_major}.0.0"
        document[query.namespace] = entry
    header = "# Generated by ms5_components.monitoring.exporter_queries; do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=100)


EXPORTER_CONFIG_YAML = (
    "# Generated by ms5_components.monitoring.exporter_queries; do not edit.\n"
    "# No auth_modules: the exporter scrapes only the database named by DATA_SOURCE_URI.\n"
    "auth_modules: {}\n"
)
"""The exporter's ``--config.file`` (present so the exporter does not warn about a missing one)."""


def exporter_flags(
    *, queries_path: str, config_path: str, listen_address: str | None = None
) -> tuple[str, ...]:
    """The exporter's command-line flags (never a credential: those come from the environment).

    ``listen_address`` None leaves it to the caller (the test environment picks a free port).
    """
    listen = (f"--web.listen-address={listen_address}",) if listen_address else ()
    return (
        f"--config.file={config_path}",
        f"--extend.query-path={queries_path}",
        *listen,
        "--log.format=logfmt",
        "--log.level=info",
        *(c.flag for c in COLLECTORS),
    )
