"""Monitoring settings (from the validated stack settings) and every generated monitoring file.

:class:`MonitoringSettings` is read from :attr:`ms5_components.settings.Settings.raw` (the
``monitoring`` group of keys). :func:`generate_files` produces, as text, every file the monitoring
containers receive; the components upload exactly these texts, ``tools/gen_monitoring.py`` writes
them out for inspection, and the tests check them with promtool and real services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from ms5_components.monitoring import dashboard, exporter_queries, prometheus_config, rules
from ms5_components.settings import ImageRef, Secret, Settings

# Paths inside the containers.
EXPORTER_DIR = "/etc/postgres_exporter"
EXPORTER_CONFIG_PATH = f"{EXPORTER_DIR}/postgres_exporter.yml"
EXPORTER_QUERIES_PATH = f"{EXPORTER_DIR}/queries.yml"
EXPORTER_PASSWORD_PATH = f"{EXPORTER_DIR}/password"
EXPORTER_PORT = 9187

PROMETHEUS_CONFIG_PATH = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES_PATH = "/etc/prometheus/rules/ms5-alerts.yml"
PROMETHEUS_DATA = "/prometheus"
PROMETHEUS_PORT = 9090

PUSHGATEWAY_DATA = "/pushgateway"
PUSHGATEWAY_PORT = 9091

GRAFANA_DATASOURCES_PATH = "/etc/grafana/provisioning/datasources/ms5.yaml"
GRAFANA_DASHBOARD_PROVIDER_PATH = "/etc/grafana/provisioning/dashboards/ms5.yaml"
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards/ms5"
GRAFANA_DASHBOARD_PATH = f"{GRAFANA_DASHBOARDS_DIR}/ms5-timescaledb.json"
GRAFANA_SECRETS_DIR = "/etc/grafana/secrets"
GRAFANA_ADMIN_PASSWORD_PATH = f"{GRAFANA_SECRETS_DIR}/admin_password"
GRAFANA_DB_PASSWORD_PATH = f"{GRAFANA_SECRETS_DIR}/db_password"
GRAFANA_START_SCRIPT_PATH = "/usr/local/bin/ms5-grafana-start.sh"
GRAFANA_DATA = "/var/lib/grafana"
GRAFANA_PORT = 3000

EXPORTER_ROLE = "ms5_exporter"
"""The exporter's login role (pg_monitor)."""
GRAFANA_ROLE = "ms5_grafana"
"""The login role of Grafana's read-only PostgreSQL datasource."""


@dataclass(frozen=True, kw_only=True)
class MonitoringSettings:
    """The validated ``monitoring`` settings of one stack."""

    enabled: bool
    exporter_image: ImageRef
    exporter_password: Secret | None
    """None: generated."""
    exporter_memory_mb: int
    exporter_top_n: int
    prometheus_image: ImageRef
    prometheus_port: int
    prometheus_retention: str
    prometheus_retention_size: str
    prometheus_memory_mb: int
    pushgateway_image: ImageRef
    pushgateway_port: int
    grafana_image: ImageRef
    grafana_port: int
    grafana_admin_user: str
    grafana_admin_password: Secret | None
    """None: generated."""
    grafana_db_password: Secret | None
    """None: generated."""
    grafana_memory_mb: int
    backup_max_age_hours: int
    restore_drill_max_age_hours: int
    storage_budget_gb: int

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitoringSettings:
        """From the stack settings (already validated by ``load_settings``)."""
        raw = settings.raw

        def image(key: str) -> ImageRef:
            value = raw[key]
            assert isinstance(value, ImageRef)
            return value

        def integer(key: str) -> int:
            value = raw[key]
            assert isinstance(value, int)
            return value

        def secret(key: str) -> Secret | None:
            value = raw.get(key)
            return value if isinstance(value, Secret) else None

        return cls(
            enabled=bool(raw["monitoringEnabled"]),
            exporter_image=image("exporterImage"),
            exporter_password=secret("exporterPassword"),
            exporter_memory_mb=integer("exporterMemoryMb"),
            exporter_top_n=integer("exporterTopN"),
            prometheus_image=image("prometheusImage"),
            prometheus_port=integer("prometheusPort"),
            prometheus_retention=str(raw["prometheusRetention"]),
            prometheus_retention_size=str(raw["prometheusRetentionSize"]),
            prometheus_memory_mb=integer("prometheusMemoryMb"),
            pushgateway_image=image("pushgatewayImage"),
            pushgateway_port=integer("pushgatewayPort"),
            grafana_image=image("grafanaImage"),
            grafana_port=integer("grafanaPort"),
            grafana_admin_user=str(raw["grafanaAdminUser"]),
            grafana_admin_password=secret("grafanaAdminPassword"),
            grafana_db_password=secret("grafanaDbPassword"),
            grafana_memory_mb=integer("grafanaMemoryMb"),
            backup_max_age_hours=integer("backupMaxAgeHours"),
            restore_drill_max_age_hours=integer("restoreDrillMaxAgeHours"),
            storage_budget_gb=integer("alertStorageBudgetGb"),
        )

    @property
    def alert_settings(self) -> rules.AlertSettings:
        """What the rules need."""
        return rules.AlertSettings(
            backup_max_age_hours=self.backup_max_age_hours,
            restore_drill_max_age_hours=self.restore_drill_max_age_hours,
            storage_budget_bytes=self.storage_budget_gb * 1024**3,
        )


@dataclass(frozen=True, kw_only=True)
class FileInputs:
    """Everything the generated files depend on (plain values, no Pulumi outputs)."""

    timescaledb_version: tuple[int, int, int]
    """Version of the deployed extension (from the image tag): gates the queries."""
    database: str
    """The application database (dashboard default, datasource)."""
    db_host: str
    """The database container's name on the stack network."""
    db_port: int = 5432
    """The database's port on the network."""
    exporter_host: str
    """The exporter container's name."""
    prometheus_host: str
    """The Prometheus container's name."""
    pushgateway_host: str
    """The Pushgateway container's name."""
    stack: str
    """Stack name (an external label of Prometheus)."""
    top_n: int = exporter_queries.DEFAULT_TOP_N
    """Bounded-cardinality limit of the custom queries."""
    alerts: rules.AlertSettings = field(default_factory=rules.AlertSettings)
    """Alert thresholds."""


@dataclass(frozen=True, kw_only=True)
class GeneratedFiles:
    """Every generated monitoring file, as text."""

    exporter_config: str
    exporter_queries: str
    prometheus_config: str
    prometheus_rules: str
    prometheus_rule_tests: Mapping[str, str]
    """promtool unit-test files by name (not deployed; the tests run them)."""
    grafana_datasources: str
    grafana_dashboard_provider: str
    grafana_dashboard: str
    grafana_start_script: str

    def by_name(self) -> Mapping[str, str]:
        """File name -> text (what ``tools/gen_monitoring.py`` writes)."""
        return {
            "exporter/postgres_exporter.yml": self.exporter_config,
            "exporter/queries.yml": self.exporter_queries,
            "prometheus/prometheus.yml": self.prometheus_config,
            "prometheus/rules/ms5-alerts.yml": self.prometheus_rules,
            **{f"prometheus/rules/{n}": text for n, text in self.prometheus_rule_tests.items()},
            "grafana/provisioning/datasources/ms5.yaml": self.grafana_datasources,
            "grafana/provisioning/dashboards/ms5.yaml": self.grafana_dashboard_provider,
            "grafana/dashboards/ms5-timescaledb.json": self.grafana_dashboard,
            "grafana/ms5-grafana-start.sh": self.grafana_start_script,
        }

    def deployed(self) -> Mapping[str, str]:
        """File name -> text of the files the containers receive (the promtool tests are not)."""
        tests = {f"prometheus/rules/{n}" for n in self.prometheus_rule_tests}
        return {name: text for name, text in self.by_name().items() if name not in tests}


def _yaml(document: object, generator: str) -> str:
    header = f"# Generated by {generator}; do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=True, width=100)


def grafana_datasources(inputs: FileInputs) -> str:
    """Provisioned datasources: Prometheus (default) and read-only PostgreSQL.

    The database password is read from a file in the container (``$__file{...}``): the
    provisioning file itself holds no secret.
    """
    document = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": dashboard.PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": f"http://{inputs.prometheus_host}:{PROMETHEUS_PORT}",
                "isDefault": True,
                "editable": False,
                "jsonData": {"httpMethod": "POST", "timeInterval": "30s"},
            },
            {
                "name": "TimescaleDB (read-only)",
                "uid": dashboard.POSTGRES_UID,
                "type": "grafana-postgresql-datasource",
                "access": "proxy",
                "url": f"{inputs.db_host}:{inputs.db_port}",
                "user": GRAFANA_ROLE,
                "editable": False,
                "jsonData": {
                    "database": inputs.database,
                    # The stack network is private to the stack's containers.
                    "sslmode": "disable",
                    "postgresVersion": 1700,
                    "timescaledb": True,
                    "maxOpenConns": 5,
                    "maxIdleConns": 2,
                },
                "secureJsonData": {"password": f"$__file{{{GRAFANA_DB_PASSWORD_PATH}}}"},
            },
        ],
    }
    return _yaml(document, "ms5_components.monitoring.config")


def grafana_dashboard_provider() -> str:
    """The file provider that loads the generated dashboard (UI edits are not saved)."""
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "ms5",
                "orgId": 1,
                "folder": "MS5.0",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": GRAFANA_DASHBOARDS_DIR, "foldersFromFilesStructure": False},
            }
        ],
    }
    return _yaml(document, "ms5_components.monitoring.config")


GRAFANA_START_SCRIPT = f"""#!/bin/sh
# Generated by ms5_components.monitoring.config; do not edit.
# GF_SECURITY_ADMIN_PASSWORD__FILE seeds the admin password only when Grafana creates its
# database; on every later start the configured password is applied here, so a password changed
# in Pulumi config takes effect (the container is recreated when it changes).
set -eu
data="${{GF_PATHS_DATA:-{GRAFANA_DATA}}}"
if [ -f "$data/grafana.db" ]; then
  grafana cli --homepath "${{GF_PATHS_HOME:-/usr/share/grafana}}" \\
    --config "${{GF_PATHS_CONFIG:-/etc/grafana/grafana.ini}}" \\
    admin reset-admin-password --password-from-stdin < {GRAFANA_ADMIN_PASSWORD_PATH} > /dev/null
fi
exec /run.sh "$@"
"""
"""Entrypoint wrapper of the Grafana container."""


def generate_files(inputs: FileInputs) -> GeneratedFiles:
    """Every monitoring file for one stack."""
    queries = exporter_queries.custom_queries(
        timescaledb_version=inputs.timescaledb_version, top_n=inputs.top_n
    )
    prom = prometheus_config.build_config(
        prometheus_config.ConfigInputs(
            targets=prometheus_config.Targets(
                exporter=f"{inputs.exporter_host}:{EXPORTER_PORT}",
                pushgateway=f"{inputs.pushgateway_host}:{PUSHGATEWAY_PORT}",
                prometheus=f"127.0.0.1:{PROMETHEUS_PORT}",
            ),
            rule_files=(PROMETHEUS_RULES_PATH,),
            external_labels={"stack": inputs.stack},
        ),
        queries,
    )
    dashboard_inputs = dashboard.DashboardInputs(
        database=inputs.database,
        backup_max_age_hours=inputs.alerts.backup_max_age_hours,
        storage_budget_bytes=inputs.alerts.storage_budget_bytes,
    )
    return GeneratedFiles(
        exporter_config=exporter_queries.EXPORTER_CONFIG_YAML,
        exporter_queries=exporter_queries.render_queries_yaml(queries),
        prometheus_config=prom.render(),
        prometheus_rules=rules.render_rules(inputs.alerts),
        prometheus_rule_tests=rules.render_rule_tests(inputs.alerts, "ms5-alerts.yml"),
        grafana_datasources=grafana_datasources(inputs),
        grafana_dashboard_provider=grafana_dashboard_provider(),
        grafana_dashboard=dashboard.render_dashboard(dashboard_inputs),
        grafana_start_script=GRAFANA_START_SCRIPT,
    )
