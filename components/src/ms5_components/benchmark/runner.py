"""The benchmark runner: scratch schema, binary COPY ingest, timed queries, compression.

One run, under a session advisory lock (one benchmark per database at a time):

1. drops every leftover scratch schema (``ms5_bench_*``): with the lock held, any such schema is
   left by a run that was killed (its session, or the provider host process) - the database is
   the source of truth, so a rerun cleans up whatever happened before;
2. creates ``ms5_bench_<token>`` with a copy of ``ms5.machine_metrics`` (columns, constraints,
   indexes) as a hypertable with the same chunk interval;
3. ingests the pre-encoded batches with binary COPY from ``workers`` connections (one transaction
   per batch) and times each batch and the whole phase;
4. on a Timescale-licensed server, builds an hourly continuous aggregate of the scratch table;
5. runs each query ``warmup`` times untimed, then ``runs`` times timed;
6. on a Timescale-licensed server, compresses every chunk and measures the size before/after;
7. drops the scratch schema - always: on success, on failure and on timeout (``finally``), from a
   fresh connection when the run's own session was killed.

A time budget bounds the whole run: a watchdog cancels the run's statements when it expires
(``pg_cancel_backend`` of every session of the run), and the run fails with
:class:`~ms5_components.errors.BenchmarkError` naming the phase.

The results are then stored in ``ms5_meta.benchmark_results`` (a hypertable the runner creates
on first use) and pushed to the Pushgateway with the metric contract of
:mod:`ms5_components.monitoring.metrics`.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ms5_components.benchmark.plan import (
    CAGG_TEMPLATE,
    COPY_COLUMNS,
    INGEST,
    QUERIES,
    SPAN,
    BenchmarkResult,
    CompressionResult,
    DataShape,
    IngestResult,
    Latency,
    QueryResult,
    Thresholds,
    encode_batches,
)
from ms5_components.errors import BenchmarkError
from ms5_components.settings import int_default_of

if TYPE_CHECKING:
    import psycopg

LOCK_KEY = 0x6D73_355F_6265_6E63  # "ms5_benc"
SCRATCH_PREFIX = "ms5_bench_"
SOURCE_TABLE = ("ms5", "machine_metrics")
RESULTS_SCHEMA = "ms5_meta"
RESULTS_TABLE = "benchmark_results"
APPLICATION_PREFIX = "ms5-benchmark-"
FULL_LICENSE = "timescale"


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    dsn: str = field(repr=False)
    stack: str
    rows: int = field(default_factory=lambda: int_default_of("benchmarkRows"))
    batch_size: int = field(default_factory=lambda: int_default_of("benchmarkBatchSize"))
    workers: int = field(default_factory=lambda: int_default_of("benchmarkWorkers"))
    query_runs: int = field(default_factory=lambda: int_default_of("benchmarkQueryRuns"))
    warmup_runs: int = field(default_factory=lambda: int_default_of("benchmarkWarmupRuns"))
    time_budget_seconds: float = field(
        default_factory=lambda: float(int_default_of("benchmarkTimeBudgetSeconds"))
    )
    machines: int = 50
    metrics: int = 10
    run_id: str = ""
    connect_timeout_seconds: int = 10


class _Budget:
    """The run's deadline and the watchdog that cancels the run's statements at it."""

    def __init__(self, dsn: str, application_name: str, seconds: float) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.phase = "setup"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ms5-benchmark-watchdog")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.deadline - time.monotonic())):
            return
        self.expired = True
        import psycopg

        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (self.application_name,),
                )
        except psycopg.Error:
            pass  # the run notices the expiry at its next check

    def check(self, phase: str) -> None:
        self.phase = phase
        if self.expired or time.monotonic() >= self.deadline:
            self.expired = True
            raise self.error()

    def error(self) -> BenchmarkError:
        return BenchmarkError(
            f"the benchmark exceeded its time budget of {self.seconds:.0f} s during {self.phase} "
            "(ms5:benchmarkTimeBudgetSeconds); it was stopped and its scratch schema dropped. "
            "Lower ms5:benchmarkRows / ms5:benchmarkQueryRuns or raise the budget"
        )


def _connect(config: BenchmarkConfig, application_name: str) -> psycopg.Connection[tuple[Any, ...]]:
    import psycopg

    return psycopg.connect(
        config.dsn,
        autocommit=True,
        connect_timeout=config.connect_timeout_seconds,
        application_name=application_name,
    )


def _scrub(message: str, dsn: str) -> str:
    from ms5_components.migrations.runner import scrub

    return scrub(message, dsn)


# --------------------------------------------------------------------------------------------------
# Scratch schemas
# --------------------------------------------------------------------------------------------------


def scratch_schemas(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE %s ORDER BY 1",
        (SCRATCH_PREFIX.replace("_", r"\_") + "%",),
    ).fetchall()
    return [str(r[0]) for r in rows]


def drop_schema(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> None:
    """Drop a scratch schema and everything in it (continuous aggregates first)."""
    from psycopg import sql

    caggs = conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = %s",
        (schema,),
    ).fetchall()
    for (view,) in caggs:
        conn.execute(
            sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {} CASCADE").format(
                sql.Identifier(schema, str(view))
            )
        )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def drop_leftovers(dsn: str, *, connect_timeout_seconds: int = 10) -> list[str]:
    """Drop every scratch schema no running benchmark holds; returns what was dropped. Does
    nothing when another benchmark holds the lock."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_seconds) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if not row or not row[0]:
            return []
        try:
            dropped = scratch_schemas(conn)
            for schema in dropped:
                drop_schema(conn, schema)
            return dropped
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


def _setup(conn: psycopg.Connection[tuple[Any, ...]], schema: str, stack: str) -> dict[str, Any]:
    """Create the scratch schema and hypertable; returns what the later phases need."""
    from psycopg import sql

    src_schema, src_table = SOURCE_TABLE
    row = conn.execute(
        "SELECT d.time_interval, current_setting('timescaledb.license', true)"
        " FROM timescaledb_information.dimensions d"
        " WHERE d.hypertable_schema = %s AND d.hypertable_name = %s AND d.dimension_number = 1",
        (src_schema, src_table),
    ).fetchone()
    if row is None:
        raise BenchmarkError(
            f"{src_schema}.{src_table} is not a hypertable here: the benchmark runs on the MS5.0 "
            "schema. Run the migrations first (`pulumi up` creates the MigrationSet)"
        )
    interval, license_ = row
    segment = conn.execute(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings"
        " WHERE hypertable = %s::regclass",
        (f"{src_schema}.{src_table}",),
    ).fetchone()
    table = sql.Identifier(schema, src_table)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(schema),
            sql.Literal(f"ms5 benchmark scratch schema of stack {stack}; dropped after the run"),
        )
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        ).format(table, sql.Identifier(src_schema, src_table))
    )
    conn.execute(
        "SELECT create_hypertable(%s::regclass, by_range('time', %s::interval))",
        (f"{schema}.{src_table}", interval),
    )
    return {
        "license": str(license_ or ""),
        "segment_by": str(segment[0]) if segment and segment[0] else "machine_id, metric",
        "order_by": str(segment[1]) if segment and segment[1] else "time DESC",
    }


def _ingest(
    config: BenchmarkConfig, batches: list[bytes], schema: str, app: str, budget: _Budget
) -> IngestResult:
    from psycopg import sql

    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(schema, SOURCE_TABLE[1]),
        sql.SQL(", ").join([sql.Identifier(c) for c in COPY_COLUMNS]),
    )
    lock = threading.Lock()
    next_batch = iter(range(len(batches)))
    latencies: list[float] = []
    errors: list[BaseException] = []
    workers = max(1, min(config.workers, len(batches)))
    connections = [_connect(config, app) for _ in range(workers)]
    ready = threading.Barrier(workers + 1)

    def work(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        ready.wait()
        try:
            with conn.cursor() as cur:
                while not errors:
                    with lock:
                        index = next(next_batch, None)
                    if index is None:
                        return
                    if budget.expired:
                        errors.append(budget.error())
                        return
                    started = time.perf_counter()
                    with cur.copy(copy_sql) as copy:
                        copy.write(batches[index])
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in connections]
    try:
        for thread in threads:
            thread.start()
        ready.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        for conn in connections:
            conn.close()
    if errors:
        raise errors[0]
    rows = config.rows
    return IngestResult(
        rows=rows,
        seconds=seconds,
        batches=Latency.of(latencies),
        workers=workers,
        batch_size=config.batch_size,
    )


def render_queries(
    conn: psycopg.Connection[tuple[Any, ...]], schema: str, shape: DataShape
) -> dict[str, str]:
    """The exact SQL text of every query (identifiers and literals quoted by psycopg)."""
    from psycopg import sql

    values = {
        "table": sql.Identifier(schema, SOURCE_TABLE[1]),
        "cagg": sql.Identifier(schema, "machine_metrics_1h"),
        "machine": sql.Literal(shape.machine_ids()[min(7, shape.machines - 1)]),
        "start": sql.SQL("{}::timestamptz").format(sql.Literal((shape.end - SPAN).isoformat())),
        "end": sql.SQL("{}::timestamptz").format(sql.Literal(shape.end.isoformat())),
    }
    out = {}
    for spec in QUERIES:
        out[spec.name] = sql.SQL(spec.template).format(**values).as_string(conn)
    return out


def _time_queries(
    conn: psycopg.Connection[tuple[Any, ...]],
    texts: Mapping[str, str],
    *,
    full: bool,
    license_: str,
    config: BenchmarkConfig,
    budget: _Budget,
) -> tuple[QueryResult, ...]:
    out = []
    for spec in QUERIES:
        if spec.full_license_only and not full:
            out.append(
                QueryResult(
                    name=spec.name,
                    description=spec.description,
                    latency=None,
                    note=f"not applicable: continuous aggregates need the Timescale license; "
                    f'this server has "{license_}"',
                )
            )
            continue
        text = texts[spec.name]
        for _ in range(config.warmup_runs):
            budget.check(f"warm-up of {spec.name}")
            conn.execute(text, prepare=False).fetchall()
        timings = []
        for _ in range(config.query_runs):
            budget.check(spec.name)
            # The timed span is the one psql's \timing reports: from sending the query until
            # its whole result has arrived. execute() returns once libpq holds every row;
            # converting them to Python objects (fetchall) is client work, left outside.
            with conn.cursor() as cur:
                started = time.perf_counter()
                cur.execute(text, prepare=False)
                timings.append(time.perf_counter() - started)
                cur.fetchall()
        out.append(
            QueryResult(name=spec.name, description=spec.description, latency=Latency.of(timings))
        )
    return tuple(out)


def _compress(
    conn: psycopg.Connection[tuple[Any, ...]], schema: str, setup: Mapping[str, str]
) -> CompressionResult:
    from psycopg import sql

    table = sql.Identifier(schema, SOURCE_TABLE[1])
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {},"
            " timescaledb.compress_orderby = {})"
        ).format(table, sql.Literal(setup["segment_by"]), sql.Literal(setup["order_by"]))
    )
    chunks = conn.execute(
        sql.SQL("SELECT compress_chunk(c) FROM show_chunks({}) c").format(
            sql.Literal(f"{schema}.{SOURCE_TABLE[1]}")
        )
    ).fetchall()
    row = conn.execute(
        "SELECT coalesce(sum(before_compression_total_bytes), 0),"
        " coalesce(sum(after_compression_total_bytes), 0)"
        " FROM hypertable_compression_stats(%s::regclass)",
        (f"{schema}.{SOURCE_TABLE[1]}",),
    ).fetchone()
    assert row is not None
    return CompressionResult(before_bytes=int(row[0]), after_bytes=int(row[1]), chunks=len(chunks))


@contextmanager
def _locked_session(
    config: BenchmarkConfig, app: str
) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    conn = _connect(config, app)
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if not row or not row[0]:
            holder = conn.execute(
                "SELECT coalesce(string_agg(a.application_name || ' pid ' || a.pid, ', '), '?')"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
                (LOCK_KEY,),
            ).fetchone()
            raise BenchmarkError(
                f"another benchmark is running on this database ({holder[0] if holder else '?'});"
                " wait for it to finish, then run `pulumi up` again"
            )
        yield conn
    finally:
        conn.close()


def run(
    config: BenchmarkConfig, *, on_phase: Callable[[str, str], None] | None = None
) -> BenchmarkResult:
    """One benchmark run (see the module docstring). ``on_phase(phase, scratch_schema)`` is
    called as each phase starts (tests use it to kill the run at a chosen point)."""
    import psycopg

    token = secrets.token_hex(4)
    schema = f"{SCRATCH_PREFIX}{token}"
    app = f"{APPLICATION_PREFIX}{token}"
    shape = DataShape(rows=config.rows, machines=config.machines, metrics=config.metrics)
    started = time.perf_counter()
    budget = _Budget(config.dsn, app, config.time_budget_seconds)
    budget.start()

    def phase(name: str) -> None:
        budget.check(name)
        if on_phase is not None:
            on_phase(name, schema)

    try:
        with _locked_session(config, app) as conn:
            try:
                phase("cleanup of leftovers")
                for leftover in scratch_schemas(conn):
                    drop_schema(conn, leftover)
                phase("setup")
                setup = _setup(conn, schema, config.stack)
                full = setup["license"] == FULL_LICENSE
                batches = encode_batches(shape, config.batch_size)
                phase("ingest")
                ingest = _ingest(config, batches, schema, app, budget)
                del batches
                phase("analyze")
                conn.execute(
                    f"ANALYZE {psycopg.sql.Identifier(schema, SOURCE_TABLE[1]).as_string(conn)}"
                )
                texts = render_queries(conn, schema, shape)
                if full:
                    phase("continuous aggregate")
                    conn.execute(
                        psycopg.sql.SQL(CAGG_TEMPLATE).format(
                            cagg=psycopg.sql.Identifier(schema, "machine_metrics_1h"),
                            table=psycopg.sql.Identifier(schema, SOURCE_TABLE[1]),
                        )
                    )
                    conn.execute(
                        "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)",
                        (f"{schema}.machine_metrics_1h",),
                    )
                phase("queries")
                queries = _time_queries(
                    conn, texts, full=full, license_=setup["license"], config=config, budget=budget
                )
                if full:
                    phase("compression")
                    compression = _compress(conn, schema, setup)
                else:
                    compression = CompressionResult(
                        note="not applicable: compression needs the Timescale license; this "
                        f'server has "{setup["license"]}"'
                    )
                budget.check("cleanup")
            finally:
                _cleanup(config, conn, schema)
    except psycopg.errors.QueryCanceled as exc:
        if budget.expired:
            raise budget.error() from None
        raise BenchmarkError(
            f"benchmark statement cancelled: {_scrub(str(exc), config.dsn)}"
        ) from None
    except psycopg.Error as exc:
        if budget.expired:
            raise budget.error() from None
        raise BenchmarkError(
            f"the benchmark failed during {budget.phase}: {_scrub(str(exc), config.dsn)}; its "
            "scratch schema was dropped (or is dropped by the next run). Run `pulumi up` again"
        ) from None
    finally:
        budget.stop()
    return BenchmarkResult(
        stack=config.stack,
        license=setup["license"],
        ingest=ingest,
        queries=queries,
        compression=compression,
        seconds=time.perf_counter() - started,
        scratch_schema=schema,
    )


def _cleanup(
    config: BenchmarkConfig, conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    """Drop the scratch schema: on the run's session, or a fresh one if that one is gone. A
    failure here is left to the next run (which drops every leftover)."""
    import psycopg

    try:
        if not conn.closed and not conn.broken:
            drop_schema(conn, schema)
            return
    except psycopg.Error:
        pass
    try:
        with _connect(config, "ms5-benchmark-cleanup") as fresh:
            drop_schema(fresh, schema)
    except psycopg.Error:
        pass


# --------------------------------------------------------------------------------------------------
# History and metrics
# --------------------------------------------------------------------------------------------------

_RESULTS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS ms5_meta",
    "CREATE TABLE IF NOT EXISTS ms5_meta.benchmark_results ("
    " time timestamptz NOT NULL, stack text NOT NULL, run_id text NOT NULL,"
    " benchmark text NOT NULL, metric text NOT NULL, value double precision NOT NULL)",
    "SELECT create_hypertable('ms5_meta.benchmark_results', by_range('time', INTERVAL '30 days'),"
    " if_not_exists => true)",
    "CREATE INDEX IF NOT EXISTS benchmark_results_stack_time_idx"
    " ON ms5_meta.benchmark_results (stack, time DESC)",
    "COMMENT ON TABLE ms5_meta.benchmark_results IS"
    " 'One row per measurement of each benchmark run (written by the Benchmark resource)'",
)


def previous_run(dsn: str, stack: str) -> dict[tuple[str, str], float]:
    """The measurements of the stack's latest stored run (empty when none)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('ms5_meta.benchmark_results')").fetchone()
        if not exists or exists[0] is None:
            return {}
        rows = conn.execute(
            "SELECT benchmark, metric, value FROM ms5_meta.benchmark_results"
            " WHERE stack = %(stack)s AND time = (SELECT max(time)"
            " FROM ms5_meta.benchmark_results WHERE stack = %(stack)s)",
            {"stack": stack},
        ).fetchall()
    return {(str(b), str(m)): float(v) for b, m, v in rows}


def record(dsn: str, result: BenchmarkResult, *, run_id: str) -> None:
    """Store the run's measurements (one row each, one timestamp per run)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        for ddl in _RESULTS_DDL:
            conn.execute(ddl)
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ms5_meta.benchmark_results"
                " (time, stack, run_id, benchmark, metric, value)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (result.finished_at, result.stack, run_id, b, m, v)
                    for b, m, v in result.measurements()
                ],
            )


def metrics_text(result: BenchmarkResult, thresholds: Thresholds) -> str:
    """The Pushgateway body: the benchmark metrics of the contract (baselines are the stack's
    thresholds)."""
    from ms5_components.monitoring import metrics as m

    lines: list[str] = []

    def family(metric: m.PushedMetric, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{labels[k]}"' for k in metric.labels)
            lines.append(f"{metric.name}{{{rendered}}} {value!r}")

    finished = result.finished_at.timestamp()
    family(m.BENCHMARK_THROUGHPUT, [({"benchmark": INGEST}, result.ingest.rows_per_second)])
    family(
        m.BENCHMARK_THROUGHPUT_BASELINE,
        [({"benchmark": INGEST}, thresholds.min_ingest_rows_per_second)],
    )
    latency: list[tuple[dict[str, str], float]] = []
    baseline: list[tuple[dict[str, str], float]] = []
    last_run: list[tuple[dict[str, str], float]] = [({"benchmark": INGEST}, finished)]
    for q in result.queries:
        if q.latency is None:
            continue
        for quantile, value in (
            ("0.5", q.latency.p50_ms),
            ("0.95", q.latency.p95_ms),
            ("0.99", q.latency.p99_ms),
        ):
            latency.append(({"benchmark": q.name, "quantile": quantile}, value / 1000.0))
            baseline.append(
                ({"benchmark": q.name, "quantile": quantile}, thresholds.max_query_p95_ms / 1000.0)
            )
        last_run.append(({"benchmark": q.name}, finished))
    family(m.BENCHMARK_LATENCY, latency)
    family(m.BENCHMARK_LATENCY_BASELINE, baseline)
    family(m.BENCHMARK_LAST_RUN, last_run)
    return "\n".join(lines) + "\n"


def push(url: str, result: BenchmarkResult, thresholds: Thresholds) -> None:
    """PUT the metrics under ``job=ms5_benchmark``, ``instance=<stack>`` (replacing the group)."""
    from urllib.parse import quote

    from ms5_components.monitoring import metrics as m

    target = f"{url.rstrip('/')}/metrics/job/{m.PUSH_JOB_BENCHMARK}/instance/{quote(result.stack)}"
    body = metrics_text(result, thresholds).encode()
    request = urllib.request.Request(target, data=body, method="PUT")  # noqa: S310 - URL from settings
    request.add_header("Content-Type", "text/plain; version=0.0.4")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - URL from settings
        if response.status not in (200, 202):
            raise OSError(f"PUT {target} answered HTTP {response.status}")
