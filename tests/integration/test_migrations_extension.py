"""Extension upgrade after an image change, and TimescaleDB version/license detection.

The test server has one TimescaleDB version only, so the upgrade mechanics run against a stand-in
extension with two versions (``ms5_probe`` 1.0 -> 1.1) installed into a fresh server's share
directory: ``upgrade_everywhere`` and the runner take the extension name as a parameter.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import ms5_testenv
from ms5_components.errors import ExtensionUpgradeError
from ms5_components.migrations.extension import read_state, upgrade_everywhere, version_tuple
from ms5_components.migrations.plan import parse_migration
from ms5_components.migrations.runner import run

pytestmark = pytest.mark.integration

EXTENSION_DIR = "usr/share/postgresql/17/extension"


def install_probe(root: Path, name: str, update_sql: str) -> list[Path]:
    """A two-version extension: 1.0 installable, 1.1 the default (reached by ``update_sql``)."""
    directory = root / EXTENSION_DIR
    files = {
        f"{name}.control": f"default_version = '1.1'\nrelocatable = false\ncomment = 'ms5 test {name}'\n",
        f"{name}--1.0.sql": "CREATE FUNCTION probe_version() RETURNS text LANGUAGE sql "
        "AS $$ SELECT '1.0'::text $$;\n",
        f"{name}--1.0--1.1.sql": update_sql,
    }
    paths = []
    for filename, text in files.items():
        path = directory / filename
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.fixture
def server(start_postgres: Callable[..., ms5_testenv.PostgresServer]) -> ms5_testenv.PostgresServer:
    """A fresh server of our own (its template1 is changed), logging every statement."""
    return start_postgres({"log_statement": "all", "log_line_prefix": "%c|%a| "})


@pytest.fixture
def probe(testenv: ms5_testenv.ServiceEnv) -> Iterator[str]:
    name = f"ms5_probe_{uuid.uuid4().hex[:8]}"
    paths = install_probe(
        testenv.root,
        name,
        "CREATE OR REPLACE FUNCTION probe_version() RETURNS text LANGUAGE sql "
        "AS $$ SELECT '1.1'::text $$;\n",
    )
    try:
        yield name
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


@pytest.fixture
def failing_probe(testenv: ms5_testenv.ServiceEnv) -> Iterator[str]:
    name = f"ms5_badprobe_{uuid.uuid4().hex[:8]}"
    paths = install_probe(testenv.root, name, "SELECT 1 / 0;\n")
    try:
        yield name
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def execute(dsn: str, statement: str, dbname: str | None = None) -> list[tuple[object, ...]]:
    target = make_conninfo(dsn, dbname=dbname) if dbname else dsn
    with psycopg.connect(target, autocommit=True) as conn:
        cur = conn.execute(statement)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def create_probe_everywhere(server: ms5_testenv.PostgresServer, name: str) -> None:
    execute(server.dsn, "CREATE DATABASE app")
    execute(server.dsn, "CREATE DATABASE without_probe")
    for db in ("template1", "postgres", "app"):
        execute(
            server.dsn,
            sql.SQL("CREATE EXTENSION {} VERSION '1.0'").format(sql.Identifier(name)).as_string(),
            db,
        )


def test_upgrade_runs_in_every_database_as_the_first_statement(
    server: ms5_testenv.PostgresServer, probe: str
) -> None:
    create_probe_everywhere(server, probe)
    results = upgrade_everywhere(make_conninfo(server.dsn, dbname="app"), extension=probe)
    by_db = {r.database: (r.before, r.after) for r in results}
    assert by_db == {
        "app": ("1.0", "1.1"),
        "postgres": ("1.0", "1.1"),
        "template1": ("1.0", "1.1"),
        "without_probe": (None, None),
    }
    for db in ("app", "postgres", "template1"):
        assert execute(server.dsn, "SELECT probe_version()", db) == [("1.1",)]
    # Databases created from template1 from now on start current.
    execute(server.dsn, "CREATE DATABASE later")
    assert execute(
        server.dsn, f"SELECT extversion FROM pg_extension WHERE extname = '{probe}'", "later"
    ) == [("1.1",)]

    # The server log: in each session that ran the ALTER, it was the first statement.
    assert server.process is not None
    log = server.process.log_tail(2000)
    statements: dict[str, list[str]] = {}
    for line in log.splitlines():
        match = re.match(r"(\S+)\|ms5-extension-upgrade\| LOG:  statement: (.*)", line)
        if match:
            statements.setdefault(match.group(1), []).append(match.group(2))
    alter_sessions = [
        s for s in statements.values() if any(x.startswith("ALTER EXTENSION") for x in s)
    ]
    assert len(alter_sessions) == 3
    for session in alter_sessions:
        assert session[0] == f'ALTER EXTENSION "{probe}" UPDATE'

    # Nothing left to do: a second pass changes nothing.
    again = upgrade_everywhere(server.dsn, extension=probe)
    assert all(not r.upgraded for r in again)


def test_failed_upgrade_stops_with_the_database_and_versions(
    server: ms5_testenv.PostgresServer, failing_probe: str
) -> None:
    execute(server.dsn, "CREATE DATABASE app")
    execute(
        server.dsn,
        sql.SQL("CREATE EXTENSION {} VERSION '1.0'")
        .format(sql.Identifier(failing_probe))
        .as_string(),
        "app",
    )
    dsn = make_conninfo(server.dsn, dbname="app")
    with pytest.raises(ExtensionUpgradeError) as caught:
        upgrade_everywhere(dsn, extension=failing_probe)
    message = str(caught.value)
    assert caught.value.database == "app"
    assert f"ALTER EXTENSION {failing_probe} UPDATE from 1.0 to 1.1 failed" in message
    assert "division by zero" in message
    assert server.password not in message

    # Through the runner: the deploy stops before any migration.
    migration = parse_migration("V1__one.sql", "CREATE TABLE t1 (id int);\n")
    with pytest.raises(ExtensionUpgradeError):
        run(dsn, [migration], extension=failing_probe)
    assert execute(dsn, "SELECT to_regclass('ms5_meta.schema_history'), to_regclass('t1')") == [
        (None, None)
    ]


def test_runner_upgrades_an_outdated_extension_before_migrating(
    server: ms5_testenv.PostgresServer, probe: str
) -> None:
    create_probe_everywhere(server, probe)
    dsn = make_conninfo(server.dsn, dbname="app")
    migration = parse_migration(
        "V1__one.sql", "CREATE TABLE t1 (v text);\nINSERT INTO t1 SELECT probe_version();\n"
    )
    result = run(dsn, [migration], extension=probe)
    assert result.applied_now == ("1",)
    assert {u.database for u in result.upgrades if u.upgraded} == {"app", "postgres", "template1"}
    assert execute(dsn, "SELECT v FROM t1") == [("1.1",)]
    assert result.extension.installed_version == result.extension.default_version == "1.1"


def test_current_timescaledb_needs_no_upgrade(
    pg_server: ms5_testenv.PostgresServer, pg_database: str
) -> None:
    execute(pg_database, "CREATE EXTENSION IF NOT EXISTS timescaledb")
    results = upgrade_everywhere(pg_database)
    mine = {r.database: r for r in results}
    db = str(psycopg.conninfo.conninfo_to_dict(pg_database)["dbname"])
    assert mine[db].before == mine[db].after == pg_server.timescaledb_version
    assert not any(r.upgraded for r in results)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        state = read_state(conn)
    assert state.installed_version == pg_server.timescaledb_version
    assert state.license == pg_server.license
    assert not state.needs_update
    assert state.columnstore_api == (version_tuple(state.installed_version) >= (2, 18))


def test_version_tuple() -> None:
    assert version_tuple("2.19.3") == (2, 19, 3)
    assert version_tuple("2.20.0-dev") == (2, 20, 0)
    assert version_tuple(None) == ()


def test_a_database_dropped_while_visiting_is_skipped(
    server: ms5_testenv.PostgresServer, probe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore drill may drop its scratch database between the listing and the visit."""
    from ms5_components.migrations import extension

    create_probe_everywhere(server, probe)
    execute(server.dsn, "CREATE DATABASE scratch")
    original = extension._connect

    def dropping(conninfo: str, database: str | None, options: str, timeout: int) -> object:
        if database == "scratch":
            execute(server.dsn, "DROP DATABASE IF EXISTS scratch")
        return original(conninfo, database, options, timeout)

    monkeypatch.setattr(extension, "_connect", dropping)
    results = upgrade_everywhere(make_conninfo(server.dsn, dbname="app"), extension=probe)
    assert sorted(r.database for r in results) == ["app", "postgres", "template1", "without_probe"]
    assert {r.after for r in results if r.database != "without_probe"} == {"1.1"}
