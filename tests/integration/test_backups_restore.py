"""``./ms5 restore``'s logic against the real test server (the chroot executor)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ms5_components.backups import runner
from ms5_components.backups.restore import restore, server_versions
from ms5_components.errors import BackupError

pytestmark = pytest.mark.integration

FAST = runner.BackupSettings(jobs=2, lock_wait_seconds=5, timeout_seconds=300)


@pytest.fixture
def new_name(pg_server: Any) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(f"ms5_restored_{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def exists(pg_server: Any, name: str) -> bool:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_restore_into_a_new_database_reproduces_the_backup(
    ms5_database: str,
    backup_target: Callable[..., runner.Target],
    pg_server: Any,
    new_name: Callable[[], str],
) -> None:
    target = backup_target(ms5_database)
    taken = runner.take_backup(target, FAST)
    into = new_name()
    outcome = restore(target, taken.name, into=into, settings=FAST)
    assert outcome.target == into and outcome.rto_seconds > 0
    restored = make_conninfo(pg_server.dsn, dbname=into)
    assert count(restored, "ms5.machine_metrics") == 3000
    with psycopg.connect(restored, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'machine_metrics'"
        ).fetchone()
    assert row == (taken.manifest.metadata.chunk_counts["ms5.machine_metrics"],)


def test_a_non_empty_target_is_refused_unless_forced(
    ms5_database: str,
    backup_target: Callable[..., runner.Target],
    pg_server: Any,
    new_name: Callable[[], str],
) -> None:
    target = backup_target(ms5_database)
    taken = runner.take_backup(target, FAST)
    # The live database itself: refused, untouched.
    with pytest.raises(BackupError, match="is not empty"):
        restore(target, taken.name, settings=FAST)
    assert count(ms5_database, "ms5.machine_metrics") == 3000
    into = new_name()
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(into)))
    other = make_conninfo(pg_server.dsn, dbname=into)
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int)")
    with pytest.raises(BackupError, match=f"target database {into} is not empty"):
        restore(target, taken.name, into=into, settings=FAST)
    assert count(other, "public.precious") == 0
    restore(target, taken.name, into=into, force=True, settings=FAST)
    assert count(other, "ms5.machine_metrics") == 3000
    with psycopg.connect(other, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.precious')").fetchone() == (None,)


@pytest.mark.parametrize("which", ["postgres", "timescaledb"])
def test_a_version_mismatch_is_refused_before_touching_anything(
    ms5_database: str,
    backup_target: Callable[..., runner.Target],
    backup_dir: Path,
    pg_server: Any,
    new_name: Callable[[], str],
    which: str,
) -> None:
    target = backup_target(ms5_database)
    taken = runner.take_backup(target, FAST)
    path = backup_dir / taken.name / "manifest.json"
    data = json.loads(path.read_text())
    if which == "postgres":
        data["metadata"]["postgres_version"] = "16.4"
        data["metadata"]["postgres_version_num"] = 160004
        expected = [
            "PostgreSQL 16.4 (major 16)",
            f"PostgreSQL {pg_server.server_version}",
            "pg_upgrade",
        ]
    else:
        data["metadata"]["timescaledb_version"] = "2.99.0"
        expected = [
            "TimescaleDB 2.99.0",
            f"offers TimescaleDB {pg_server.timescaledb_version}",
            "ALTER EXTENSION timescaledb UPDATE",
        ]
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
    into = new_name()
    with pytest.raises(BackupError) as info:
        restore(target, taken.name, into=into, settings=FAST, image_hint="timescale/timescaledb")
    message = str(info.value)
    assert message.startswith("refused before touching anything")
    for text in expected:
        assert text in message, text
    assert not exists(pg_server, into)
    assert server_versions(target).postgres_major == pg_server.server_version_num // 10000


def test_a_corrupted_backup_is_refused(
    ms5_database: str,
    backup_target: Callable[..., runner.Target],
    backup_dir: Path,
    pg_server: Any,
    new_name: Callable[[], str],
) -> None:
    target = backup_target(ms5_database)
    taken = runner.take_backup(target, FAST)
    toc = backup_dir / taken.name / "dump" / "toc.dat"
    toc.write_bytes(toc.read_bytes()[:-10])
    into = new_name()
    with pytest.raises(BackupError, match="is not restorable"):
        restore(target, taken.name, into=into, settings=FAST)
    assert not exists(pg_server, into)


def _properties(dsn: str, database: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT d.datdba::regrole::text, d.datacl::text, (SELECT s.setconfig "
            "FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) "
            "FROM pg_database d WHERE d.datname = %s",
            (database,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_forced_restore_keeps_the_replaced_databases_owner_privileges_and_settings(
    ms5_database: str,
    backup_target: Callable[..., runner.Target],
    pg_server: Any,
    new_name: Callable[[], str],
) -> None:
    """They belong to the database, not to its contents: a dump taken without --create does not
    hold them (the monitoring roles' CONNECT grants, for instance)."""
    target = backup_target(ms5_database)
    taken = runner.take_backup(target, FAST)
    into = new_name()
    owner = f"ms5_probe_{uuid.uuid4().hex[:8]}"
    db, role = sql.Identifier(into), sql.Identifier(owner)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    try:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO pg_monitor").format(db))
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO ms5, public").format(db))
            conn.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout TO '5min'").format(db))
        other = make_conninfo(pg_server.dsn, dbname=into)
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute("CREATE TABLE precious (id int)")
        before = _properties(pg_server.dsn, into)
        assert before[0] == owner and "pg_monitor=c/" in before[1]
        restore(target, taken.name, into=into, force=True, settings=FAST)
        assert _properties(pg_server.dsn, into) == before
        assert count(other, "ms5.machine_metrics") == 3000
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
