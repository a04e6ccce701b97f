"""Shared pytest fixtures of the MS5 TimescaleDB project.

Sections:

* Real services: PostgreSQL 17 + TimescaleDB, Pushgateway and the Prometheus tools, from
  ``tools/ms5_testenv.py`` (a cached debootstrap root run through chroot) or from the
  ``MS5_TEST_*`` environment variables documented there.

Add fixtures for other areas in their own delimited section below the existing ones.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import ms5_testenv
from harness import ProgramRun, run_program
from stacks import overrides_for

# ======================================================================================
# Real services (tools/ms5_testenv.py)
#
#   testenv          session   the ServiceEnv: root path, run_in_root, promtool,
#                              start_prometheus, start_postgres_exporter, psql, stage ...
#   pg_server        session   a running TimescaleDB server (ms5_testenv.PostgresServer)
#   pg_database      function  DSN of a fresh empty database on pg_server (no extensions)
#   start_postgres   function  factory: start an extra fresh server with extra settings
#   pushgateway_url  session   base URL of a running Pushgateway
#
# A service that cannot be provisioned or started fails the test; the only skips are the
# ``full_license`` marker on a server whose TimescaleDB license is not ``timescale`` and the
# ``apache_only`` marker on a server whose license is not ``apache``.
# ======================================================================================

FULL_LICENSE = "timescale"
APACHE_LICENSE = "apache"
_CONNECT_TIMEOUT = 10

StartPostgres = Callable[..., ms5_testenv.PostgresServer]


@pytest.fixture(scope="session")
def testenv() -> Iterator[ms5_testenv.ServiceEnv]:
    """The test environment; the root is provisioned (once) on the first use needing it."""
    env = ms5_testenv.ServiceEnv()
    try:
        yield env
    finally:
        env.close()


def _describe(server: ms5_testenv.PostgresServer) -> ms5_testenv.PostgresServer:
    """``server`` with its version, TimescaleDB version and license filled in."""
    with psycopg.connect(server.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " current_setting('server_version_num')::int,"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'),"
            " current_setting('timescaledb.license', true)"
        ).fetchone()
        assert row is not None
        version, version_num, tsdb_version, license_ = row
        if license_ is None and tsdb_version is not None:
            license_ = _license_from_scratch_database(conn, server.dsn)
    return dataclasses.replace(
        server,
        server_version=version,
        server_version_num=version_num,
        timescaledb_version=tsdb_version,
        license=license_,
    )


def _license_from_scratch_database(admin: psycopg.Connection[tuple[object, ...]], dsn: str) -> str:
    """``timescaledb.license`` exists only once the extension is loaded: ask a scratch DB."""
    name = f"ms5_license_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        with psycopg.connect(
            make_conninfo(dsn, dbname=name), autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        ) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            row = conn.execute("SHOW timescaledb.license").fetchone()
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    assert row is not None
    return str(row[0])


def _external_server(dsn: str) -> ms5_testenv.PostgresServer:
    params = conninfo_to_dict(dsn)
    return ms5_testenv.PostgresServer(
        dsn=dsn,
        host=str(params.get("host") or params.get("hostaddr") or "localhost"),
        port=int(str(params.get("port") or 5432)),
        user=str(params.get("user") or ""),
        password=str(params.get("password") or ""),
    )


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[ms5_testenv.PostgresServer]:
    """A running PostgreSQL 17 + TimescaleDB server: ``$MS5_TEST_PG_DSN`` or one started in
    the root.  Has ``dsn`` (superuser), ``host``, ``port``, ``server_version``,
    ``server_version_num``, ``timescaledb_version`` and ``license``."""
    dsn = os.environ.get(ms5_testenv.ENV_PG_DSN)
    if dsn:
        server = _external_server(dsn)
        origin = f"the server of {ms5_testenv.ENV_PG_DSN}"
    else:
        env: ms5_testenv.ServiceEnv = request.getfixturevalue("testenv")
        try:
            server = env.start_postgres()
        except ms5_testenv.EnvError as exc:
            pytest.fail(f"PostgreSQL for the tests could not be started: {exc}", pytrace=False)
        origin = "the PostgreSQL server started in the test root"
    try:
        try:
            described = _describe(server)
        except psycopg.Error as exc:
            pytest.fail(
                f"cannot query {origin} ({server.host}:{server.port}): {exc}. Next step: check "
                f"that it is running and that {ms5_testenv.ENV_PG_DSN} is a superuser DSN.",
                pytrace=False,
            )
        yield described
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: ms5_testenv.PostgresServer) -> Iterator[str]:
    """DSN of a new empty database (from template0, so no timescaledb extension yet);
    dropped WITH (FORCE) afterwards."""
    name = f"ms5_test_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_server.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident))
    try:
        yield make_conninfo(pg_server.dsn, dbname=name)
    finally:
        with psycopg.connect(
            pg_server.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        ) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture
def start_postgres(testenv: ms5_testenv.ServiceEnv) -> Iterator[StartPostgres]:
    """Factory: ``start_postgres({"shared_buffers": "2GB"}, timeout=60.0)`` starts a fresh
    server in the root with those extra settings and returns its ``PostgresServer``
    (stopped at teardown).  A setting PostgreSQL rejects raises
    ``ms5_testenv.ServiceStartError`` with the server's own message."""
    started: list[ms5_testenv.PostgresServer] = []

    def _start(
        settings: Mapping[str, object] | None = None, *, timeout: float = 60.0
    ) -> ms5_testenv.PostgresServer:
        server = testenv.start_postgres(settings, timeout=timeout)
        started.append(server)
        return server

    try:
        yield _start
    finally:
        for server in reversed(started):
            testenv.stop(server)


@pytest.fixture(scope="session")
def pushgateway_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Base URL (no trailing slash) of ``$MS5_TEST_PUSHGATEWAY_URL`` or a Pushgateway
    started in the root."""
    url = os.environ.get(ms5_testenv.ENV_PUSHGATEWAY_URL)
    if url:
        yield url.rstrip("/")
        return
    env: ms5_testenv.ServiceEnv = request.getfixturevalue("testenv")
    try:
        gateway = env.start_pushgateway()
    except ms5_testenv.EnvError as exc:
        pytest.fail(f"Pushgateway for the tests could not be started: {exc}", pytrace=False)
    try:
        yield gateway.url
    finally:
        env.stop(gateway)


@pytest.fixture(autouse=True)
def _full_license_gate(request: pytest.FixtureRequest) -> None:
    """Tests marked ``full_license`` run only on a server with the Timescale license."""
    if request.node.get_closest_marker("full_license") is None:
        return
    server: ms5_testenv.PostgresServer = request.getfixturevalue("pg_server")
    if server.license != FULL_LICENSE:
        pytest.skip(
            "needs a full-license (timescale) TimescaleDB server; "
            f"this server's license is {server.license or 'unknown'}"
        )


@pytest.fixture(autouse=True)
def _apache_only_gate(request: pytest.FixtureRequest) -> None:
    """Tests marked ``apache_only`` run only on a server with the Apache license."""
    if request.node.get_closest_marker("apache_only") is None:
        return
    server: ms5_testenv.PostgresServer = request.getfixturevalue("pg_server")
    if server.license != APACHE_LICENSE:
        pytest.skip(
            "shows the Apache-licensed TimescaleDB's behaviour; "
            f"this server's license is {server.license or 'unknown'}"
        )


# ======================================================================================
# End of the real-services section.
# ======================================================================================


# ======================================================================================
# Verification and benchmarks
#
#   migrated_database   function  DSN of a fresh UTF8 database with the MS5.0 migrations
# ======================================================================================


@pytest.fixture
def migrated_database(pg_server: ms5_testenv.PostgresServer) -> Iterator[str]:
    """A fresh database (UTF8) with the repository's migrations applied; dropped afterwards."""
    from ms5_components.migrations import repository_migrations_dir
    from ms5_components.migrations.plan import load_directory
    from ms5_components.migrations.runner import run as run_migrations

    name = f"ms5_verify_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_server.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(ident))
    dsn = make_conninfo(pg_server.dsn, dbname=name)
    try:
        run_migrations(dsn, load_directory(repository_migrations_dir()))
        yield dsn
    finally:
        with psycopg.connect(
            pg_server.dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        ) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


# ==================================================================================================
# The program under mocks
# ==================================================================================================


@pytest.fixture
def program() -> Callable[..., ProgramRun]:
    """Evaluate the real program for a stack under mocks: ``program("production", {...})``."""

    def run(stack: str, extra: dict[str, Any] | None = None, **kwargs: Any) -> ProgramRun:
        return run_program(stack, overrides_for(stack, extra), **kwargs)

    return run


# ==================================================================================================
# Backups: a backup directory in the test root and a target that runs the backup script there
#
#   backup_dir       function  host path of a fresh backup directory inside the test root
#   backup_target    function  factory: backup_target(dsn, backup_dir=None) -> runner.Target
#   ms5_database     function  DSN of a fresh database with the repository's migrations and rows
# ==================================================================================================


@pytest.fixture
def backup_dir(testenv: ms5_testenv.ServiceEnv) -> Iterator[Any]:
    """A directory inside the root, owned by postgres (the backup volume of the tests)."""
    import shutil
    from pathlib import Path

    path = Path(testenv.run_dir) / f"backups-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    user = testenv._user("postgres")
    os.chown(path, user.uid, user.gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backup_target(
    testenv: ms5_testenv.ServiceEnv, pg_server: ms5_testenv.PostgresServer, backup_dir: Any
) -> Callable[..., Any]:
    """``backup_target(dsn)``: a Target for the database of ``dsn`` whose tools run in the root
    (the chroot executor) against the test server, writing to ``backup_dir``."""
    from ms5_components.backups.executor import ChrootExecutor
    from ms5_components.backups.runner import Target

    def make(dsn: str, directory: Any = None, **kwargs: Any) -> Target:
        params = conninfo_to_dict(dsn)
        return Target(
            executor=ChrootExecutor(root=str(testenv.root)),
            backup_dir=testenv.in_root(directory or backup_dir),
            database=str(params["dbname"]),
            connection={
                "PGHOST": str(params.get("host") or pg_server.host),
                "PGPORT": str(params.get("port") or pg_server.port),
                "PGUSER": str(params.get("user") or pg_server.user),
            },
            password=str(params.get("password") or pg_server.password),
            pg_bindir=ms5_testenv.PG_BINDIR,
            **kwargs,
        )

    return make


@pytest.fixture
def ms5_database(pg_database: str) -> str:
    """``pg_database`` with the repository's migrations applied and telemetry rows in several
    chunks of several hypertables."""
    from ms5_components.migrations import repository_migrations_dir
    from ms5_components.migrations.plan import load_directory
    from ms5_components.migrations.runner import run

    run(pg_database, load_directory(repository_migrations_dir()))
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value) "
            "SELECT now() - i * interval '1 minute', 'm' || (i % 5), 'temp', i "
            "FROM generate_series(1, 3000) i"
        )
        conn.execute(
            "INSERT INTO ms5.production_counts (time, machine_id, good_count) "
            "SELECT now() - i * interval '1 hour', 'm' || (i % 3), i FROM generate_series(1, 500) i"
        )
    return pg_database


# ==================================================================================================
# End of the backups section.
# ==================================================================================================
