"""The monitoring containers: postgres_exporter, Prometheus (with its Pushgateway) and Grafana.

Each is a ComponentResource (``ms5:monitoring:<Class>``) whose children are a pinned
``RemoteImage``, the container and, where state must survive a replacement, a named volume.
Every container runs on the stack's network with memory and CPU limits, ``no-new-privileges``, all
capabilities dropped, a health check that ``pulumi up`` waits for, and log rotation (a read-only
root file system only where nothing is uploaded: Docker cannot copy into one); every
configuration file is uploaded with exactly the text :mod:`ms5_components.monitoring.config`
generated (a change of text recreates the container). Secrets (passwords) travel only in uploaded
files, never in the environment or on a command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from ms5_components.docker_common import (
    DAEMON_MERGED,
    container_labels,
    docker_cpus,
    go_duration,
    pinned_image,
    publishing_labels,
    reachable_host,
    volume_labels,
)
from ms5_components.monitoring import config as files
from ms5_components.monitoring.exporter_queries import exporter_flags
from ms5_components.settings import ImageRef

HEALTH_INTERVAL_SECONDS = 10


def _wget_health(url: str, timeout_seconds: int) -> docker.ContainerHealthcheckArgs:
    # The three images are busybox/alpine based: wget is there, curl is not.
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "wget", "-q", "-O", "/dev/null", url],
        # Durations in the form the provider reads back; no start_interval (engines before
        # API 1.44 drop it silently).
        interval=go_duration(HEALTH_INTERVAL_SECONDS),
        timeout=go_duration(5),
        retries=max(timeout_seconds // HEALTH_INTERVAL_SECONDS, 3),
        start_period=go_duration(timeout_seconds),
    )


@dataclass(frozen=True, kw_only=True)
class ContainerCommon:
    """Settings every monitoring container shares."""

    prefix: str
    """Prefix of Docker object names (``<project>-<stack>``): two stacks can share a host."""
    network_name: pulumi.Input[str]
    """The stack network (the database's)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels on every container and volume."""
    bind_address: str = "127.0.0.1"
    """Host address published ports bind to."""
    allow_non_loopback_bind: bool = False
    """ms5:allowNonLoopbackBind: containers that publish a port carry the opt-in label."""
    restart_policy: str = "unless-stopped"
    """Docker restart policy."""
    log_max_size: str = "20m"
    """json-file log rotation size."""
    log_max_files: int = 3
    """json-file rotated files kept."""
    health_timeout_seconds: int = 120
    """How long ``pulumi up`` waits for the container to become healthy."""


def _publishing(common: ContainerCommon, component: str) -> list[docker.ContainerLabelArgs]:
    return publishing_labels(
        common.labels, component, allow_non_loopback_bind=common.allow_non_loopback_bind
    )


def _security(common: ContainerCommon) -> dict[str, object]:
    return {
        "security_opts": ["no-new-privileges:true"],
        "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
        "log_driver": "json-file",
        "log_opts": {"max-size": common.log_max_size, "max-file": str(common.log_max_files)},
        "restart": common.restart_policy,
        "wait": True,
        "wait_timeout": common.health_timeout_seconds,
    }


# ------------------------------------------------------------------------------------------------
# Exporter
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExporterArgs:
    """Inputs of :class:`Exporter`."""

    common: ContainerCommon
    """Network, labels, restart and log settings."""
    image: ImageRef
    """postgres_exporter image (0.17.x). Changing it replaces the container."""
    db_host: pulumi.Input[str]
    """The database container's name on the network."""
    database: pulumi.Input[str]
    """The monitored database."""
    role: pulumi.Input[str]
    """The monitoring role (a MonitoringRole output, so the exporter waits for it)."""
    password: pulumi.Input[str]
    """The role's password (secret); uploaded as a file read via DATA_SOURCE_PASS_FILE."""
    queries_yaml: str
    """The generated queries file. A change recreates the container."""
    config_yaml: str
    """The generated --config.file. A change recreates the container."""
    memory_mb: int = 128
    """Memory limit (MiB). Changing it updates the container."""
    cpus: str = "0.5"
    """CPU limit. Changing it updates the container."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Resources the exporter starts after (the migrations: the schema it reads)."""


class Exporter(pulumi.ComponentResource):
    """postgres_exporter, connected as the monitoring role, with the TimescaleDB queries."""

    container: docker.Container
    """The container (for depends_on)."""
    container_name: pulumi.Output[str]
    """Its name, also its DNS name on the stack network."""
    target: pulumi.Output[str]
    """``host:port`` Prometheus scrapes."""

    def __init__(
        self, name: str, args: ExporterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ms5:monitoring:Exporter", name, None, opts)
        common = args.common
        image = pinned_image(f"{name}-image", args.image, self)
        container_name = f"{common.prefix}-postgres-exporter"
        uri = pulumi.Output.all(args.db_host, args.database).apply(
            # sslmode=disable: the stack network is private to the stack's containers.
            lambda parts: f"{parts[0]}:5432/{parts[1]}?sslmode=disable"
        )
        self.container = docker.Container(
            f"{name}-container",
            docker.ContainerArgs(
                name=container_name,
                hostname=container_name,
                image=image.image_id,
                command=list(
                    exporter_flags(
                        queries_path=files.EXPORTER_QUERIES_PATH,
                        config_path=files.EXPORTER_CONFIG_PATH,
                        listen_address=f":{files.EXPORTER_PORT}",
                    )
                ),
                envs=[
                    pulumi.Output.concat("DATA_SOURCE_URI=", uri),
                    pulumi.Output.concat("DATA_SOURCE_USER=", args.role),
                    f"DATA_SOURCE_PASS_FILE={files.EXPORTER_PASSWORD_PATH}",
                ],
                uploads=[
                    docker.ContainerUploadArgs(
                        file=files.EXPORTER_CONFIG_PATH,
                        content=args.config_yaml,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.EXPORTER_QUERIES_PATH,
                        content=args.queries_yaml,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.EXPORTER_PASSWORD_PATH,
                        content=pulumi.Output.secret(args.password),
                        permissions="0444",
                    ),
                ],
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=common.network_name)],
                # The landing page, not /metrics: a health check must not run every query.
                healthcheck=_wget_health(
                    f"http://127.0.0.1:{files.EXPORTER_PORT}/", common.health_timeout_seconds
                ),
                memory=args.memory_mb,
                memory_swap=args.memory_mb,
                cpus=docker_cpus(args.cpus),
                labels=container_labels(common.labels, "postgres-exporter"),
                **_security(common),  # type: ignore[arg-type]
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                additional_secret_outputs=["uploads"],
                ignore_changes=DAEMON_MERGED,
                # A fixed container name: the old container must go before the new one is made.
                delete_before_replace=True,
            ),
        )
        self.container_name = self.container.name
        self.target = pulumi.Output.concat(self.container.name, f":{files.EXPORTER_PORT}")
        self.register_outputs({"container_name": self.container_name, "target": self.target})


# ------------------------------------------------------------------------------------------------
# Prometheus (+ Pushgateway)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PrometheusArgs:
    """Inputs of :class:`Prometheus`."""

    common: ContainerCommon
    """Network, labels, bind address, restart and log settings."""
    image: ImageRef
    """Prometheus image. Changing it replaces the container (the data volume stays)."""
    pushgateway_image: ImageRef
    """Pushgateway image. Changing it replaces its container (its volume stays)."""
    config_yaml: str
    """The generated prometheus.yml. A change recreates the container."""
    rules_yaml: str
    """The generated rules file. A change recreates the container."""
    port: int = 9090
    """Host port of the UI/API, on the bind address."""
    pushgateway_port: int = 9091
    """Host port batch jobs push to, on the bind address."""
    retention: str = "15d"
    """--storage.tsdb.retention.time."""
    retention_size: str = "5GB"
    """--storage.tsdb.retention.size."""
    memory_mb: int = 1024
    """Memory limit of Prometheus (MiB)."""
    cpus: str = "1"
    """CPU limit of Prometheus."""
    pushgateway_memory_mb: int = 64
    """Memory limit of the Pushgateway (MiB)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Resources Prometheus starts after (the exporter)."""


class Prometheus(pulumi.ComponentResource):
    """Prometheus with the generated config and rules, and the Pushgateway it scrapes.

    The admin API and lifecycle endpoints stay off (their flags are never passed); ports bind to
    the configured address (127.0.0.1 by default).
    """

    container: docker.Container
    """The Prometheus container."""
    pushgateway: docker.Container
    """The Pushgateway container."""
    container_name: pulumi.Output[str]
    """Prometheus' name on the network."""
    url: pulumi.Output[str]
    """Prometheus as seen from the host."""
    pushgateway_url: pulumi.Output[str]
    """The Pushgateway as seen from the host (batch jobs push here)."""

    def __init__(
        self, name: str, args: PrometheusArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ms5:monitoring:Prometheus", name, None, opts)
        common = args.common
        child = pulumi.ResourceOptions(parent=self)
        prometheus_volume_labels = volume_labels(common.labels, "prometheus")
        data = docker.Volume(
            f"{name}-data",
            docker.VolumeArgs(
                name=f"{common.prefix}-prometheus-data", labels=prometheus_volume_labels
            ),
            opts=child,
        )
        gateway_data = docker.Volume(
            f"{name}-pushgateway-data",
            docker.VolumeArgs(
                name=f"{common.prefix}-pushgateway-data", labels=prometheus_volume_labels
            ),
            opts=child,
        )
        gateway_image = pinned_image(f"{name}-pushgateway-image", args.pushgateway_image, self)
        gateway_name = f"{common.prefix}-pushgateway"
        self.pushgateway = docker.Container(
            f"{name}-pushgateway",
            docker.ContainerArgs(
                name=gateway_name,
                hostname=gateway_name,
                image=gateway_image.image_id,
                command=[
                    f"--web.listen-address=:{files.PUSHGATEWAY_PORT}",
                    # Pushed results survive a restart: the backup-age alert needs them.
                    f"--persistence.file={files.PUSHGATEWAY_DATA}/metrics.db",
                    "--persistence.interval=1m",
                ],
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=gateway_data.name, container_path=files.PUSHGATEWAY_DATA
                    )
                ],
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=common.network_name)],
                ports=[
                    docker.ContainerPortArgs(
                        internal=files.PUSHGATEWAY_PORT,
                        external=args.pushgateway_port,
                        ip=common.bind_address,
                    )
                ],
                healthcheck=_wget_health(
                    f"http://127.0.0.1:{files.PUSHGATEWAY_PORT}/-/ready",
                    common.health_timeout_seconds,
                ),
                read_only=True,
                memory=args.pushgateway_memory_mb,
                memory_swap=args.pushgateway_memory_mb,
                cpus=docker_cpus("0.25"),
                labels=_publishing(common, "pushgateway"),
                **_security(common),  # type: ignore[arg-type]
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=DAEMON_MERGED,
                # A fixed container name: the old container must go before the new one is made.
                delete_before_replace=True,
            ),
        )
        image = pinned_image(f"{name}-image", args.image, self)
        container_name = f"{common.prefix}-prometheus"
        self.container = docker.Container(
            f"{name}-container",
            docker.ContainerArgs(
                name=container_name,
                hostname=container_name,
                image=image.image_id,
                command=[
                    f"--config.file={files.PROMETHEUS_CONFIG_PATH}",
                    f"--storage.tsdb.path={files.PROMETHEUS_DATA}",
                    f"--storage.tsdb.retention.time={args.retention}",
                    f"--storage.tsdb.retention.size={args.retention_size}",
                    f"--web.listen-address=:{files.PROMETHEUS_PORT}",
                    "--web.console.libraries=/usr/share/prometheus/console_libraries",
                    "--web.console.templates=/usr/share/prometheus/consoles",
                ],
                uploads=[
                    docker.ContainerUploadArgs(
                        file=files.PROMETHEUS_CONFIG_PATH,
                        content=args.config_yaml,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.PROMETHEUS_RULES_PATH,
                        content=args.rules_yaml,
                        permissions="0444",
                    ),
                ],
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=data.name, container_path=files.PROMETHEUS_DATA
                    )
                ],
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=common.network_name)],
                ports=[
                    docker.ContainerPortArgs(
                        internal=files.PROMETHEUS_PORT,
                        external=args.port,
                        ip=common.bind_address,
                    )
                ],
                healthcheck=_wget_health(
                    f"http://127.0.0.1:{files.PROMETHEUS_PORT}/-/ready",
                    common.health_timeout_seconds,
                ),
                memory=args.memory_mb,
                memory_swap=args.memory_mb,
                cpus=docker_cpus(args.cpus),
                labels=_publishing(common, "prometheus"),
                **_security(common),  # type: ignore[arg-type]
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.pushgateway, *args.depends_on],
                ignore_changes=DAEMON_MERGED,
                # A fixed container name: the old container must go before the new one is made.
                delete_before_replace=True,
            ),
        )
        host = reachable_host(common.bind_address)
        self.container_name = self.container.name
        self.url = pulumi.Output.from_input(f"http://{host}:{args.port}")
        self.pushgateway_url = pulumi.Output.from_input(f"http://{host}:{args.pushgateway_port}")
        self.register_outputs(
            {
                "container_name": self.container_name,
                "url": self.url,
                "pushgateway_url": self.pushgateway_url,
            }
        )


# ------------------------------------------------------------------------------------------------
# Grafana
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GrafanaArgs:
    """Inputs of :class:`Grafana`."""

    common: ContainerCommon
    """Network, labels, bind address, restart and log settings."""
    image: ImageRef
    """Grafana image. Changing it replaces the container (the data volume stays)."""
    admin_user: str
    """Administrator login."""
    admin_password: pulumi.Input[str]
    """Administrator password (secret; never ``admin``). A change recreates the container, whose
    start script applies it with ``grafana cli admin reset-admin-password``."""
    db_password: pulumi.Input[str]
    """Password of the read-only datasource role (secret), read by the datasource file."""
    datasources_yaml: str
    """Generated datasource provisioning."""
    dashboard_provider_yaml: str
    """Generated dashboard provider."""
    dashboard_json: str
    """Generated dashboard."""
    start_script: str
    """Generated entrypoint wrapper."""
    port: int = 3000
    """Host port on the bind address."""
    memory_mb: int = 512
    """Memory limit (MiB)."""
    cpus: str = "1"
    """CPU limit."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Resources Grafana starts after (Prometheus, the datasource role)."""


class Grafana(pulumi.ComponentResource):
    """Grafana with provisioned datasources and the generated dashboard; no anonymous access,
    no sign-up, a non-default admin password."""

    container: docker.Container
    """The container."""
    url: pulumi.Output[str]
    """Grafana as seen from the host."""

    def __init__(
        self, name: str, args: GrafanaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ms5:monitoring:Grafana", name, None, opts)
        common = args.common
        child = pulumi.ResourceOptions(parent=self)
        data = docker.Volume(
            f"{name}-data",
            docker.VolumeArgs(
                name=f"{common.prefix}-grafana-data",
                labels=volume_labels(common.labels, "grafana"),
            ),
            opts=child,
        )
        image = pinned_image(f"{name}-image", args.image, self)
        container_name = f"{common.prefix}-grafana"
        self.container = docker.Container(
            f"{name}-container",
            docker.ContainerArgs(
                name=container_name,
                hostname=container_name,
                image=image.image_id,
                entrypoints=["/bin/sh", files.GRAFANA_START_SCRIPT_PATH],
                envs=sorted(
                    [
                        f"GF_SECURITY_ADMIN_USER={args.admin_user}",
                        f"GF_SECURITY_ADMIN_PASSWORD__FILE={files.GRAFANA_ADMIN_PASSWORD_PATH}",
                        "GF_SECURITY_DISABLE_GRAVATAR=true",
                        "GF_AUTH_ANONYMOUS_ENABLED=false",
                        "GF_AUTH_BASIC_ENABLED=true",
                        "GF_USERS_ALLOW_SIGN_UP=false",
                        "GF_USERS_ALLOW_ORG_CREATE=false",
                        "GF_ANALYTICS_REPORTING_ENABLED=false",
                        "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
                        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES=false",
                        "GF_SNAPSHOTS_EXTERNAL_ENABLED=false",
                        "GF_NEWS_NEWS_FEED_ENABLED=false",
                        f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={files.GRAFANA_DASHBOARD_PATH}",
                    ]
                ),
                uploads=[
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_DATASOURCES_PATH,
                        content=args.datasources_yaml,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_DASHBOARD_PROVIDER_PATH,
                        content=args.dashboard_provider_yaml,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_DASHBOARD_PATH,
                        content=args.dashboard_json,
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_START_SCRIPT_PATH,
                        content=args.start_script,
                        permissions="0555",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_ADMIN_PASSWORD_PATH,
                        content=pulumi.Output.secret(args.admin_password),
                        permissions="0444",
                    ),
                    docker.ContainerUploadArgs(
                        file=files.GRAFANA_DB_PASSWORD_PATH,
                        content=pulumi.Output.secret(args.db_password),
                        permissions="0444",
                    ),
                ],
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=data.name, container_path=files.GRAFANA_DATA
                    )
                ],
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=common.network_name)],
                ports=[
                    docker.ContainerPortArgs(
                        internal=files.GRAFANA_PORT, external=args.port, ip=common.bind_address
                    )
                ],
                healthcheck=_wget_health(
                    f"http://127.0.0.1:{files.GRAFANA_PORT}/api/health",
                    common.health_timeout_seconds,
                ),
                memory=args.memory_mb,
                memory_swap=args.memory_mb,
                cpus=docker_cpus(args.cpus),
                labels=_publishing(common, "grafana"),
                **_security(common),  # type: ignore[arg-type]
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                additional_secret_outputs=["uploads"],
                ignore_changes=DAEMON_MERGED,
                # A fixed container name: the old container must go before the new one is made.
                delete_before_replace=True,
            ),
        )
        host = reachable_host(common.bind_address)
        self.url = pulumi.Output.from_input(f"http://{host}:{args.port}")
        self.register_outputs({"url": self.url})
