"""The backup part of a stack, built from settings (``stack.py`` calls these in its section)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

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


@dataclass(frozen=True, kw_only=True)
class BackupParts:
    backup: Backup
    drill: RestoreDrill | None


def build_backup(settings: Settings, *, migrations: Sequence[Migration], backup_dir: str) -> Backup:
    """The pre-change backup; the container and the migrations depend on it."""
    cfg = settings.backups
    return Backup(
        "backup",
        BackupArgs(
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
            migrations={m.filename: m.checksum for m in migrations},
            server=server_fingerprint(settings),
            label=cfg.label,
            jobs=cfg.jobs,
            compression=cfg.compression,
            keep_count=cfg.keep_count,
            max_age_days=cfg.max_age_days,
            mandatory=cfg.mandatory or settings.is_production,
            lock_wait_seconds=cfg.lock_wait_seconds,
            timeout_seconds=cfg.timeout_seconds,
            pushgateway_url=pushgateway_url(settings),
        ),
    )


def build_drill(
    settings: Settings, *, backup: Backup, backup_dir: str, after: Sequence[pulumi.Resource]
) -> RestoreDrill:
    cfg = settings.backups
    return RestoreDrill(
        "restore-drill",
        RestoreDrillArgs(
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
            backup=backup.lastBackup,
            enabled=cfg.drill_after_backup,
            jobs=cfg.jobs,
            timeout_seconds=cfg.timeout_seconds,
            pushgateway_url=pushgateway_url(settings),
        ),
        opts=pulumi.ResourceOptions(depends_on=list(after)),
    )
