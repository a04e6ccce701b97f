"""`./ms5 deploy` says what is missing and how to get it, before touching anything."""

from __future__ import annotations

import hashlib
import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

from harness import ROOT


def _run(
    args: list[str], path: str, tmp_path: Path, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(tmp_path), **extra_env}
    return subprocess.run(
        [str(ROOT / "ms5"), *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )


def _tool(bin_dir: Path, name: str, script: str) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def _bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "id", "cat"):
        target = next(
            (Path(p) / tool for p in ("/usr/bin", "/bin") if (Path(p) / tool).exists()), None
        )
        assert target is not None, tool
        (bin_dir / tool).symlink_to(target)
    return bin_dir


def test_missing_pulumi_cli(tmp_path):
    done = _run(["deploy", "staging"], str(_bin(tmp_path)), tmp_path)
    assert done.returncode == 1
    assert "the Pulumi CLI is missing" in done.stderr
    assert "https://www.pulumi.com/docs/install/" in done.stderr


def test_missing_docker(tmp_path):
    bin_dir = _bin(tmp_path)
    _tool(bin_dir, "pulumi", "exit 0")
    done = _run(["deploy", "staging"], str(bin_dir), tmp_path)
    assert done.returncode == 1
    assert "Docker is missing" in done.stderr
    assert "https://docs.docker.com/engine/install/" in done.stderr


def _with_uv(bin_dir: Path) -> None:
    """A stand-in uv: `sync` does nothing, `run python ...` runs this test's interpreter."""
    _tool(
        bin_dir,
        "uv",
        'case "$1" in sync) exit 0 ;; run) shift; while [ "$1" = --quiet ]; do shift; done; '
        f'shift; exec {sys.executable} "$@" ;; esac; exit 3',
    )


def _socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def _deploy_bin(tmp_path: Path, docker_script: str) -> Path:
    bin_dir = _bin(tmp_path)
    _tool(bin_dir, "pulumi", "exit 0")
    _tool(bin_dir, "docker", docker_script)
    _with_uv(bin_dir)
    return bin_dir


def test_docker_engine_not_running(tmp_path):
    sock_path = tmp_path / "docker.sock"
    calls = tmp_path / "calls"
    bin_dir = _deploy_bin(
        tmp_path,
        f'echo "DOCKER_HOST=$DOCKER_HOST $*" >>{calls}; '
        "echo 'Cannot connect to the Docker daemon' >&2; exit 1",
    )
    with _socket(sock_path):
        done = _run(
            ["deploy", "staging"], str(bin_dir), tmp_path, DOCKER_HOST=f"unix://{sock_path}"
        )
    assert done.returncode == 1
    assert f"the Docker engine at unix://{sock_path} (from DOCKER_HOST) does not answer" in (
        done.stderr
    )
    assert "Cannot connect to the Docker daemon" in done.stderr
    assert "systemctl start docker" in done.stderr
    # It asked exactly the engine the program will use.
    assert calls.read_text().startswith(f"DOCKER_HOST=unix://{sock_path} info")


def test_no_docker_engine_at_the_default_socket_or_elsewhere(tmp_path):
    bin_dir = _deploy_bin(tmp_path, "exit 0")
    missing = tmp_path / "nothing.sock"
    done = _run(["deploy", "staging"], str(bin_dir), tmp_path, DOCKER_HOST=f"unix://{missing}")
    assert done.returncode == 1
    assert f"no Docker engine at unix://{missing} (from DOCKER_HOST)" in done.stderr
    assert "the socket does not exist" in done.stderr


def test_deploy_checks_the_engine_of_the_current_docker_context(tmp_path):
    sock_path = tmp_path / "ctx.sock"
    config = tmp_path / ".docker"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"lab").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": "lab", "Endpoints": {"docker": {"Host": f"unix://{sock_path}"}}})
    )
    (config / "config.json").write_text(json.dumps({"currentContext": "lab"}))
    calls = tmp_path / "calls"
    bin_dir = _deploy_bin(
        tmp_path,
        f'echo "DOCKER_HOST=$DOCKER_HOST DOCKER_CONTEXT=$DOCKER_CONTEXT $*" >>{calls}; exit 1',
    )
    with _socket(sock_path):
        done = _run(["deploy", "staging"], str(bin_dir), tmp_path)
    assert done.returncode == 1
    assert f"unix://{sock_path} (from currentContext lab of {config / 'config.json'})" in (
        done.stderr
    )
    assert calls.read_text().startswith(f"DOCKER_HOST=unix://{sock_path} DOCKER_CONTEXT= info")


def test_a_broken_docker_context_is_named(tmp_path):
    bin_dir = _deploy_bin(tmp_path, "exit 0")
    done = _run(["deploy", "staging"], str(bin_dir), tmp_path, DOCKER_CONTEXT="gone")
    assert done.returncode == 1
    assert "the Docker context 'gone' does not exist" in done.stderr
    assert "cannot tell which Docker engine to use" in done.stderr


def test_unknown_stack_and_usage(tmp_path):
    bin_dir = str(_bin(tmp_path))
    assert "stacks are staging and production" in _run(["deploy", "qa"], bin_dir, tmp_path).stderr
    assert "usage: ./ms5 deploy STACK" in _run(["deploy"], bin_dir, tmp_path).stderr
    help_text = _run([], bin_dir, tmp_path)
    assert help_text.returncode == 2 and "./ms5 test" in help_text.stdout
