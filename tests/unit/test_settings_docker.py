"""The Docker endpoint part of settings.py called directly: where the endpoint came from reaches
the typed settings, the home directory and environment decide the Docker CLI's engine, each
failure names ms5:dockerHost and what to do, and ``from_pulumi_config`` reads secret keys and the
other stack files as the CLI leaves them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pulumi
import pytest

from harness import ROOT, ProgramMocks, stack_config
from ms5_components.errors import SettingsErrors
from ms5_components.settings import from_pulumi_config, load_settings

PASSWORD = "a-long-enough-test-password"


def _add_context(home: Path, name: str, host: str, *, current: bool) -> None:
    docker = home / ".docker"
    meta = docker / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": host}}}))
    if current:
        (docker / "config.json").write_text(json.dumps({"currentContext": name}))


def _refused(environ: dict[str, str], home: Path) -> list[tuple[str, str]]:
    with pytest.raises(SettingsErrors) as info:
        load_settings({}, stack="test", environ=environ, home=home)
    return [(e.key, str(e)) for e in info.value.errors]


# ---- the endpoint and its source in the typed settings -------------------------------------------


def test_the_source_of_the_endpoint_reaches_the_settings(tmp_path):
    def endpoint(raw: dict[str, str], environ: dict[str, str]) -> tuple[str, str]:
        s = load_settings(raw, stack="test", environ=environ, home=tmp_path)
        return s.docker_host, s.docker_host_source

    _add_context(tmp_path, "remote", "ssh://ops@db1", current=False)
    assert endpoint({}, {}) == ("unix:///var/run/docker.sock", "the default")
    assert endpoint({}, {"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == (
        "tcp://127.0.0.1:2375",
        "DOCKER_HOST",
    )
    assert endpoint({}, {"DOCKER_CONTEXT": "remote"}) == ("ssh://ops@db1", "DOCKER_CONTEXT=remote")
    assert endpoint({"ms5:dockerHost": "unix:///x.sock"}, {"DOCKER_HOST": "tcp://h:1"}) == (
        "unix:///x.sock",
        "ms5:dockerHost",
    )


def test_the_given_home_directory_holds_the_cli_config(tmp_path, monkeypatch):
    given, own = tmp_path / "given", tmp_path / "own"
    _add_context(given, "remote", "ssh://ops@db1", current=True)
    monkeypatch.setenv("HOME", str(own))  # this process's home has no Docker config
    s = load_settings({}, stack="test", environ={}, home=given)
    assert s.docker_host == "ssh://ops@db1"
    assert s.docker_host_source == f"currentContext remote of {given / '.docker' / 'config.json'}"


def test_without_a_home_directory_this_process_home_is_read(tmp_path, monkeypatch):
    _add_context(tmp_path, "remote", "ssh://ops@db2", current=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings({}, stack="test", environ={})
    assert (s.docker_host, s.docker_host_source) == (
        "ssh://ops@db2",
        f"currentContext remote of {tmp_path / '.docker' / 'config.json'}",
    )


def test_without_an_environment_this_process_environment_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    s = load_settings({}, stack="test", home=tmp_path)
    assert (s.docker_host, s.docker_host_source) == ("tcp://127.0.0.1:2376", "DOCKER_HOST")


# ---- the messages when the Docker CLI's engine cannot be used ------------------------------------


def test_a_missing_context_names_the_key_and_the_fix(tmp_path):
    meta = tmp_path / ".docker" / "contexts" / "meta" / hashlib.sha256(b"gone").hexdigest()
    assert _refused({"DOCKER_CONTEXT": "gone"}, tmp_path) == [
        (
            "ms5:dockerHost",
            "ms5:dockerHost: unset, so the Docker CLI's engine is used, but the Docker context "
            f"'gone' does not exist (no {meta / 'meta.json'}); list contexts with "
            "`docker context ls`, or set ms5:dockerHost",
        )
    ]


def test_an_endpoint_docker_does_not_take_names_where_it_came_from(tmp_path):
    assert _refused({"DOCKER_HOST": "http://127.0.0.1:2375"}, tmp_path) == [
        (
            "ms5:dockerHost",
            "ms5:dockerHost: unset; DOCKER_HOST gives 'http://127.0.0.1:2375': expected a Docker "
            "endpoint such as unix:///var/run/docker.sock or ssh://user@host",
        )
    ]


def test_the_key_carries_the_project_namespace(tmp_path):
    with pytest.raises(SettingsErrors) as info:
        load_settings(
            {}, stack="test", project="plant", environ={"DOCKER_CONTEXT": "gone"}, home=tmp_path
        )
    assert [e.key for e in info.value.errors] == ["plant:dockerHost"]


# ---- from_pulumi_config: secret keys and the other stack files ----------------------------------


@pytest.fixture
def runtime(monkeypatch):
    """The program's runtime as the language host leaves it, for the stack ``staging``."""
    pulumi.runtime.set_mocks(ProgramMocks(), project="ms5", stack="staging")
    monkeypatch.setenv("PULUMI_CONFIG", "{}")
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    yield
    pulumi.runtime.set_all_config({}, [])


def _project(tmp_path: Path, **stack_files: str) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.staging.yaml", tmp_path / "Pulumi.staging.yaml")
    for name, text in stack_files.items():
        (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    return tmp_path


def test_secret_keys_recorded_by_the_sdk_are_secret(runtime, tmp_path):
    config = stack_config("staging", {"ms5:dbPassword": PASSWORD})
    pulumi.runtime.set_all_config(config, ["ms5:dbPassword"])
    settings = from_pulumi_config(_project(tmp_path))
    assert settings.database.password is not None
    assert settings.database.password.reveal() == PASSWORD


def test_a_stack_file_after_the_running_stacks_is_read(runtime, tmp_path):
    pulumi.runtime.set_all_config(stack_config("staging"), [])
    project = _project(tmp_path, zeta="config:\n  ms5:prometheusPort: 9190\n")
    with pytest.raises(SettingsErrors) as info:
        from_pulumi_config(project)
    [error] = info.value.errors
    assert error.key == "ms5:prometheusPort"
    assert "stack zeta of this project publishes host port 9190" in str(error)
    assert "(ms5:prometheusPort, set in Pulumi.zeta.yaml)" in str(error)


def test_an_encrypted_value_of_another_stack_is_not_taken_for_its_value(runtime, tmp_path):
    # The ciphertext reads like staging's database port; it must not be compared as one.
    pulumi.runtime.set_all_config(stack_config("staging"), [])
    project = _project(tmp_path, qa="config:\n  ms5:dbPort:\n    secure: '5433'\n")
    assert from_pulumi_config(project).database.port == 5433
