"""The foundation's dynamic providers run the way the engine runs them: the serialized
``__provider`` taken from the program, loaded by ``python -I -m pulumi.dynamic`` in a clean
directory outside the repository, then called over gRPC."""

from __future__ import annotations

from typing import Any

import pytest

from harness import run_program, unwrap
from rehearsal import RehearsalError, provider_host
from stacks import overrides_for

PREFLIGHT_URN = "urn:pulumi:production::ms5::pulumi-python:dynamic/ms5:HostPreflight::pre"


def _program_inputs(type_suffix: str) -> dict[str, Any]:
    run = run_program("production", overrides_for("production"))
    [reg] = [r for r in run.registrations.values() if r.type.endswith(type_suffix)]
    inputs = unwrap(reg.inputs)
    assert isinstance(inputs["__provider"], str) and inputs["__provider"]
    return inputs


def test_preflight_from_the_program_runs_in_a_clean_host(fake_docker):
    news = _program_inputs(":HostPreflight")
    # The image reference, known at preview: the preflight needs no pulled image.
    assert news["image"].startswith("timescale/timescaledb:2.19.3-pg17@sha256:")
    with provider_host() as host:
        checked, failures = host.check(PREFLIGHT_URN, {}, news)
        assert failures == []
        id_, outs = host.create(PREFLIGHT_URN, checked)
        assert id_ == "ms5-preflight"
        assert outs["memory_mb"] == 8192 and outs["docker_version"] == "27.3.1"
        assert outs["docker_root_dir"] == str(fake_docker)
        # Same inputs again: no diff, so a no-op `up` runs no check.
        diff = host.diff(PREFLIGHT_URN, id_, outs, checked)
        assert diff.changes == 1  # DiffResponse.DIFF_NONE
        # A PostgreSQL major change is refused at check, i.e. at preview, with the procedure.
        _, failures = host.check(PREFLIGHT_URN, outs, {**checked, "pg_major": 18})
        assert failures and failures[0][0] == "pg_major"
        assert "pg_upgrade" in failures[0][1]


def test_preflight_failure_reaches_the_engine_with_its_message(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/ms5-test-nothing.sock")
    news = _program_inputs(":HostPreflight")
    with provider_host() as host, pytest.raises(RehearsalError) as info:
        host.create(PREFLIGHT_URN, news)
    assert "unix:///run/ms5-test-nothing.sock (from DOCKER_HOST) is not reachable" in str(
        info.value
    )


HEALTH_URN = "urn:pulumi:production::ms5::pulumi-python:dynamic/ms5:ContainerHealth::health"


def test_container_health_from_the_program_times_out_with_its_message(
    fake_docker, monkeypatch, tmp_path
):
    import json

    states = tmp_path / "states"
    starting = {"State": {"Status": "running", "Health": {"Status": "starting", "Log": []}}}
    states.write_text(json.dumps([starting]) + "\n")
    monkeypatch.setenv("FAKE_DOCKER_STATES", str(states))
    news = _program_inputs(":ContainerHealth")
    assert news["timeout_setting"] == "ms5:dbHealthTimeoutSeconds"
    news.update(container_id="c0ffee", timeout_seconds=1)  # known once the container exists
    with provider_host() as host, pytest.raises(RehearsalError) as info:
        host.create(HEALTH_URN, news)
    msg = str(info.value)
    assert "container ms5-production-timescaledb did not become healthy within 1 s" in msg
    assert "raise ms5:dbHealthTimeoutSeconds" in msg
    assert "docker logs ms5-production-timescaledb" in msg


def test_role_password_from_the_program_rotates_a_real_password(pg_server, pg_database):
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    role = f"ms5_host_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'first-password-0000'").format(
                sql.Identifier(role)
            )
        )
    try:
        program = _program_inputs(":RolePassword")
        urn = "urn:pulumi:production::ms5::pulumi-python:dynamic/ms5:RolePassword::login"
        news = {
            **program,
            "host": pg_server.host,
            "port": pg_server.port,
            "database": conninfo_to_dict(pg_database)["dbname"],
            "user": role,
            "password": "first-password-0000",
            "connect_timeout_seconds": 5,
        }
        with provider_host() as host:
            id_, outs = host.create(urn, news)
            rotated = host.update(urn, id_, outs, {**news, "password": "second-password-111"})
        assert rotated["password"] == "second-password-111"
        with psycopg.connect(
            host=pg_server.host,
            port=pg_server.port,
            dbname=news["database"],
            user=role,
            password="second-password-111",
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
