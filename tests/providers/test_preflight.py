"""HostPreflight provider: each check fails with its own clear message; a PG major change is refused."""

from __future__ import annotations

import json
import os

import pytest

from ms5_components.errors import PreflightError
from ms5_components.lifecycle.preflight import (
    MIN_API_VERSION,
    MIN_ENGINE_VERSION,
    PreflightProvider,
)


def props(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "docker_host": "unix:///var/run/docker.sock",
        "min_free_disk_gb": 1.0,  # floats, as the engine sends numbers
        "memory_mb": 2048.0,
        "cpus": 2.0,
        "pg_major": 17.0,
        "image": "sha256:abc",
        "provider_version": "1",
        "__provider": "serialized",
    }
    base.update(overrides)
    return base


def test_healthy_host_passes_and_reports_facts(fake_docker):
    result = PreflightProvider().create(props())
    assert result.id == "ms5-preflight"
    outs = result.outs
    assert outs["docker_version"] == "27.3.1"
    assert outs["host_memory_mb"] == 16384
    assert outs["host_cpus"] == 8
    assert outs["docker_root_dir"] == str(fake_docker)
    assert outs["free_disk_gb"] > 0
    assert outs["memory_mb"] == 2048 and isinstance(outs["memory_mb"], int)


def test_unreachable_engine(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(docker_host="unix:///run/nothing.sock"))
    msg = str(info.value)
    assert "unix:///run/nothing.sock (from ms5:dockerHost) is not reachable" in msg
    assert "Cannot connect to the Docker daemon" in msg
    assert "systemctl start docker" in msg


def test_unreachable_engine_names_where_the_endpoint_came_from(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(PreflightError, match=r"tcp://10\.9\.9\.9:2375 \(from DOCKER_HOST\)"):
        PreflightProvider().create(
            props(docker_host="tcp://10.9.9.9:2375", docker_host_source="DOCKER_HOST")
        )


@pytest.mark.parametrize(
    ("version", "api"),
    [("20.10.24", "1.41"), ("24.0.7", "1.43"), ("28.2.2", "1.50"), ("100.0.0", "2.0")],
)
def test_engine_at_or_above_the_minimum_passes(fake_docker, monkeypatch, version, api):
    monkeypatch.setenv("FAKE_DOCKER_VERSION", version)
    monkeypatch.setenv("FAKE_DOCKER_API", api)
    outs = PreflightProvider().create(props()).outs
    assert (outs["docker_version"], outs["docker_api_version"]) == (version, api)


@pytest.mark.parametrize(
    ("version", "api"), [("20.10.0-rc1", "1.40"), ("19.03.15", "1.40"), ("1.13.1", "1.26")]
)
def test_engine_older_than_the_minimum_is_refused_naming_both_versions(
    fake_docker, monkeypatch, version, api
):
    monkeypatch.setenv("FAKE_DOCKER_VERSION", version)
    monkeypatch.setenv("FAKE_DOCKER_API", api)
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props())
    msg = str(info.value)
    assert f"version {version} (API {api})" in msg
    assert f"Docker Engine {MIN_ENGINE_VERSION} or newer (API 1.41)" in msg
    assert "Upgrade Docker Engine" in msg and "ms5:dockerHost" in msg


def test_engine_version_is_checked_before_anything_else(fake_docker, monkeypatch, tmp_path):
    calls = tmp_path / "calls"
    monkeypatch.setenv("FAKE_DOCKER_CALLS", str(calls))
    monkeypatch.setenv("FAKE_DOCKER_API", "1.40")
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    with pytest.raises(PreflightError):
        PreflightProvider().create(props(docker_host="unix:///run/engine.sock"))
    lines = calls.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "version --format {{.Server.Version}}|{{.Server.APIVersion}}"
    )
    # Exactly the resolved engine: DOCKER_HOST set, no context left to disagree.
    assert lines[0].startswith("DOCKER_HOST=unix:///run/engine.sock DOCKER_CONTEXT= ")


def test_unreadable_api_version_is_refused(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_API", "dev")
    with pytest.raises(PreflightError, match=r"version 27\.3\.1 \(API dev\); the program needs"):
        PreflightProvider().create(props())


def test_docker_cli_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreflightError, match="docker CLI is not on PATH"):
        PreflightProvider().create(props())


def test_not_enough_memory(fake_docker):
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(memory_mb=65536.0))
    msg = str(info.value)
    assert "16384 MiB" in msg and "ms5:dbMemoryMb=65536" in msg


def test_not_enough_cpus(fake_docker):
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(cpus=16.0))
    msg = str(info.value)
    assert "8 CPU(s)" in msg and "ms5:dbCpus=16" in msg


def test_engine_on_another_machine_is_measured_from_inside(fake_docker, monkeypatch):
    # Docker Desktop or a forwarded socket: unix://, but the data root is not on this machine.
    info = json.loads(os.environ["FAKE_DOCKER_INFO"])
    monkeypatch.setenv(
        "FAKE_DOCKER_INFO", json.dumps({**info, "Name": "docker-desktop", "DockerRootDir": "/x"})
    )
    monkeypatch.setenv("FAKE_DOCKER_FREE_KB", str(3 * 1024 * 1024))
    assert PreflightProvider().create(props()).outs["free_disk_gb"] == 3.0


def test_data_root_not_visible_locally_falls_back_to_the_probe(fake_docker, monkeypatch):
    info = json.loads(os.environ["FAKE_DOCKER_INFO"])
    monkeypatch.setenv("FAKE_DOCKER_INFO", json.dumps({**info, "DockerRootDir": "/nonexistent/x"}))
    monkeypatch.setenv("FAKE_DOCKER_FREE_KB", str(4 * 1024 * 1024))
    assert PreflightProvider().create(props()).outs["free_disk_gb"] == 4.0


def test_not_enough_disk_local(fake_docker):
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(min_free_disk_gb=10_000_000.0))
    msg = str(info.value)
    assert "ms5:preflightMinFreeDiskGb=10000000" in msg and str(fake_docker) in msg


def test_not_enough_disk_remote_host_uses_a_probe_container(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_FREE_KB", str(2 * 1024 * 1024))  # 2 GiB
    with pytest.raises(PreflightError, match=r"2\.0 GiB free"):
        PreflightProvider().update(
            "ms5-preflight", props(), props(docker_host="ssh://ops@db1", min_free_disk_gb=5.0)
        )
    ok = PreflightProvider().update(
        "ms5-preflight", props(), props(docker_host="ssh://ops@db1", min_free_disk_gb=1.0)
    )
    assert ok.outs["free_disk_gb"] == 2.0


def test_minimum_is_debian_12s_engine():
    # Debian 12's docker.io (Engine 20.10.24, API 1.41) is what CI runs on.
    assert (MIN_ENGINE_VERSION, MIN_API_VERSION) == ("20.10", (1, 41))


def test_major_upgrade_is_refused_at_check_with_the_procedure():
    result = PreflightProvider().check(props(pg_major=16.0), props(pg_major=17.0))
    assert [f.property for f in result.failures] == ["pg_major"]
    reason = result.failures[0].reason
    assert "PostgreSQL 16 to 17" in reason
    assert "backup" in reason and "pg_upgrade" in reason
    assert "set ms5:dbImage back to the PostgreSQL 16 image" in reason


def test_first_deploy_and_same_major_pass_check():
    assert PreflightProvider().check({}, props()).failures == []
    assert PreflightProvider().check(props(), props(image="sha256:new")).failures == []


def test_diff_ignores_the_serialized_provider():
    p = PreflightProvider()
    assert not p.diff("id", props(), props(__provider="other bytes")).changes
    assert p.diff("id", props(), props(memory_mb=4096.0)).changes
    assert p.diff("id", props(), props(memory_mb=4096.0)).replaces == []


def test_delete_is_a_noop():
    assert PreflightProvider().delete("ms5-preflight", props()) is None
