"""HostPreflight provider: each check fails with its own clear message; a PG major change is refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ms5_components.errors import PreflightError
from ms5_components.lifecycle.preflight import PreflightProvider

FAKE_DOCKER = """#!/bin/sh
# A stand-in for the docker CLI: answers from environment variables set by the test.
if [ -n "$FAKE_DOCKER_DOWN" ]; then
  echo "Cannot connect to the Docker daemon at $DOCKER_HOST. Is the docker daemon running?" >&2
  exit 1
fi
case "$1" in
  version) echo "27.3.1" ;;
  info) printf '%s\\n' "$FAKE_DOCKER_INFO" ;;
  run) printf 'Filesystem 1024-blocks Used Available Capacity Mounted on\\n/dev/x 100 1 %s 1%% /r\\n' "$FAKE_DOCKER_FREE_KB" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(FAKE_DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    root = tmp_path / "docker-root"
    root.mkdir()
    monkeypatch.setenv(
        "FAKE_DOCKER_INFO", json.dumps({"MemTotal": 16 * 1024**3, "DockerRootDir": str(root)})
    )
    return root


def props(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "docker_host": "unix:///var/run/docker.sock",
        "min_free_disk_gb": 1.0,  # floats, as the engine sends numbers
        "memory_mb": 2048.0,
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
    assert outs["docker_root_dir"] == str(fake_docker)
    assert outs["free_disk_gb"] > 0
    assert outs["memory_mb"] == 2048 and isinstance(outs["memory_mb"], int)


def test_unreachable_engine(fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(docker_host="unix:///run/nothing.sock"))
    msg = str(info.value)
    assert "not reachable (ms5:dockerHost)" in msg
    assert "Cannot connect to the Docker daemon" in msg
    assert "systemctl start docker" in msg


def test_docker_cli_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreflightError, match="docker CLI is not on PATH"):
        PreflightProvider().create(props())


def test_not_enough_memory(fake_docker):
    with pytest.raises(PreflightError) as info:
        PreflightProvider().create(props(memory_mb=65536.0))
    msg = str(info.value)
    assert "16384 MiB" in msg and "ms5:dbMemoryMb=65536" in msg


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
