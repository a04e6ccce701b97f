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
7. drops the scratch schema: on success, on an error and on timeout (``finally``), from a fresh
   connection when the run's own session was terminated. Only a run whose process is killed
   (or whose database is unreachable at the end) leaves it behind, for step 1 of the next run.

A time budget bounds the whole run: a watchdog cancels the run's statements when it expires
(``pg_cancel_backend`` of every session of the run). A run that does not complete raises
:class:`~ms5_components.errors.BenchmarkRunError`: what happened (``error``, ``timeout``,
``killed``), the phase, and whether its scratch schema is gone; the Benchmark resource records it
as a failed run.

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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ms5_components.benchmark.plan import (
    CAGG_TEMPLATE,
    COPY_COLUMNS,
    HIGH_VALUE,
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
from ms5_components.errors import BenchmarkError, BenchmarkRunError
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
CAGG_NAME = "machine_metrics_1h"
"""The continuous aggregate of the scratch table (in the scratch schema)."""


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
            f"timed out after {self.seconds:.0f} s (ms5:benchmarkTimeBudgetSeconds) during "
            f"{self.phase}"
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


def _regclass(conn: psycopg.Connection[tuple[Any, ...]], schema: str, table: str) -> str:
    """``schema.table`` quoted as SQL identifiers: the text a ``%s::regclass`` parameter takes."""
    from psycopg import sql

    return sql.Identifier(schema, table).as_string(conn)


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
    source = _source(conn)
    _create_scratch(conn, schema, stack, source)
    return source


def _source(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, Any]:
    """The source hypertable's chunk interval and compression settings, and the license."""
    src_schema, src_table = SOURCE_TABLE
    row = conn.execute(
        "SELECT d.time_interval, current_setting('timescaledb.license', true)"
        " FROM timescaledb_information.dimensions d"
        " WHERE d.hypertable_schema = %s AND d.hypertable_name = %s AND d.dimension_number = 1",
        (src_schema, src_table),
    ).fetchone()
    if row is None:
        raise BenchmarkRunError(
            f"{src_schema}.{src_table} is not a hypertable here: the benchmark runs on the MS5.0 "
            "schema",
            kind="error",
            phase="setup",
            next_step="run the migrations first (`pulumi up` creates the MigrationSet), then "
            "`pulumi up` again",
        )
    interval, license_ = row
    segment = conn.execute(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings"
        " WHERE hypertable = %s::regclass",
        (_regclass(conn, src_schema, src_table),),
    ).fetchone()
    return {
        "interval": interval,
        "license": str(license_ or ""),
        "segment_by": str(segment[0]) if segment and segment[0] else "machine_id, metric",
        "order_by": str(segment[1]) if segment and segment[1] else "time DESC",
    }


def _create_scratch(
    conn: psycopg.Connection[tuple[Any, ...]], schema: str, stack: str, source: Mapping[str, Any]
) -> None:
    """The scratch schema with its copy of the source hypertable."""
    from psycopg import sql

    src_schema, src_table = SOURCE_TABLE
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
        (_regclass(conn, schema, src_table), source["interval"]),
    )


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
    """The exact SQL text of every query, composed with ``psycopg.sql`` (identifiers and literals
    quoted by psycopg). The resource times this text, and the bench times the same text with
    psql: both call this function."""
    from psycopg import sql

    values = {
        "table": sql.Identifier(schema, SOURCE_TABLE[1]),
        "cagg": sql.Identifier(schema, CAGG_NAME),
        "machine": sql.Literal(shape.machine_ids()[min(7, shape.machines - 1)]),
        "start": sql.SQL("{}::timestamptz").format(sql.Literal((shape.end - SPAN).isoformat())),
        "end": sql.SQL("{}::timestamptz").format(sql.Literal(shape.end.isoformat())),
        "high_value": sql.Literal(HIGH_VALUE),
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
    only: str | None = None,
) -> tuple[QueryResult, ...]:
    """Each query's warm-up then timed runs (``only``: just the query of that name)."""
    out = []
    for spec in QUERIES:
        if only is not None and spec.name != only:
            continue
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
        command = text.encode(conn.info.encoding)
        for _ in range(config.query_runs):
            budget.check(spec.name)
            timings.append(_timed_exec(conn, command))
        out.append(
            QueryResult(name=spec.name, description=spec.description, latency=Latency.of(timings))
        )
    return tuple(out)


def _timed_exec(conn: psycopg.Connection[tuple[Any, ...]], command: bytes) -> float:
    """Seconds one query takes, timed over the span psql's ``\\timing`` reports: from sending it
    until its whole result has arrived. libpq's ``PQexec`` (simple protocol, as psql sends it,
    the GIL released while it waits) is that span exactly; psycopg's ``execute`` would add its
    own Python-side work per call. A failed query raises the error psycopg raises for it."""
    import psycopg
    from psycopg import pq

    started = time.perf_counter()
    result = conn.pgconn.exec_(command)
    elapsed = time.perf_counter() - started
    if result.status != pq.ExecStatus.TUPLES_OK:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    result.clear()
    return elapsed


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
    regclass = _regclass(conn, schema, SOURCE_TABLE[1])
    chunks = conn.execute(
        "SELECT compress_chunk(c) FROM show_chunks(%s::regclass) c", (regclass,)
    ).fetchall()
    row = conn.execute(
        "SELECT coalesce(sum(before_compression_total_bytes), 0),"
        " coalesce(sum(after_compression_total_bytes), 0)"
        " FROM hypertable_compression_stats(%s::regclass)",
        (regclass,),
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
            raise BenchmarkRunError(
                f"another benchmark is running on this database ({holder[0] if holder else '?'})",
                kind="error",
                phase="lock",
                next_step="wait for it to finish, then run `pulumi up` again",
            )
        yield conn
    finally:
        conn.close()


def analyze(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> None:
    """``ANALYZE`` the scratch table (the planner's statistics for the timed queries)."""
    from psycopg import sql

    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, SOURCE_TABLE[1])))


def create_cagg(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> None:
    """Create the hourly continuous aggregate of the scratch table and materialize it (Timescale
    license): what ``query_cagg`` reads."""
    from psycopg import sql

    conn.execute(
        sql.SQL(CAGG_TEMPLATE).format(
            cagg=sql.Identifier(schema, CAGG_NAME),
            table=sql.Identifier(schema, SOURCE_TABLE[1]),
        )
    )
    conn.execute(
        "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)",
        (_regclass(conn, schema, CAGG_NAME),),
    )


def run(
    config: BenchmarkConfig, *, on_phase: Callable[[str, str], None] | None = None
) -> BenchmarkResult:
    """One benchmark run (see the module docstring). ``on_phase(phase, scratch_schema)`` is
    called as each phase starts (tests use it to kill the run at a chosen point). A run that
    does not complete raises :class:`BenchmarkRunError`."""
    import psycopg

    token = secrets.token_hex(4)
    schema = f"{SCRATCH_PREFIX}{token}"
    app = f"{APPLICATION_PREFIX}{token}"
    shape = DataShape(rows=config.rows, machines=config.machines, metrics=config.metrics)
    started = time.perf_counter()
    budget = _Budget(config.dsn, app, config.time_budget_seconds)
    budget.start()
    leftovers: list[str] = []
    created = False
    dropped = False
    session: list[psycopg.Connection[tuple[Any, ...]]] = []

    def phase(name: str) -> None:
        budget.check(name)
        if on_phase is not None:
            on_phase(name, schema)

    try:
        phase("connection")
        with _locked_session(config, app) as conn:
            session.append(conn)
            try:
                phase("cleanup of leftovers")
                for leftover in scratch_schemas(conn):
                    drop_schema(conn, leftover)
                    leftovers.append(leftover)
                phase("setup")
                setup = _source(conn)
                created = True
                _create_scratch(conn, schema, config.stack, setup)
                full = setup["license"] == FULL_LICENSE
                batches = encode_batches(shape, config.batch_size)
                phase("ingest")
                ingest = _ingest(config, batches, schema, app, budget)
                del batches
                phase("analyze")
                analyze(conn, schema)
                texts = render_queries(conn, schema, shape)
                if full:
                    phase("continuous aggregate")
                    create_cagg(conn, schema)
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
                dropped = _cleanup(config, conn, schema) if created else True
    except (BenchmarkError, psycopg.Error) as exc:
        raise _failure(
            exc,
            config=config,
            budget=budget,
            session=session[0] if session else None,
            scratch_schema=schema if created else "",
            scratch_dropped=dropped,
            seconds=time.perf_counter() - started,
            leftovers=tuple(leftovers),
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
        leftovers=tuple(leftovers),
    )


def _failure(
    exc: BaseException,
    *,
    config: BenchmarkConfig,
    budget: _Budget,
    session: psycopg.Connection[tuple[Any, ...]] | None,
    scratch_schema: str,
    scratch_dropped: bool,
    seconds: float,
    leftovers: tuple[str, ...],
) -> BenchmarkRunError:
    """What became of a run that did not complete: timed out (its budget expired), killed (its
    session was terminated, or the server shut down under it), or an error (the server's message,
    scrubbed of the DSN)."""
    import psycopg

    kind, next_step = "error", ""
    text = _scrub(str(exc), config.dsn)
    if budget.expired:
        kind = "timeout"
        message = str(budget.error())
    elif isinstance(exc, BenchmarkRunError):
        message, next_step = exc.message, exc.next_step
    elif isinstance(exc, psycopg.errors.AdminShutdown) or (session is not None and session.broken):
        kind = "killed"
        message = (
            f"its database session was terminated during {budget.phase} (killed, or the server "
            f"shut down): {text}"
        )
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        message = f"a statement was cancelled during {budget.phase}: {text}"
    else:
        message = f"failed during {budget.phase}: {text}"
    return BenchmarkRunError(
        message,
        kind=kind,
        phase=budget.phase,
        scratch_schema=scratch_schema,
        scratch_dropped=scratch_dropped,
        seconds=seconds,
        leftovers=leftovers,
        next_step=next_step,
    )


def _cleanup(
    config: BenchmarkConfig, conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> bool:
    """Drop the scratch schema: on the run's session, or a fresh one if that one is gone.
    Returns whether it is gone; if not, the next run drops it (it drops every leftover)."""
    import psycopg

    try:
        if not conn.closed and not conn.broken:
            drop_schema(conn, schema)
            return True
    except psycopg.Error:
        pass
    try:
        with _connect(config, "ms5-benchmark-cleanup") as fresh:
            drop_schema(fresh, schema)
            return True
    except psycopg.Error:
        return False


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


FAILED = ("run", "failed")
"""(benchmark, metric) of the row a run that did not complete stores (value 1)."""


def previous_run(dsn: str, stack: str) -> dict[tuple[str, str], float]:
    """The measurements of the stack's latest completed run (empty when none; a run that did
    not complete measured nothing to compare with). An unreachable database raises
    :class:`BenchmarkRunError` (the run cannot start)."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('ms5_meta.benchmark_results')").fetchone()
            if not exists or exists[0] is None:
                return {}
            rows = conn.execute(
                "SELECT benchmark, metric, value FROM ms5_meta.benchmark_results"
                " WHERE stack = %(stack)s AND time = (SELECT max(time)"
                " FROM ms5_meta.benchmark_results WHERE stack = %(stack)s"
                " AND benchmark = %(ingest)s AND metric = 'rows_per_second')",
                {"stack": stack, "ingest": INGEST},
            ).fetchall()
    except psycopg.Error as exc:
        raise BenchmarkRunError(
            f"failed reading the previous run: {_scrub(str(exc), dsn)}",
            kind="error",
            phase="reading the previous run",
            scratch_dropped=True,
        ) from None
    return {(str(b), str(m)): float(v) for b, m, v in rows}


def _store(dsn: str, rows: list[tuple[Any, ...]]) -> str:
    """Insert ``rows`` into the results hypertable; returns "" when stored, else why not
    (scrubbed): a database that is down is no reason to raise."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            for ddl in _RESULTS_DDL:
                conn.execute(ddl)
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO ms5_meta.benchmark_results"
                    " (time, stack, run_id, benchmark, metric, value)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    rows,
                )
    except psycopg.Error as exc:
        return f"not stored: {_scrub(str(exc), dsn)}"
    return ""


def record(dsn: str, result: BenchmarkResult, *, run_id: str) -> str:
    """Store the run's measurements (one row each, one timestamp per run); returns "" when
    stored, else why not."""
    return _store(
        dsn,
        [(result.finished_at, result.stack, run_id, b, m, v) for b, m, v in result.measurements()],
    )


def record_failure(
    dsn: str, stack: str, failure: BenchmarkRunError, *, run_id: str, finished_at: datetime
) -> str:
    """Store that a run did not complete (``run/failed`` 1 and its ``run/seconds``); returns ""
    when stored, else why not."""
    return _store(
        dsn,
        [
            (finished_at, stack, run_id, *FAILED, 1.0),
            (finished_at, stack, run_id, "run", "seconds", failure.seconds),
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
