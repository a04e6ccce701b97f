"""The program under mocks, for both stacks: resources, key inputs, graph, secrets, protections."""

from __future__ import annotations

import json

import pytest

from harness import ProgramRun, contains_secret, unwrap

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
PREFLIGHT = "pulumi-python:dynamic/ms5:HostPreflight"


def _db(run: ProgramRun):
    return run.by_name("timescaledb-container")


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_database_resource_is_registered_with_stack_names(program, stack):
    run = program(stack)
    names = {(r.type, r.name) for r in run.registrations.values()}
    for expected in [
        ("ms5:database:TimescaleDb", "timescaledb"),
        (NETWORK, "timescaledb-network"),
        (VOLUME, "timescaledb-data"),
        (VOLUME, "timescaledb-backups"),
        (IMAGE, "timescaledb-image"),
        (PASSWORD, "timescaledb-superuser-password"),
        (PREFLIGHT, "timescaledb-preflight"),
        (CONTAINER, "timescaledb-container"),
    ]:
        assert expected in names, expected
    assert run.by_name("timescaledb-data").plain("name") == f"ms5-{stack}-pgdata"
    assert run.by_name("timescaledb-backups").plain("name") == f"ms5-{stack}-backups"
    assert run.by_name("timescaledb-network").plain("name") == f"ms5-{stack}-net"
    assert _db(run).plain("name") == f"ms5-{stack}-timescaledb"
    # Children are parented to the component, not to the stack.
    component = run.by_name("timescaledb")
    for reg in run.registrations.values():
        if reg.name.startswith("timescaledb-"):
            assert reg.parent == component.urn, reg.urn


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_container_key_inputs(program, stack):
    run = program(stack)
    c = _db(run)
    image = run.by_name("timescaledb-image")
    # The container runs the pulled image by id: an unrelated `up` never recreates it.
    assert c.plain("image") == image.outputs["imageId"]
    assert image.plain("keepLocally") is True
    [port] = c.plain("ports")
    assert port["ip"] == "127.0.0.1" and port["internal"] == 5432
    assert port["external"] == (5433 if stack == "staging" else 5432)
    assert c.plain("securityOpts") == ["no-new-privileges:true"]
    assert c.plain("capabilities") == {
        "drops": ["ALL"],
        "adds": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
    }
    assert c.plain("memory") == (2048 if stack == "staging" else 8192)
    assert c.plain("cpus") == ("2" if stack == "staging" else "4")
    assert c.plain("logDriver") == "json-file"
    assert set(c.plain("logOpts")) == {"max-size", "max-file"}
    assert c.plain("restart") == "unless-stopped"
    assert c.plain("wait") is True
    assert c.plain("waitTimeout") == 300
    volumes = {v["containerPath"]: v["volumeName"] for v in c.plain("volumes")}
    assert volumes == {
        "/var/lib/postgresql/data": f"ms5-{stack}-pgdata",
        "/backups": f"ms5-{stack}-backups",
    }
    assert c.plain("networksAdvanced")[0]["name"] == f"ms5-{stack}-net"
    labels = {x["label"]: x["value"] for x in c.plain("labels")}
    assert labels["ms5.stack"] == stack and labels["ms5.project"] == "ms5"
    env = dict(e.split("=", 1) for e in c.plain("envs"))
    assert env["POSTGRES_DB"] == "ms5"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/ms5-db-password"
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_health_check_cannot_pass_on_the_init_only_server(program, stack):
    hc = _db(program(stack)).plain("healthcheck")
    tests = hc["tests"]
    assert tests[:2] == ["CMD", "pg_isready"]
    assert tests[tests.index("-h") + 1] == "127.0.0.1"
    assert tests[tests.index("-d") + 1] == "ms5"


def test_server_settings_reach_the_command_sorted(program):
    run = program("production", {"ms5:dbServerSettings": ["work_mem=77MB"]})
    command = _db(run).plain("command")
    assert command[0] == "postgres"
    pairs = [command[i + 1] for i in range(1, len(command), 2)]
    assert pairs == sorted(pairs)
    settings = dict(p.split("=", 1) for p in pairs)
    assert settings["work_mem"] == "77MB"  # the override wins
    assert settings["shared_buffers"] == "2GB"  # 8192 MiB / 4
    assert settings["shared_preload_libraries"] == "timescaledb,pg_stat_statements"


def test_production_protections(program):
    run = program("production")
    for name in ("timescaledb-data", "timescaledb-backups"):
        vol = run.by_name(name)
        assert vol.protect, name
        assert vol.retain_on_delete, name
    c = _db(run)
    assert c.delete_before_replace
    assert "uploads" in c.ignore_changes
    image = run.by_name("timescaledb-image")
    assert "@sha256:" in image.plain("name")


def test_staging_volumes_can_be_destroyed(program):
    run = program("staging")
    for name in ("timescaledb-data", "timescaledb-backups"):
        vol = run.by_name(name)
        assert not vol.protect and not vol.retain_on_delete
    # Delete-before-replace holds in every stack: never two servers on one data directory.
    assert _db(run).delete_before_replace


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_dependency_graph(program, stack):
    run = program(stack)
    c = _db(run)
    for dep in (
        "timescaledb-preflight",
        "timescaledb-image",
        "timescaledb-data",
        "timescaledb-backups",
        "timescaledb-network",
    ):
        assert run.depends_on(c, run.by_name(dep)), f"container must wait for {dep}"
    assert run.depends_on(run.by_name("timescaledb-preflight"), run.by_name("timescaledb-image"))
    # Every Docker resource goes through the explicit provider for ms5:dockerHost.
    for reg in run.registrations.values():
        if reg.type.startswith("docker:index"):
            assert reg.provider.startswith("urn:pulumi:") and "docker::docker" in reg.provider


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_password_is_secret_everywhere(program, stack):
    run = program(stack)
    password = run.by_name("timescaledb-superuser-password").outputs["result"]
    password = unwrap(password)
    c = _db(run)
    assert c.is_secret("uploads")
    assert "dbDsn" in run.secret_exports
    assert password in run.exports["dbDsn"]
    # The plaintext appears nowhere outside a secret wrapper.
    for reg in run.registrations.values():
        for key, value in reg.inputs.items():
            if contains_secret(value):
                continue
            assert password not in json.dumps(value), f"{reg.urn}.{key} leaks the password"
    for name, value in run.exports.items():
        if name not in run.secret_exports:
            assert password not in json.dumps(value), f"export {name} leaks the password"


def test_configured_password_is_used_and_secret(program):
    secret = "s3cret-Passw0rd-long-enough"
    run = program("staging", {"ms5:dbPassword": secret}, secret_keys=("ms5:dbPassword",))
    # (Monitoring generates its own passwords; the superuser's is the configured one.)
    assert not [r for r in run.by_type(PASSWORD) if r.name.startswith("timescaledb")]
    assert _db(run).is_secret("uploads")
    assert secret in run.exports["dbDsn"] and "dbDsn" in run.secret_exports


def test_exports(program):
    run = program("staging")
    assert run.exports["dbHost"] == "127.0.0.1"
    assert run.exports["dbPort"] == 5433
    assert run.exports["dbName"] == "ms5"
    assert run.exports["dbContainer"] == "ms5-staging-timescaledb"
    assert run.exports["dbImageDigest"].startswith("timescale/timescaledb@sha256:")


def test_preflight_inputs(program):
    pre = program("production").by_name("timescaledb-preflight")
    assert pre.plain("memory_mb") == 8192
    assert pre.plain("cpus") == 4
    assert pre.plain("min_free_disk_gb") == 20
    assert pre.plain("pg_major") == 17
    assert pre.plain("docker_host") == "unix:///var/run/docker.sock"
    assert "__provider" in pre.inputs


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_two_evaluations_are_byte_identical(program, stack):
    def snapshot(run: ProgramRun) -> str:
        # Registration order and the order of dependency lists are the SDK's (sets); the
        # engine compares inputs, which must not vary.
        return json.dumps(
            {
                urn: (
                    reg.inputs,
                    sorted(reg.dependencies),
                    {k: sorted(v) for k, v in reg.property_dependencies.items()},
                )
                for urn, reg in sorted(run.registrations.items())
            },
            sort_keys=True,
        )

    assert snapshot(program(stack)) == snapshot(program(stack))


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_superuser_password_is_kept_in_sync_after_the_container(program, stack):
    run = program(stack)
    login = run.one("pulumi-python:dynamic/ms5:RolePassword", "superuser-login")
    assert login.is_secret("password")
    assert login.plain("user") == "postgres" and login.plain("database") == "ms5"
    assert login.plain("port") == (5433 if stack == "staging" else 5432)
    assert "password" in login.additional_secret_outputs
    assert run.depends_on(login, _db(run))


def test_staging_and_production_can_share_one_host(program):
    """Object names carry the stack and no two published host ports collide."""

    def published(run: ProgramRun) -> dict[int, str]:
        ports: dict[int, str] = {}
        for reg in run.by_type(CONTAINER):
            for port in reg.plain("ports") or []:
                ports[port["external"]] = reg.name
        return ports

    def names(run: ProgramRun) -> set[str]:
        return {
            reg.plain("name")
            for reg in run.registrations.values()
            if reg.type in (CONTAINER, VOLUME, NETWORK)
        }

    staging, production = program("staging"), program("production")
    clash = set(published(staging)) & set(published(production))
    assert not clash, f"host ports published by both stacks: {sorted(clash)}"
    assert not names(staging) & names(production)
