"""Fixtures for the provider tests: a stand-in docker CLI on PATH."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

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
    """A docker CLI that answers from FAKE_DOCKER_* variables; returns its DockerRootDir.

    The PATH keeps the rest of the environment, so a provider host started from the test (as the
    engine would start its plugin) finds it too.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(FAKE_DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "docker-root"
    root.mkdir()
    monkeypatch.setenv(
        "FAKE_DOCKER_INFO",
        json.dumps(
            {
                "MemTotal": 16 * 1024**3,
                "NCPU": 8,
                "DockerRootDir": str(root),
                "Name": socket.gethostname(),
            }
        ),
    )
    return root
