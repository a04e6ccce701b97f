"""A least-privilege login role for monitoring, created and kept in sync (a dynamic resource).

The exporter connects as one (member of ``pg_monitor``); Grafana's PostgreSQL datasource as
another (``pg_monitor`` + ``pg_read_all_data``). Both are ``LOGIN NOSUPERUSER NOCREATEDB
NOCREATEROLE NOREPLICATION NOBYPASSRLS`` with a connection limit and role settings that keep them
harmless: ``default_transaction_read_only = on``, a ``statement_timeout`` (an exporter query can
never outlive a scrape), a short ``lock_timeout`` and an ``idle_in_transaction_session_timeout``.

- ``create`` and ``update`` run one idempotent *ensure* in a single transaction: create the role
  if missing (or adopt an existing non-superuser one), set its attributes, password and settings,
  grant exactly the configured predefined roles (revoking ones no longer configured) and grant
  CONNECT on the database (the ``pg_stat_statements`` view it reads comes from migration V0007). A
  changed password is applied for real, as a SCRAM-SHA-256 verifier computed client-side by
  libpq, so the plaintext never reaches the server or its logs.
- ``delete`` does not drop the role (objects and grants may depend on it, and another stack's
  exporter may still be logged in): it **revokes LOGIN and the predefined-role memberships**, so
  the credential is useless. ``DROP ROLE`` by hand finishes the job when wanted.

The id is deterministic (``monitoring-role:<name>``). The admin DSN and the password are secret
inputs; errors name the role and the database, never the DSN or the password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

from ms5_components.pg import CLIENT_ENCODING

PROVIDER_VERSION = "1"
"""Bumped when the provider's behaviour changes, so the change is a visible diff."""

ALLOWED_MEMBERSHIPS: frozenset[str] = frozenset(
    {
        "pg_monitor",
        "pg_read_all_stats",
        "pg_read_all_settings",
        "pg_stat_scan_tables",
        "pg_read_all_data",
    }
)
"""Predefined roles a monitoring role may be granted (all read-only)."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # Pulumi's marker of an unknown value (preview)
_COMPARED = (
    "role",
    "database",
    "member_of",
    "connection_limit",
    "statement_timeout_ms",
    "lock_timeout_ms",
    "idle_in_transaction_timeout_ms",
    "password",
    "admin_dsn",
    "provider_version",
)


@dataclass(frozen=True, kw_only=True)
class RoleProps:
    """The resource's properties, rebuilt from the engine's raw dict."""

    admin_dsn: str
    role: str
    password: str
    database: str
    member_of: tuple[str, ...]
    connection_limit: int
    statement_timeout_ms: int
    lock_timeout_ms: int
    idle_in_transaction_timeout_ms: int

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> RoleProps:
        """From the engine's dict: ``__``-prefixed keys ignored, floats turned back into ints."""
        clean = {k: v for k, v in raw.items() if not k.startswith("__")}
        return cls(
            admin_dsn=str(clean["admin_dsn"]),
            role=str(clean["role"]),
            password=str(clean["password"]),
            database=str(clean["database"]),
            member_of=tuple(sorted(str(m) for m in clean.get("member_of") or ())),
            connection_limit=int(clean.get("connection_limit", 5)),
            statement_timeout_ms=int(clean.get("statement_timeout_ms", 15_000)),
            lock_timeout_ms=int(clean.get("lock_timeout_ms", 1_000)),
            idle_in_transaction_timeout_ms=int(clean.get("idle_in_transaction_timeout_ms", 60_000)),
        )

    def outputs(self) -> dict[str, Any]:
        """Every property (the engine keeps only what update/create return)."""
        return {
            "admin_dsn": self.admin_dsn,
            "role": self.role,
            "password": self.password,
            "database": self.database,
            "member_of": list(self.member_of),
            "connection_limit": self.connection_limit,
            "statement_timeout_ms": self.statement_timeout_ms,
            "lock_timeout_ms": self.lock_timeout_ms,
            "idle_in_transaction_timeout_ms": self.idle_in_transaction_timeout_ms,
            "provider_version": PROVIDER_VERSION,
        }


def validate(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """``(property, reason)`` for every invalid known input (unknown values pass: preview)."""
    failures: list[tuple[str, str]] = []

    def known(key: str) -> bool:
        value = raw.get(key)
        return value is not None and value != _UNKNOWN

    for key in ("role", "database"):
        if known(key) and not _IDENTIFIER.fullmatch(str(raw[key])):
            failures.append((key, "expected a lower-case SQL identifier ([a-z_][a-z0-9_]*)"))
    if known("role") and str(raw["role"]).startswith("pg_"):
        failures.append(("role", "names starting with pg_ are reserved by PostgreSQL"))
    if known("member_of"):
        members = raw["member_of"]
        if not isinstance(members, list | tuple) or not members:
            failures.append(("member_of", "expected a non-empty list of predefined roles"))
        else:
            bad = sorted(
                str(m) for m in members if m != _UNKNOWN and str(m) not in ALLOWED_MEMBERSHIPS
            )
            if bad:
                failures.append(
                    (
                        "member_of",
                        f"{bad} not allowed; choose from {sorted(ALLOWED_MEMBERSHIPS)}",
                    )
                )
    if known("password"):
        password = str(raw["password"])
        if len(password) < 16:
            failures.append(("password", "expected at least 16 characters (not shown)"))
    for key, lo, hi in (
        ("connection_limit", 1, 1000),
        ("statement_timeout_ms", 100, 3_600_000),
        ("lock_timeout_ms", 10, 600_000),
        ("idle_in_transaction_timeout_ms", 1_000, 86_400_000),
    ):
        if known(key):
            try:
                value = int(raw[key])
            except (TypeError, ValueError):
                failures.append((key, f"expected a whole number from {lo} to {hi}"))
                continue
            if not lo <= value <= hi:
                failures.append((key, f"expected a whole number from {lo} to {hi}"))
    return failures


def _scrub(text: str, props: RoleProps) -> str:
    for secret in (props.password, props.admin_dsn):
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"postgres(ql)?://\S+", "postgresql://***", text)


def ensure_role(props: RoleProps, *, revoke: tuple[str, ...] = ()) -> None:
    """Create or converge the role (one transaction); MonitoringError on failure."""
    import psycopg
    from psycopg import sql

    from ms5_components.errors import MonitoringError

    role = sql.Identifier(props.role)
    try:
        with psycopg.connect(
            props.admin_dsn, connect_timeout=10, client_encoding=CLIENT_ENCODING
        ) as conn:
            current = conn.execute(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (props.role,)
            ).fetchone()
            if current is not None and current[0]:
                raise MonitoringError(
                    f"monitoring role {props.role}: a superuser of that name exists; refusing to "
                    "adopt it (pick another role name)"
                )
            if current is None:
                conn.execute(sql.SQL("CREATE ROLE {}").format(role))
            verifier = conn.pgconn.encrypt_password(
                props.password.encode(), props.role.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                    " NOBYPASSRLS INHERIT CONNECTION LIMIT {} PASSWORD {}"
                ).format(role, sql.Literal(props.connection_limit), sql.Literal(verifier))
            )
            for name, value in (
                ("default_transaction_read_only", "on"),
                ("statement_timeout", f"{props.statement_timeout_ms}ms"),
                ("lock_timeout", f"{props.lock_timeout_ms}ms"),
                (
                    "idle_in_transaction_session_timeout",
                    f"{props.idle_in_transaction_timeout_ms}ms",
                ),
            ):
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        role, sql.Identifier(name), sql.Literal(value)
                    )
                )
            for member in props.member_of:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member), role))
            for member in sorted(set(revoke) - set(props.member_of)):
                if member in ALLOWED_MEMBERSHIPS:
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(member), role))
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(props.database), role
                )
            )
    except psycopg.Error as exc:
        raise MonitoringError(
            f"monitoring role {props.role} on database {props.database}: "
            f"{type(exc).__name__}: {_scrub(str(exc), props)}. Check that the database is up "
            "and the admin DSN is a superuser's."
        ) from None


def disable_role(props: RoleProps) -> None:
    """Revoke LOGIN and the predefined-role memberships (idempotent; the role is kept)."""
    import psycopg
    from psycopg import sql

    from ms5_components.errors import MonitoringError

    role = sql.Identifier(props.role)
    try:
        with psycopg.connect(
            props.admin_dsn, connect_timeout=10, client_encoding=CLIENT_ENCODING
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s AND NOT rolsuper",
                (props.role,),
            ).fetchone()
            if exists is None:
                return
            conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN").format(role))
            for member in sorted(ALLOWED_MEMBERSHIPS):
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(member), role))
            conn.execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                " WHERE usename = %s",
                (props.role,),
            )
    except psycopg.Error as exc:
        raise MonitoringError(
            f"monitoring role {props.role}: cannot revoke its login ({type(exc).__name__}: "
            f"{_scrub(str(exc), props)}). If the database is gone, remove the resource with "
            "`pulumi state delete`."
        ) from None


class MonitoringRoleProvider(ResourceProvider):
    """Dynamic provider of :class:`MonitoringRole`."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate known inputs; return them unchanged."""
        failures = [CheckFailure(prop, reason) for prop, reason in validate(news)]
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Meaningful inputs only; a new role name replaces (the old one loses its login)."""
        changed = [k for k in _COMPARED if k in news and olds.get(k) != news.get(k)]
        if "member_of" in changed and sorted(olds.get("member_of") or ()) == sorted(
            news.get("member_of") or ()
        ):
            changed.remove("member_of")
        return DiffResult(
            changes=bool(changed),
            replaces=["role"] if "role" in changed else [],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create (or adopt) and converge the role."""
        parsed = RoleProps.from_raw(props)
        ensure_role(parsed)
        return CreateResult(id_=f"monitoring-role:{parsed.role}", outs=parsed.outputs())

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Converge: password, attributes, settings, memberships (revoking dropped ones)."""
        parsed = RoleProps.from_raw(news)
        revoke = tuple(str(m) for m in olds.get("member_of") or ())
        ensure_role(parsed, revoke=revoke)
        return UpdateResult(outs=parsed.outputs())

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Revokes the role's LOGIN and memberships and ends its sessions; the role is kept."""
        disable_role(RoleProps.from_raw(props))


@dataclass(frozen=True, kw_only=True)
class MonitoringRoleArgs:
    """Inputs of :class:`MonitoringRole`."""

    admin_dsn: pulumi.Input[str]
    """Superuser DSN reachable from the Pulumi host (secret). Changing it updates in place."""
    role: str
    """Role name. Changing it replaces the resource (the old role loses its login)."""
    password: pulumi.Input[str]
    """Login password (secret, at least 16 characters). A change is applied with ALTER ROLE."""
    database: pulumi.Input[str]
    """Database the role may connect to. Changing it updates in place."""
    member_of: tuple[str, ...] = ("pg_monitor",)
    """Predefined roles granted (from :data:`ALLOWED_MEMBERSHIPS`). Default pg_monitor."""
    connection_limit: int = 5
    """Maximum concurrent sessions of the role. Default 5."""
    statement_timeout_ms: int = 15_000
    """Role-level statement_timeout. Default 15 s (below the 20 s scrape timeout)."""
    lock_timeout_ms: int = 1_000
    """Role-level lock_timeout. Default 1 s."""
    idle_in_transaction_timeout_ms: int = 60_000
    """Role-level idle_in_transaction_session_timeout. Default 60 s."""


class MonitoringRole(pulumi.dynamic.Resource, module="ms5", name="MonitoringRole"):
    """A read-only, least-privilege login role (pg_monitor member, never a superuser)."""

    role: pulumi.Output[str]
    """The role name."""
    database: pulumi.Output[str]
    """The database it may connect to."""
    password: pulumi.Output[str]
    """Its password (secret)."""

    def __init__(
        self, name: str, args: MonitoringRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["password", "admin_dsn"])
        )
        super().__init__(
            MonitoringRoleProvider(),
            name,
            {
                "admin_dsn": pulumi.Output.secret(args.admin_dsn),
                "role": args.role,
                "password": pulumi.Output.secret(args.password),
                "database": args.database,
                "member_of": sorted(args.member_of),
                "connection_limit": args.connection_limit,
                "statement_timeout_ms": args.statement_timeout_ms,
                "lock_timeout_ms": args.lock_timeout_ms,
                "idle_in_transaction_timeout_ms": args.idle_in_transaction_timeout_ms,
                "provider_version": PROVIDER_VERSION,
            },
            opts,
        )
