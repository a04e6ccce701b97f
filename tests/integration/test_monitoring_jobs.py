"""Background jobs and continuous aggregates as the exporter's role sees them, on the real server.

- Job metrics name what a job works on: a continuous aggregate's policies by the aggregate's view,
  not its internal materialization hypertable.
- A failing job is reported as failing with the server's own error message; only TimescaleDB's
  "not supported under the current 'apache' license" error counts as license-blocked. On
  PostgreSQL 17.12 every job run by the scheduler fails (``cannot drop portal``): that is a
  failure, shown with that message, never a license problem.
- The role reads an aggregate's watermark without any privilege on the aggregate, so an
  aggregate added by a later migration is reported with no grant.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from migration_files import add_migration
from psycopg import sql
from psycopg.conninfo import make_conninfo

import ms5_testenv
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import RunnerSettings, run
from ms5_components.monitoring import exporter_queries
from ms5_components.monitoring.role import RoleProps, ensure_role

pytestmark = pytest.mark.integration

SETTINGS = RunnerSettings(lock_timeout_ms=5_000, retry_backoff_seconds=0.1)
JOB_WAIT_SECONDS = 120.0
DEFAULT_AGGREGATES = {
    "ms5.machine_metrics_1m",
    "ms5.machine_metrics_1h",
    "ms5.production_1h",
    "ms5.energy_1h",
    "ms5.downtime_1d",
    "ms5.oee_1d",
}


@dataclass(frozen=True)
class Monitored:
    admin_dsn: str
    role_dsn: str
    role: str
    migrations: Path
    queries: dict[str, exporter_queries.CustomQuery]


@pytest.fixture
def monitored(
    pg_server: ms5_testenv.PostgresServer, pg_database: str, tmp_path: Path
) -> Iterator[Monitored]:
    """The repository's schema migrated, and an exporter role created afterwards (as a deploy
    does: migrations first, then the monitoring role)."""
    directory = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), directory)
    run(pg_database, load_directory(directory), settings=SETTINGS)
    suffix = uuid.uuid4().hex[:10]
    database = str(psycopg.conninfo.conninfo_to_dict(pg_database)["dbname"])
    props = RoleProps(
        admin_dsn=pg_database,
        role=f"ms5_jobs_{suffix}",
        password=uuid.uuid4().hex,
        database=database,
        member_of=("pg_monitor",),
        connection_limit=5,
        statement_timeout_ms=15_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    ensure_role(props)
    version = exporter_queries.parse_timescaledb_version(pg_server.timescaledb_version or "")
    try:
        yield Monitored(
            admin_dsn=pg_database,
            role_dsn=make_conninfo(pg_database, user=props.role, password=props.password),
            role=props.role,
            migrations=directory,
            queries={
                q.namespace: q for q in exporter_queries.custom_queries(timescaledb_version=version)
            },
        )
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(props.role)))


def rows_as_role(m: Monitored, namespace: str) -> list[dict[str, object]]:
    """The rows of one custom query, run as the exporter's role (as the exporter runs it)."""
    query = m.queries[namespace]
    with psycopg.connect(m.role_dsn) as conn:
        rows = conn.execute(query.sql).fetchall()  # type: ignore[arg-type]
    names = [c.name for c in query.columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


def normalized(message: str) -> str:
    """A server message as the exporter's label carries it."""
    return " ".join(message.split())[: exporter_queries.ERROR_MESSAGE_CHARS]


def wait_for_failed_run(admin_dsn: str, job_id: int) -> tuple[str, str]:
    """Wait until the scheduler has run ``job_id`` and it failed; its last (code, message)."""
    deadline = time.monotonic() + JOB_WAIT_SECONDS
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT e.sqlerrcode, e.err_message"
                " FROM _timescaledb_internal.bgw_job_stat st"
                " JOIN timescaledb_information.job_errors e ON e.job_id = st.job_id"
                " WHERE st.job_id = %s AND st.consecutive_failures > 0"
                " ORDER BY e.start_time DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            if row is not None:
                return str(row[0]), str(row[1])
            assert time.monotonic() < deadline, (
                f"the scheduler did not run job {job_id} within {JOB_WAIT_SECONDS:.0f} s"
            )
            time.sleep(1)


# ------------------------------------------------------------------------------------------------
# Timescale license
# ------------------------------------------------------------------------------------------------


@pytest.mark.full_license
def test_job_metrics_name_the_continuous_aggregate(monitored: Monitored) -> None:
    jobs = rows_as_role(monitored, "timescaledb_job")
    refresh = {
        str(j["hypertable"])
        for j in jobs
        if j["proc_name"] == "policy_refresh_continuous_aggregate"
    }
    assert refresh == DEFAULT_AGGREGATES
    retention = {str(j["hypertable"]) for j in jobs if j["proc_name"] == "policy_retention"}
    # Retention of the raw hypertables and of two rollups (named by their views).
    assert {"ms5.machine_metrics", "ms5.machine_metrics_1m", "ms5.machine_metrics_1h"} <= retention
    assert not [j for j in jobs if "_materialized_hypertable" in str(j["hypertable"])], jobs


@pytest.mark.full_license
def test_failing_job_is_reported_with_the_servers_message(monitored: Monitored) -> None:
    with psycopg.connect(monitored.admin_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE PROCEDURE ms5.failing_job(job_id int, config jsonb) LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'ms5 test job failed on purpose'; END $$"
        )
        job_id = conn.execute("SELECT add_job('ms5.failing_job', INTERVAL '1 second')").fetchone()[
            0
        ]  # type: ignore[index]
    code, message = wait_for_failed_run(monitored.admin_dsn, job_id)
    # The server's own error: ours, or the "cannot drop portal" every scheduled job gets on
    # PostgreSQL 17.12. Neither is a license problem.
    assert code != "0A000", message

    [job] = [j for j in rows_as_role(monitored, "timescaledb_job") if j["job_id"] == str(job_id)]
    assert job["consecutive_failures"] >= 1  # type: ignore[operator]
    assert job["last_run_success"] == 0
    assert job["license_blocked"] == 0
    errors = {str(e["job_id"]): e for e in rows_as_role(monitored, "timescaledb_job_last_error")}
    error = errors[str(job_id)]
    assert error["proc_name"] == "failing_job"
    assert error["license_blocked"] == 0
    assert error["info"] == 1
    assert error["sqlerrcode"]
    # The newest error the server recorded for the job (it may have failed again meanwhile).
    with psycopg.connect(monitored.admin_dsn, autocommit=True) as conn:
        recorded = {
            normalized(str(r[0]))
            for r in conn.execute(
                "SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = %s",
                (job_id,),
            ).fetchall()
        }
    assert normalized(message) in recorded
    assert error["message"] in recorded
    summary = {str(s["proc_name"]): s for s in rows_as_role(monitored, "timescaledb_jobs")}
    assert summary["failing_job"]["failing"] == 1
    assert summary["failing_job"]["license_blocked"] == 0


@pytest.mark.full_license
def test_aggregate_added_by_a_later_migration_is_reported_without_a_grant(
    monitored: Monitored,
) -> None:
    with psycopg.connect(monitored.admin_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ms5.machines (machine_id, site, line_id, name)"
            " VALUES ('m1', 'plant', 'line-1', 'press 1') ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value)"
            " SELECT t, 'm1', 'temperature', 20"
            " FROM generate_series(now() - INTERVAL '2 days', now(), INTERVAL '5 minutes') t"
        )
    # The exporter's role already exists; the deploy adds an aggregate and materializes it.
    add_migration(
        monitored.migrations,
        "shift_rollup",
        "SELECT ms5_admin.create_continuous_aggregate('ms5.machine_metrics_8h', $q$\n"
        "    SELECT time_bucket(INTERVAL '8 hours', time) AS bucket, machine_id,\n"
        "           avg(value) AS avg_value\n"
        "    FROM ms5.machine_metrics GROUP BY bucket, machine_id\n"
        "$q$);\n",
    )
    add_migration(
        monitored.migrations,
        "shift_rollup_refresh",
        "-- ms5:transaction=off\n"
        "CALL ms5_admin.refresh_continuous_aggregate('ms5.machine_metrics_8h', NULL,"
        " now() - INTERVAL '1 day');\n",
    )
    run(monitored.admin_dsn, load_directory(monitored.migrations), settings=SETTINGS)

    lags = {
        str(r["view"]): float(r["lag_seconds"])  # type: ignore[arg-type]
        for r in rows_as_role(monitored, "timescaledb_continuous_aggregate")
    }
    assert set(lags) == DEFAULT_AGGREGATES | {"ms5.machine_metrics_8h"}
    # Materialized up to at most one day ago (an 8-hour bucket boundary): lag 1 to 2 days.
    assert 86_400 <= lags["ms5.machine_metrics_8h"] < 2 * 86_400, lags
    assert lags["ms5.oee_1d"] == -1  # never refreshed: no watermark yet
    with psycopg.connect(monitored.admin_dsn, autocommit=True) as conn:
        readable = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('ms5', '_timescaledb_internal') AND c.relkind IN ('r', 'v', 'm')"
            "   AND (n.nspname = 'ms5' OR c.relname LIKE '\\_materialized\\_hypertable\\_%%')"
            "   AND has_table_privilege(%s, c.oid, 'SELECT')",
            (monitored.role,),
        ).fetchall()
    # Least privilege: the role reads none of the data, only the catalog.
    assert readable == []


# ------------------------------------------------------------------------------------------------
# Apache license
# ------------------------------------------------------------------------------------------------


@pytest.mark.apache_only
def test_license_blocked_job_is_reported_apart_with_its_message(monitored: Monitored) -> None:
    with psycopg.connect(monitored.admin_dsn, autocommit=True) as conn:
        job_id = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_job_stat_history_retention'"
        ).fetchone()[0]  # type: ignore[index]
    code, message = wait_for_failed_run(monitored.admin_dsn, job_id)
    assert code == "0A000" and "license" in message

    [job] = [j for j in rows_as_role(monitored, "timescaledb_job") if j["job_id"] == str(job_id)]
    assert job["license_blocked"] == 1
    assert job["consecutive_failures"] >= 1  # type: ignore[operator]
    [error] = [
        e
        for e in rows_as_role(monitored, "timescaledb_job_last_error")
        if e["job_id"] == str(job_id)
    ]
    assert error["license_blocked"] == 1
    assert error["sqlerrcode"] == "0A000"
    assert "apache" in str(error["message"])
    summary = {str(s["proc_name"]): s for s in rows_as_role(monitored, "timescaledb_jobs")}
    assert summary["policy_job_stat_history_retention"]["failing"] == 0
    assert summary["policy_job_stat_history_retention"]["license_blocked"] == 1
