"""The monitoring part of a stack: roles, exporter, Prometheus (+ Pushgateway), Grafana.

:func:`build_monitoring` is what ``stack.py``'s monitoring section calls. Order:

1. the exporter's and Grafana's login roles (:class:`MonitoringRole`), after the migrations;
2. the exporter, after the migrations and its role (it reads the schema the migrations built);
3. Prometheus and its Pushgateway, after the exporter;
4. Grafana, after Prometheus and its datasource role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from ms5_components.monitoring.components import (
    ContainerCommon,
    Exporter,
    ExporterArgs,
    Grafana,
    GrafanaArgs,
    Prometheus,
    PrometheusArgs,
)
from ms5_components.monitoring.config import (
    EXPORTER_ROLE,
    GRAFANA_ROLE,
    FileInputs,
    GeneratedFiles,
    MonitoringSettings,
    generate_files,
)
from ms5_components.monitoring.exporter_queries import parse_timescaledb_version
from ms5_components.monitoring.role import MonitoringRole, MonitoringRoleArgs
from ms5_components.settings import Secret, Settings


@dataclass(kw_only=True)
class Monitoring:
    """The monitoring resources of one stack."""

    exporter_role: MonitoringRole
    grafana_role: MonitoringRole
    exporter: Exporter
    prometheus: Prometheus
    grafana: Grafana
    grafana_admin_password: pulumi.Output[str]
    """Secret; exported so an operator can log in (``pulumi stack output --show-secrets``)."""
    files: GeneratedFiles
    """The generated files the containers received (the verification re-runs when one changes)."""


def _password(
    name: str, configured: Secret | None, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """The configured secret, or one generated once and kept (encrypted) in state."""
    if configured is not None:
        return pulumi.Output.secret(configured.reveal())
    generated = random.RandomPassword(
        name, random.RandomPasswordArgs(length=32, special=False), opts=opts
    )
    return pulumi.Output.secret(generated.result)


def build_monitoring(
    settings: Settings,
    *,
    network_name: pulumi.Input[str],
    db_container_name: str,
    database: pulumi.Input[str],
    admin_dsn: pulumi.Input[str],
    migrations: pulumi.Resource,
    labels: Mapping[str, str],
    docker_opts: pulumi.ResourceOptions,
) -> Monitoring:
    """Create the monitoring resources (call only when ``monitoringEnabled``)."""
    mon = MonitoringSettings.from_settings(settings)
    db = settings.database
    prefix = settings.prefix()
    files = generate_files(
        FileInputs(
            timescaledb_version=parse_timescaledb_version(db.image.tag),
            database=db.name,
            db_host=db_container_name,
            exporter_host=f"{prefix}-postgres-exporter",
            prometheus_host=f"{prefix}-prometheus",
            pushgateway_host=f"{prefix}-pushgateway",
            stack=settings.stack,
            top_n=mon.exporter_top_n,
            alerts=mon.alert_settings,
        )
    )
    common = ContainerCommon(
        prefix=prefix,
        network_name=network_name,
        labels=labels,
        bind_address=settings.bind_address,
        allow_non_loopback_bind=settings.allow_non_loopback_bind,
    )
    plain = pulumi.ResourceOptions()
    after_migrations = pulumi.ResourceOptions(depends_on=[migrations])

    exporter_password = _password("monitoring-exporter-password", mon.exporter_password, plain)
    grafana_db_password = _password(
        "monitoring-grafana-db-password", mon.grafana_db_password, plain
    )
    admin_password = _password(
        "monitoring-grafana-admin-password", mon.grafana_admin_password, plain
    )

    exporter_role = MonitoringRole(
        "monitoring-exporter-role",
        MonitoringRoleArgs(
            admin_dsn=admin_dsn,
            role=EXPORTER_ROLE,
            password=exporter_password,
            database=database,
            member_of=("pg_monitor",),
            connection_limit=5,
            statement_timeout_ms=15_000,
        ),
        opts=after_migrations,
    )
    grafana_role = MonitoringRole(
        "monitoring-grafana-role",
        MonitoringRoleArgs(
            admin_dsn=admin_dsn,
            role=GRAFANA_ROLE,
            password=grafana_db_password,
            database=database,
            member_of=("pg_monitor", "pg_read_all_data"),
            connection_limit=10,
            statement_timeout_ms=30_000,
        ),
        opts=after_migrations,
    )
    exporter = Exporter(
        "monitoring-exporter",
        ExporterArgs(
            common=common,
            image=mon.exporter_image,
            db_host=db_container_name,
            database=database,
            role=exporter_role.role,
            password=exporter_role.password,
            queries_yaml=files.exporter_queries,
            config_yaml=files.exporter_config,
            memory_mb=mon.exporter_memory_mb,
            depends_on=(migrations, exporter_role),
        ),
        opts=docker_opts,
    )
    prometheus = Prometheus(
        "monitoring-prometheus",
        PrometheusArgs(
            common=common,
            image=mon.prometheus_image,
            pushgateway_image=mon.pushgateway_image,
            config_yaml=files.prometheus_config,
            rules_yaml=files.prometheus_rules,
            port=mon.prometheus_port,
            pushgateway_port=mon.pushgateway_port,
            retention=mon.prometheus_retention,
            retention_size=mon.prometheus_retention_size,
            memory_mb=mon.prometheus_memory_mb,
            depends_on=(exporter,),
        ),
        opts=docker_opts,
    )
    grafana = Grafana(
        "monitoring-grafana",
        GrafanaArgs(
            common=common,
            image=mon.grafana_image,
            admin_user=mon.grafana_admin_user,
            admin_password=admin_password,
            db_password=grafana_role.password,
            datasources_yaml=files.grafana_datasources,
            dashboard_provider_yaml=files.grafana_dashboard_provider,
            dashboard_json=files.grafana_dashboard,
            start_script=files.grafana_start_script,
            port=mon.grafana_port,
            memory_mb=mon.grafana_memory_mb,
            depends_on=(prometheus, grafana_role),
        ),
        opts=docker_opts,
    )
    return Monitoring(
        exporter_role=exporter_role,
        grafana_role=grafana_role,
        exporter=exporter,
        prometheus=prometheus,
        grafana=grafana,
        grafana_admin_password=admin_password,
        files=files,
    )
