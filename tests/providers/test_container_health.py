"""ContainerHealth provider, against the fake docker CLI: waits for healthy, fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ms5_components.errors import ContainerHealthError
from ms5_components.lifecycle.container_health import ContainerHealthProvider

NAME = "ms5-staging-timescaledb"


def props(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "docker_host": "unix:///run/engine.sock",
        "container_name": NAME,
        "container_id": "c0ffee",
        "timeout_seconds": 30.0,  # a float, as the engine sends numbers
        "timeout_setting": "ms5:dbHealthTimeoutSeconds",
        "provider_version": "1",
        "__provider": "serialized",
    }
    base.update(overrides)
    return base


def state(status: str, health: str | None, *, exit_code: int = 0, output: str = "") -> str:
    s: dict[str, object] = {"Status": status, "ExitCode": exit_code}
    if health is not None:
        log = [{"ExitCode": 2, "Output": output}] if output else []
        s["Health"] = {"Status": health, "Log": log}
    return json.dumps([{"State": s, "RestartCount": 0}])


@pytest.fixture
def states(fake_docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "states"
    monkeypatch.setenv("FAKE_DOCKER_STATES", str(path))
    monkeypatch.setenv("FAKE_DOCKER_CALLS", str(tmp_path / "calls"))
    return path


def test_waits_through_initialisation_until_healthy(states, tmp_path):
    # The init-only server runs (socket only): the check fails, the status stays `starting`.
    init = state("running", "starting", output="127.0.0.1:5432 - no response")
    states.write_text("\n".join([init, init, init, state("running", "healthy")]) + "\n")
    result = ContainerHealthProvider().create(props())
    assert result.id == f"{NAME}-health"
    assert result.outs["health_status"] == "healthy"
    assert result.outs["timeout_seconds"] == 30 and isinstance(result.outs["timeout_seconds"], int)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 4  # polled until healthy, not reported healthy before
    assert all(c.startswith("DOCKER_HOST=unix:///run/engine.sock DOCKER_CONTEXT= ") for c in calls)
    assert all(c.endswith("inspect c0ffee") for c in calls)


def test_slow_first_init_times_out_naming_container_and_setting(states):
    states.write_text(state("running", "starting", output="no response") + "\n")
    with pytest.raises(ContainerHealthError) as info:
        ContainerHealthProvider().create(props(timeout_seconds=1.0))
    msg = str(info.value)
    assert f"container {NAME} did not become healthy within 1 s" in msg
    assert "(ms5:dbHealthTimeoutSeconds)" in msg
    assert "pulumi config set ms5:dbHealthTimeoutSeconds <seconds>" in msg
    assert f"kept for diagnosis: `docker logs {NAME}`" in msg
    assert "health starting" in msg and "no response" in msg


def test_a_stopped_container_fails_at_once(states):
    states.write_text(state("exited", "starting", exit_code=1) + "\n")
    with pytest.raises(ContainerHealthError, match=r"stopped \(status exited, exit code 1\)"):
        ContainerHealthProvider().create(props())


def test_unhealthy_is_waited_through_until_healthy(states):
    # A first init that outlasts the health check's own start period reads `unhealthy` for a
    # while, then becomes healthy when the real server starts.
    sick = state("running", "unhealthy", output="127.0.0.1:5432 - no response")
    states.write_text("\n".join([sick, sick, state("running", "healthy")]) + "\n")
    assert ContainerHealthProvider().create(props()).outs["health_status"] == "healthy"


def test_unhealthy_until_the_timeout_reports_the_last_check(states):
    states.write_text(state("running", "unhealthy", output="pg_isready: rejecting") + "\n")
    with pytest.raises(ContainerHealthError) as info:
        ContainerHealthProvider().create(props(timeout_seconds=1.0))
    msg = str(info.value)
    assert "health unhealthy" in msg and "exit code 2: pg_isready: rejecting" in msg
    assert "ms5:dbHealthTimeoutSeconds" in msg


def test_a_container_without_health_check_is_an_error(states):
    states.write_text(state("running", None) + "\n")
    with pytest.raises(ContainerHealthError, match="has no health check"):
        ContainerHealthProvider().create(props())


def test_unreachable_engine_names_container_and_engine(states, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(ContainerHealthError) as info:
        ContainerHealthProvider().create(props())
    msg = str(info.value)
    assert f"cannot inspect container {NAME}" in msg and "unix:///run/engine.sock" in msg


def test_a_replaced_container_is_waited_for_again(states):
    p = ContainerHealthProvider()
    assert not p.diff("id", props(), props(__provider="other")).changes
    diff = p.diff("id", props(), props(container_id="new"))
    assert diff.changes and diff.replaces == []
    states.write_text(state("running", "healthy") + "\n")
    assert p.update("id", props(), props(container_id="new")).outs["container_id"] == "new"


def test_check_refuses_a_non_positive_timeout():
    failures = ContainerHealthProvider().check({}, props(timeout_seconds=0)).failures
    assert [f.property for f in failures] == ["timeout_seconds"]


def test_delete_is_a_noop():
    assert ContainerHealthProvider().delete(f"{NAME}-health", props()) is None
