"""The verification against real services: TimescaleDB with the migrated MS5.0 schema, the real
postgres_exporter with the generated queries, a real Prometheus with the generated config and
rules, a real Pushgateway. Grafana cannot run on this machine (no package or image anywhere), so
its two endpoints are served by a small local stand-in HTTP server (:class:`GrafanaStandIn`) that
implements ``/api/health`` and ``/api/dashboards/uid/<uid>`` with basic auth, serving the
generated dashboard JSON; the check itself is the real code that talks to Grafana's HTTP API.

Each fault turns the report red with a message naming the object: a missing hypertable, a failing
background job, the exporter down, a Prometheus target down, Grafana's dashboard missing, a stale
backup. A healthy stack ends green (no failing check). The verification only reads: it runs
completely as a role with read privileges only, and its sessions refuse writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from grafana_stand_in import GrafanaStandIn
from monitoring_services import start_exporter, start_prometheus
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import ms5_testenv
from ms5_components.backups.plan import BackupAgeLimit
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.monitoring import dashboard, exporter_queries, metrics, prometheus_config
from ms5_components.monitoring.config import FileInputs, generate_files
from ms5_components.monitoring.role import RoleProps, ensure_role
from ms5_components.verification.checks import BackupInfo, Containers
from ms5_components.verification.expectations import derive
from ms5_components.verification.report import Report
from ms5_components.verification.runner import (
    BackupDirectory,
    GrafanaTarget,
    PushgatewayBackups,
    VerificationTarget,
    connect_read_only,
    verify,
)
from ms5_components.verification.wiring import SCRAPE_ERROR_METRIC

pytestmark = pytest.mark.integration

SCRAPE_SECONDS = 2
GRAFANA_USER = "ms5admin"
GRAFANA_PASSWORD = "grafana-stand-in-password-1"
EXPECTATIONS = derive(load_directory(repository_migrations_dir()))
PORTAL_BUG = 'cannot drop portal "" while it is being set up'
CONTAINERS = Containers(
    database="ms5-test-timescaledb",
    exporter="ms5-test-postgres-exporter",
    prometheus="ms5-test-prometheus",
    pushgateway="ms5-test-pushgateway",
    grafana="ms5-test-grafana",
)
"""Names for the next steps (the services here are processes, not containers)."""
BACKUP_AGE = BackupAgeLimit(seconds=26 * 3600, rule="ms5:backupMaxAgeHours 26")


def target_of(dsn: str, database: str, **fields: Any) -> VerificationTarget:
    """A target with this module's expectations, container names and backup age limit."""
    return VerificationTarget(
        dsn=dsn,
        database=database,
        expectations=EXPECTATIONS,
        containers=CONTAINERS,
        backup_age=BACKUP_AGE,
        **fields,
    )


# ------------------------------------------------------------------------------------------------
# The Grafana stand-in (Grafana's two endpoints the check uses)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    board = dashboard.build_dashboard(dashboard.DashboardInputs())
    stand_in = GrafanaStandIn({dashboard.DASHBOARD_UID: board}, GRAFANA_USER, GRAFANA_PASSWORD)
    try:
        yield stand_in
    finally:
        stand_in.close()


def grafana_target(url: str, password: str = GRAFANA_PASSWORD) -> GrafanaTarget:
    return GrafanaTarget(
        url=url,
        user=GRAFANA_USER,
        password=password,
        dashboard_uid=dashboard.DASHBOARD_UID,
        dashboard_title=dashboard.DASHBOARD_TITLE,
        panels=dashboard.ORIGINAL_PANELS,
    )


# ------------------------------------------------------------------------------------------------
# Services
# ------------------------------------------------------------------------------------------------


@dataclass
class Services:
    admin_dsn: str
    database: str
    exporter: ms5_testenv.HttpService
    prometheus: ms5_testenv.HttpService
    pushgateway_url: str


@pytest.fixture
def migrated(migrated_database: str) -> str:
    return migrated_database


def push_backup(url: str, database: str, finished: float) -> None:
    """The backup runner's result metric, as the Backup resource pushes it."""
    metric = metrics.BACKUP_LAST_SUCCESS
    body = (
        f'# TYPE {metric.name} {metric.kind}\n{metric.name}{{database="{database}"}} {finished}\n'
    )
    request = urllib.request.Request(
        f"{url}/metrics/job/{metric.push_job}/instance/{database}", data=body.encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 202)


def start_monitoring(
    testenv: ms5_testenv.ServiceEnv,
    pg_server: ms5_testenv.PostgresServer,
    admin_dsn: str,
    pushgateway: str,
    work: Path,
) -> tuple[ms5_testenv.HttpService, ms5_testenv.HttpService, RoleProps]:
    database = str(conninfo_to_dict(admin_dsn)["dbname"])
    role = RoleProps(
        admin_dsn=admin_dsn,
        role=f"ms5_exporter_{uuid.uuid4().hex[:8]}",
        password=uuid.uuid4().hex,
        database=database,
        member_of=("pg_monitor",),
        connection_limit=5,
        statement_timeout_ms=15_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    ensure_role(role)
    version = exporter_queries.parse_timescaledb_version(pg_server.timescaledb_version or "")
    files = generate_files(
        FileInputs(
            timescaledb_version=version,
            database=database,
            db_host="127.0.0.1",
            db_port=pg_server.port,
            exporter_host="unused",
            prometheus_host="unused",
            pushgateway_host="unused",
            stack="test",
        )
    )
    exporter = start_exporter(
        testenv, port=pg_server.port, database=database, role=role, files=files, work=work
    )
    prometheus = start_prometheus(
        testenv,
        exporter_port=exporter.port,
        pushgateway_url=pushgateway,
        files=files,
        queries=exporter_queries.custom_queries(timescaledb_version=version),
        work=work,
        scrape_seconds=SCRAPE_SECONDS,
        self_target=None,
    )
    return exporter, prometheus, role


@pytest.fixture
def services(
    testenv: ms5_testenv.ServiceEnv,
    pg_server: ms5_testenv.PostgresServer,
    pushgateway_url: str,
    migrated: str,
    tmp_path: Path,
) -> Iterator[Services]:
    exporter, prometheus, role = start_monitoring(
        testenv, pg_server, migrated, pushgateway_url, tmp_path
    )
    database = str(conninfo_to_dict(migrated)["dbname"])
    try:
        push_backup(pushgateway_url, database, time.time() - 3600)
        yield Services(
            admin_dsn=migrated,
            database=database,
            exporter=exporter,
            prometheus=prometheus,
            pushgateway_url=pushgateway_url,
        )
    finally:
        testenv.stop(prometheus)
        testenv.stop(exporter)
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.role)))


def full_target(services: Services, grafana_url: str, **changes: Any) -> VerificationTarget:
    target = target_of(
        services.admin_dsn,
        services.database,
        prometheus_url=services.prometheus.url,
        pushgateway_url=services.pushgateway_url,
        grafana=grafana_target(grafana_url),
        exporter_jobs=metrics.EXPORTER_JOBS,
        scrape_error_jobs=prometheus_config.job_for_metric(SCRAPE_ERROR_METRIC, ()),
        backups=PushgatewayBackups(services.pushgateway_url),
        # Every job the background scheduler runs fails on PostgreSQL 17.12 (FACTS.md): the
        # jobs check is reported, as a warning, on this test stack (it is fatal by default).
        warn_only=("jobs",),
        settle_seconds=60,
    )
    return dataclasses.replace(target, **changes)


def failing(report: Report, check: str) -> list[str]:
    return [
        f"{f.object}: {f.message}"
        for f in report.findings
        if f.check == check and f.status == "fail"
    ]


def statuses(report: Report, check: str) -> set[str]:
    return {f.status for f in report.by_check(check)}


# ------------------------------------------------------------------------------------------------
# Healthy
# ------------------------------------------------------------------------------------------------


def test_a_healthy_stack_ends_green(
    services: Services, grafana: GrafanaStandIn, pg_server: ms5_testenv.PostgresServer
) -> None:
    report = verify(full_target(services, grafana.url))
    assert report.status != "fail", report.render()
    for check in ("extension", "hypertables", "indexes", "exporter", "prometheus"):
        assert statuses(report, check) == {"ok"}, report.render(only_problems=False)
    for check in ("pushgateway", "grafana", "dashboard", "backup"):
        assert statuses(report, check) == {"ok"}, report.render(only_problems=False)
    licensed = {"columnstore", "retention", "continuous_aggregates"}
    expected = {"ok"} if pg_server.license == "timescale" else {"not_applicable"}
    for check in licensed:
        assert statuses(report, check) == expected, report.render(only_problems=False)
    hypertables = {f.object for f in report.by_check("hypertables")}
    assert hypertables == {h.relation for h in EXPECTATIONS.hypertables}
    # Every target Prometheus scrapes is named in the report (4 exporter jobs + Pushgateway).
    targets = [f for f in report.by_check("prometheus") if f.object.startswith("target ")]
    assert len(targets) == len(metrics.EXPORTER_JOBS) + 1


def test_the_verification_only_reads(
    services: Services, grafana: GrafanaStandIn, pg_server: ms5_testenv.PostgresServer
) -> None:
    """Its sessions refuse writes, and the whole run works as a role that may only read."""
    with (
        connect_read_only(services.admin_dsn) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("CREATE TABLE ms5.verification_must_not_write (x int)")
    reader = f"ms5_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader-password-0001' IN ROLE {}, {}").format(
                sql.Identifier(reader),
                sql.Identifier("pg_monitor"),
                sql.Identifier("pg_read_all_data"),
            )
        )
    try:
        reader_dsn = make_conninfo(services.admin_dsn, user=reader, password="reader-password-0001")
        as_reader = verify(full_target(services, grafana.url, dsn=reader_dsn))
        as_admin = verify(full_target(services, grafana.url))
        assert as_reader.status != "fail", as_reader.render()
        db_checks = ("extension", "hypertables", "indexes", "columnstore", "retention")
        for check in db_checks:
            assert [(f.object, f.status) for f in as_reader.by_check(check)] == [
                (f.object, f.status) for f in as_admin.by_check(check)
            ]
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))


@pytest.fixture
def other_databases(pg_server: ms5_testenv.PostgresServer) -> Iterator[tuple[str, str]]:
    """Two more databases on the server: one with timescaledb installed, one without."""
    names = (f"ms5_other_ts_{uuid.uuid4().hex[:8]}", f"ms5_other_plain_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(pg_server.dsn, dbname=names[0]), autocommit=True) as c:
            c.execute("CREATE EXTENSION timescaledb")
        yield names
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _extensions(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1").fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_the_extension_is_checked_in_every_database_that_has_it(
    migrated: str, pg_server: ms5_testenv.PostgresServer, other_databases: tuple[str, str]
) -> None:
    """Every connectable database with timescaledb is reported by name at the server's default
    version; a database without it is not held to it; the application database must have it."""
    with_ts, plain = other_databases
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    assert row is not None
    default = str(row[0])
    database = str(conninfo_to_dict(migrated)["dbname"])
    before = {
        name: _extensions(make_conninfo(pg_server.dsn, dbname=name)) for name in other_databases
    }
    target = target_of(
        migrated,
        database,
        checks=("extension",),
    )
    report = verify(target)
    found = {(f.object, f.status, f.message) for f in report.by_check("extension")}
    installed = f"installed at the default version {default}"
    assert (f"database {database}: extension timescaledb", "ok", installed) in found
    assert (f"database {with_ts}: extension timescaledb", "ok", installed) in found
    assert not [f for f in report.findings if f.object.startswith(f"database {plain}:")]
    # Read only: neither database changed.
    after = {
        name: _extensions(make_conninfo(pg_server.dsn, dbname=name)) for name in other_databases
    }
    assert after == before

    # The application database itself must have it.
    bare = verify(
        dataclasses.replace(target, dsn=make_conninfo(migrated, dbname=plain), database=plain)
    )
    assert [f"{f.object}: {f.message}" for f in bare.failures()] == [
        f"database {plain}: extension {ext}: not installed (a migration declares it)"
        for ext in sorted(EXPECTATIONS.extensions)
    ]


# ------------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------------


def _break_schema(dsn: str, *statements: str) -> None:
    """Run the fault's DDL; on a licensed server a background job (policy) on the same table can
    make the server pick the DDL as a deadlock victim, so it is retried a few times."""
    for statement in statements:
        for attempt in range(5):
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(statement)
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(0.5)


def test_a_missing_hypertable_turns_it_red(migrated: str) -> None:
    _break_schema(
        migrated,
        "DROP TABLE ms5.energy_readings CASCADE",
        "DROP INDEX ms5.production_counts_product_time_idx",
    )
    database = str(conninfo_to_dict(migrated)["dbname"])
    report = verify(
        target_of(
            migrated,
            database,
        )
    )
    assert report.status == "fail"
    [hypertable] = failing(report, "hypertables")
    assert hypertable == (
        "ms5.energy_readings: not a hypertable (declared by V0003__telemetry_hypertables.sql)"
    )
    indexes = failing(report, "indexes")
    assert indexes == [
        "ms5.energy_readings_machine_time_idx: index on ms5.energy_readings missing (declared by "
        "V0003__telemetry_hypertables.sql)",
        "ms5.production_counts_product_time_idx: index on ms5.production_counts missing "
        "(declared by V0006__lookup_indexes_concurrently.sql)",
    ]
    bad = [f for f in report.failures() if f.object == "ms5.energy_readings"]
    assert "ms5_meta.schema_history" in bad[0].next_step
    assert "ms5.energy_readings" in report.render()


def test_a_changed_chunk_interval_is_reported(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("SELECT set_chunk_time_interval('ms5.machine_metrics', INTERVAL '1 day')")
    database = str(conninfo_to_dict(migrated)["dbname"])
    report = verify(
        target_of(
            migrated,
            database,
            checks=("hypertables",),
        )
    )
    assert failing(report, "hypertables") == [
        "ms5.machine_metrics: partitioned by time every 1 day; V0003__telemetry_hypertables.sql "
        "declares time every 02:00:00"
    ]


def _wait_for_failed_job(dsn: str, timeout: float = 90.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT s.job_id, e.err_message FROM timescaledb_information.job_stats s"
                " JOIN LATERAL (SELECT err_message FROM timescaledb_information.job_errors x"
                " WHERE x.job_id = s.job_id ORDER BY finish_time DESC LIMIT 1) e ON true"
                " WHERE s.last_run_status = 'Failed' ORDER BY s.job_id LIMIT 1"
            ).fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        time.sleep(1.0)
    raise AssertionError("no background job failed within the timeout")


def test_a_failing_job_is_reported_with_the_servers_message(migrated: str) -> None:
    """The background scheduler's failures as the server records them (on PostgreSQL 17.12 every
    scheduler-run job fails with the portal error, FACTS.md). Fatal by default; a stack that lists
    jobs in verificationWarnOnly gets the same finding as a warning."""
    job_id, message = _wait_for_failed_job(migrated)
    database = str(conninfo_to_dict(migrated)["dbname"])
    target = target_of(
        migrated,
        database,
        checks=("jobs",),
    )
    report = verify(target)
    assert report.status == "fail"
    finding = next(f for f in report.failures() if f.object.startswith(f"job {job_id} "))
    assert message in finding.message
    assert f"run_job({job_id})" in finding.next_step
    soft = verify(dataclasses.replace(target, warn_only=("jobs",)))
    assert soft.status == "warn"
    assert any(message in f.message for f in soft.by_check("jobs"))


@pytest.mark.full_license
def test_a_failing_policy_job_names_its_hypertable(
    migrated: str, pg_server: ms5_testenv.PostgresServer
) -> None:
    """With the Timescale license the migrations add policy jobs; each failing one is named with
    the hypertable it works on and the server's message."""
    deadline = time.monotonic() + 120
    found: list[str] = []
    database = str(conninfo_to_dict(migrated)["dbname"])
    while time.monotonic() < deadline and not found:
        report = verify(
            target_of(
                migrated,
                database,
                checks=("jobs",),
            )
        )
        found = [
            f"{f.object}: {f.message}"
            for f in report.failures()
            if "(policy_" in f.object and " on ms5." in f.object
        ]
        time.sleep(2)
    assert found, "no policy job failed within the timeout"
    if (pg_server.server_version or "").startswith("17.12"):
        # Other failures happen too (a scheduler short of worker slots reports "failed to start
        # job"); each is reported with its own message.
        assert any(PORTAL_BUG in f for f in found), found


def test_exporter_down_turns_it_red(
    services: Services, grafana: GrafanaStandIn, testenv: ms5_testenv.ServiceEnv
) -> None:
    assert verify(full_target(services, grafana.url, checks=("exporter",))).status == "ok"
    testenv.stop(services.exporter)
    core_down = f"job {metrics.JOB_CORE}: exporter target down"
    deadline = time.monotonic() + 60
    report = verify(full_target(services, grafana.url, checks=("exporter", "prometheus")))
    # Until the core job's scrape has failed too (another job may be scraped first).
    while (
        not any(p.startswith(core_down) for p in failing(report, "exporter"))
        and time.monotonic() < deadline
    ):
        time.sleep(SCRAPE_SECONDS)
        report = verify(full_target(services, grafana.url, checks=("exporter", "prometheus")))
    problems = failing(report, "exporter")
    assert any(p.startswith(core_down) for p in problems), problems
    assert "connection refused" in " ".join(problems).lower()
    assert report.status == "fail"


def test_a_prometheus_target_down_turns_it_red(
    testenv: ms5_testenv.ServiceEnv,
    pg_server: ms5_testenv.PostgresServer,
    migrated: str,
    tmp_path: Path,
    grafana: GrafanaStandIn,
) -> None:
    """Prometheus scrapes a Pushgateway address where nothing listens."""
    dead = f"http://127.0.0.1:{ms5_testenv.free_port()}"
    exporter, prometheus, role = start_monitoring(testenv, pg_server, migrated, dead, tmp_path)
    try:
        services = Services(
            admin_dsn=migrated,
            database=str(conninfo_to_dict(migrated)["dbname"]),
            exporter=exporter,
            prometheus=prometheus,
            pushgateway_url=dead,
        )
        report = verify(full_target(services, grafana.url, checks=("prometheus", "pushgateway")))
        problems = failing(report, "prometheus")
        port = urllib.parse.urlparse(dead).port
        assert any(
            p.startswith(f"target {metrics.JOB_PUSHGATEWAY} 127.0.0.1:{port}: down")
            for p in problems
        ), problems
        assert failing(report, "pushgateway"), report.render()
        assert report.status == "fail"
    finally:
        testenv.stop(prometheus)
        testenv.stop(exporter)
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.role)))


# ------------------------------------------------------------------------------------------------
# Grafana (against the stand-in of its HTTP API) and backups
# ------------------------------------------------------------------------------------------------


def test_grafana_check_against_a_stand_in_of_grafanas_http_api(grafana: GrafanaStandIn) -> None:
    """Grafana cannot run here: the real check runs against a local stand-in implementing
    ``/api/health`` and ``/api/dashboards/uid/<uid>``."""
    target = target_of(
        "",
        "ms5",
        grafana=grafana_target(grafana.url),
        checks=("grafana", "dashboard"),
    )
    assert verify(target).status == "ok"
    wrong = verify(
        dataclasses.replace(target, grafana=grafana_target(grafana.url, "wrong-password-0000"))
    )
    assert failing(wrong, "dashboard") == [
        f"dashboard {dashboard.DASHBOARD_UID}: HTTP 401: the admin login was refused"
    ]
    assert "wrong-password-0000" not in wrong.render()
    grafana.dashboards.clear()
    missing = verify(target)
    assert failing(missing, "dashboard") == [
        f"dashboard {dashboard.DASHBOARD_UID}: not provisioned (404)"
    ]
    grafana.database_state = "failing"
    assert failing(verify(target), "grafana") == [
        f"{grafana.url}: /api/health reports database 'failing'"
    ]
    grafana.close()
    down = verify(target)
    assert failing(down, "grafana")[0].startswith(
        f"{grafana.url}: GET {grafana.url}/api/health failed"
    )


def _publish(directory: Path, database: str, finished: float, *, manifest: bool = True) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(finished))
    name = f"{database}-{stamp}"
    (directory / name / "dump").mkdir(parents=True)
    if manifest:
        (directory / name / "manifest.json").write_text(
            json.dumps({"backup": name, "database": database, "finished_epoch": int(finished)})
        )
    return name


def test_backup_age_from_the_backup_directory(tmp_path: Path) -> None:
    now = time.time()
    target = target_of(
        "",
        "ms5",
        backups=BackupDirectory(tmp_path),
        checks=("backup",),
    )
    assert failing(verify(target), "backup") == [f"backup directory {tmp_path}: no verified backup"]
    old = _publish(tmp_path, "ms5", now - 30 * 3600)
    [stale] = failing(verify(target), "backup")
    assert stale.startswith(f"{old}: newest verified backup is 30.0 h old (limit 26 h")
    fresh = _publish(tmp_path, "ms5", now - 3600)
    (tmp_path / ".tmp-ms5-20990101T000000Z").mkdir()
    report = verify(target)
    assert report.status == "ok"
    assert [f.object for f in report.by_check("backup")] == [fresh]
    broken = _publish(tmp_path, "ms5", now - 60)
    (tmp_path / broken / "VERIFICATION-FAILED").write_text("checksum mismatch\n")
    report = verify(target)
    assert report.status == "warn"
    assert {f.object for f in report.by_check("backup")} == {broken, fresh}


def test_backup_age_from_the_pushgateway(pushgateway_url: str) -> None:
    database = f"ms5_push_{uuid.uuid4().hex[:8]}"
    source = PushgatewayBackups(pushgateway_url)
    assert source.list(database) == []
    push_backup(pushgateway_url, database, 1_700_000_000)
    assert source.list(database) == [
        BackupInfo(
            name=f"{database} backup published at 1700000000",
            finished_epoch=1_700_000_000,
            verified=True,
        )
    ]
