"""Keeps a database role's password equal to the one in Pulumi config (a dynamic resource).

The official image reads the superuser password only when it initialises an empty data directory,
so a password changed in config later would silently not apply. This resource closes that gap:

- ``create`` waits (bounded) until the role can log in with the configured password;
- ``update`` logs in with the previous password (or the new one, if an earlier run already changed
  it) and runs ``ALTER ROLE ... PASSWORD`` with a SCRAM-SHA-256 verifier computed client-side by
  libpq, so the plaintext never reaches the server's statement log;
- ``delete`` changes nothing: the role belongs to the database.

The password is a secret input; no error message contains it or the DSN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from ms5_components.pg import CLIENT_ENCODING

PROVIDER_VERSION = "1"
_COMPARED = ("host", "port", "database", "user", "password", "provider_version")


@dataclass(frozen=True, kw_only=True)
class RolePasswordProps:
    """Inputs, rebuilt from the engine's raw dict (numbers arrive as floats)."""

    host: str
    port: int
    database: str
    user: str
    password: str
    connect_timeout_seconds: int

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> RolePasswordProps:
        return cls(
            host=str(raw["host"]),
            port=int(raw["port"]),
            database=str(raw["database"]),
            user=str(raw["user"]),
            password=str(raw["password"]),
            connect_timeout_seconds=int(raw.get("connect_timeout_seconds", 60)),
        )

    def outputs(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "password": self.password,
            "connect_timeout_seconds": self.connect_timeout_seconds,
            "provider_version": PROVIDER_VERSION,
        }


def _connect(props: RolePasswordProps, password: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=props.host,
        port=props.port,
        dbname=props.database,
        user=props.user,
        password=password,
        connect_timeout=10,
        client_encoding=CLIENT_ENCODING,
        autocommit=True,
    )


def _is_auth_failure(exc: Exception) -> bool:
    import psycopg

    if isinstance(exc, psycopg.errors.InvalidPassword):
        return True
    return "password authentication failed" in str(exc)


def wait_for_login(props: RolePasswordProps) -> None:
    """Log in with the configured password, retrying while the server starts; RoleError otherwise."""
    import psycopg

    from ms5_components.errors import RoleError

    deadline = time.monotonic() + props.connect_timeout_seconds
    last = ""
    while True:
        try:
            with _connect(props, props.password) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if _is_auth_failure(exc):
                raise RoleError(
                    f"role {props.user} on {props.host}:{props.port}/{props.database} rejects the "
                    "configured password. If the data volume was initialised with another "
                    "password, set that one in config first (pulumi config set --secret), deploy, "
                    "then change it: the change is applied with ALTER ROLE."
                ) from None
            last = type(exc).__name__
        if time.monotonic() > deadline:
            raise RoleError(
                f"role {props.user}: the server at {props.host}:{props.port} did not accept "
                f"connections within {props.connect_timeout_seconds} s ({last}). Check the "
                "database container's health and logs (docker logs)."
            )
        time.sleep(1.0)


def rotate(old: RolePasswordProps, new: RolePasswordProps) -> None:
    """Set the role's password to ``new.password``, logging in with the old or the new one."""
    import psycopg
    from psycopg import sql

    from ms5_components.errors import RoleError

    for attempt in (old.password, new.password):
        try:
            conn = _connect(new, attempt)
        except psycopg.OperationalError as exc:
            if _is_auth_failure(exc):
                continue
            raise RoleError(
                f"role {new.user}: cannot reach {new.host}:{new.port}/{new.database} to change "
                f"its password ({type(exc).__name__}). Check the database container."
            ) from None
        with conn:
            if attempt == new.password:
                return  # already converged (an earlier run changed it)
            verifier = conn.pgconn.encrypt_password(
                new.password.encode(), new.user.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(new.user), sql.Literal(verifier.decode())
                )
            )
            return
    raise RoleError(
        f"role {new.user} accepts neither the previous nor the new password from config; "
        "set the password the database currently has (pulumi config set --secret), deploy, then "
        "change it."
    )


class RolePasswordProvider(ResourceProvider):
    """Dynamic provider of :class:`RolePassword`."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in _COMPARED if k in news and olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed),
            replaces=["user"] if "user" in changed else [],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        parsed = RolePasswordProps.from_raw(props)
        wait_for_login(parsed)
        return CreateResult(id_=f"ms5-role-{parsed.database}-{parsed.user}", outs=parsed.outputs())

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        new = RolePasswordProps.from_raw(news)
        old = RolePasswordProps.from_raw({**news, **olds})
        if old.password != new.password:
            rotate(old, new)
        wait_for_login(new)
        return UpdateResult(outs=new.outputs())

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Changes nothing: the role and its password stay in the database."""


@dataclass(frozen=True, kw_only=True)
class RolePasswordArgs:
    """Inputs of :class:`RolePassword`."""

    host: pulumi.Input[str]
    """Address of the server from the Pulumi host."""
    port: pulumi.Input[int]
    """Published port."""
    database: pulumi.Input[str]
    """Database to log in to."""
    user: pulumi.Input[str]
    """Role whose password is kept in sync (changing it replaces the resource)."""
    password: pulumi.Input[str]
    """The password from config (secret). A change runs ALTER ROLE."""
    connect_timeout_seconds: int = 60
    """How long to wait for the server to accept connections."""


class RolePassword(pulumi.dynamic.Resource, module="ms5", name="RolePassword"):
    """The role's password in the database equals the one in config."""

    user: pulumi.Output[str]
    """The role."""

    def __init__(
        self, name: str, args: RolePasswordArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])
        )
        super().__init__(
            RolePasswordProvider(),
            name,
            {
                "host": args.host,
                "port": args.port,
                "database": args.database,
                "user": args.user,
                "password": pulumi.Output.secret(args.password),
                "connect_timeout_seconds": args.connect_timeout_seconds,
                "provider_version": PROVIDER_VERSION,
            },
            opts,
        )
