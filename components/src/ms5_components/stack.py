"""Wires the subsystems of one stack together: the one place that knows the whole graph.

``build_stack(settings)`` creates every component in dependency order and returns the values the
program exports. Each later capability adds its part in its own marked section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from ms5_components.backups.provider import Backup, RestoreDrill
from ms5_components.backups.wiring import (
    SchedulerInputs,
    build_backup,
    build_drill,
    build_scheduler,
    scheduler_container_name,
    scheduler_pushgateway_url,
)
from ms5_components.database.timescaledb import (
    BACKUP_DIR,
    TimescaleDb,
    TimescaleDbArgs,
    host_preflight,
)
from ms5_components.docker_common import container_labels
from ms5_components.lifecycle.preflight import HostPreflight
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.provider import (
    MigrationSet,
    MigrationSetArgs,
    migrations_dir,
    repair_entries,
    runner_settings,
)
from ms5_components.monitoring.wiring import Monitoring, build_monitoring
from ms5_components.settings import Settings


@dataclass(kw_only=True)
class Stack:
    """The components of one stack, for exports and tests."""

    settings: Settings
    database: TimescaleDb
    preflight: HostPreflight
    """The host preflight; the Docker provider (so every Docker resource) depends on it."""
    migrations: MigrationSet | None = None
    """The schema migrations; depend on it from every resource that reads the schema."""
    backup: Backup | None = None
    """The pre-change backup (None when ms5:backupEnabled is false)."""
    restore_drill: RestoreDrill | None = None
    """The drill of every new backup (None when backups are off)."""
    backup_scheduler: docker.Container | None = None
    """The backup service container (None when ms5:backupSchedulerEnabled is false)."""
    monitoring: Monitoring | None = None
    """Exporter, Prometheus (+ Pushgateway) and Grafana; None when monitoringEnabled is false."""
    gate: pulumi.Resource | None = None
    """The DeployGate (None when neither check is enabled); no output may read it."""
    outputs: dict[str, pulumi.Input[object]] = field(default_factory=dict)
    """Stack outputs, exported by the program."""


def labels_for(settings: Settings) -> dict[str, str]:
    """Labels on every Docker object: who manages it and for which stack."""
    return {
        "ms5.project": settings.project,
        "ms5.stack": settings.stack,
        "ms5.environment": settings.environment,
        "ms5.managed-by": "pulumi",
    }


def build_stack(settings: Settings) -> Stack:
    """Create every resource of the stack described by ``settings``."""
    # ---- host preflight: the first thing that can fail ----------------------------------------
    # Every Docker resource goes through `provider`, which depends on the preflight: no image
    # pull or other Docker call runs before the engine, its version, disk and memory are checked.
    preflight = host_preflight(
        settings.database,
        docker_host=settings.docker_host,
        docker_host_source=settings.docker_host_source,
        min_free_disk_gb=settings.preflight_min_free_disk_gb,
    )
    provider = docker.Provider(
        "docker",
        # context="": the engine is the resolved docker_host, never a DOCKER_CONTEXT the provider
        # would otherwise prefer over it.
        docker.ProviderArgs(host=settings.docker_host, context=""),
        opts=pulumi.ResourceOptions(depends_on=[preflight]),
    )
    on_docker = pulumi.ResourceOptions(providers=[provider])
    labels = labels_for(settings)
    migration_files = load_directory(migrations_dir(settings))

    # ---- backups: the pre-change backup ---------------------------------------------------------
    # Before the container is created or replaced and before the migrations (both depend on it),
    # so every risky change starts from a verified backup. It reads no resource output: it finds
    # the container by name (none on the first deploy).
    backup = (
        build_backup(settings, migrations=migration_files, backup_dir=BACKUP_DIR)
        if settings.backups.enabled
        else None
    )

    # ---- database -------------------------------------------------------------------------------
    database = TimescaleDb(
        "timescaledb",
        TimescaleDbArgs(
            prefix=settings.prefix(),
            settings=settings.database,
            bind_address=settings.bind_address,
            protect_data=settings.protect_data,
            docker_host=settings.docker_host,
            labels=labels,
            allow_non_loopback_bind=settings.allow_non_loopback_bind,
            container_depends_on=(backup,) if backup is not None else (),
        ),
        opts=on_docker,
    )
    stack = Stack(settings=settings, database=database, preflight=preflight, backup=backup)
    stack.outputs.update(
        {
            "dbHost": database.host,
            "dbPort": database.port,
            "dbName": database.database,
            "dbUser": database.user,
            "dbDsn": database.dsn,
            "dbContainer": database.container_name,
            "dbImageDigest": database.image_digest,
            "network": database.network_name,
        }
    )

    # ---- migrations --------------------------------------------------------------------------------
    # After the container is healthy (database.healthy); every resource that reads the schema depends
    # on `stack.migrations`. A bad migration file fails the program here, naming the file.
    migrations = MigrationSet(
        "migrations",
        MigrationSetArgs(
            database=database.database,
            dsn=database.dsn,
            server_id=database.container.id,
            db_image=settings.database.image.reference,
            migrations=migration_files,
            repair=repair_entries(settings),
            settings=runner_settings(settings),
        ),
        opts=pulumi.ResourceOptions(
            depends_on=[database.healthy, *([backup] if backup is not None else [])]
        ),
    )
    stack.migrations = migrations
    stack.outputs.update({"schemaVersion": migrations.current_version})

    # ---- backups: the restore drill -------------------------------------------------------------
    # Restores each new backup into a scratch database on the running server (after the
    # container change) and compares it with its manifest.
    if backup is not None:
        stack.restore_drill = build_drill(
            settings, backup=backup, backup_dir=BACKUP_DIR, after=[database.healthy]
        )
        if settings.backups.scheduler_enabled:
            stack.backup_scheduler = build_scheduler(
                settings,
                SchedulerInputs(
                    image_id=database.image_id,
                    network_name=database.network_name,
                    backup_volume_name=database.backup_volume_name,
                    password=database.password,
                    backup_dir=BACKUP_DIR,
                    pushgateway_url=scheduler_pushgateway_url(settings),
                    labels=container_labels(labels, "backup-scheduler"),
                    after=[database.healthy, migrations],
                ),
                on_docker,
            )
            stack.outputs["backupScheduler"] = stack.backup_scheduler.name
        stack.outputs.update(
            {
                "lastBackup": backup.lastBackup,
                "lastBackupResult": backup.lastResult,
                "restoreDrillRtoSeconds": stack.restore_drill.rtoSeconds,
            }
        )

    # ---- monitoring --------------------------------------------------------------------------------
    # The exporter starts after the migrations and after its pg_monitor role; Prometheus after the
    # exporter; Grafana after Prometheus and its read-only datasource role.
    if settings.raw.get("monitoringEnabled", True):
        monitoring = build_monitoring(
            settings,
            network_name=database.network_name,
            db_container_name=f"{settings.prefix()}-timescaledb",
            database=database.database,
            admin_dsn=database.dsn,
            migrations=migrations,
            labels=labels,
            docker_opts=on_docker,
        )
        stack.monitoring = monitoring
        stack.outputs.update(
            {
                "prometheusUrl": monitoring.prometheus.url,
                "pushgatewayUrl": monitoring.prometheus.pushgateway_url,
                "grafanaUrl": monitoring.grafana.url,
                "grafanaAdminPassword": monitoring.grafana_admin_password,
            }
        )

    # ---- verification and benchmark ---------------------------------------------------------------
    # Last: the Verification depends on every resource above and records a per-check report; the
    # Benchmark runs after it; the DeployGate, after both and everything else, fails the deploy
    # on a red result once the results (and so the stack outputs) are recorded.
    build_checks_section(stack, migrations)

    return stack


def _container_names(stack: Stack) -> dict[str, pulumi.Input[str]]:
    """The stack's container names by role, read from the containers themselves."""
    names: dict[str, pulumi.Input[str]] = {"database": stack.database.container_name}
    monitoring = stack.monitoring
    if monitoring is not None:
        names["exporter"] = monitoring.exporter.container_name
        names["prometheus"] = monitoring.prometheus.container.name
        names["pushgateway"] = monitoring.prometheus.pushgateway.name
        names["grafana"] = monitoring.grafana.container.name
    if stack.backup_scheduler is not None:
        # The name as text, not the container's output: the Verification does not wait for the
        # scheduler (only the DeployGate does).
        names["backupScheduler"] = scheduler_container_name(stack.settings)
    return names


def build_checks_section(stack: Stack, migrations: MigrationSet) -> None:
    """The Verification and Benchmark resources and their outputs."""
    from ms5_components.verification.expectations import derive
    from ms5_components.verification.wiring import build_checks

    settings, database, monitoring = stack.settings, stack.database, stack.monitoring
    after: list[pulumi.Resource] = [database.healthy, migrations]
    # This deploy's backup and drill first, so the backup check reads their results.
    after += [r for r in (stack.backup, stack.restore_drill) if r is not None]
    if monitoring is not None:
        after += [
            monitoring.exporter.container,
            monitoring.prometheus,
            monitoring.grafana,
        ]
    checks = build_checks(
        settings,
        database=database.database,
        dsn=database.dsn,
        db_image=database.image_digest,
        schema_version=migrations.current_version,
        migration_checksums=migrations.checksums,
        migration_files=migrations.migration_files,
        extension_version=migrations.timescaledb_version,
        expectations=derive(load_directory(migrations_dir(settings))).to_input(),
        prometheus_url=monitoring.prometheus.url if monitoring else None,
        pushgateway_url=monitoring.prometheus.pushgateway_url if monitoring else None,
        grafana_url=monitoring.grafana.url if monitoring else None,
        grafana_password=monitoring.grafana_admin_password if monitoring else None,
        containers=_container_names(stack),
        monitoring_files=monitoring.files.deployed() if monitoring else {},
        after=after,
        # The resources the Verification does not wait for: the gate comes after everything.
        gate_after=[r for r in (stack.backup_scheduler,) if r is not None],
    )
    # No stack output reads the gate: the outputs must resolve, and so reach the engine, before
    # it fails the deploy.
    stack.gate = checks.gate
    if checks.verification is not None:
        stack.outputs.update(
            {
                "verificationStatus": checks.verification.status,
                "verificationReport": checks.verification.report,
                "lastGood": checks.verification.lastGood,
            }
        )
    if checks.benchmark is not None:
        stack.outputs.update(
            {
                "benchmarkStatus": checks.benchmark.status,
                "benchmarkResults": checks.benchmark.results,
                "benchmarkFindings": checks.benchmark.findings,
            }
        )
