"""Benchmark of the migration runner (figures, not a test: nothing here asserts on time).

    uv run python bench/bench_migrations.py              # starts a server in the test root
    MS5_TEST_PG_DSN=postgresql://... uv run python bench/bench_migrations.py

Measured side by side in one run, on the same server:

1. **No-op check of 200 applied migrations**: ``run()`` when nothing is pending (connect
   included), its round trips (target: 1) and time (target: under 50 ms); and the pure planning
   part alone.
2. **Runner overhead per applied migration** (target: under 5 ms): 200 small migrations applied by
   the runner, against the same statements applied by plain psycopg, one transaction each (the
   least any runner must do). The difference per migration is the runner's own cost: the history
   row, the advisory lock, state reads, planning.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from ms5_components.migrations.plan import (
    HistoryRow,
    Migration,
    load_directory,
    plan_run,
)
from ms5_components.migrations.runner import RunnerSettings, run

COUNT = 200
REPEAT = 30


def migration_files(directory: Path, count: int) -> list[Migration]:
    for i in range(1, count + 1):
        (directory / f"V{i:04d}__bench_{i}.sql").write_text(
            f"-- benchmark migration {i}\n"
            f"CREATE TABLE bench_{i} (id bigint PRIMARY KEY, note text);\n"
            f"INSERT INTO bench_{i} VALUES ({i}, 'row {i}');\n"
        )
    return list(load_directory(directory))


@contextmanager
def server_dsn(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    import importlib

    testenv = importlib.import_module("ms5_testenv")  # tools/, on sys.path above
    env = testenv.ServiceEnv()
    try:
        server = env.start_postgres()
        yield server.dsn
    finally:
        env.close()


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    name = f"ms5_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def raw_apply(dsn: str, migrations: list[Migration]) -> None:
    """The floor: the same statements, one transaction per migration, nothing recorded."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for migration in migrations:
            with conn.transaction():
                for statement in migration.statements:
                    conn.execute(statement.sql)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("MS5_TEST_PG_DSN"))
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    args = parser.parse_args()
    settings = RunnerSettings()

    with tempfile.TemporaryDirectory() as tmp, server_dsn(args.dsn) as admin:
        migrations = migration_files(Path(tmp), args.count)
        with psycopg.connect(admin, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
        print(
            f"server: PostgreSQL {version[0] if version else '?'} (fsync={fsync[0] if fsync else '?'})"
        )
        print(f"migrations: {len(migrations)} (CREATE TABLE + INSERT each)\n")

        # Warm-up on a throwaway database (catalog caches, the runner's imports).
        with scratch_database(admin) as warm:
            run(warm, migrations[:5], settings=settings)

        with scratch_database(admin) as runner_db, scratch_database(admin) as raw_db:
            # Alternate so both see the same server conditions.
            raw_seconds = timed(lambda: raw_apply(raw_db, migrations))
            result_holder: list[object] = []
            runner_seconds = timed(
                lambda: result_holder.append(run(runner_db, migrations, settings=settings))
            )
            per_runner = runner_seconds / len(migrations)
            per_raw = raw_seconds / len(migrations)
            overhead = per_runner - per_raw
            print("apply (one transaction per migration)")
            print(f"  plain psycopg floor : {ms(raw_seconds)} total, {ms(per_raw)} per migration")
            print(
                f"  runner              : {ms(runner_seconds)} total, {ms(per_runner)} per migration"
            )
            print(
                f"  runner overhead     : {ms(overhead)} per migration (target < 5 ms): "
                f"{'OK' if overhead < 0.005 else 'OVER'}; ratio runner/floor {per_runner / per_raw:.2f}\n"
            )

            noop_times: list[float] = []
            queries: set[int] = set()
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = run(runner_db, migrations, settings=settings)
                noop_times.append(time.perf_counter() - started)
                queries.add(result.queries)
                assert result.applied_now == ()
            connect_times = [
                timed(lambda: psycopg.connect(runner_db).close()) for _ in range(args.repeat)
            ]
            history = [
                HistoryRow(m.version, m.description, m.checksum, "applied") for m in migrations
            ]
            plan_times = [timed(lambda: plan_run(migrations, history)) for _ in range(args.repeat)]
            median = statistics.median(noop_times)
            p95 = sorted(noop_times)[int(0.95 * (len(noop_times) - 1))]
            print(f"no-op check of {len(migrations)} applied migrations ({args.repeat} runs)")
            print(
                f"  round trips         : {sorted(queries)} (target 1): {'OK' if queries == {1} else 'OVER'}"
            )
            print(
                f"  run() incl. connect : median {ms(median)}, p95 {ms(p95)} (target < 50 ms): "
                f"{'OK' if p95 < 0.050 else 'OVER'}"
            )
            print(f"  of which connect    : median {ms(statistics.median(connect_times))}")
            print(
                f"  of which planning   : median {ms(statistics.median(plan_times))} (pure Python)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
