"""Fixtures for the provider tests: a stand-in docker CLI on PATH.

It answers ``version`` (``FAKE_DOCKER_VERSION``/``FAKE_DOCKER_API``, default a current engine),
``info`` (``FAKE_DOCKER_INFO``), the free-disk probe ``run`` (``FAKE_DOCKER_FREE_KB``) and
``inspect``: each call prints the next line of the file ``FAKE_DOCKER_STATES`` (one JSON
``docker inspect`` answer per line; the last line repeats), so a test scripts how a container's
health evolves. Every call is appended to ``FAKE_DOCKER_CALLS`` when set, with its DOCKER_HOST.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

FAKE_DOCKER = """#!/bin/sh
# A stand-in for the docker CLI: answers from environment variables set by the test.
if [ -n "$FAKE_DOCKER_CALLS" ]; then echo "DOCKER_HOST=$DOCKER_HOST DOCKER_CONTEXT=${DOCKER_CONTEXT:-} $*" >>"$FAKE_DOCKER_CALLS"; fi
if [ -n "$FAKE_DOCKER_DOWN" ]; then
  echo "Cannot connect to the Docker daemon at $DOCKER_HOST. Is the docker daemon running?" >&2
  exit 1
fi
case "$1" in
  version) echo "${FAKE_DOCKER_VERSION:-27.3.1}|${FAKE_DOCKER_API:-1.47}" ;;
  inspect)
    head -n 1 "$FAKE_DOCKER_STATES"
    if [ "$(wc -l <"$FAKE_DOCKER_STATES")" -gt 1 ]; then
      tail -n +2 "$FAKE_DOCKER_STATES" >"$FAKE_DOCKER_STATES.next" && mv "$FAKE_DOCKER_STATES.next" "$FAKE_DOCKER_STATES"
    fi ;;
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
