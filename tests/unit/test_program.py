"""The program under mocks, for both stacks: resources, key inputs, graph, secrets, protections."""

from __future__ import annotations

import json

import pytest

from harness import ProgramRun, contains_secret, unwrap
from ms5_components.database.timescaledb import BACKUP_DIR, ENTRYPOINT, PGDATA, initdb_args

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
PREFLIGHT = "pulumi-python:dynamic/ms5:HostPreflight"
HEALTH = "pulumi-python:dynamic/ms5:ContainerHealth"


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
        (HEALTH, "timescaledb-health"),
    ]:
        assert expected in names, expected
    assert run.by_name("timescaledb-data").plain("name") == f"ms5-{stack}-pgdata"
    assert run.by_name("timescaledb-backups").plain("name") == f"ms5-{stack}-backups"
    assert run.by_name("timescaledb-network").plain("name") == f"ms5-{stack}-net"
    assert _db(run).plain("name") == f"ms5-{stack}-timescaledb"
    # Children are parented to the component, not to the stack; the preflight comes before the
    # component (and the Docker provider), aliased to keep its state from when it was a child.
    component = run.by_name("timescaledb")
    for reg in run.registrations.values():
        if reg.name.startswith("timescaledb-") and reg.name != "timescaledb-preflight":
            assert reg.parent == component.urn, reg.urn
    preflight = run.by_name("timescaledb-preflight")
    assert preflight.parent.endswith("pulumi:pulumi:Stack::ms5-" + stack)
    # The engine leaves the root stack out of top-level URNs (the mock monitor does not).
    engine_urn = component.urn.replace("pulumi:pulumi:Stack$", "")
    assert preflight.aliases == [{"spec": {"parentUrn": engine_urn}}]


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
    # In the form the provider reads back from NanoCpus (cpus forces a replacement).
    assert c.plain("cpus") == ("2.0" if stack == "staging" else "4.0")
    assert c.plain("logDriver") == "json-file"
    assert set(c.plain("logOpts")) == {"max-size", "max-file"}
    assert c.plain("restart") == "unless-stopped"
    # The health wait is ContainerHealth's (a message naming the setting), not the provider's.
    assert c.plain("wait") is False
    volumes = {v["containerPath"]: v["volumeName"] for v in c.plain("volumes")}
    assert volumes == {
        "/var/lib/postgresql/data": f"ms5-{stack}-pgdata",
        "/var/lib/postgresql/backups": f"ms5-{stack}-backups",
    }
    assert volumes == {PGDATA: f"ms5-{stack}-pgdata", BACKUP_DIR: f"ms5-{stack}-backups"}
    assert c.plain("networksAdvanced")[0]["name"] == f"ms5-{stack}-net"
    labels = {x["label"]: x["value"] for x in c.plain("labels")}
    assert labels["ms5.stack"] == stack and labels["ms5.project"] == "ms5"
    env = dict(e.split("=", 1) for e in c.plain("envs"))
    assert env["POSTGRES_DB"] == "ms5"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/ms5-db-password"
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    # Encoding and locale pinned at first init, never the image's locale.
    assert env["POSTGRES_INITDB_ARGS"].split() == [
        "--auth-host=scram-sha-256",
        "--data-checksums",
        "--encoding=UTF8",
        "--locale=C",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
    ]


def test_initdb_args_before_postgresql_17_have_no_builtin_provider():
    args = initdb_args(16).split()
    assert "--encoding=UTF8" in args and "--locale=C" in args
    assert not [a for a in args if a.startswith("--locale-provider")]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_backup_directory_is_made_the_server_users_before_the_entrypoint(program, stack):
    c = _db(program(stack))
    entrypoint = c.plain("entrypoints")
    assert entrypoint[:2] == ["sh", "-c"] and entrypoint[3] == BACKUP_DIR
    script = entrypoint[2]
    assert 'chown postgres:postgres "$0"' in script and 'exec docker-entrypoint.sh "$@"' in script
    # The image's default command is replaced along with its entrypoint: the server is explicit.
    assert c.plain("command")[0] == "postgres"
    # PGDATA stays on its own volume, not below the backup mount or the other way round.
    assert not BACKUP_DIR.startswith(PGDATA + "/") and not PGDATA.startswith(BACKUP_DIR + "/")


def test_backup_entrypoint_runs_the_image_entrypoint_with_the_command(tmp_path):
    import subprocess

    # The wrapper as a shell runs it, with a stand-in docker-entrypoint.sh on PATH.
    (tmp_path / "docker-entrypoint.sh").write_text('#!/bin/sh\necho "entrypoint: $*"\n')
    (tmp_path / "docker-entrypoint.sh").chmod(0o755)
    script = ENTRYPOINT[2].replace('"$(id -u)" = 0', "1 = 0")  # not root here: no chown
    done = subprocess.run(
        ["sh", "-c", script, str(tmp_path / "b"), "postgres", "-c", "a=b"],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        check=True,
    )
    assert done.stdout == "entrypoint: postgres -c a=b\n"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_health_check_cannot_pass_on_the_init_only_server(program, stack):
    hc = _db(program(stack)).plain("healthcheck")
    tests = hc["tests"]
    assert tests[:2] == ["CMD", "pg_isready"]
    assert tests[tests.index("-h") + 1] == "127.0.0.1"
    assert tests[tests.index("-d") + 1] == "ms5"
    # Durations as the provider reads them back (time.Duration.String()); start_interval unset
    # (it needs Engine 25 / API 1.44; older engines drop it silently).
    assert hc["interval"] == "5s" and hc["timeout"] == "5s"
    assert hc["startPeriod"] == "5m0s"  # dbHealthTimeoutSeconds 300
    assert "startInterval" not in hc
    assert hc["retries"] == 60


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_health_wait_names_the_container_and_the_setting(program, stack):
    run = program(stack)
    health = run.by_name("timescaledb-health")
    c = _db(run)
    assert health.plain("container_name") == f"ms5-{stack}-timescaledb"
    assert health.plain("timeout_seconds") == 300
    assert health.plain("timeout_setting") == "ms5:dbHealthTimeoutSeconds"
    assert health.plain("docker_host") == run.by_name("docker").plain("host")
    assert run.depends_on(health, c)
    # Everything that needs a running server waits for health, not for the bare container.
    for name in ("timescaledb-superuser-login", "migrations"):
        assert run.depends_on(run.by_name(name), health), name


def test_health_timeout_setting_reaches_the_wait_and_the_check(program):
    run = program("staging", {"ms5:dbHealthTimeoutSeconds": 900})
    assert run.by_name("timescaledb-health").plain("timeout_seconds") == 900
    assert _db(run).plain("healthcheck")["startPeriod"] == "15m0s"


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
        "timescaledb-image",
        "timescaledb-data",
        "timescaledb-backups",
        "timescaledb-network",
    ):
        assert run.depends_on(c, run.by_name(dep)), f"container must wait for {dep}"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_host_preflight_comes_before_every_docker_call(program, stack):
    run = program(stack)
    preflight = run.by_name("timescaledb-preflight")
    provider = run.by_name("docker")
    assert provider.type == "pulumi:providers:docker"
    # The Docker provider depends on the preflight, and every Docker resource (images, volumes,
    # network, containers) uses that provider: none can be created before the preflight passed.
    assert preflight.urn in provider.dependencies
    docker_resources = [r for r in run.registrations.values() if r.type.startswith("docker:")]
    assert {r.type for r in docker_resources} >= {IMAGE, VOLUME, NETWORK, CONTAINER}
    for reg in docker_resources:
        assert reg.provider.rsplit("::", 1)[0] == provider.urn, reg.urn
    # The preflight itself needs nothing from Docker: no dependency, inputs known at preview.
    assert preflight.dependencies == [] and preflight.property_dependencies == {
        k: [] for k in preflight.property_dependencies
    }
    assert preflight.plain("image") == run.by_name("timescaledb-image").plain("name")
    assert preflight.provider == ""  # the dynamic provider, not Docker's
    preview = program(stack, preview=True).by_name("timescaledb-preflight")
    assert preview.plain("image") == preflight.plain("image")


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


def test_docker_host_follows_the_docker_cli_when_unset(program, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/ms5-other.sock")
    run = program("staging")
    assert run.by_name("docker").plain("host") == "unix:///run/ms5-other.sock"
    # context "" so that the provider never prefers a DOCKER_CONTEXT over the resolved host.
    assert run.by_name("docker").plain("context") == ""
    pre = run.by_name("timescaledb-preflight")
    assert pre.plain("docker_host") == "unix:///run/ms5-other.sock"
    assert pre.plain("docker_host_source") == "DOCKER_HOST"
    assert run.by_name("timescaledb-health").plain("docker_host") == "unix:///run/ms5-other.sock"
    # An explicit ms5:dockerHost wins over the environment.
    run = program("staging", {"ms5:dockerHost": "ssh://ops@db1"})
    assert run.by_name("docker").plain("host") == "ssh://ops@db1"
    assert run.by_name("timescaledb-preflight").plain("docker_host_source") == "ms5:dockerHost"


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
