"""Benchmark of backups (figures, not a test: nothing here asserts on time).

    uv run python bench/bench_backups.py [--rows 2000000] [--repeat 3]

Starts a PostgreSQL 17 + TimescaleDB server in the test root, fills a hypertable (several
chunks) and a plain table, then measures side by side, alternating the runs:

1. **Throughput**: the project's backup (snapshot + counts, pg_dump, checksums, manifest,
   verification, publish, the Python re-verification) against a bare ``pg_dump`` of the same
   format, jobs and compression into the same directory tree. Target: ratio >= 0.9.
2. **Scaling with jobs**: the backup with ``--jobs`` 1, 2 and 4, as speed-up over 1 job.
3. **Verification and drill overhead** as shares of the backup time; the drill's RTO (create,
   restore, post-restore) on this data.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import ms5_testenv
from ms5_components.backups import runner
from ms5_components.backups.executor import ChrootExecutor

T = TypeVar("T")


def fill(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "CREATE TABLE metrics (time timestamptz NOT NULL, machine text NOT NULL, "
            "metric text NOT NULL, value double precision NOT NULL)"
        )
        conn.execute("SELECT create_hypertable('metrics', by_range('time', INTERVAL '1 day'))")
        conn.execute(
            "INSERT INTO metrics SELECT now() - i * interval '1 second', 'm' || (i %% 50), "
            "'signal' || (i %% 10), random() * 100 FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute(
            "CREATE TABLE events AS SELECT i AS id, md5(i::text) AS note FROM generate_series(1, %s) i",
            (rows // 10,),
        )
        conn.execute("VACUUM ANALYZE")


def timed(call: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--compression", default="gzip:6")
    args = parser.parse_args()

    with ms5_testenv.ServiceEnv() as env:
        server = env.start_postgres({"max_wal_size": "4GB"})
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench TEMPLATE template0")
        dsn = server.dsn_for("bench")
        started = time.perf_counter()
        fill(dsn, args.rows)
        print(
            f"filled {args.rows:,} rows (+{args.rows // 10:,}) in {time.perf_counter() - started:.1f} s"
        )
        user = env._user("postgres")
        work = Path(env.run_dir) / "bench-backups"
        work.mkdir()
        os.chown(work, user.uid, user.gid)

        def target() -> runner.Target:
            return runner.Target(
                executor=ChrootExecutor(root=str(env.root)),
                backup_dir=env.in_root(work),
                database="bench",
                connection={
                    "PGHOST": "127.0.0.1",
                    "PGPORT": str(server.port),
                    "PGUSER": "postgres",
                },
                password=server.password,
                pg_bindir=ms5_testenv.PG_BINDIR,
            )

        def settings(jobs: int) -> runner.BackupSettings:
            return runner.BackupSettings(
                jobs=jobs, compression=args.compression, lock_wait_seconds=60, timeout_seconds=3600
            )

        def ours(jobs: int) -> runner.BackupOutcome:
            return runner.take_backup(target(), settings(jobs), reason="bench")

        def bare(jobs: int) -> None:
            out = work / f"bare-{time.monotonic_ns()}"
            env.run_in_root(
                [
                    f"{ms5_testenv.PG_BINDIR}/pg_dump",
                    "--format=directory",
                    f"--jobs={jobs}",
                    f"--compress={args.compression}",
                    f"--file={env.in_root(out)}",
                    "--dbname=bench",
                ],
                user="postgres",
                env={
                    "PGHOST": "127.0.0.1",
                    "PGPORT": str(server.port),
                    "PGUSER": "postgres",
                    "PGPASSWORD": server.password,
                },
                timeout=3600,
                check=True,
            )
            shutil.rmtree(out)

        def clean() -> None:
            for path in work.iterdir():
                shutil.rmtree(path)

        # Warm the caches once each.
        bare(args.jobs)
        ours(args.jobs)
        clean()
        bare_times: list[float] = []
        our_times: list[float] = []
        size = 0
        for _ in range(args.repeat):
            bare_times.append(timed(lambda: bare(args.jobs))[0])
            seconds, outcome = timed(lambda: ours(args.jobs))
            our_times.append(seconds)
            size = outcome.manifest.size_bytes
            clean()
        bare_s, ours_s = statistics.median(bare_times), statistics.median(our_times)
        print(f"\n1. throughput, jobs={args.jobs}, {args.compression}, {size / 1e6:.1f} MB written")
        print(f"   bare pg_dump   median {bare_s:6.2f} s  {[round(t, 2) for t in bare_times]}")
        print(f"   ms5 backup     median {ours_s:6.2f} s  {[round(t, 2) for t in our_times]}")
        print(f"   ratio (bare time / ms5 time) = {bare_s / ours_s:.2f}  (target >= 0.90)")

        scaling: dict[int, float] = {}
        for jobs in (1, 2, 4):
            runs = []
            for _ in range(args.repeat):
                runs.append(timed(functools.partial(ours, jobs))[0])
                clean()
            scaling[jobs] = statistics.median(runs)
        print("\n2. scaling with --jobs (ms5 backup, median)")
        for jobs, seconds in scaling.items():
            print(f"   jobs={jobs}: {seconds:6.2f} s  speed-up x{scaling[1] / seconds:.2f}")

        verify_times: list[float] = []
        drill_times: list[float] = []
        rtos: list[float] = []
        backup_times: list[float] = []
        for _ in range(args.repeat):
            seconds, taken = timed(lambda: ours(args.jobs))
            backup_times.append(seconds)
            verify_times.append(
                timed(functools.partial(runner.verify_backup, target(), taken.name))[0]
            )
            seconds, drilled = timed(
                functools.partial(runner.restore_drill, target(), settings(args.jobs), taken.name)
            )
            drill_times.append(seconds)
            if not drilled.ok:
                print(f"drill failed: {drilled.mismatches}")
                return 1
            rtos.append(drilled.rto_seconds)
            clean()
        b = statistics.median(backup_times)
        v = statistics.median(verify_times)
        d = statistics.median(drill_times)
        print("\n3. verification and drill (medians)")
        print(f"   backup {b:.2f} s; verify {v:.2f} s = {v / b:.2f} of the backup time")
        print(
            f"   drill {d:.2f} s = {d / b:.2f} of the backup time; RTO (restore only) "
            f"{statistics.median(rtos):.2f} s for {args.rows:,} + {args.rows // 10:,} rows"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
