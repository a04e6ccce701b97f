"""RolePassword against a real server: a password changed in config is applied for real."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ms5_components.errors import RoleError
from ms5_components.lifecycle.role_password import RolePasswordProvider

pytestmark = pytest.mark.integration

OLD = "old-password-0123456789"
NEW = "new-password-9876543210"


@pytest.fixture
def role(pg_server, pg_database) -> Iterator[dict[str, object]]:
    name = f"ms5_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(OLD)
            )
        )
    info = conninfo_to_dict(pg_database)
    props: dict[str, object] = {
        "host": pg_server.host,
        "port": float(pg_server.port),  # the engine sends numbers as floats
        "database": info["dbname"],
        "user": name,
        "password": OLD,
        "connect_timeout_seconds": 5.0,
        "provider_version": "1",
        "__provider": "serialized",
    }
    yield props
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _can_login(props: dict[str, object], password: str) -> bool:
    try:
        with psycopg.connect(
            host=str(props["host"]),
            port=int(props["port"]),  # type: ignore[call-overload]
            dbname=str(props["database"]),
            user=str(props["user"]),
            password=password,
        ):
            return True
    except psycopg.OperationalError:
        return False


def test_create_verifies_the_login(role):
    result = RolePasswordProvider().create(role)
    assert result.id == f"ms5-role-{role['database']}-{role['user']}"
    assert result.outs["port"] == int(role["port"]) and isinstance(result.outs["port"], int)


def test_create_with_a_wrong_password_says_what_to_do_without_the_password(role):
    with pytest.raises(RoleError) as info:
        RolePasswordProvider().create({**role, "password": "not-the-password-123"})
    msg = str(info.value)
    assert str(role["user"]) in msg and "ALTER ROLE" in msg
    assert "not-the-password-123" not in msg and OLD not in msg


def test_changed_password_is_applied_with_alter_role(role, pg_server):
    provider = RolePasswordProvider()
    olds = provider.create(role).outs
    news = {**role, "password": NEW}
    assert provider.diff("id", olds, news).changes
    outs = provider.update("id", olds, news).outs
    assert outs["password"] == NEW
    assert _can_login(role, NEW) and not _can_login(role, OLD)
    with psycopg.connect(pg_server.dsn) as conn:
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role["user"]]
        ).fetchone()
    assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")  # a verifier, not text
    # Re-running the same update (e.g. after a crash before state was saved) converges.
    assert provider.update("id", olds, news).outs["password"] == NEW


def test_neither_password_works(role):
    with pytest.raises(RoleError) as info:
        RolePasswordProvider().update(
            "id", {**role, "password": "wrong-old-password-1"}, {**role, "password": NEW}
        )
    msg = str(info.value)
    assert "neither the previous nor the new password" in msg
    assert NEW not in msg and "wrong-old-password-1" not in msg


def test_server_down_is_reported_with_the_next_step(role):
    with pytest.raises(RoleError) as info:
        RolePasswordProvider().create({**role, "port": 1.0, "connect_timeout_seconds": 1.0})
    assert "did not accept connections" in str(info.value)
    assert "docker logs" in str(info.value)
