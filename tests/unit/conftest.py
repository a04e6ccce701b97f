"""Unit tests see no Docker CLI configuration of the machine they run on."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_docker_cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With ``ms5:dockerHost`` unset the program follows the Docker CLI (DOCKER_HOST, the current
    context): give it an empty CLI configuration, so results do not depend on the machine's."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-cli-config"))
