"""Bounded cardinality and cost with many hypertables, and the full-license code paths."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import ms5_testenv
from ms5_components.monitoring import exporter_queries, metrics
from ms5_components.monitoring.role import RoleProps, ensure_role

pytestmark = pytest.mark.integration

HYPERTABLES = 400
TOP_N = 10


@pytest.fixture
def monitored_database(pg_server: ms5_testenv.PostgresServer) -> Iterator[tuple[str, RoleProps]]:
    """A database with the extension, and a monitoring role for it."""
    suffix = uuid.uuid4().hex[:10]
    name = f"ms5_scale_{suffix}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    dsn = make_conninfo(pg_server.dsn, dbname=name)
    role = RoleProps(
        admin_dsn=dsn,
        role=f"ms5_mon_{suffix}",
        password=uuid.uuid4().hex,
        database=name,
        member_of=("pg_monitor",),
        connection_limit=5,
        statement_timeout_ms=15_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("CREATE SCHEMA app")
        ensure_role(role)
        yield dsn, role
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.role)))


def _as_role(dsn: str, role: RoleProps) -> str:
    return make_conninfo(dsn, user=role.role, password=role.password)


def test_many_hypertables_stay_bounded_and_fast(
    testenv: ms5_testenv.ServiceEnv,
    pg_server: ms5_testenv.PostgresServer,
    monitored_database: tuple[str, RoleProps],
    tmp_path,
) -> None:
    dsn, role = monitored_database
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            DO $$
            BEGIN
              FOR i IN 1..{HYPERTABLES} LOOP
                EXECUTE format('CREATE TABLE app.t%s (time timestamptz NOT NULL, v float8)', i);
                PERFORM create_hypertable(format('app.t%s', i)::regclass, by_range('time',
                        INTERVAL '1 day'));
                EXECUTE format('INSERT INTO app.t%s SELECT now() - g * INTERVAL ''1 day'', g
                                FROM generate_series(0, 1 + %s %% 3) g', i, i);
              END LOOP;
            END $$
            """
        )
    version = exporter_queries.parse_timescaledb_version(pg_server.timescaledb_version or "")
    queries = exporter_queries.custom_queries(timescaledb_version=version, top_n=TOP_N)
    durations = {}
    with psycopg.connect(_as_role(dsn, role)) as conn:
        for query in queries:
            started = time.monotonic()
            rows = conn.execute(query.sql).fetchall()  # type: ignore[arg-type]
            durations[query.namespace] = time.monotonic() - started
            assert len(rows) <= TOP_N + 1, query.namespace
        hypertables = {
            r[0]: r[1]
            for r in conn.execute(
                next(q.sql for q in queries if q.namespace == "timescaledb_hypertable")  # type: ignore[arg-type]
            ).fetchall()
        }
    # The top N plus one row that aggregates the rest: nothing is lost from the sums.
    assert len(hypertables) == TOP_N + 1
    assert hypertables[metrics.OTHER_LABEL] == HYPERTABLES - TOP_N
    assert sum(hypertables.values()) == HYPERTABLES

    # No result cache here, so the timed scrape runs every query.
    uncached = tuple(dataclasses.replace(q, cache_seconds=0) for q in queries)
    queries_file = tmp_path / "queries.yml"
    queries_file.write_text(exporter_queries.render_queries_yaml(uncached))
    config_file = tmp_path / "postgres_exporter.yml"
    config_file.write_text(exporter_queries.EXPORTER_CONFIG_YAML)
    exporter = testenv.start_postgres_exporter(
        f"postgresql://{role.role}:{role.password}@127.0.0.1:{pg_server.port}/{role.database}"
        "?sslmode=disable",
        extra_args=exporter_queries.exporter_flags(
            queries_path=str(queries_file), config_path=str(config_file)
        ),
        files=[queries_file, config_file],
    )
    try:
        started = time.monotonic()
        with urllib.request.urlopen(f"{exporter.url}/metrics", timeout=60) as response:
            text = response.read().decode()
        elapsed = time.monotonic() - started
    finally:
        testenv.stop(exporter)
    series = [
        line for line in text.splitlines() if line.startswith("timescaledb_hypertable_chunks{")
    ]
    assert len(series) == TOP_N + 1
    assert "pg_exporter_last_scrape_error 0" in text
    print(
        f"\n{HYPERTABLES} hypertables: scrape {elapsed:.2f} s; queries "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(durations.items()))
    )
    assert elapsed < 10
    assert max(durations.values()) < 2.0, durations


@pytest.mark.full_license
def test_compression_and_continuous_aggregate_metrics_on_a_licensed_server(
    pg_server: ms5_testenv.PostgresServer, monitored_database: tuple[str, RoleProps]
) -> None:
    dsn, role = monitored_database
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE app.m (time timestamptz NOT NULL, machine text, v float8)")
        conn.execute("SELECT create_hypertable('app.m', by_range('time', INTERVAL '1 day'))")
        conn.execute(
            "INSERT INTO app.m SELECT t, 'm' || (random() * 5)::int, random()"
            " FROM generate_series(now() - INTERVAL '10 days', now(), INTERVAL '1 minute') t"
        )
        conn.execute(
            "ALTER TABLE app.m SET (timescaledb.compress, timescaledb.compress_segmentby = 'machine')"
        )
        conn.execute("SELECT add_compression_policy('app.m', INTERVAL '2 days')")
        conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('app.m', older_than => INTERVAL '3 days') c"
        )
        conn.execute(
            "CREATE MATERIALIZED VIEW app.m_hourly WITH (timescaledb.continuous) AS"
            " SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, machine, avg(v)"
            " FROM app.m GROUP BY 1, 2 WITH NO DATA"
        )
        conn.execute(
            "CALL refresh_continuous_aggregate('app.m_hourly', NULL, now() - INTERVAL '2 hours')"
        )
    version = exporter_queries.parse_timescaledb_version(pg_server.timescaledb_version or "")
    queries = {q.namespace: q for q in exporter_queries.custom_queries(timescaledb_version=version)}
    with psycopg.connect(_as_role(dsn, role)) as conn:
        [row] = conn.execute(queries["timescaledb_compression"].sql).fetchall()  # type: ignore[arg-type]
        _, before, after, ratio, compressed, _uncompressed, _overdue = row
        assert before > after > 0 and ratio > 1 and compressed > 0
        [cagg] = conn.execute(queries["timescaledb_continuous_aggregate"].sql).fetchall()  # type: ignore[arg-type]
        assert cagg[0] == "app.m_hourly" and 3600 <= cagg[2] < 4 * 3600
        policies = conn.execute(queries["timescaledb_hypertable"].sql).fetchall()  # type: ignore[arg-type]
        assert policies[0][5] == 0  # has a compression policy
