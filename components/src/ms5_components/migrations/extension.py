"""TimescaleDB extension: version/license detection and the upgrade after an image change.

A new image ships a new extension library, but every database keeps the old extension version
until ``ALTER EXTENSION timescaledb UPDATE`` runs in it. TimescaleDB requires that statement to be
the *first* one of a fresh session (before the old library is loaded into it), so
:func:`upgrade_everywhere` looks at each database that accepts connections, ``template1``
included, with one short session, and where the installed version differs from the available
default opens a new session whose first statement is the ``ALTER``, then verifies the result in
that session. Any failure stops the deploy with :class:`~ms5_components.errors.ExtensionUpgradeError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ms5_components.errors import ExtensionUpgradeError, MigrationConnectError
from ms5_components.pg import CLIENT_ENCODING

if TYPE_CHECKING:
    import psycopg

EXTENSION = "timescaledb"
COLUMNSTORE_SINCE = (2, 18)
"""The columnstore API (``add_columnstore_policy``, ``timescaledb.enable_columnstore``) exists from
2.18; before it the compression API (``add_compression_policy``) is used."""


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"2.19.3"`` -> ``(2, 19, 3)``; ``"2.20.0-dev"`` -> ``(2, 20, 0)``; None -> ``()``."""
    if not version:
        return ()
    return tuple(int(p) for p in re.findall(r"\d+", version.split("-")[0]))


@dataclass(frozen=True)
class ExtensionState:
    """The extension as one database sees it."""

    installed_version: str | None
    """``pg_extension.extversion`` (None: not installed in this database)."""
    default_version: str | None
    """The version the server's files offer (``pg_available_extensions.default_version``)."""
    license: str | None
    """``timescaledb.license``: ``apache`` or ``timescale`` (None when the library is absent)."""

    @property
    def full_license(self) -> bool:
        """Whether compression/columnstore, retention and continuous aggregates are available."""
        return self.license == "timescale"

    @property
    def columnstore_api(self) -> bool:
        """Whether the 2.18+ columnstore API exists (else the compression API)."""
        return version_tuple(self.installed_version or self.default_version) >= COLUMNSTORE_SINCE

    @property
    def needs_update(self) -> bool:
        return bool(self.installed_version) and self.installed_version != self.default_version


STATE_SQL = """
SELECT e.extversion,
       (SELECT a.default_version FROM pg_catalog.pg_available_extensions a WHERE a.name = %(ext)s),
       current_setting('timescaledb.license', true)
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_extension e ON e.extname = %(ext)s
"""


def read_state(
    conn: psycopg.Connection[tuple[object, ...]], extension: str = EXTENSION
) -> ExtensionState:
    """The extension's state in the database ``conn`` is connected to (one round trip)."""
    row = conn.execute(STATE_SQL, {"ext": extension}).fetchone()
    assert row is not None
    installed, default, license_ = row
    return ExtensionState(
        installed_version=str(installed) if installed else None,
        default_version=str(default) if default else None,
        license=str(license_) if license_ else None,
    )


@dataclass(frozen=True)
class DatabaseUpgrade:
    """What :func:`upgrade_everywhere` found and did in one database."""

    database: str
    before: str | None
    """Installed version found (None: the extension is not installed there; nothing done)."""
    after: str | None
    """Installed version afterwards (verified equal to the available default)."""

    @property
    def upgraded(self) -> bool:
        return self.before != self.after


def _connect(
    conninfo: str, database: str | None, options: str, connect_timeout: int
) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    from ms5_components.migrations.runner import scrub

    try:
        return psycopg.connect(
            make_conninfo(
                conninfo,
                **({"dbname": database} if database else {}),
                application_name="ms5-extension-upgrade",
                options=options,
                connect_timeout=str(connect_timeout),
                client_encoding=CLIENT_ENCODING,
            ),
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        raise MigrationConnectError(
            f"database {database or '(from the DSN)'}: cannot connect for the extension check: "
            f"{scrub(str(exc), conninfo)}"
        ) from None


def _exists(conninfo: str, database: str, options: str, connect_timeout: int) -> bool:
    with _connect(conninfo, None, options, connect_timeout) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (database,)
        ).fetchone()
    return row is not None


def upgrade_everywhere(
    conninfo: str,
    *,
    extension: str = EXTENSION,
    lock_timeout_ms: int = 5000,
    statement_timeout_ms: int = 600_000,
    connect_timeout: int = 10,
) -> tuple[DatabaseUpgrade, ...]:
    """Bring ``extension`` to the available default version in every database.

    Every database that accepts connections is visited (``template1`` included, so databases
    created later start current; ``template0`` accepts none and never has it). Raises
    :class:`ExtensionUpgradeError` naming the database, both versions and the server's message.
    """
    import psycopg
    from psycopg import sql

    from ms5_components.migrations.runner import scrub

    options = (
        f"-c lock_timeout={int(lock_timeout_ms)} -c statement_timeout={int(statement_timeout_ms)}"
    )
    with _connect(conninfo, None, options, connect_timeout) as conn:
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname"
            )
        ]
    results: list[DatabaseUpgrade] = []
    for name in names:
        try:
            conn = _connect(conninfo, name, options, connect_timeout)
        except MigrationConnectError:
            # A database dropped since the listing (a restore drill's scratch database) has
            # nothing to upgrade; any other connection failure stops the deploy.
            if not _exists(conninfo, name, options, connect_timeout):
                continue
            raise
        with conn:
            state = read_state(conn, extension)
        if not state.installed_version:
            results.append(DatabaseUpgrade(database=name, before=None, after=None))
            continue
        if not state.needs_update:
            results.append(
                DatabaseUpgrade(
                    database=name, before=state.installed_version, after=state.installed_version
                )
            )
            continue
        # A fresh session whose first statement is the ALTER (TimescaleDB's requirement).
        with _connect(conninfo, name, options, connect_timeout) as conn:
            try:
                conn.execute(sql.SQL("ALTER EXTENSION {} UPDATE").format(sql.Identifier(extension)))
                after = conn.execute(
                    "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = %s",
                    (extension,),
                ).fetchone()
            except psycopg.Error as exc:
                raise ExtensionUpgradeError(
                    name,
                    f"ALTER EXTENSION {extension} UPDATE from {state.installed_version} to "
                    f"{state.default_version} failed: {scrub(str(exc).strip(), conninfo)}. The "
                    "deploy stopped before any migration; fix the cause (see the server log) and "
                    "run `pulumi up` again, or set ms5:dbImage back to the previous image",
                ) from None
        installed = str(after[0]) if after else None
        if installed != state.default_version:
            raise ExtensionUpgradeError(
                name,
                f"after ALTER EXTENSION {extension} UPDATE the installed version is {installed}, "
                f"not the available {state.default_version}; the deploy stopped before any "
                "migration. Check the image's extension files and the server log",
            )
        results.append(
            DatabaseUpgrade(database=name, before=state.installed_version, after=installed)
        )
    return tuple(results)
