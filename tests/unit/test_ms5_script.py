"""`./ms5 deploy` says what is missing and how to get it, before touching anything."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from harness import ROOT


def _run(args: list[str], path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(tmp_path)}
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


def test_docker_engine_not_running(tmp_path):
    bin_dir = _bin(tmp_path)
    _tool(bin_dir, "pulumi", "exit 0")
    _tool(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    done = _run(["deploy", "staging"], str(bin_dir), tmp_path)
    assert done.returncode == 1
    assert "the engine does not answer" in done.stderr and "systemctl start docker" in done.stderr


def test_unknown_stack_and_usage(tmp_path):
    bin_dir = str(_bin(tmp_path))
    assert "stacks are staging and production" in _run(["deploy", "qa"], bin_dir, tmp_path).stderr
    assert "usage: ./ms5 deploy STACK" in _run(["deploy"], bin_dir, tmp_path).stderr
    help_text = _run([], bin_dir, tmp_path)
    assert help_text.returncode == 2 and "./ms5 test" in help_text.stdout
