"""The MigrationSet provider, called the way the engine calls it: serialized with the SDK's own
``serialize_provider``, deserialized by ``python -I -m pulumi.dynamic`` in a clean directory
outside the repository, driven over gRPC (``tests/rehearsal.py``'s ProviderHost)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from ms5_components.migrations.plan import migrations_to_inputs, parse_migration
from ms5_components.migrations.provider import PROVIDER_VERSION, MigrationSetProvider
from rehearsal import ProviderHost, RehearsalError, provider_host

URN = "urn:pulumi:staging::ms5::pulumi-python:dynamic/ms5:MigrationSet::migrations"
SERIALIZED = serialize_provider(MigrationSetProvider())


def files(**sql: str) -> dict[str, Any]:
    return migrations_to_inputs([parse_migration(name, text) for name, text in sql.items()])


FIVE = {
    "V1__one.sql": "CREATE TABLE t1 (id int);",
    "V2__two.sql": "CREATE TABLE t2 (id int);",
    "V3__three.sql": "CREATE TABLE t3 (id int);",
    "V4__four.sql": "CREATE TABLE t4 (id int);",
    "V5__five.sql": "CREATE TABLE t5 (id int);",
}


def props(dsn: str, migrations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {
        "__provider": SERIALIZED,
        "database": "app",
        "dsn": dsn,
        "server_id": "container-1",
        "db_image": "timescale/timescaledb:2.19.3-pg17",
        "migrations": migrations,
        "repair": [],
        "settings": {
            "advisory_lock_wait_seconds": 30,
            "lock_retries": 1,
            "lock_timeout_ms": 2000,
            "statement_timeout_ms": 60000,
        },
        "provider_version": PROVIDER_VERSION,
    }
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def host() -> Iterator[ProviderHost]:
    with provider_host() as h:
        yield h


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]


# ---- serialization ----------------------------------------------------------------------------


def test_serialized_provider_is_a_reference_and_identical_across_processes() -> None:
    code = (
        "from pulumi.dynamic.dynamic import serialize_provider\n"
        "from ms5_components.migrations.provider import MigrationSetProvider\n"
        "print(serialize_provider(MigrationSetProvider()))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd="/"
        ).stdout.strip()
        for _ in range(2)
    }
    assert outs == {SERIALIZED}
    import base64

    raw = base64.b64decode(SERIALIZED)
    # Pickled by reference (module + class name): reformatting the provider's code or bumping an
    # unrelated dependency cannot change these bytes, so no diff and no replacement follow.
    assert b"ms5_components.migrations.provider" in raw
    assert b"MigrationSetProvider" in raw
    assert len(raw) < 200
    # Plain pickle reads it too: a dill or Python upgrade cannot break existing state.
    import pickle

    assert type(pickle.loads(raw)).__name__ == "MigrationSetProvider"


# ---- check ------------------------------------------------------------------------------------


def test_check_accepts_good_inputs(host: ProviderHost) -> None:
    news = props("postgresql://u:p@h/db", files(**FIVE))
    checked, failures = host.check(URN, {}, news)
    assert failures == []
    assert checked["migrations"] == news["migrations"]


def test_check_rejects_bad_files_naming_them(host: ProviderHost) -> None:
    good = files(**FIVE)
    bad = dict(good)
    bad["V1_oops.sql"] = {"sql": "SELECT 1;", "version": "1"}
    bad["V01__again.sql"] = good["V1__one.sql"] | {"description": "again"}
    tampered = dict(good["V2__two.sql"])
    tampered["checksum"] = "0" * 64
    bad["V2__two.sql"] = tampered
    _, failures = host.check(URN, {}, props("postgresql://u:p@h/db", bad))
    reasons = sorted(reason for prop, reason in failures if prop == "migrations")
    assert any(r.startswith("V1_oops.sql: is not a valid migration name") for r in reasons)
    assert any("has version 1, already used by" in r for r in reasons)
    assert any(r.startswith("V2__two.sql: input checksum") for r in reasons)


def test_check_rejects_empty_set_bad_repair_and_settings(host: ProviderHost) -> None:
    news = props(
        "postgresql://u:secret-password@h/db",
        {},
        repair=["not-a-version"],
        settings={"lock_timeout_ms": -5},
    )
    _, failures = host.check(URN, {}, news)
    by_prop = dict(failures)
    assert "is empty" in by_prop["migrations"]
    assert "not-a-version" in by_prop["repair"]
    assert "settings.lock_timeout_ms" in by_prop
    assert all("secret-password" not in r for _, r in failures)


def test_check_tolerates_unknowns_at_preview(host: ProviderHost) -> None:
    news = props(rpc.UNKNOWN, files(**FIVE), server_id=rpc.UNKNOWN, database=rpc.UNKNOWN)
    _, failures = host.check(URN, {}, news)
    assert failures == []


# ---- diff -------------------------------------------------------------------------------------


def outputs_like(news: dict[str, Any]) -> dict[str, Any]:
    """What create returns for these inputs (the diff basis), without running anything."""
    return {
        "__provider": news["__provider"],
        "database": news["database"],
        "server_id": news["server_id"],
        "db_image": news["db_image"],
        "provider_version": news["provider_version"],
        "repair": news["repair"],
        "migration_files": {k: v["checksum"] for k, v in news["migrations"].items()},
        "applied_versions": ["1", "2", "3", "4", "5"],
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, False),
        ({"dsn": "postgresql://u:new-password@h/db"}, False),
        ({"settings": {"lock_timeout_ms": 99, "lock_retries": 9}}, False),
        ({"__provider": serialize_provider(MigrationSetProvider()) + ""}, False),
        ({"migrations": files(**FIVE, **{"V6__six.sql": "SELECT 6;"})}, True),
        ({"migrations": files(**{**FIVE, "V5__five.sql": "SELECT 55;"})}, True),
        ({"repair": ["3"]}, True),
        ({"server_id": "container-2"}, True),
        ({"db_image": "timescale/timescaledb:2.20.0-pg17"}, True),
        ({"provider_version": "999"}, True),
        ({"server_id": rpc.UNKNOWN}, True),
    ],
)
def test_diff_compares_meaningful_inputs_only_and_never_replaces(
    host: ProviderHost, change: dict[str, Any], expected: bool
) -> None:
    news = props("postgresql://u:p@h/db", files(**FIVE))
    olds = outputs_like(news)
    response = host.diff(URN, "ms5-migrations-app", olds, {**news, **change})
    assert (response.changes == response.DIFF_SOME) is expected
    assert list(response.replaces) == []
    assert response.deleteBeforeReplace is False


# ---- create / update / delete against the real server ------------------------------------------


@pytest.mark.integration
def test_create_fails_half_way_then_the_next_create_resumes(
    host: ProviderHost, pg_database: str
) -> None:
    broken = dict(FIVE)
    broken["V3__three.sql"] = "CREATE TABLE t3 (id int);\nSELEC 1;"
    with pytest.raises(RehearsalError) as caught:
        host.create(URN, props(pg_database, files(**broken)))
    message = str(caught.value)
    assert "V3__three.sql:2: migration 3 failed" in message
    password = str(psycopg.conninfo.conninfo_to_dict(pg_database)["password"])
    assert password not in message
    assert tables(pg_database) == ["t1", "t2"]

    # Pulumi recorded nothing; the next `up` calls create again, which resumes at 3.
    id_, outs = host.create(URN, props(pg_database, files(**FIVE)))
    assert id_ == "ms5-migrations-app"
    assert outs["last_applied"] == ["3", "4", "5"]
    assert outs["applied_versions"] == ["1", "2", "3", "4", "5"]
    assert outs["current_version"] == "5"
    assert set(outs["checksums"]) == {"1", "2", "3", "4", "5"}
    assert "dsn" not in outs
    assert tables(pg_database) == ["t1", "t2", "t3", "t4", "t5"]


@pytest.mark.integration
def test_update_returns_full_outputs_and_delete_drops_nothing(
    host: ProviderHost, pg_database: str
) -> None:
    first = props(pg_database, files(**FIVE))
    _, outs = host.create(URN, first)
    # Settings arrive as floats (protobuf numbers); the provider turns them back into ints.
    second = props(pg_database, files(**FIVE, **{"V6__six.sql": "CREATE TABLE t6 (id int);"}))
    updated = host.update(URN, "ms5-migrations-app", outs, second)
    assert updated["last_applied"] == ["6"]
    assert updated["applied_versions"] == ["1", "2", "3", "4", "5", "6"]
    assert set(updated) >= {
        "database",
        "server_id",
        "db_image",
        "provider_version",
        "repair",
        "migration_files",
        "applied_versions",
        "current_version",
        "checksums",
        "warnings",
        "last_applied",
        "timescaledb_version",
        "timescaledb_license",
        "__provider",
    }
    assert updated["migration_files"] == {k: v["checksum"] for k, v in second["migrations"].items()}
    host.delete(URN, "ms5-migrations-app", updated)
    assert tables(pg_database) == ["t1", "t2", "t3", "t4", "t5", "t6"]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        count = conn.execute("SELECT count(*) FROM ms5_meta.schema_history").fetchone()
    assert count == (6,)
