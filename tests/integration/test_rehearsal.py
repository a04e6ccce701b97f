"""Rehearsal of `pulumi up` with the real program against the real TimescaleDB test server.

The MigrationSet (and the superuser RolePassword) run in a real provider host process, as under
the engine; only the Docker-dependent host preflight and health wait are stand-ins.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from migration_files import add_migration, next_version
from psycopg.conninfo import conninfo_to_dict

import ms5_testenv
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from rehearsal import (
    BACKUP,
    MIGRATION_SET,
    RESTORE_DRILL,
    Rehearsal,
    RehearsalError,
    rehearsal_on_test_server,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), target)
    return target


@pytest.fixture
def rehearsal(
    pg_server: ms5_testenv.PostgresServer,
    pg_database: str,
    migrations_copy: Path,
    testenv: ms5_testenv.ServiceEnv,
    backup_dir: Path,
) -> Rehearsal:
    """Staging, pointed at the test server and a fresh database through its config alone."""
    return rehearsal_on_test_server(
        "staging",
        server=pg_server,
        database_dsn=pg_database,
        migrations_dir=migrations_copy,
        root=str(testenv.root),
        backup_dir=testenv.in_root(backup_dir),
        bindir=ms5_testenv.PG_BINDIR,
        config={
            # The post-deploy checks have their own rehearsal (tests/integration/test_verification_rehearsal.py).
            "ms5:verificationEnabled": False,
            "ms5:benchmarkEnabled": False,
        },
    )


def sessions(server: ms5_testenv.PostgresServer, database: str) -> int:
    """Sessions ever opened to ``database`` (counted when they end)."""
    time.sleep(0.3)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def history(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('ms5_meta.schema_history')").fetchone() == (None,):
            return []
        return conn.execute(
            "SELECT version, applied_at FROM ms5_meta.schema_history ORDER BY applied_at, version"
        ).fetchall()


def test_fresh_deploy_noop_and_one_new_migration(
    rehearsal: Rehearsal,
    pg_server: ms5_testenv.PostgresServer,
    pg_database: str,
    migrations_copy: Path,
) -> None:
    database = str(conninfo_to_dict(pg_database)["dbname"])
    expected = [m.version for m in load_directory(migrations_copy)]
    files = sorted(p.name for p in migrations_copy.glob("V*.sql"))

    # Preview of a fresh stack: check only (nothing in state yet), no SQL.
    before = sessions(pg_server, database)
    preview = rehearsal.preview()
    planned = preview.one(MIGRATION_SET)
    assert planned.op == "create"
    assert planned.provider_called == ["Check"]
    assert [k for k in planned.diff_keys if k.startswith("migrations.")] == [
        f"migrations.{f}" for f in files
    ]
    assert sessions(pg_server, database) == before
    assert history(pg_database) == []

    # Fresh staging deploy: every migration applied.
    first = rehearsal.up()
    created = first.one(MIGRATION_SET)
    assert created.op == "create"
    assert created.provider_called == ["Check", "Create"]
    assert created.outputs["applied_versions"] == expected
    assert created.outputs["last_applied"] == expected
    assert created.outputs["current_version"] == expected[-1]
    assert created.outputs["timescaledb_license"] == pg_server.license
    assert "dsn" not in created.outputs
    assert [v for v, _ in history(pg_database)] == expected
    registration = first.program.one(MIGRATION_SET)
    assert registration.is_secret("dsn")
    assert first.program.exports["schemaVersion"] == expected[-1]
    # The migrations run after the database is up and its login works.
    login = first.program.one("pulumi-python:dynamic/ms5:RolePassword")
    container = first.program.one("docker:index/container:Container", "timescaledb-container")
    assert first.program.depends_on(registration, container)
    assert first.program.depends_on(registration, login)

    # Second deploy with no change: no diff, no SQL, identical inputs.
    applied = history(pg_database)
    before = sessions(pg_server, database)
    second = rehearsal.up()
    same = second.one(MIGRATION_SET)
    assert same.op == "same"
    assert same.provider_called == ["Check", "Diff"]
    assert second.changed() == []
    assert sessions(pg_server, database) == before
    assert history(pg_database) == applied
    assert second.program.one(MIGRATION_SET).inputs == registration.inputs
    before = sessions(pg_server, database)

    # One new migration: the preview lists exactly it and runs no SQL; the deploy applies only it.
    added_version = next_version(migrations_copy)
    added = add_migration(
        migrations_copy,
        "line_targets",
        "CREATE TABLE IF NOT EXISTS ms5.line_targets (\n"
        "    line_id text PRIMARY KEY,\n    oee_target double precision NOT NULL\n);\n",
    )
    preview = rehearsal.preview()
    planned = preview.one(MIGRATION_SET)
    assert planned.op == "update"
    assert planned.diff_keys == [f"migrations.{added.name}"]
    assert planned.provider_called == ["Check", "Diff"]
    # The preview also shows the backup that will precede it, and why; it takes none.
    backup = preview.one(BACKUP)
    assert backup.op == "update"
    assert "plannedBackup" in backup.diff_keys
    assert backup.outputs["plannedBackup"] == [f"migrations pending: {added.name}"]
    # ... and the drill of that backup (its input is the backup's name, unknown until taken).
    drill = preview.one(RESTORE_DRILL)
    assert sorted(r.urn for r in preview.changed()) == sorted([planned.urn, backup.urn, drill.urn])
    assert sessions(pg_server, database) == before
    assert history(pg_database) == applied
    before = sessions(pg_server, database)

    third = rehearsal.up()
    taken = third.one(BACKUP)
    assert taken.op == "update" and taken.outputs["lastResult"] == "published and verified"
    assert taken.outputs["lastBackup"] != first.one(BACKUP).outputs["lastBackup"]
    assert third.one(RESTORE_DRILL).outputs["drilled"] == taken.outputs["lastBackup"]
    updated = third.one(MIGRATION_SET)
    assert updated.op == "update"
    assert updated.provider_called == ["Check", "Diff", "Update"]
    assert updated.outputs["last_applied"] == [added_version]
    assert updated.outputs["applied_versions"] == [*expected, added_version]
    assert history(pg_database)[: len(applied)] == applied
    assert [v for v, _ in history(pg_database)][-1] == added_version
    assert sessions(pg_server, database) > before


def test_drift_fails_the_deploy_with_the_file_and_no_secret(
    rehearsal: Rehearsal, pg_server: ms5_testenv.PostgresServer, migrations_copy: Path
) -> None:
    rehearsal.up()
    before = dict(rehearsal.state.outputs)
    assert before["schemaVersion"]
    path = migrations_copy / "V0002__reference_tables.sql"
    path.write_text(path.read_text() + "\n-- edited after it was applied\n")
    preview = rehearsal.preview()
    assert preview.one(MIGRATION_SET).diff_keys == ["migrations.V0002__reference_tables.sql"]
    with pytest.raises(RehearsalError) as caught:
        rehearsal.up()
    message = str(caught.value)
    assert "V0002__reference_tables.sql (version 2) changed after it was applied" in message
    assert "MigrationDriftError" in message
    assert pg_server.password not in message
    # A failure before the program registered its outputs: the engine keeps the previous ones.
    assert [e.kind for e in caught.value.events if e.kind == "failed"] == ["failed"]
    assert caught.value.exports == rehearsal.state.outputs
    assert caught.value.exports["schemaVersion"] == before["schemaVersion"]


def test_bad_migration_file_fails_the_program_naming_it(
    rehearsal: Rehearsal, migrations_copy: Path
) -> None:
    (migrations_copy / "V8_oops.sql").write_text("SELECT 1;\n")
    with pytest.raises(Exception, match=r"V8_oops\.sql: is not a valid migration name"):
        rehearsal.preview()
