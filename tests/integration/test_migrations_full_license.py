"""Timescale-licensed behaviour of the default schema and the ms5_admin helpers.

These run whenever the test server has the Timescale (community) license; on the Apache build
the conftest skips them (the Apache branch is covered by test_migrations.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from migration_files import add_migration

from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import RunnerSettings, run

pytestmark = [pytest.mark.integration, pytest.mark.full_license]

SETTINGS = RunnerSettings(lock_timeout_ms=5_000, retry_backoff_seconds=0.1)


def migrate(dsn: str, directory: Path) -> None:
    run(dsn, load_directory(directory), settings=SETTINGS)


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


@pytest.fixture
def schema(tmp_path: Path, pg_database: str) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), directory)
    migrate(pg_database, directory)
    return directory


def jobs(dsn: str, proc: str) -> dict[str, tuple[object, ...]]:
    rows = query(
        dsn,
        "SELECT coalesce(ca.view_name, j.hypertable_name), j.config, j.schedule_interval::text"
        " FROM timescaledb_information.jobs j"
        " LEFT JOIN timescaledb_information.continuous_aggregates ca"
        "   ON ca.materialization_hypertable_name = j.hypertable_name"
        f" WHERE j.proc_name = '{proc}' ORDER BY 1",
    )
    return {str(r[0]): (r[1], r[2]) for r in rows}


def test_default_schema_creates_every_licensed_feature(schema: Path, pg_database: str) -> None:
    history = query(pg_database, "SELECT version, outcome FROM ms5_meta.schema_history ORDER BY 1")
    assert {o for _, o in history} == {"applied"}
    caggs = {
        r[0]
        for r in query(
            pg_database, "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        )
    }
    assert caggs == {
        "machine_metrics_1m",
        "machine_metrics_1h",
        "production_1h",
        "energy_1h",
        "downtime_1d",
        "oee_1d",
    }
    compressed = dict(
        query(
            pg_database,
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = 'ms5'",
        )
    )
    assert all(compressed.values()), compressed
    compression = jobs(pg_database, "policy_compression")
    assert compression["machine_metrics"][0]["compress_after"] == "1 day"  # type: ignore[index]
    retention = jobs(pg_database, "policy_retention")
    assert retention["machine_metrics"][0]["drop_after"] == "90 days"  # type: ignore[index]
    assert retention["machine_metrics_1m"][0]["drop_after"] == "180 days"  # type: ignore[index]
    refresh = jobs(pg_database, "policy_refresh_continuous_aggregate")
    assert set(refresh) == caggs
    assert refresh["machine_metrics_1m"][1] == "00:01:00"


def test_changing_an_interval_replaces_the_policy(schema: Path, pg_database: str) -> None:
    add_migration(
        schema,
        "longer_retention",
        "SELECT ms5_admin.set_retention('ms5.machine_metrics', INTERVAL '180 days');\n"
        "SELECT ms5_admin.set_columnstore('ms5.machine_metrics', 'machine_id, metric', 'time DESC',"
        " INTERVAL '2 days');\n"
        "SELECT ms5_admin.set_refresh_policy('ms5.machine_metrics_1m', INTERVAL '4 hours',"
        " INTERVAL '1 minute', INTERVAL '5 minutes');\n"
        "SELECT ms5_admin.set_retention('ms5.production_counts', INTERVAL '3 years');\n",
    )
    before = jobs(pg_database, "policy_retention")
    migrate(pg_database, schema)
    retention = jobs(pg_database, "policy_retention")
    assert retention["machine_metrics"][0]["drop_after"] == "180 days"  # type: ignore[index]
    assert retention["production_counts"] == before["production_counts"]  # unchanged: kept
    assert (
        jobs(pg_database, "policy_compression")["machine_metrics"][0]["compress_after"] == "2 days"
    )  # type: ignore[index]
    refresh = jobs(pg_database, "policy_refresh_continuous_aggregate")["machine_metrics_1m"]
    assert refresh[0]["start_offset"] == "04:00:00"  # type: ignore[index]
    assert refresh[1] == "00:05:00"
    counts = query(
        pg_database,
        "SELECT proc_name, count(*) FROM timescaledb_information.jobs"
        " WHERE hypertable_name = 'machine_metrics' GROUP BY 1 ORDER BY 1",
    )
    assert counts == [("policy_compression", 1), ("policy_retention", 1)]


def test_refresh_procedure_in_a_non_transactional_migration(schema: Path, pg_database: str) -> None:
    query(
        pg_database,
        "INSERT INTO ms5.machine_metrics SELECT now() - g * INTERVAL '1 minute', 'm1', 'temp', g"
        " FROM generate_series(10, 100) g",
    )
    add_migration(
        schema,
        "refresh",
        "-- ms5:transaction=off\n"
        "CALL ms5_admin.refresh_continuous_aggregate('ms5.machine_metrics_1m', NULL, now() - INTERVAL '5 minutes');\n",
    )
    migrate(pg_database, schema)
    target = query(
        pg_database,
        "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = 'machine_metrics_1m'",
    )[0][0]
    # Rows in the materialization hypertable itself: the refresh really ran (real-time
    # aggregation alone would show rows in the view without it).
    assert query(pg_database, f"SELECT count(*) > 0 FROM {target}") == [(True,)]
