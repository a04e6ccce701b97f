"""The database part of the graph: host preflight, network, volumes, image and the TimescaleDB
container with its health wait."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from ms5_components.database.tuning import TuningInput, server_command, server_settings
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
from ms5_components.lifecycle.container_health import ContainerHealth, ContainerHealthArgs
from ms5_components.lifecycle.preflight import HostPreflight, HostPreflightArgs
from ms5_components.lifecycle.role_password import RolePassword, RolePasswordArgs
from ms5_components.settings import DatabaseSettings, Secret

INTERNAL_PORT = 5432
"""Port of the server inside the container and on the stack network."""
PGDATA = "/var/lib/postgresql/data"
"""The official image's data directory: always on the named data volume."""
BACKUP_DIR = "/var/lib/postgresql/backups"
"""Mount point of the backup volume inside the container (the one path the backups capability
uses). Beside PGDATA, on its own volume. The images do not have this directory, so Docker would
create the volume's root owned by root: :data:`ENTRYPOINT` makes it the server user's before the
image's own entrypoint starts."""
ENTRYPOINT = (
    "sh",
    "-c",
    'if [ "$(id -u)" = 0 ]; then mkdir -p "$0" && chown postgres:postgres "$0" '
    '&& chmod 0700 "$0"; fi; exec docker-entrypoint.sh "$@"',
    BACKUP_DIR,
)
"""The image's ``docker-entrypoint.sh``, after making :data:`BACKUP_DIR` owned by ``postgres``
(uid 70 in the Alpine-based TimescaleDB image, 999 in Debian-based ones: the name, not a number)."""
PASSWORD_FILE = "/run/secrets/ms5-db-password"  # noqa: S105 (a path, not a password)
"""Where the superuser password is uploaded (read once, at first initialisation)."""


def initdb_args(pg_major: int) -> str:
    """``POSTGRES_INITDB_ARGS``: the encoding and locale are pinned at first initialisation, so
    they never follow the image's locale (a bare image would give SQL_ASCII).

    UTF8 with the C locale for the operating-system categories, and on PostgreSQL 17+ the
    built-in ``C.UTF-8`` collation provider: Unicode-aware, independent of the C library, and so
    stable across image updates (no index rebuild after a glibc/musl collation change).
    """
    args = ["--auth-host=scram-sha-256", "--data-checksums", "--encoding=UTF8", "--locale=C"]
    if pg_major >= 17:
        args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
    return " ".join(args)


# Capabilities the image's entrypoint needs to fix data directory ownership and drop to postgres.
_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")


@dataclass(frozen=True, kw_only=True)
class TimescaleDbArgs:
    """Inputs of :class:`TimescaleDb`."""

    prefix: str
    """Prefix of every Docker object name (``<project>-<stack>``); changing it replaces everything
    and, with data protection on, is refused for the volumes."""
    settings: DatabaseSettings
    """Validated database settings. Image, name, superuser, port, limits and server settings
    replace the container (delete-before-replace); the data volume is never replaced by them."""
    bind_address: str
    """Host address the port is published on (default 127.0.0.1)."""
    protect_data: bool
    """protect + retain_on_delete on the data and backup volumes."""
    docker_host: str
    """Docker endpoint (the Docker provider's), for the health wait."""
    labels: dict[str, str]
    """Labels put on every Docker object (project, stack, component added)."""
    allow_non_loopback_bind: bool = False
    """ms5:allowNonLoopbackBind: the container carries the opt-in label for its published port
    (a change replaces the container, as a bind address change does)."""
    container_depends_on: tuple[pulumi.Resource, ...] = ()
    """Resources that must run before the container is created or replaced (the pre-change
    backup)."""


class TimescaleDb(pulumi.ComponentResource):
    """A TimescaleDB server on Docker with its network, named volumes and health wait."""

    network_name: pulumi.Output[str]
    """Name of the stack's Docker network (other containers join it)."""
    container_name: pulumi.Output[str]
    """Container name: also the server's DNS name on the stack network (port 5432)."""
    host: pulumi.Output[str]
    """Address the server is reachable at from the Pulumi host."""
    port: pulumi.Output[int]
    """Published host port."""
    database: pulumi.Output[str]
    """Application database name."""
    user: pulumi.Output[str]
    """Superuser name."""
    password: pulumi.Output[str]
    """Superuser password (secret)."""
    dsn: pulumi.Output[str]
    """Superuser DSN from the Pulumi host (secret)."""
    image_digest: pulumi.Output[str]
    """Repository digest of the image the container runs."""
    image_id: pulumi.Output[str]
    """Local id of the image the container runs (for other containers of the same image)."""
    backup_volume_name: pulumi.Output[str]
    """Name of the backup volume (mounted at BACKUP_DIR)."""
    server_settings: dict[str, str]
    """The server settings passed on the command line (plain data, known at preview)."""
    container: docker.Container
    """The container resource. It is created without waiting for health: depend on
    :attr:`healthy` for a server that has finished initialising."""
    healthy: ContainerHealth
    """Ready once the container reports healthy (within ``ms5:dbHealthTimeoutSeconds``)."""
    superuser_login: RolePassword
    """Keeps the superuser's password equal to config; ready once the server accepts logins."""

    def __init__(
        self, name: str, args: TimescaleDbArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ms5:database:TimescaleDb", name, None, opts)
        db = args.settings
        child = pulumi.ResourceOptions(parent=self)
        labels = container_labels(args.labels, "timescaledb")
        vol_labels = volume_labels(args.labels, "timescaledb")

        network = docker.Network(
            f"{name}-network",
            docker.NetworkArgs(
                name=f"{args.prefix}-net",
                driver="bridge",
                labels=[docker.NetworkLabelArgs(label=x.label, value=x.value) for x in labels],
            ),
            opts=child,
        )
        protected = pulumi.ResourceOptions(
            parent=self, protect=args.protect_data, retain_on_delete=args.protect_data
        )
        data_volume = docker.Volume(
            f"{name}-data",
            docker.VolumeArgs(name=f"{args.prefix}-pgdata", labels=vol_labels),
            opts=protected,
        )
        backup_volume = docker.Volume(
            f"{name}-backups",
            docker.VolumeArgs(name=f"{args.prefix}-backups", labels=vol_labels),
            opts=protected,
        )
        image = pinned_image(f"{name}-image", db.image, self)
        password = _superuser_password(name, db.password, child)

        pg_major = db.image.pg_major
        assert pg_major is not None  # guaranteed by settings validation

        self.server_settings = server_settings(
            TuningInput(
                memory_mb=db.memory_mb,
                cpus=db.cpus,
                max_connections=db.max_connections,
                log_min_duration_ms=db.log_min_duration_ms,
                telemetry=db.telemetry,
            ),
            db.server_settings,
        )
        container_name = f"{args.prefix}-timescaledb"
        health_interval = 5
        self.container = docker.Container(
            f"{name}-container",
            docker.ContainerArgs(
                name=container_name,
                hostname=container_name,
                image=image.image_id,
                entrypoints=list(ENTRYPOINT),
                command=server_command(self.server_settings),
                envs=[
                    f"POSTGRES_DB={db.name}",
                    f"POSTGRES_USER={db.superuser}",
                    f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE}",
                    f"POSTGRES_INITDB_ARGS={initdb_args(pg_major)}",
                    "POSTGRES_HOST_AUTH_METHOD=scram-sha-256",
                    f"PGDATA={PGDATA}",
                    "NO_TS_TUNE=true",
                    f"TIMESCALEDB_TELEMETRY={db.telemetry}",
                ],
                uploads=[
                    docker.ContainerUploadArgs(
                        file=PASSWORD_FILE,
                        content=pulumi.Output.secret(password),
                        permissions="0444",
                    )
                ],
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=data_volume.name, container_path=PGDATA),
                    docker.ContainerVolumeArgs(
                        volume_name=backup_volume.name, container_path=BACKUP_DIR
                    ),
                ],
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=["timescaledb"])
                ],
                ports=[
                    docker.ContainerPortArgs(
                        internal=INTERNAL_PORT, external=db.port, ip=args.bind_address
                    )
                ],
                healthcheck=docker.ContainerHealthcheckArgs(
                    # 127.0.0.1, not the socket: the entrypoint's init-only server listens on the
                    # socket alone, so this cannot pass before the real server is up.
                    tests=[
                        "CMD",
                        "pg_isready",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(INTERNAL_PORT),
                        "-d",
                        db.name,
                        "-U",
                        db.superuser,
                    ],
                    # Durations in the form the provider reads back; no start_interval (engines
                    # before API 1.44 drop it silently).
                    interval=go_duration(health_interval),
                    timeout=go_duration(5),
                    retries=max(db.health_timeout_seconds // health_interval, 3),
                    start_period=go_duration(db.health_timeout_seconds),
                ),
                # `healthy` below waits, with a message naming the container and the setting.
                wait=False,
                restart=db.restart_policy,
                memory=db.memory_mb,
                memory_swap=db.memory_mb,
                cpus=docker_cpus(db.cpus),
                shm_size=db.shm_size_mb,
                security_opts=["no-new-privileges:true"],
                capabilities=docker.ContainerCapabilitiesArgs(
                    drops=["ALL"], adds=list(_CAPABILITIES)
                ),
                log_driver="json-file",
                log_opts={"max-size": db.log_max_size, "max-file": str(db.log_max_files)},
                stop_signal="SIGINT",
                stop_timeout=120,
                destroy_grace_seconds=150,
                labels=publishing_labels(
                    args.labels,
                    "timescaledb",
                    allow_non_loopback_bind=args.allow_non_loopback_bind,
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.container_depends_on),
                # Never two servers on one data directory.
                delete_before_replace=True,
                # The password file is read once, at first initialisation; later password changes
                # are applied with ALTER ROLE, not by restarting the server. Log options are
                # merged with the daemon's defaults by Docker (see DAEMON_MERGED).
                ignore_changes=["uploads", *DAEMON_MERGED],
                additional_secret_outputs=["uploads"],
            ),
        )

        self.healthy = ContainerHealth(
            f"{name}-health",
            ContainerHealthArgs(
                docker_host=args.docker_host,
                container_name=self.container.name,
                container_id=self.container.id,
                timeout_seconds=db.health_timeout_seconds,
                timeout_setting="ms5:dbHealthTimeoutSeconds",
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )

        host = reachable_host(args.bind_address)
        self.network_name = network.name
        self.container_name = self.container.name
        self.host = pulumi.Output.from_input(host)
        self.port = pulumi.Output.from_input(db.port)
        self.database = pulumi.Output.from_input(db.name)
        self.user = pulumi.Output.from_input(db.superuser)
        self.password = pulumi.Output.secret(password)
        # The image applies the password only at first initialisation: this keeps the role's
        # password equal to config afterwards (ALTER ROLE), and proves the server accepts logins.
        self.superuser_login = RolePassword(
            f"{name}-superuser-login",
            RolePasswordArgs(
                host=host,
                port=db.port,
                database=db.name,
                user=db.superuser,
                password=password,
                connect_timeout_seconds=db.health_timeout_seconds,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.healthy]),
        )
        # Hand out the DSN only once the server is healthy and the password is in effect.
        self.dsn = pulumi.Output.secret(
            pulumi.Output.all(self.superuser_login.id, password).apply(
                lambda parts: _dsn(db.superuser, parts[1], host, db.port, db.name)
            )
        )
        self.image_digest = image.repo_digest
        self.image_id = image.image_id
        self.backup_volume_name = backup_volume.name
        self.register_outputs(
            {
                "network_name": self.network_name,
                "container_name": self.container_name,
                "host": self.host,
                "port": self.port,
                "database": self.database,
                "user": self.user,
                "dsn": self.dsn,
                "image_digest": self.image_digest,
            }
        )


def host_preflight(
    settings: DatabaseSettings,
    *,
    docker_host: str,
    docker_host_source: str,
    min_free_disk_gb: int,
    component_name: str = "timescaledb",
) -> HostPreflight:
    """The host preflight, created before the Docker provider (which depends on it).

    A top-level resource because it must exist before any Docker resource, the database
    component's included; the alias keeps the state it had as the component's child (its
    recorded PostgreSQL major is what refuses a major change at preview).
    """
    pg_major = settings.image.pg_major
    assert pg_major is not None  # guaranteed by settings validation
    return HostPreflight(
        f"{component_name}-preflight",
        HostPreflightArgs(
            docker_host=docker_host,
            docker_host_source=docker_host_source,
            min_free_disk_gb=min_free_disk_gb,
            memory_mb=settings.memory_mb,
            cpus=settings.cpus,
            pg_major=pg_major,
            image=settings.image.reference,
        ),
        opts=pulumi.ResourceOptions(
            aliases=[
                pulumi.Alias(parent=pulumi.create_urn(component_name, "ms5:database:TimescaleDb"))
            ]
        ),
    )


def _dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    from urllib.parse import quote

    host_part = f"[{host}]" if ":" in host else host
    return f"postgresql://{quote(user)}:{quote(password, safe='')}@{host_part}:{port}/{quote(database)}"


def _superuser_password(
    name: str, configured: Secret | None, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """The configured password, or one generated once and kept (encrypted) in state."""
    if configured is not None:
        return pulumi.Output.secret(configured.reveal())
    generated = random.RandomPassword(
        f"{name}-superuser-password",
        random.RandomPasswordArgs(length=32, special=False),
        opts=opts,
    )
    return generated.result
