"""The backup part of a stack, built from settings (``stack.py`` calls these in its section)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import pulumi
import pulumi_docker as docker

from ms5_components.backups.provider import Backup, BackupArgs, RestoreDrill, RestoreDrillArgs
from ms5_components.migrations.plan import Migration
from ms5_components.settings import Settings

SOCKET_DIR = "/var/run/postgresql"
"""The server's local socket inside the database container (the image trusts local
connections, so the backup tools need no password there)."""


def db_container_name(settings: Settings) -> str:
    return f"{settings.prefix()}-timescaledb"


def server_fingerprint(settings: Settings) -> dict[str, object]:
    """The settings whose change replaces the database container, image included (readable, so
    a preview shows which one changed)."""
    db = settings.database
    return {
        "bindAddress": settings.bind_address,
        "cpus": db.cpus,
        "healthTimeoutSeconds": db.health_timeout_seconds,
        "image": db.image.reference,
        "maxConnections": db.max_connections,
        "memoryMb": db.memory_mb,
        "name": db.name,
        "port": db.port,
        "restartPolicy": db.restart_policy,
        "serverSettings": [f"{k}={v}" for k, v in db.server_settings],
        "shmSizeMb": db.shm_size_mb,
        "superuser": db.superuser,
        "telemetry": db.telemetry,
    }


def pushgateway_url(settings: Settings) -> str:
    from ms5_components.docker_common import reachable_host

    if not settings.raw.get("monitoringEnabled", True):
        return ""
    return f"http://{reachable_host(settings.bind_address)}:{settings.raw.get('pushgatewayPort')}"


def scheduler_pushgateway_url(settings: Settings) -> str:
    """The Pushgateway as the backup service reaches it: by name on the stack network."""
    if not settings.raw.get("monitoringEnabled", True):
        return ""
    return f"http://{settings.prefix()}-pushgateway:9091"


class _SharedArgs(TypedDict):
    """The inputs a Backup and a RestoreDrill share: the same server, executor and limits."""

    database: str
    executor: dict[str, str]
    backup_dir: str
    connection: dict[str, str]
    jobs: int
    timeout_seconds: int
    pushgateway_url: str


def _shared_args(settings: Settings, backup_dir: str) -> _SharedArgs:
    """The connection next to the server (its local socket, as the superuser), the executor that
    runs the tools in the database container, and the limits both resources take from settings."""
    cfg = settings.backups
    return _SharedArgs(
        database=settings.database.name,
        executor={
            "kind": "docker",
            "dockerHost": settings.docker_host,
            "container": db_container_name(settings),
        },
        backup_dir=backup_dir,
        connection={
            "PGHOST": SOCKET_DIR,
            "PGPORT": "5432",
            "PGUSER": settings.database.superuser,
        },
        jobs=cfg.jobs,
        timeout_seconds=cfg.timeout_seconds,
        pushgateway_url=pushgateway_url(settings),
    )


def build_backup(settings: Settings, *, migrations: Sequence[Migration], backup_dir: str) -> Backup:
    """The pre-change backup; the container and the migrations depend on it."""
    cfg = settings.backups
    return Backup(
        "backup",
        BackupArgs(
            **_shared_args(settings, backup_dir),
            migrations={m.filename: m.checksum for m in migrations},
            server=server_fingerprint(settings),
            label=cfg.label,
            compression=cfg.compression,
            keep_count=cfg.keep_count,
            max_age_days=cfg.max_age_days,
            mandatory=cfg.mandatory or settings.is_production,
            lock_wait_seconds=cfg.lock_wait_seconds,
        ),
    )


def build_drill(
    settings: Settings, *, backup: Backup, backup_dir: str, after: Sequence[pulumi.Resource]
) -> RestoreDrill:
    return RestoreDrill(
        "restore-drill",
        RestoreDrillArgs(
            **_shared_args(settings, backup_dir),
            backup=backup.lastBackup,
            enabled=settings.backups.drill_after_backup,
        ),
        opts=pulumi.ResourceOptions(depends_on=list(after)),
    )


SCRIPT_PATH = "/usr/local/bin/ms5-backup"
"""Where the backup script is uploaded in the scheduler container."""
PASSWORD_PATH = "/run/secrets/ms5-backup-password"  # noqa: S105 - a path
STATE_PATH = "/tmp/ms5-backup.state"  # noqa: S108 - the container's own /tmp
"""The last cycle's outcome, read by the container's health check."""


@dataclass(frozen=True, kw_only=True)
class SchedulerInputs:
    """What the backup service needs from the rest of the stack."""

    image_id: pulumi.Input[str]
    network_name: pulumi.Input[str]
    backup_volume_name: pulumi.Input[str]
    password: pulumi.Input[str]
    backup_dir: str
    pushgateway_url: str
    """On the stack network ("" without monitoring)."""
    labels: Sequence[docker.ContainerLabelArgs]
    after: Sequence[pulumi.Resource]


def scheduler_container_name(settings: Settings) -> str:
    """The backup scheduler's container name (also its host name)."""
    return f"{settings.prefix()}-backup-scheduler"


def build_scheduler(
    settings: Settings, inputs: SchedulerInputs, opts: pulumi.ResourceOptions
) -> docker.Container:
    """The backup service: a container of the database's image that runs the backup script on
    ``ms5:backupSchedule`` (backup, verify, retention, drill, push to the Pushgateway), so the
    database is backed up without anybody deploying."""
    from ms5_components.backups.script import render_script
    from ms5_components.docker_common import DAEMON_MERGED, go_duration

    cfg = settings.backups
    name = scheduler_container_name(settings)
    envs = {
        "MS5_BACKUP_DIR": inputs.backup_dir,
        "MS5_DATABASE": settings.database.name,
        "MS5_JOBS": str(cfg.jobs),
        "MS5_COMPRESSION": cfg.compression,
        "MS5_KEEP_COUNT": str(cfg.keep_count),
        "MS5_MAX_AGE_DAYS": str(cfg.max_age_days),
        "MS5_SCHEDULE": cfg.schedule,
        "MS5_DRILL": "1" if cfg.drill_after_backup else "0",
        "MS5_LOCK_WAIT_SECONDS": str(cfg.lock_wait_seconds),
        "MS5_LOCK_STALE_SECONDS": str(cfg.timeout_seconds),
        "MS5_PUSHGATEWAY_URL": inputs.pushgateway_url,
        "MS5_PASSWORD_FILE": PASSWORD_PATH,
        "MS5_REASON": "scheduled",
        "MS5_STATE_FILE": STATE_PATH,
        "PGHOST": "timescaledb",
        "PGPORT": "5432",
        "PGUSER": settings.database.superuser,
    }
    return docker.Container(
        "backups-backup-scheduler",
        docker.ContainerArgs(
            name=name,
            hostname=name,
            image=inputs.image_id,
            user="postgres",
            entrypoints=["/bin/sh"],
            command=[SCRIPT_PATH, "loop"],
            envs=[f"{k}={v}" for k, v in sorted(envs.items())],
            uploads=[
                docker.ContainerUploadArgs(
                    file=SCRIPT_PATH, content=render_script(), permissions="0555"
                ),
                docker.ContainerUploadArgs(
                    file=PASSWORD_PATH,
                    content=pulumi.Output.secret(inputs.password),
                    permissions="0444",
                ),
            ],
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=inputs.backup_volume_name, container_path=inputs.backup_dir
                )
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=inputs.network_name)],
            # Healthy until a scheduled cycle fails (the script records each cycle's outcome).
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "/bin/sh", "-c", f"! grep -q '^failed' {STATE_PATH} 2>/dev/null"],
                interval=go_duration(60),
                timeout=go_duration(10),
                retries=1,
                start_period=go_duration(30),
            ),
            wait=True,
            wait_timeout=120,
            memory=256,
            memory_swap=256,
            # The read-back form of the provider (a "1" would differ from state on every `up`).
            cpus="1.0",
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts={"max-size": settings.database.log_max_size, "max-file": "3"},
            labels=list(inputs.labels),
        ),
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                depends_on=list(inputs.after),
                delete_before_replace=True,
                ignore_changes=list(DAEMON_MERGED),
                additional_secret_outputs=["uploads"],
            ),
        ),
    )
