"""Rehearsal of `pulumi up` (tests/rehearsal.py) for the monitoring roles: the real program, the
MonitoringRole provider run in a separate provider process against the real TimescaleDB server.

First deploy creates both roles; a second deploy is a no-op; a password changed in config is
applied for real (ALTER ROLE) while the role keeps its memberships.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import ms5_testenv
from ms5_components.migrations import repository_migrations_dir
from ms5_components.monitoring.config import EXPORTER_ROLE, GRAFANA_ROLE
from rehearsal import Rehearsal, rehearsal_on_test_server

pytestmark = pytest.mark.integration

ROLE = "pulumi-python:dynamic/ms5:MonitoringRole"


@pytest.fixture
def rehearsal(
    pg_server: ms5_testenv.PostgresServer,
    pg_database: str,
    tmp_path: Path,
    testenv: ms5_testenv.ServiceEnv,
    backup_dir: Path,
) -> Iterator[Rehearsal]:
    target = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), target)
    yield rehearsal_on_test_server(
        "staging",
        server=pg_server,
        database_dsn=pg_database,
        migrations_dir=target,
        root=str(testenv.root),
        backup_dir=testenv.in_root(backup_dir),
        bindir=ms5_testenv.PG_BINDIR,
        config={
            # The post-deploy checks have their own rehearsal (tests/integration/test_verification_rehearsal.py).
            "ms5:verificationEnabled": False,
            "ms5:benchmarkEnabled": False,
        },
    )
    # The roles are cluster-wide: leave the shared test server as it was.
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for role in (EXPORTER_ROLE, GRAFANA_ROLE):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _login(dsn: str, user: str, password: str) -> bool:
    try:
        with psycopg.connect(make_conninfo(dsn, user=user, password=password), connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def test_roles_created_kept_and_password_rotated(rehearsal: Rehearsal, pg_database: str) -> None:
    first = rehearsal.up()
    results = {r.name: r for r in first.by_type(ROLE)}
    assert {r.op for r in results.values()} == {"create"}
    exporter = results["monitoring-exporter-role"]
    assert exporter.outputs["role"] == EXPORTER_ROLE
    assert _login(pg_database, EXPORTER_ROLE, exporter.outputs["password"])
    with psycopg.connect(pg_database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, pg_has_role(%s, 'pg_monitor', 'MEMBER'),"
            " pg_has_role(%s, 'pg_read_all_data', 'MEMBER'),"
            " (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements')"
            " FROM pg_roles WHERE rolname = %s",
            (EXPORTER_ROLE, GRAFANA_ROLE, EXPORTER_ROLE),
        ).fetchone()
    assert row == (False, True, True, 1)

    second = rehearsal.up()
    assert {r.op for r in second.by_type(ROLE)} == {"same"}

    new_password = "rotated-exporter-password-0123"
    third = rehearsal.up({"ms5:exporterPassword": new_password})
    ops = {r.name: r.op for r in third.by_type(ROLE)}
    assert ops == {"monitoring-exporter-role": "update", "monitoring-grafana-role": "same"}
    assert _login(pg_database, EXPORTER_ROLE, new_password)
    assert not _login(pg_database, EXPORTER_ROLE, exporter.outputs["password"])
    with psycopg.connect(pg_database, autocommit=True) as conn:
        still = conn.execute(
            "SELECT pg_has_role(%s, 'pg_monitor', 'MEMBER')", (EXPORTER_ROLE,)
        ).fetchone()
    assert still == (True,)
    # The exporter container is recreated with the new password file.
    container = third.program.by_name("monitoring-exporter-container")
    uploads = {u["file"]: u["content"] for u in container.plain("uploads")}
    assert uploads["/etc/postgres_exporter/password"] == new_password
