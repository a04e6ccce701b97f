"""The lifecycle code on a SQL_ASCII database: names read from the server are text.

An initdb that follows a bare image's locale gives SQL_ASCII, and psycopg then returns text as
``bytes`` unless the connection sets its client encoding. The program pins UTF8 at first init, but
a database created otherwise (or an older volume) must still work: each piece of lifecycle code
that reads names runs here against a real SQL_ASCII database created by the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ms5_components.lifecycle.role_password import RolePasswordProvider
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.extension import read_state, upgrade_everywhere
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import RunnerSettings, history, run
from ms5_components.monitoring.role import RoleProps, disable_role, ensure_role

pytestmark = pytest.mark.integration

FAST = RunnerSettings(
    lock_timeout_ms=2_000,
    statement_timeout_ms=60_000,
    lock_retries=2,
    retry_backoff_seconds=0.05,
    advisory_lock_wait_seconds=60,
)


@pytest.fixture
def ascii_database(pg_server) -> Iterator[str]:
    """DSN of a new SQL_ASCII database (C locale, from template0); dropped afterwards."""
    name = f"ms5_ascii_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(ident)
        )
    try:
        yield make_conninfo(pg_server.dsn, dbname=name)
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def test_the_database_really_returns_bytes_to_a_default_connection(ascii_database):
    # The fault the tests below guard against, reproduced: without a client encoding, text
    # arrives as bytes on this database.
    with psycopg.connect(ascii_database) as conn:
        row = conn.execute(
            "SELECT current_database(), pg_encoding_to_char(encoding) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    assert isinstance(row[0], bytes) and row[1] == b"SQL_ASCII"


def test_migrations_apply_and_report_text(ascii_database):
    migrations = load_directory(repository_migrations_dir())
    result = run(ascii_database, migrations, settings=FAST)
    assert result.current_version == migrations[-1].version
    assert result.applied_now == tuple(m.version for m in migrations)
    rows = history(ascii_database)
    assert rows and all(isinstance(r.description, str) for r in rows)
    assert all(isinstance(r.checksum, str) and isinstance(r.version, str) for r in rows)
    # A second run reads the history back as text and finds nothing to do.
    again = run(ascii_database, migrations, settings=FAST)
    assert again.applied_now == ()
    # The extension's versions and license are the server's text, not a bytes repr ("b'2.19.3'").
    with psycopg.connect(ascii_database, client_encoding="UTF8") as conn:
        row = conn.execute(
            "SELECT extversion, current_setting('timescaledb.license', true)"
            " FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert row is not None
    assert again.extension.installed_version == row[0]
    assert again.extension.license == row[1]


def test_extension_upgrade_visits_every_database_by_its_text_name(ascii_database):
    name = conninfo_to_dict(ascii_database)["dbname"]
    results = upgrade_everywhere(ascii_database)
    names = [r.database for r in results]
    assert all(isinstance(n, str) for n in names)
    assert name in names and "template1" in names
    with psycopg.connect(ascii_database, client_encoding="UTF8") as conn:
        state = read_state(conn, "timescaledb")
    assert state.default_version is None or isinstance(state.default_version, str)


def test_monitoring_role_is_created_and_disabled(ascii_database):
    name = conninfo_to_dict(ascii_database)["dbname"]
    props = RoleProps(
        admin_dsn=ascii_database,
        role=f"ms5_exp_{uuid.uuid4().hex[:8]}",
        password=uuid.uuid4().hex,
        database=str(name),
        member_of=("pg_monitor",),
        connection_limit=5,
        statement_timeout_ms=15_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    try:
        ensure_role(props)
        ensure_role(props)  # converges: reads its own role and memberships back as text
        with psycopg.connect(ascii_database, client_encoding="UTF8") as conn:
            row = conn.execute(
                "SELECT rolconnlimit, rolconfig FROM pg_roles WHERE rolname = %s", [props.role]
            ).fetchone()
        assert row is not None and row[0] == 5
        assert "statement_timeout=15000" in " ".join(row[1]).replace("15s", "15000")
        with psycopg.connect(
            ascii_database, user=props.role, password=props.password, client_encoding="UTF8"
        ) as conn:
            row = conn.execute("SELECT pg_has_role(current_user, 'pg_monitor', 'member')")
            assert row.fetchone() == (True,)
        disable_role(props)
    finally:
        with psycopg.connect(ascii_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(props.role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(props.role)))


def test_role_password_verifies_and_rotates(ascii_database, pg_server):
    user = f"ms5_pw_{uuid.uuid4().hex[:8]}"
    old, new = "old-password-0123456789", "new-password-9876543210"
    with psycopg.connect(ascii_database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(old)
            )
        )
    props: dict[str, object] = {
        "host": pg_server.host,
        "port": float(pg_server.port),
        "database": conninfo_to_dict(ascii_database)["dbname"],
        "user": user,
        "password": old,
        "connect_timeout_seconds": 5.0,
        "provider_version": "1",
        "__provider": "serialized",
    }
    try:
        provider = RolePasswordProvider()
        olds = provider.create(props).outs
        outs = provider.update("id", olds, {**props, "password": new}).outs
        assert outs["password"] == new
    finally:
        with psycopg.connect(ascii_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
