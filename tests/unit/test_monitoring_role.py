"""MonitoringRole's provider, called directly: check, diff, props, serialization."""

from __future__ import annotations

import subprocess
import sys

import dill  # type: ignore[import-untyped]

from ms5_components.monitoring.role import (
    PROVIDER_VERSION,
    MonitoringRoleProvider,
    RoleProps,
    _scrub,
    validate,
)

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _raw(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "admin_dsn": "postgresql://postgres:adminpw@db:5432/ms5",
        "role": "ms5_exporter",
        "password": "a-long-enough-password",
        "database": "ms5",
        "member_of": ["pg_monitor"],
        "connection_limit": 5.0,
        "statement_timeout_ms": 15000.0,
        "lock_timeout_ms": 1000.0,
        "idle_in_transaction_timeout_ms": 60000.0,
        "provider_version": PROVIDER_VERSION,
        "__provider": "serialized",
    }
    raw.update(overrides)
    return raw


def test_props_from_raw_drops_internal_keys_and_restores_ints():
    props = RoleProps.from_raw(_raw())
    assert props.connection_limit == 5 and isinstance(props.connection_limit, int)
    outputs = props.outputs()
    assert "__provider" not in outputs
    assert outputs["provider_version"] == PROVIDER_VERSION
    assert outputs["member_of"] == ["pg_monitor"]


def test_check_accepts_valid_and_unknown_inputs():
    provider = MonitoringRoleProvider()
    assert provider.check({}, _raw()).failures == []
    preview = _raw(password=UNKNOWN, admin_dsn=UNKNOWN, database=UNKNOWN)
    assert provider.check({}, preview).failures == []


def test_check_names_each_bad_property():
    failures = dict(
        validate(
            _raw(
                role="Bad-Name",
                member_of=["pg_monitor", "pg_write_all_data", "postgres"],
                password="short",
                connection_limit=0,
            )
        )
    )
    assert set(failures) == {"role", "member_of", "password", "connection_limit"}
    assert "pg_write_all_data" in failures["member_of"]
    assert "short" not in failures["password"]
    assert "reserved" in dict(validate(_raw(role="pg_sneaky")))["role"]


def test_diff_meaningful_inputs_only():
    provider = MonitoringRoleProvider()
    olds = RoleProps.from_raw(_raw()).outputs()
    assert not provider.diff("id", olds, _raw(__provider="reserialized")).changes
    same_members = provider.diff("id", olds, _raw(member_of=["pg_monitor"]))
    assert not same_members.changes
    password = provider.diff("id", olds, _raw(password="another-long-password"))
    assert password.changes and not password.replaces
    rename = provider.diff("id", olds, _raw(role="ms5_other"))
    assert rename.changes and rename.replaces == ["role"]
    members = provider.diff("id", olds, _raw(member_of=["pg_monitor", "pg_read_all_data"]))
    assert members.changes and not members.replaces


def test_errors_are_scrubbed():
    props = RoleProps.from_raw(_raw())
    text = _scrub(
        "connection to postgresql://postgres:adminpw@db:5432/ms5 failed; "
        "password a-long-enough-password rejected",
        props,
    )
    assert "adminpw" not in text and "a-long-enough-password" not in text


def test_provider_deserializes_in_a_clean_process():
    blob = dill.dumps(MonitoringRoleProvider(), protocol=dill.HIGHEST_PROTOCOL, recurse=True)
    code = (
        "import sys, dill; p = dill.loads(sys.stdin.buffer.read()); "
        "print(type(p).__module__, len(p.check({}, {'role': 'ms5_x'}).failures))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, cwd="/", check=True
    )
    assert result.stdout.decode().split() == ["ms5_components.monitoring.role", "0"]
