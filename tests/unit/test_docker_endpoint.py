"""With ms5:dockerHost unset the stack uses the Docker CLI's engine, resolved as the CLI does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ms5_components.docker_endpoint import (
    DEFAULT_HOST,
    DockerEndpointError,
    resolve_docker_host,
)
from ms5_components.errors import SettingsErrors
from ms5_components.settings import load_settings


def add_context(config_dir: Path, name: str, host: str) -> None:
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}})
    )


def set_current(config_dir: Path, name: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps({"currentContext": name}))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_nothing_set_is_the_default_socket(home):
    endpoint = resolve_docker_host("", {}, home)
    assert (endpoint.host, endpoint.source) == (DEFAULT_HOST, "the default")


def test_configured_host_wins_over_everything(home):
    add_context(home / ".docker", "remote", "ssh://ops@db1")
    set_current(home / ".docker", "remote")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_CONTEXT": "remote"}
    endpoint = resolve_docker_host("unix:///run/ms5.sock", env, home)
    assert (endpoint.host, endpoint.source) == ("unix:///run/ms5.sock", "ms5:dockerHost")


def test_docker_host_wins_over_contexts(home):
    # As the CLI: DOCKER_HOST before DOCKER_CONTEXT and the config's currentContext.
    add_context(home / ".docker", "remote", "ssh://ops@db1")
    set_current(home / ".docker", "remote")
    env = {"DOCKER_HOST": "unix:///run/engine.sock", "DOCKER_CONTEXT": "remote"}
    endpoint = resolve_docker_host("", env, home)
    assert (endpoint.host, endpoint.source) == ("unix:///run/engine.sock", "DOCKER_HOST")


def test_docker_context_wins_over_the_current_context(home):
    add_context(home / ".docker", "a", "tcp://127.0.0.1:2301")
    add_context(home / ".docker", "b", "tcp://127.0.0.1:2302")
    set_current(home / ".docker", "a")
    endpoint = resolve_docker_host("", {"DOCKER_CONTEXT": "b"}, home)
    assert (endpoint.host, endpoint.source) == ("tcp://127.0.0.1:2302", "DOCKER_CONTEXT=b")


def test_current_context_of_the_cli_config(home):
    add_context(home / ".docker", "colima", "unix:///home/u/.colima/default/docker.sock")
    set_current(home / ".docker", "colima")
    endpoint = resolve_docker_host("", {}, home)
    assert endpoint.host == "unix:///home/u/.colima/default/docker.sock"
    assert endpoint.source == f"currentContext colima of {home / '.docker' / 'config.json'}"


def test_docker_config_moves_the_config_directory(home, tmp_path):
    elsewhere = tmp_path / "cfg"
    add_context(elsewhere, "x", "tcp://127.0.0.1:2399")
    set_current(elsewhere, "x")
    set_current(home / ".docker", "default")
    assert resolve_docker_host("", {"DOCKER_CONFIG": str(elsewhere)}, home).host == (
        "tcp://127.0.0.1:2399"
    )


def test_the_default_context_by_name_is_the_default_socket(home):
    set_current(home / ".docker", "default")
    assert resolve_docker_host("", {}, home).host == DEFAULT_HOST
    assert resolve_docker_host("", {"DOCKER_CONTEXT": "default"}, home).host == DEFAULT_HOST


def test_a_missing_context_is_an_error_that_says_what_to_do(home):
    with pytest.raises(
        DockerEndpointError, match=r"context 'gone' does not exist .*docker context ls"
    ):
        resolve_docker_host("", {"DOCKER_CONTEXT": "gone"}, home)


def test_the_same_environment_gives_the_same_host(home):
    add_context(home / ".docker", "remote", "ssh://ops@db1")
    set_current(home / ".docker", "remote")
    results = {resolve_docker_host("", {}, home) for _ in range(3)}
    assert len(results) == 1


def test_settings_resolve_the_host_when_unset(home):
    add_context(home / ".docker", "remote", "ssh://ops@db1")
    set_current(home / ".docker", "remote")
    s = load_settings({}, stack="test", environ={}, home=home)
    assert s.docker_host == "ssh://ops@db1"
    assert s.docker_host_source.startswith("currentContext remote of ")
    s = load_settings({"ms5:dockerHost": "unix:///x.sock"}, stack="test", environ={}, home=home)
    assert (s.docker_host, s.docker_host_source) == ("unix:///x.sock", "ms5:dockerHost")


def test_settings_name_the_key_when_the_cli_context_is_broken(home):
    with pytest.raises(SettingsErrors) as info:
        load_settings({}, stack="test", environ={"DOCKER_CONTEXT": "gone"}, home=home)
    assert "ms5:dockerHost: unset, so the Docker CLI's engine is used, but the Docker context" in (
        str(info.value)
    )


def test_settings_refuse_a_malformed_docker_host_naming_its_source(home):
    with pytest.raises(SettingsErrors) as info:
        load_settings({}, stack="test", environ={"DOCKER_HOST": "/var/run/docker.sock"}, home=home)
    msg = str(info.value)
    assert "ms5:dockerHost: unset; DOCKER_HOST gives '/var/run/docker.sock'" in msg
