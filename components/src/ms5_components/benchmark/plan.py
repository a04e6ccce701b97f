"""The benchmark's data, queries and verdicts (pure: no database).

TSBS-style on the MS5.0 model: the rows are ``ms5.machine_metrics`` samples (time, machine_id,
metric, value) of ``machines`` x ``metrics`` series spread over 24 hours, generated before the
clock starts and encoded once as PostgreSQL binary COPY batches; the loader only writes bytes.
The queries are TSBS's devops shapes on that model: last point per machine, 1 h and 24 h
``time_bucket`` rollups, single and double group-by, a high-value filter, and a read of a
continuous aggregate (Timescale license only).

Thresholds default to the old verify script's floors, declared once with the ``ms5:benchmark*``
settings: at least 1,000 rows/s, every query's p95 within 100 ms, compression saving at least 70 %.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ms5_components.settings import int_default_of
from ms5_components.verification.report import Finding, Report, fail, not_applicable, ok, warn

if TYPE_CHECKING:
    from ms5_components.errors import BenchmarkRunError

INGEST = "ingest_copy"
"""Benchmark name of the ingest phase (the ``benchmark`` label of the pushed metrics)."""
COMPRESSION = "compression"

METRIC_NAMES: tuple[str, ...] = (
    "temperature",
    "vibration",
    "spindle_speed",
    "pressure",
    "current",
    "voltage",
    "torque",
    "feed_rate",
    "humidity",
    "cycle_time",
)
HIGH_VALUE = 90.0
"""The high-value filter's threshold (values are uniform in 0..100)."""
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
"""Start of the generated day (fixed: two runs write the same data)."""
SPAN = timedelta(hours=24)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _ingest_floor() -> float:
    return float(int_default_of("benchmarkMinIngestRowsPerSecond"))


def _query_ceiling() -> float:
    return float(int_default_of("benchmarkMaxQueryP95Ms"))


def _compression_floor() -> float:
    return int_default_of("benchmarkMinCompressionPercent") / 100.0


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Per-stack floors and ceilings (``thresholds`` input). The defaults are the declared
    defaults of ``ms5:benchmarkMinIngestRowsPerSecond``, ``ms5:benchmarkMaxQueryP95Ms`` and
    ``ms5:benchmarkMinCompressionPercent`` (as a fraction)."""

    min_ingest_rows_per_second: float = field(default_factory=_ingest_floor)
    max_query_p95_ms: float = field(default_factory=_query_ceiling)
    min_compression_ratio: float = field(default_factory=_compression_floor)
    """Fraction of the chunks' size that compression saves (0.70 = 70 %)."""

    def to_input(self) -> dict[str, float]:
        return {
            "maxQueryP95Ms": self.max_query_p95_ms,
            "minCompressionRatio": self.min_compression_ratio,
            "minIngestRowsPerSecond": self.min_ingest_rows_per_second,
        }

    @classmethod
    def from_input(cls, raw: Mapping[str, Any]) -> Thresholds:
        """The thresholds of the input; a key it lacks takes the setting's default."""
        given = {
            attr: float(raw[key])
            for key, attr in (
                ("minIngestRowsPerSecond", "min_ingest_rows_per_second"),
                ("maxQueryP95Ms", "max_query_p95_ms"),
                ("minCompressionRatio", "min_compression_ratio"),
            )
            if raw.get(key) is not None
        }
        return cls(**given)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataShape:
    rows: int
    machines: int = 50
    metrics: int = 10
    seed: int = 5

    @property
    def series(self) -> int:
        return self.machines * len(METRIC_NAMES[: self.metrics])

    @property
    def points(self) -> int:
        """Timestamps per series (the last one may be partial)."""
        return max(1, math.ceil(self.rows / self.series))

    @property
    def step(self) -> timedelta:
        return SPAN / self.points

    @property
    def end(self) -> datetime:
        return BASE_TIME + SPAN

    def machine_ids(self) -> list[str]:
        return [f"machine-{i:03d}" for i in range(self.machines)]


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!i", len(data)) + data


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
COPY_COLUMNS = ("time", "machine_id", "metric", "value")


def encode_batches(shape: DataShape, batch_size: int) -> list[bytes]:
    """Every row, in time order, as binary COPY payloads of ``batch_size`` rows each (header and
    trailer included, so each is one complete ``COPY ... FROM STDIN (FORMAT BINARY)``)."""
    rng = random.Random(shape.seed)  # noqa: S311 - benchmark data, not secrets
    machines = [_text(m) for m in shape.machine_ids()]
    metrics = [_text(m) for m in METRIC_NAMES[: shape.metrics]]
    step_us = int(shape.step / timedelta(microseconds=1))
    base_us = int((BASE_TIME - _PG_EPOCH) / timedelta(microseconds=1))
    row_head = struct.pack("!h", 4) + struct.pack("!i", 8)
    float_len = struct.pack("!i", 8)
    pack_q = struct.Struct("!q").pack
    pack_d = struct.Struct("!d").pack
    batches: list[bytes] = []
    parts: list[bytes] = [COPY_HEADER]
    in_batch = 0
    written = 0
    point = 0
    while written < shape.rows:
        stamp = pack_q(base_us + point * step_us)
        for machine in machines:
            for metric in metrics:
                if written >= shape.rows:
                    break
                parts.append(
                    row_head + stamp + machine + metric + float_len + pack_d(rng.random() * 100.0)
                )
                written += 1
                in_batch += 1
                if in_batch == batch_size:
                    parts.append(COPY_TRAILER)
                    batches.append(b"".join(parts))
                    parts = [COPY_HEADER]
                    in_batch = 0
        point += 1
    if in_batch:
        parts.append(COPY_TRAILER)
        batches.append(b"".join(parts))
    return batches


# --------------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QuerySpec:
    name: str
    """Benchmark name (``query_<shape>``)."""
    description: str
    template: str
    """SQL with ``{table}``, ``{cagg}``, ``{machine}``, ``{start}``, ``{end}``, ``{high_value}``
    placeholders and no other value in it: :func:`ms5_components.benchmark.runner.render_queries`
    composes it with ``psycopg.sql`` (identifiers and literals quoted by psycopg), the one text
    both the resource and the bench's psql time."""
    full_license_only: bool = False


QUERIES: tuple[QuerySpec, ...] = (
    QuerySpec(
        name="query_lastpoint",
        description="last point of every machine's temperature",
        template="SELECT DISTINCT ON (machine_id) machine_id, time, value FROM {table}"
        " WHERE metric = 'temperature' ORDER BY machine_id, time DESC",
    ),
    QuerySpec(
        name="query_rollup_1h",
        description="1 h time_bucket rollup of one machine's signals over 12 h",
        template="SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, metric, avg(value),"
        " max(value) FROM {table} WHERE machine_id = {machine}"
        " AND time >= {end} - INTERVAL '12 hours' AND time < {end}"
        " GROUP BY bucket, metric ORDER BY bucket, metric",
    ),
    QuerySpec(
        name="query_rollup_24h",
        description="24 h time_bucket rollup of every machine's temperature",
        template="SELECT time_bucket(INTERVAL '24 hours', time) AS bucket, machine_id,"
        " avg(value), max(value) FROM {table} WHERE metric = 'temperature'"
        " AND time >= {start} AND time < {end} GROUP BY bucket, machine_id ORDER BY 1, 2",
    ),
    QuerySpec(
        name="query_groupby_single",
        description="single group-by: one machine, one signal, 1 h by minute",
        template="SELECT time_bucket(INTERVAL '1 minute', time) AS minute, max(value)"
        " FROM {table} WHERE machine_id = {machine} AND metric = 'temperature'"
        " AND time >= {end} - INTERVAL '1 hour' AND time < {end}"
        " GROUP BY minute ORDER BY minute",
    ),
    QuerySpec(
        name="query_groupby_double",
        description="double group-by: every machine by hour over 12 h",
        template="SELECT time_bucket(INTERVAL '1 hour', time) AS hour, machine_id, avg(value)"
        " FROM {table} WHERE metric = 'temperature'"
        " AND time >= {end} - INTERVAL '12 hours' AND time < {end}"
        " GROUP BY hour, machine_id ORDER BY hour, machine_id",
    ),
    QuerySpec(
        name="query_high_value",
        description="high-value filter: the newest 100 samples above 90 over 12 h",
        template="SELECT time, machine_id, metric, value FROM {table}"
        " WHERE value > {high_value} AND time >= {end} - INTERVAL '12 hours' AND time < {end}"
        " ORDER BY time DESC LIMIT 100",
    ),
    QuerySpec(
        name="query_cagg",
        description="read of a continuous aggregate (hourly rollup, one machine, 24 h)",
        template="SELECT bucket, metric, avg_value, max_value FROM {cagg}"
        " WHERE machine_id = {machine} AND bucket >= {start} AND bucket < {end}"
        " ORDER BY bucket, metric",
        full_license_only=True,
    ),
)

CAGG_TEMPLATE = (
    "CREATE MATERIALIZED VIEW {cagg} WITH (timescaledb.continuous,"
    " timescaledb.materialized_only = true) AS"
    " SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, machine_id, metric,"
    " avg(value) AS avg_value, max(value) AS max_value, count(*) AS samples"
    " FROM {table} GROUP BY bucket, machine_id, metric WITH NO DATA"
)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (``q`` in 0..1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, kw_only=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = [s * 1000.0 for s in seconds]
        return cls(
            p50_ms=percentile(ms, 0.50),
            p95_ms=percentile(ms, 0.95),
            p99_ms=percentile(ms, 0.99),
            runs=len(ms),
        )

    def to_output(self) -> dict[str, float]:
        return {
            "p50Ms": round(self.p50_ms, 3),
            "p95Ms": round(self.p95_ms, 3),
            "p99Ms": round(self.p99_ms, 3),
            "runs": self.runs,
        }


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    rows: int
    seconds: float
    batches: Latency
    workers: int
    batch_size: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    name: str
    description: str
    latency: Latency | None
    """None: not applicable on this server (reason in ``note``)."""
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class CompressionResult:
    before_bytes: int = 0
    after_bytes: int = 0
    chunks: int = 0
    note: str = ""
    """Why it was not measured (license), else empty."""

    @property
    def applicable(self) -> bool:
        return not self.note

    @property
    def ratio(self) -> float:
        """Fraction of the size saved."""
        if not self.before_bytes:
            return 0.0
        return 1.0 - self.after_bytes / self.before_bytes


@dataclass(frozen=True, kw_only=True)
class BenchmarkResult:
    stack: str
    license: str
    ingest: IngestResult
    queries: tuple[QueryResult, ...]
    compression: CompressionResult
    seconds: float
    """Wall time of the whole run (setup and cleanup included)."""
    scratch_schema: str
    leftovers: tuple[str, ...] = ()
    """Scratch schemas of earlier runs this run dropped before it started (a killed run's)."""
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def measurements(self) -> list[tuple[str, str, float]]:
        """(benchmark, metric, value) rows: what is stored and compared with the next run."""
        out = [
            (INGEST, "rows_per_second", self.ingest.rows_per_second),
            (INGEST, "batch_p50_ms", self.ingest.batches.p50_ms),
            (INGEST, "batch_p95_ms", self.ingest.batches.p95_ms),
            (INGEST, "batch_p99_ms", self.ingest.batches.p99_ms),
            (INGEST, "rows", float(self.ingest.rows)),
        ]
        for q in self.queries:
            if q.latency is None:
                continue
            out += [
                (q.name, "p50_ms", q.latency.p50_ms),
                (q.name, "p95_ms", q.latency.p95_ms),
                (q.name, "p99_ms", q.latency.p99_ms),
            ]
        if self.compression.applicable:
            out += [
                (COMPRESSION, "ratio", self.compression.ratio),
                (COMPRESSION, "before_bytes", float(self.compression.before_bytes)),
                (COMPRESSION, "after_bytes", float(self.compression.after_bytes)),
            ]
        out.append(("run", "seconds", self.seconds))
        return out

    def to_output(self) -> dict[str, Any]:
        return {
            "compression": {
                "afterBytes": self.compression.after_bytes,
                "beforeBytes": self.compression.before_bytes,
                "chunks": self.compression.chunks,
                "note": self.compression.note,
                "ratio": round(self.compression.ratio, 4) if self.compression.applicable else None,
            },
            "finishedAt": self.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ingest": {
                "batch": self.ingest.batches.to_output(),
                "batchSize": self.ingest.batch_size,
                "rows": self.ingest.rows,
                "rowsPerSecond": round(self.ingest.rows_per_second, 1),
                "seconds": round(self.ingest.seconds, 3),
                "workers": self.ingest.workers,
            },
            "leftoversDropped": list(self.leftovers),
            "license": self.license,
            "queries": {
                q.name: (q.latency.to_output() if q.latency else {"note": q.note})
                for q in self.queries
            },
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------------

Gate = Literal["warn", "fail"]


def evaluate(
    result: BenchmarkResult,
    thresholds: Thresholds,
    *,
    previous: Mapping[tuple[str, str], float] | None = None,
    max_regression_percent: float = 0.0,
    gate_on_regression: bool = False,
) -> Report:
    """Findings against the thresholds, and against the previous run when given: a throughput
    drop or a p95 rise beyond ``max_regression_percent``. Failures of a regression are warnings
    unless ``gate_on_regression``."""
    findings: list[Finding] = []
    rate = result.ingest.rows_per_second
    floor = thresholds.min_ingest_rows_per_second
    if rate >= floor:
        findings.append(ok("ingest", INGEST, f"{rate:,.0f} rows/s (floor {floor:,.0f})"))
    else:
        findings.append(
            fail(
                "ingest",
                INGEST,
                f"{rate:,.0f} rows/s, below the floor of {floor:,.0f} rows/s",
                "check the database's CPU/memory limits and disk (docker stats), then run the "
                "benchmark again (ms5:benchmarkRunId)",
            )
        )
    ceiling = thresholds.max_query_p95_ms
    for q in result.queries:
        if q.latency is None:
            findings.append(not_applicable("query", q.name, q.note))
        elif q.latency.p95_ms <= ceiling:
            findings.append(
                ok("query", q.name, f"p95 {q.latency.p95_ms:.1f} ms (ceiling {ceiling:.0f} ms)")
            )
        else:
            findings.append(
                fail(
                    "query",
                    q.name,
                    f"p95 {q.latency.p95_ms:.1f} ms, above the ceiling of {ceiling:.0f} ms "
                    f"({q.description})",
                    "EXPLAIN ANALYZE the query on the stack; check the indexes and memory "
                    "settings (dbMemoryMb, dbServerSettings)",
                )
            )
    comp = result.compression
    if not comp.applicable:
        findings.append(not_applicable("compression", COMPRESSION, comp.note))
    elif comp.ratio >= thresholds.min_compression_ratio:
        findings.append(
            ok(
                "compression",
                COMPRESSION,
                f"saves {comp.ratio:.1%} (floor {thresholds.min_compression_ratio:.0%})",
            )
        )
    else:
        findings.append(
            fail(
                "compression",
                COMPRESSION,
                f"saves {comp.ratio:.1%}, below the floor of "
                f"{thresholds.min_compression_ratio:.0%}",
                "check the columnstore segment-by/order-by settings of ms5.machine_metrics",
            )
        )
    if result.leftovers:
        findings.append(
            warn(
                "run",
                f"ms5-benchmark-{result.stack}",
                f"dropped the scratch schema(s) {', '.join(result.leftovers)} left by an earlier "
                "run that was killed (or could not drop its own) before this run started",
                "nothing to do if a deploy was interrupted; otherwise find what killed the "
                "earlier run (the provider host's memory, the machine running `pulumi up`)",
            )
        )
    if previous and max_regression_percent > 0:
        findings.extend(_regressions(result, previous, max_regression_percent, gate_on_regression))
    return Report.build(findings)


_NEXT_STEP = {
    "timeout": "lower ms5:benchmarkRows or ms5:benchmarkQueryRuns, or raise "
    "ms5:benchmarkTimeBudgetSeconds; the next `pulumi up` runs the benchmark again",
    "killed": "find what ended the session (the database's log: a restart, an out-of-memory "
    "kill, pg_terminate_backend), then `pulumi up`: the benchmark runs again",
    "error": "fix the cause named above, then `pulumi up`: the benchmark runs again",
}


def failed_run_report(stack: str, failure: BenchmarkRunError, *, gate: bool) -> Report:
    """The report of a run that did not complete: one ``run`` finding on the resource
    ``ms5-benchmark-<stack>`` saying what happened and what became of its scratch schema; a
    failure where the benchmark gates, else a warning (as a missed threshold)."""
    resource = f"ms5-benchmark-{stack}"
    if not failure.scratch_schema:
        scratch = "it had not created its scratch schema"
    elif failure.scratch_dropped:
        scratch = f"its scratch schema {failure.scratch_schema} was dropped"
    else:
        scratch = (
            f"its scratch schema {failure.scratch_schema} could not be dropped now: the next "
            "run drops it before it starts"
        )
    message = f"{resource} did not complete: {failure.message}; {scratch}"
    step = failure.next_step or _NEXT_STEP.get(failure.kind, _NEXT_STEP["error"])
    verdict = fail("run", resource, message, step) if gate else warn("run", resource, message, step)
    findings = [verdict]
    if failure.leftovers:
        findings.append(
            warn(
                "run",
                resource,
                f"dropped the scratch schema(s) {', '.join(failure.leftovers)} left by an "
                "earlier run before this run started",
            )
        )
    return Report.build(findings)


def _regressions(
    result: BenchmarkResult,
    previous: Mapping[tuple[str, str], float],
    limit: float,
    gated: bool,
) -> list[Finding]:
    out: list[Finding] = []
    verdict = fail if gated else warn
    step = "compare with the previous run in ms5_meta.benchmark_results; find what changed"
    before = previous.get((INGEST, "rows_per_second"))
    now_rate = result.ingest.rows_per_second
    if before:
        drop = (before - now_rate) / before * 100
        if drop > limit:
            out.append(
                verdict(
                    "regression",
                    INGEST,
                    f"{now_rate:,.0f} rows/s is {drop:.0f} % below the previous run "
                    f"({before:,.0f}; limit {limit:.0f} %)",
                    step,
                )
            )
    for q in result.queries:
        if q.latency is None:
            continue
        old = previous.get((q.name, "p95_ms"))
        if old:
            rise = (q.latency.p95_ms - old) / old * 100
            # Sub-millisecond jitter is not a regression: the rise must also exceed 1 ms.
            if rise > limit and q.latency.p95_ms - old > 1.0:
                out.append(
                    verdict(
                        "regression",
                        q.name,
                        f"p95 {q.latency.p95_ms:.1f} ms is {rise:.0f} % above the previous run "
                        f"({old:.1f} ms; limit {limit:.0f} %)",
                        step,
                    )
                )
    if not out:
        out.append(ok("regression", "previous run", f"no change beyond {limit:.0f} %"))
    return out
