"""The monitoring part of the program under mocks: network, order, secrets, files, images, limits."""

from __future__ import annotations

import json

import pytest

from harness import ProgramRun, Registration, contains_secret, unwrap
from ms5_components.monitoring import config as files
from ms5_components.monitoring.config import FileInputs, MonitoringSettings, generate_files
from ms5_components.monitoring.exporter_queries import parse_timescaledb_version
from ms5_components.settings import load_settings

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
ROLE = "pulumi-python:dynamic/ms5:MonitoringRole"
MIGRATIONS = "pulumi-python:dynamic/ms5:MigrationSet"

MONITORING_CONTAINERS = (
    "monitoring-exporter-container",
    "monitoring-prometheus-container",
    "monitoring-prometheus-pushgateway",
    "monitoring-grafana-container",
)


def _uploads(reg: Registration) -> dict[str, str]:
    return {u["file"]: u["content"] for u in unwrap(reg.inputs.get("uploads") or [])}


def _expected_files(run: ProgramRun) -> files.GeneratedFiles:
    settings = load_settings(run.config, stack=run.stack)
    mon = MonitoringSettings.from_settings(settings)
    prefix = settings.prefix()
    return generate_files(
        FileInputs(
            timescaledb_version=parse_timescaledb_version(settings.database.image.tag),
            database=settings.database.name,
            db_host=f"{prefix}-timescaledb",
            exporter_host=f"{prefix}-postgres-exporter",
            prometheus_host=f"{prefix}-prometheus",
            pushgateway_host=f"{prefix}-pushgateway",
            stack=settings.stack,
            top_n=mon.exporter_top_n,
            alerts=mon.alert_settings,
        )
    )


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_components_and_children(program, stack):
    run = program(stack)
    for type_, name in [
        ("ms5:monitoring:Exporter", "monitoring-exporter"),
        ("ms5:monitoring:Prometheus", "monitoring-prometheus"),
        ("ms5:monitoring:Grafana", "monitoring-grafana"),
        (ROLE, "monitoring-exporter-role"),
        (ROLE, "monitoring-grafana-role"),
    ]:
        assert run.by_name(name).type == type_
    for component in ("monitoring-exporter", "monitoring-prometheus", "monitoring-grafana"):
        parent = run.by_name(component)
        children = [r for r in run.registrations.values() if r.parent == parent.urn]
        assert children, component
        assert all(r.name.startswith(component) for r in children)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_containers_on_the_stack_network_with_stack_names(program, stack):
    run = program(stack)
    network = run.by_name("timescaledb-network").plain("name")
    names = set()
    for name in MONITORING_CONTAINERS:
        container = run.by_name(name)
        assert container.plain("networksAdvanced") == [{"name": network}], name
        names.add(container.plain("name"))
    assert names == {
        f"ms5-{stack}-postgres-exporter",
        f"ms5-{stack}-prometheus",
        f"ms5-{stack}-pushgateway",
        f"ms5-{stack}-grafana",
    }
    db_name = run.by_name("timescaledb-container").plain("name")
    exporter_env = run.by_name("monitoring-exporter-container").plain("envs")
    assert f"DATA_SOURCE_URI={db_name}:5432/ms5?sslmode=disable" in exporter_env


def test_order_exporter_after_migrations_and_role(program):
    run = program("staging")
    migrations = run.one(MIGRATIONS)
    db = run.by_name("timescaledb-container")
    exporter_role = run.by_name("monitoring-exporter-role")
    grafana_role = run.by_name("monitoring-grafana-role")
    exporter = run.by_name("monitoring-exporter-container")
    prometheus = run.by_name("monitoring-prometheus-container")
    gateway = run.by_name("monitoring-prometheus-pushgateway")
    grafana = run.by_name("monitoring-grafana-container")
    assert run.depends_on(exporter_role, migrations)
    assert run.depends_on(grafana_role, migrations)
    assert run.depends_on(exporter_role, db)
    assert run.depends_on(exporter, migrations)
    assert run.depends_on(exporter, exporter_role)
    assert run.depends_on(prometheus, exporter)
    assert run.depends_on(prometheus, gateway)
    assert run.depends_on(grafana, prometheus)
    assert run.depends_on(grafana, grafana_role)
    order = run.order
    assert order.index(exporter.urn) > order.index(migrations.urn)
    assert order.index(exporter.urn) > order.index(exporter_role.urn)


def test_roles_are_least_privilege(program):
    run = program("staging")
    exporter = run.by_name("monitoring-exporter-role")
    grafana = run.by_name("monitoring-grafana-role")
    assert exporter.plain("role") == "ms5_exporter"
    assert exporter.plain("member_of") == ["pg_monitor"]
    assert grafana.plain("member_of") == ["pg_monitor", "pg_read_all_data"]
    for role in (exporter, grafana):
        assert role.plain("database") == "ms5"
        assert role.is_secret("password")
        assert role.is_secret("admin_dsn")
        assert "password" in role.additional_secret_outputs


def test_secrets_stay_secret(program):
    secret = "exporter-Passw0rd-long-enough"
    admin = "grafana-Adm1n-long-enough-x"
    run = program(
        "staging",
        {
            "ms5:exporterPassword": secret,
            "ms5:grafanaAdminPassword": admin,
        },
        secret_keys=("ms5:exporterPassword", "ms5:grafanaAdminPassword"),
    )
    exporter = run.by_name("monitoring-exporter-container")
    grafana = run.by_name("monitoring-grafana-container")
    assert _uploads(exporter)[files.EXPORTER_PASSWORD_PATH] == secret
    assert _uploads(grafana)[files.GRAFANA_ADMIN_PASSWORD_PATH] == admin
    for container in (exporter, grafana):
        assert container.is_secret("uploads")
        assert "uploads" in container.additional_secret_outputs
    for reg in run.registrations.values():
        if reg.type != CONTAINER or not reg.name.startswith("monitoring"):
            continue
        visible = json.dumps(
            {k: v for k, v in reg.inputs.items() if k not in ("uploads",)}, sort_keys=True
        )
        assert secret not in visible and admin not in visible, reg.name
    assert run.by_name("monitoring-exporter-role").plain("password") == secret
    assert "grafanaAdminPassword" in run.secret_exports
    assert not any(contains_secret(run.exports[k]) for k in ("prometheusUrl", "grafanaUrl"))


def test_generated_passwords_when_not_configured(program):
    run = program("staging")
    passwords = {
        r.name
        for r in run.by_type("random:index/randomPassword:RandomPassword")
        if r.name.startswith("monitoring")
    }
    assert passwords == {
        "monitoring-exporter-password",
        "monitoring-grafana-db-password",
        "monitoring-grafana-admin-password",
    }


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_each_file_is_uploaded_with_exactly_the_generated_content(program, stack):
    run = program(stack)
    expected = _expected_files(run)
    exporter = _uploads(run.by_name("monitoring-exporter-container"))
    assert exporter[files.EXPORTER_QUERIES_PATH] == expected.exporter_queries
    assert exporter[files.EXPORTER_CONFIG_PATH] == expected.exporter_config
    prometheus = _uploads(run.by_name("monitoring-prometheus-container"))
    assert prometheus == {
        files.PROMETHEUS_CONFIG_PATH: expected.prometheus_config,
        files.PROMETHEUS_RULES_PATH: expected.prometheus_rules,
    }
    grafana = _uploads(run.by_name("monitoring-grafana-container"))
    assert grafana[files.GRAFANA_DATASOURCES_PATH] == expected.grafana_datasources
    assert grafana[files.GRAFANA_DASHBOARD_PROVIDER_PATH] == expected.grafana_dashboard_provider
    assert grafana[files.GRAFANA_DASHBOARD_PATH] == expected.grafana_dashboard
    assert grafana[files.GRAFANA_START_SCRIPT_PATH] == expected.grafana_start_script
    # The config the container gets names the stack's own containers.
    assert f"ms5-{stack}-postgres-exporter:9187" in prometheus[files.PROMETHEUS_CONFIG_PATH]
    assert f"ms5-{stack}-pushgateway:9091" in prometheus[files.PROMETHEUS_CONFIG_PATH]
    assert f"http://ms5-{stack}-prometheus:9090" in grafana[files.GRAFANA_DATASOURCES_PATH]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_images_pinned_and_run_by_id(program, stack):
    run = program(stack)
    settings = load_settings(run.config, stack=stack)
    mon = MonitoringSettings.from_settings(settings)
    for image_name, container_name, ref in [
        ("monitoring-exporter-image", "monitoring-exporter-container", mon.exporter_image),
        ("monitoring-prometheus-image", "monitoring-prometheus-container", mon.prometheus_image),
        (
            "monitoring-prometheus-pushgateway-image",
            "monitoring-prometheus-pushgateway",
            mon.pushgateway_image,
        ),
        ("monitoring-grafana-image", "monitoring-grafana-container", mon.grafana_image),
    ]:
        image = run.by_name(image_name)
        assert image.plain("name") == ref.reference
        assert image.plain("keepLocally") is True
        assert run.by_name(container_name).plain("image") == image.outputs["imageId"]
        if stack == "production":
            assert "@sha256:" in image.plain("name")
    assert mon.exporter_image.tag == "v0.17.1"  # the version the integration tests run


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_limits_health_checks_and_hardening(program, stack):
    run = program(stack)
    for name in MONITORING_CONTAINERS:
        c = run.by_name(name)
        assert c.plain("memory") > 0 and c.plain("memorySwap") == c.plain("memory"), name
        assert float(c.plain("cpus")) > 0, name
        health = c.plain("healthcheck")
        assert health["tests"][:2] == ["CMD", "wget"], name
        assert c.plain("wait") is True, name
        assert c.plain("securityOpts") == ["no-new-privileges:true"], name
        assert c.plain("capabilities") == {"drops": ["ALL"]}, name
        assert not c.plain("privileged"), name
        assert c.plain("logOpts")["max-size"], name
    # The exporter is not published at all; the others only on the bind address.
    assert not run.by_name("monitoring-exporter-container").plain("ports")
    for name in MONITORING_CONTAINERS[1:]:
        [port] = run.by_name(name).plain("ports")
        assert port["ip"] == "127.0.0.1", name


def test_prometheus_flags_retention_and_admin_api_off(program):
    run = program("staging", {"ms5:prometheusRetention": "30d"})
    command = run.by_name("monitoring-prometheus-container").plain("command")
    assert "--storage.tsdb.retention.time=30d" in command
    assert "--storage.tsdb.retention.size=5GB" in command
    assert f"--config.file={files.PROMETHEUS_CONFIG_PATH}" in command
    assert not any("admin-api" in arg or "enable-lifecycle" in arg for arg in command)
    volumes = run.by_name("monitoring-prometheus-container").plain("volumes")
    assert volumes == [
        {"volumeName": "ms5-staging-prometheus-data", "containerPath": files.PROMETHEUS_DATA}
    ]
    exporter_command = run.by_name("monitoring-exporter-container").plain("command")
    assert f"--extend.query-path={files.EXPORTER_QUERIES_PATH}" in exporter_command
    assert "--collector.stat_statements" in exporter_command
    assert "--no-collector.stat_user_tables" in exporter_command
    assert not any("password" in arg.lower() for arg in exporter_command)


def test_grafana_access_is_closed(program):
    run = program("staging")
    grafana = run.by_name("monitoring-grafana-container")
    env = dict(e.split("=", 1) for e in grafana.plain("envs"))
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_ADMIN_USER"] == "ms5admin"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == files.GRAFANA_ADMIN_PASSWORD_PATH
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert grafana.plain("entrypoints") == ["/bin/sh", files.GRAFANA_START_SCRIPT_PATH]
    datasources = _uploads(grafana)[files.GRAFANA_DATASOURCES_PATH]
    assert "$__file{" + files.GRAFANA_DB_PASSWORD_PATH + "}" in datasources
    assert "ms5_grafana" in datasources


def test_monitoring_can_be_turned_off(program):
    run = program("staging", {"ms5:monitoringEnabled": False})
    assert not [r for r in run.registrations.values() if r.name.startswith("monitoring")]
    assert "grafanaUrl" not in run.exports


def test_evaluating_twice_gives_identical_monitoring_inputs(program):
    first = program("staging")
    second = program("staging")

    def snapshot(run: ProgramRun) -> dict[str, object]:
        return {
            r.name: json.dumps(r.inputs, sort_keys=True)
            for r in run.registrations.values()
            if r.name.startswith("monitoring")
        }

    assert snapshot(first) == snapshot(second)
