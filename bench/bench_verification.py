"""Benchmark of the Benchmark resource's own measuring (figures, not a test: nothing asserts;
it prints every ratio, then exits 1 when one misses its target below).

    uv run python bench/bench_verification.py                 # starts a server in the test root
    MS5_TEST_PG_DSN=postgresql://... uv run python bench/bench_verification.py --rows 200000

Measured side by side in one run, on one server, on the MS5.0 schema:

1. **Ingest** (target: the resource's ingest reaches at least 0.9x raw): the resource's ingest
   (pre-encoded binary COPY batches from ``--workers`` connections, one transaction per batch)
   against one raw binary ``COPY ... FROM STDIN (FORMAT BINARY)`` stream of the same rows from one
   connection, each into a fresh copy of ``ms5.machine_metrics`` created the same way. Alternated
   ``--repeat`` times; medians compared.
2. **Query latency** (target: within 10 % of psql): each benchmark query timed by the resource's
   code (libpq's PQexec on its psycopg connection, warm-up then timed runs) and the same SQL text
   timed by ``psql`` (``\\timing``) on the same data in the same run; medians compared. On a Timescale-licensed server the
   continuous-aggregate query too: the cagg is created and refreshed as the resource does.

Then one whole run of the resource's benchmark (ingest, queries, compression) with its figures
next to the old verify script's three targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from ms5_components.benchmark import runner
from ms5_components.benchmark.plan import (
    COPY_COLUMNS,
    QUERIES,
    DataShape,
    Thresholds,
    encode_batches,
    evaluate,
)
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import run as run_migrations


@contextmanager
def server_dsn(dsn: str | None) -> Iterator[tuple[str, object | None]]:
    if dsn:
        yield dsn, None
        return
    import importlib

    testenv = importlib.import_module("ms5_testenv")  # tools/, on sys.path above
    env = testenv.ServiceEnv()
    try:
        server = env.start_postgres()
        yield server.dsn, env
    finally:
        env.close()


@contextmanager
def migrated_database(admin_dsn: str) -> Iterator[str]:
    name = f"ms5_benchv_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )
    dsn = make_conninfo(admin_dsn, dbname=name)
    try:
        run_migrations(dsn, load_directory(repository_migrations_dir()))
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _fresh_table(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    runner.drop_schema(conn, schema)
    runner._setup(conn, schema, "bench")


def raw_copy(dsn: str, schema: str, payload: bytes, rows: int) -> float:
    """rows/s of one binary COPY stream of every row from one connection."""
    table = sql.Identifier(schema, runner.SOURCE_TABLE[1])
    cols = sql.SQL(", ").join([sql.Identifier(c) for c in COPY_COLUMNS])
    with psycopg.connect(dsn, autocommit=True) as conn:
        _fresh_table(conn, schema)
        with conn.cursor() as cur:
            started = time.perf_counter()
            with cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, cols)
            ) as copy:
                copy.write(payload)
            seconds = time.perf_counter() - started
    return rows / seconds


def resource_ingest(config: runner.BenchmarkConfig, schema: str, batches: list[bytes]) -> float:
    """rows/s of the resource's ingest phase (its own code) into a fresh table."""
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        _fresh_table(conn, schema)
    budget = runner._Budget(config.dsn, "ms5-benchmark-bench", 3600)
    return runner._ingest(config, batches, schema, "ms5-benchmark-bench", budget).rows_per_second


INGEST_TARGET = 0.90
"""The resource's ingest reaches at least this fraction of one raw binary COPY stream."""
QUERY_TOLERANCE = 0.10
"""The resource's query latency is within this fraction of psql's, either way."""

_TIME_RE = re.compile(r"^Time: ([0-9.]+) ms", re.MULTILINE)


def psql_timings(dsn: str, env: object | None, text: str, runs: int, warmup: int) -> list[float]:
    """Milliseconds per run of ``text`` as psql's ``\\timing`` reports them."""
    script = "\\timing on\n\\o /dev/null\n" + "".join(f"{text};\n" for _ in range(warmup + runs))
    if env is not None:
        result = env.psql(dsn, script, timeout=600)  # type: ignore[attr-defined]
        output = result.stdout + result.stderr
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
            handle.write(script)
        try:
            proc = subprocess.run(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", handle.name],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            Path(handle.name).unlink()
        output = proc.stdout + proc.stderr
    values = [float(m) for m in _TIME_RE.findall(output)]
    if len(values) != warmup + runs:
        raise SystemExit(
            f"psql printed {len(values)} timings, expected {warmup + runs}:\n{output[-2000:]}"
        )
    return values[warmup:]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("MS5_TEST_PG_DSN"))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--query-runs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    with server_dsn(args.dsn) as (admin, env), migrated_database(admin) as dsn:
        shape = DataShape(rows=args.rows)
        batches = encode_batches(shape, args.batch_size)
        payload = encode_batches(shape, args.rows)[0]
        config = runner.BenchmarkConfig(
            dsn=dsn,
            stack="bench",
            rows=args.rows,
            batch_size=args.batch_size,
            workers=args.workers,
            query_runs=args.query_runs,
            warmup_runs=args.warmup,
        )
        schema = "ms5_benchv_side"
        ours, raw = [], []
        for _ in range(args.repeat):
            ours.append(resource_ingest(config, schema, batches))
            raw.append(raw_copy(dsn, schema, payload, args.rows))
        ingest_ratio = statistics.median(ours) / statistics.median(raw)
        best_ratio = max(ours) / max(raw)
        print(
            f"ingest ({args.rows:,} rows, batch {args.batch_size:,}, {args.workers} workers, "
            f"alternated {args.repeat} times):"
        )
        print(
            f"  resource ingest    median {statistics.median(ours):>10,.0f}  "
            f"best {max(ours):>10,.0f} rows/s"
        )
        print(
            f"  raw binary COPY    median {statistics.median(raw):>10,.0f}  "
            f"best {max(raw):>10,.0f} rows/s"
        )
        print(
            f"  ratio resource/raw median {ingest_ratio:>10.2f}  best {best_ratio:>10.2f}"
            f"   (target >= {INGEST_TARGET:.2f})"
        )

        # Queries on the data the resource just ingested (same table for both clients), prepared
        # as the resource's run prepares them.
        resource_ingest(config, schema, batches)
        with psycopg.connect(dsn, autocommit=True) as conn:
            runner.analyze(conn, schema)
            license_ = str(conn.execute("SHOW timescaledb.license").fetchone()[0])  # type: ignore[index]
            full = license_ == runner.FULL_LICENSE
            if full:
                runner.create_cagg(conn, schema)
            texts = runner.render_queries(conn, schema, shape)
            # Alternate the two clients query by query in rounds, each going first in every
            # other round, so a change of machine load hits both alike.
            rounds = max(1, args.rounds)
            per_round = max(1, args.query_runs // rounds)
            small = dataclasses.replace(config, query_runs=per_round, warmup_runs=args.warmup)
            ours_ms: dict[str, list[float]] = {q.name: [] for q in QUERIES}
            theirs_ms: dict[str, list[float]] = {q.name: [] for q in QUERIES}
            budget = runner._Budget(dsn, "ms5-benchmark-bench", 3600)
            for round_ in range(rounds):
                for spec in QUERIES:

                    def by_resource(name: str = spec.name) -> None:
                        [q] = runner._time_queries(
                            conn,
                            texts,
                            full=full,
                            license_=license_,
                            config=small,
                            budget=budget,
                            only=name,
                        )
                        if q.latency is not None:
                            ours_ms[name].append(q.latency.p50_ms)

                    def by_psql(
                        name: str = spec.name, licensed_only: bool = spec.full_license_only
                    ) -> None:
                        if licensed_only and not full:
                            return
                        theirs_ms[name].append(
                            statistics.median(
                                psql_timings(dsn, env, texts[name], per_round, args.warmup)
                            )
                        )

                    for side in (
                        (by_resource, by_psql) if round_ % 2 == 0 else (by_psql, by_resource)
                    ):
                        side()
        print(
            f"\nqueries (median of {rounds} alternated rounds of {per_round} runs after "
            f"{args.warmup} warm-up each; same SQL, same data):"
        )
        print(f"  {'query':<24}{'resource ms':>12}{'psql ms':>10}{'ratio':>8}")
        ratios: list[tuple[str, float]] = []
        for spec in QUERIES:
            if not ours_ms[spec.name]:
                print(f"  {spec.name:<24} n/a (continuous aggregates need the Timescale license;")
                print(f"  {'':<24} this server has {license_!r})")
                continue
            mine = statistics.median(ours_ms[spec.name])
            ps = statistics.median(theirs_ms[spec.name])
            ratio = mine / ps if ps else float("inf")
            ratios.append((spec.name, ratio))
            print(f"  {spec.name:<24}{mine:>12.2f}{ps:>10.2f}{ratio:>8.2f}")
        values = [r for _, r in ratios]
        print(
            f"  worst ratio {max(values):.2f}, best {min(values):.2f}  "
            "(target within 10 %: 0.90..1.10)"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            runner.drop_schema(conn, schema)

        # One whole run of the resource's benchmark, against the old script's targets.
        result = runner.run(config)
        report = evaluate(result, Thresholds())
        out = result.to_output()
        print(f"\nwhole benchmark run ({result.seconds:.1f} s, license {result.license}):")
        print(
            f"  ingest       {out['ingest']['rowsPerSecond']:>12,.0f} rows/s   old target >= 1,000 rows/s"
        )
        worst = max((q.latency.p95_ms for q in result.queries if q.latency), default=0.0)
        print(f"  worst p95    {worst:>12.1f} ms       old target <= 100 ms")
        for q in result.queries:
            if q.latency:
                print(
                    f"    {q.name:<24} p50 {q.latency.p50_ms:7.2f}  p95 {q.latency.p95_ms:7.2f}  p99 {q.latency.p99_ms:7.2f} ms"
                )
            else:
                print(f"    {q.name:<24} {q.note}")
        comp = result.compression
        shown = f"{comp.ratio:.1%} saved" if comp.applicable else comp.note
        print(f"  compression  {shown}   old target >= 70 %")
        print(report.render(title="verdict against the old targets"))

    missed = []
    if ingest_ratio < INGEST_TARGET:
        missed.append(f"ingest ratio {ingest_ratio:.2f} < {INGEST_TARGET:.2f}")
    missed += [
        f"{name} ratio {ratio:.2f} outside {1 - QUERY_TOLERANCE:.2f}..{1 + QUERY_TOLERANCE:.2f}"
        for name, ratio in ratios
        if abs(ratio - 1.0) > QUERY_TOLERANCE
    ]
    if missed:
        print("\nMISSED TARGETS: " + "; ".join(missed))
        return 1
    print("\nevery ratio within its target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
