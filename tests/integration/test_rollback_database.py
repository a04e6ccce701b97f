"""The rollback's read of the stack's database against the real test server: the applied schema
version and the installed TimescaleDB version come from the database (through the executor
``./ms5 restore`` uses; here the chroot one), and the backup chosen with ``--backup`` is checked
against the record from its manifest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest

from ms5_components.backups import runner
from ms5_components.errors import MigrationFailedError, RollbackError
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import Migration, load_directory, version_key
from ms5_components.migrations.runner import run
from ms5_components.rollback import (
    VERIFICATION,
    TargetDatabase,
    check_backup,
    plan_rollback,
    read_state,
)
from ms5_components.settings import load_settings
from ms5_components.verification.provider import public_settings

pytestmark = pytest.mark.integration

FAST = runner.BackupSettings(jobs=2, lock_wait_seconds=5, timeout_seconds=300)
MIGRATION_SET = "pulumi-python:dynamic/ms5:MigrationSet"


def installed_timescaledb(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def last_good_record(dsn: str) -> tuple[tuple[Migration, ...], str, str, dict[str, object]]:
    """The repository's migration files, their newest version, the installed TimescaleDB
    version, and the ``lastGood`` record of a deploy that ran them on ``dsn``."""
    good_files = load_directory(repository_migrations_dir())
    good_version = max((m.version for m in good_files), key=version_key)
    extension = installed_timescaledb(dsn)
    last_good: dict[str, object] = {
        "extensionVersion": extension,
        "migrationFiles": {m.filename: m.checksum for m in good_files},
        "schemaVersion": good_version,
        "settings": public_settings(load_settings({}, stack="staging")),
        "verifiedAt": "2026-12-01T20:00:00Z",
    }
    return good_files, good_version, extension, last_good


def pulumi_cli(last_good: dict[str, object], state_version: str) -> Callable[[Sequence[str]], str]:
    """``pulumi stack export`` and ``pulumi config --json`` of a stack whose MigrationSet's state
    says ``state_version``."""
    export = {
        "deployment": {
            "resources": [
                {"type": VERIFICATION, "outputs": {"lastGood": last_good}},
                {
                    "type": MIGRATION_SET,
                    "outputs": {
                        "current_version": state_version,
                        "timescaledb_version": last_good["extensionVersion"],
                    },
                },
            ]
        }
    }

    def answer(argv: Sequence[str]) -> str:
        if list(argv[:3]) == ["pulumi", "stack", "export"]:
            return json.dumps(export)
        if list(argv[:3]) == ["pulumi", "config", "--stack"]:
            return "{}"
        pytest.fail(f"unexpected command {argv}")

    return answer


def test_the_rollback_plans_with_the_databases_versions_when_the_state_says_otherwise(
    ms5_database: str, backup_target: Callable[..., runner.Target], tmp_path: Path
) -> None:
    database = TargetDatabase(target=backup_target(ms5_database))
    good_files, good_version, extension, last_good = last_good_record(ms5_database)
    at_good = database.versions()
    assert (at_good.schema_version, at_good.extension_version) == (good_version, extension)
    pre_change = runner.take_backup(target=database.target, settings=FAST)

    # The failed deploy: its first new migration commits, its second fails, so the MigrationSet
    # fails and its state keeps the last good version.
    directory = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), directory)
    committed = str(int(good_version) + 1)
    failing = str(int(good_version) + 2)
    (directory / f"V{int(committed):04d}__adds_a_table.sql").write_text(
        "CREATE TABLE ms5.added_by_the_failed_deploy (id int);\n"
    )
    (directory / f"V{int(failing):04d}__fails.sql").write_text("SELECT 1 / 0;\n")
    with pytest.raises(MigrationFailedError):
        run(ms5_database, load_directory(directory))

    after = database.versions()
    assert (after.schema_version, after.extension_version) == (committed, extension)
    state = read_state(
        "staging", run=pulumi_cli(last_good, state_version=good_version), database=database
    )
    assert state.schema_version == committed
    plan = plan_rollback(state, {m.filename: m.checksum for m in good_files})
    assert (
        f"the failed deploy migrated the schema from version {good_version} to {committed}"
        == plan.restore_reason
    )

    # The pre-change backup fits the record; one taken after the failed migration does not.
    fits = check_backup("staging", plan, pre_change.name, database)
    assert (fits.schema_version, fits.extension_version) == (good_version, extension)
    post_change = runner.take_backup(target=database.target, settings=FAST)
    with pytest.raises(RollbackError) as refused:
        check_backup("staging", plan, post_change.name, database)
    assert (
        f"backup {post_change.name} is at schema version {committed}, the last good deploy at "
        f"{good_version}"
    ) in str(refused.value)


def test_a_non_transactional_migration_that_failed_part_way_calls_for_the_restore(
    ms5_database: str, backup_target: Callable[..., runner.Target], tmp_path: Path
) -> None:
    database = TargetDatabase(target=backup_target(ms5_database))
    good_files, good_version, _extension, last_good = last_good_record(ms5_database)
    directory = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), directory)
    partial = str(int(good_version) + 1)
    (directory / f"V{int(partial):04d}__half_done.sql").write_text(
        "-- ms5:transaction=off\n"
        "CREATE TABLE ms5.committed_before_the_failure (id int);\n"
        "SELECT 1 / 0;\n"
    )
    with pytest.raises(MigrationFailedError):
        run(ms5_database, load_directory(directory))
    with psycopg.connect(ms5_database) as conn:
        assert conn.execute(
            "SELECT to_regclass('ms5.committed_before_the_failure')"
        ).fetchone() == ("ms5.committed_before_the_failure",)

    versions = database.versions()
    assert versions.schema_version == good_version
    assert versions.partial_failures == (partial,)
    state = read_state(
        "staging", run=pulumi_cli(last_good, state_version=good_version), database=database
    )
    plan = plan_rollback(state, {m.filename: m.checksum for m in good_files})
    assert f"non-transactional migration(s) {partial} that failed part-way" in plan.restore_reason


def test_a_database_without_migrations_or_timescaledb_reads_as_none(
    pg_database: str, backup_target: Callable[..., runner.Target]
) -> None:
    versions = TargetDatabase(target=backup_target(pg_database)).versions()
    assert (versions.schema_version, versions.extension_version) == ("", "")


def test_an_unreachable_database_stops_the_rollback(
    pg_database: str, backup_target: Callable[..., runner.Target]
) -> None:
    target = backup_target(pg_database)
    gone = runner.Target(
        executor=target.executor,
        backup_dir=target.backup_dir,
        database="ms5_no_such_database",
        connection=target.connection,
        password=target.password,
        pg_bindir=target.pg_bindir,
    )
    good = {"schemaVersion": "7", "extensionVersion": "2.19.3", "settings": {}}
    with pytest.raises(RollbackError) as refused:
        read_state(
            "staging", run=pulumi_cli(good, state_version="7"), database=TargetDatabase(target=gone)
        )
    message = str(refused.value)
    assert "stack staging: cannot read the applied schema version" in message
    assert "database ms5_no_such_database" in message
    assert target.password not in message
