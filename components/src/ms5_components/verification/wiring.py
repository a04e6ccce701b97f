"""The verification and benchmark part of a stack (what ``stack.py``'s section calls).

Order: the ``Verification`` depends on every resource of the stack built so far; the
``Benchmark`` depends on the ``Verification`` (and measures nothing when it is red); the
``DeployGate`` comes last, after both and after every other resource of the stack, and fails the
deploy on a red result once both have recorded it. Nothing depends on the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi

from ms5_components.backups.plan import BackupAgeLimit, backup_age_limit
from ms5_components.benchmark.provider import Benchmark, BenchmarkArgs
from ms5_components.settings import Settings, default_of, int_default_of
from ms5_components.verification.gate import DeployGate, DeployGateArgs
from ms5_components.verification.provider import (
    Verification,
    VerificationArgs,
    public_settings,
)

SCRAPE_ERROR_METRIC = "pg_exporter_last_scrape_error"


@dataclass(frozen=True, kw_only=True)
class VerificationSettings:
    """The validated ``verification*`` settings of one stack."""

    enabled: bool
    warn_only: tuple[str, ...]
    run_id: str
    backup_source: str
    settle_seconds: int
    timeout_seconds: int
    backup_age: BackupAgeLimit
    """The age limit of the newest verified backup: from ``ms5:backupSchedule`` when the backup
    scheduler runs, else ``ms5:backupMaxAgeHours``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> VerificationSettings:
        raw = settings.raw
        return cls(
            enabled=bool(raw.get("verificationEnabled", default_of("verificationEnabled"))),
            warn_only=tuple(str(c) for c in raw.get("verificationWarnOnly") or ()),  # type: ignore[attr-defined]
            run_id=str(raw.get("verificationRunId") or ""),
            backup_source=str(
                raw.get("verificationBackupSource") or default_of("verificationBackupSource")
            ),
            settle_seconds=_int(raw, "verificationSettleSeconds"),
            timeout_seconds=_int(raw, "verificationTimeoutSeconds"),
            backup_age=backup_age_limit(
                scheduled=settings.backups.enabled and settings.backups.scheduler_enabled,
                schedule=settings.backups.schedule,
                timeout_seconds=settings.backups.timeout_seconds,
                max_age_hours=_int(raw, "backupMaxAgeHours"),
            ),
        )


@dataclass(frozen=True, kw_only=True)
class BenchmarkSettings:
    """The validated ``benchmark*`` settings of one stack."""

    enabled: bool
    run_id: str
    rows: int
    batch_size: int
    workers: int
    query_runs: int
    warmup_runs: int
    min_ingest_rows_per_second: int
    max_query_p95_ms: int
    min_compression_percent: int
    gate: Literal["auto", "warn", "fail"]
    max_regression_percent: int
    gate_on_regression: bool
    time_budget_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BenchmarkSettings:
        raw = settings.raw
        gate = str(raw.get("benchmarkGate") or default_of("benchmarkGate"))
        return cls(
            enabled=bool(raw.get("benchmarkEnabled", default_of("benchmarkEnabled"))),
            run_id=str(raw.get("benchmarkRunId") or ""),
            rows=_int(raw, "benchmarkRows"),
            batch_size=_int(raw, "benchmarkBatchSize"),
            workers=_int(raw, "benchmarkWorkers"),
            query_runs=_int(raw, "benchmarkQueryRuns"),
            warmup_runs=_int(raw, "benchmarkWarmupRuns"),
            min_ingest_rows_per_second=_int(raw, "benchmarkMinIngestRowsPerSecond"),
            max_query_p95_ms=_int(raw, "benchmarkMaxQueryP95Ms"),
            min_compression_percent=_int(raw, "benchmarkMinCompressionPercent"),
            gate="fail" if gate == "fail" else ("warn" if gate == "warn" else "auto"),
            max_regression_percent=_int(raw, "benchmarkMaxRegressionPercent"),
            gate_on_regression=bool(
                raw.get("benchmarkGateOnRegression", default_of("benchmarkGateOnRegression"))
            ),
            time_budget_seconds=_int(raw, "benchmarkTimeBudgetSeconds"),
        )

    def gates(self, settings: Settings) -> bool:
        """Whether a missed threshold fails the deploy: fail, or auto in production."""
        return self.gate == "fail" or (self.gate == "auto" and settings.is_production)


def _int(raw: Mapping[str, object], key: str) -> int:
    """The parsed ``ms5:<key>``, or its declared default (settings built without it)."""
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else int_default_of(key)


@dataclass(kw_only=True)
class Checks:
    verification: Verification | None
    benchmark: Benchmark | None
    gate: DeployGate | None = None
    """Fails the deploy on a red result (None when neither check is enabled)."""


def build_checks(
    settings: Settings,
    *,
    database: pulumi.Input[str],
    dsn: pulumi.Input[str],
    db_image: pulumi.Input[str],
    schema_version: pulumi.Input[str],
    migration_checksums: pulumi.Input[dict[str, str]],
    migration_files: pulumi.Input[dict[str, str]],
    extension_version: pulumi.Input[str],
    expectations: dict[str, object],
    prometheus_url: pulumi.Input[str] | None,
    pushgateway_url: pulumi.Input[str] | None,
    grafana_url: pulumi.Input[str] | None,
    grafana_password: pulumi.Input[str] | None,
    containers: Mapping[str, pulumi.Input[str]],
    monitoring_files: Mapping[str, str],
    after: Sequence[pulumi.Resource],
    gate_after: Sequence[pulumi.Resource] = (),
) -> Checks:
    """Create the Verification (after ``after``), the Benchmark (after the Verification) and
    the DeployGate (after both and ``gate_after``: the resources neither waits for).

    ``containers`` are the stack's container names by role (the report's next steps name them);
    ``monitoring_files`` the text of every generated monitoring file the containers receive, by
    name (its digests are inputs: a changed file re-runs the verification)."""
    from ms5_components.monitoring import dashboard, metrics, prometheus_config

    ver = VerificationSettings.from_settings(settings)
    bench = BenchmarkSettings.from_settings(settings)
    verification = None
    if ver.enabled:
        monitored = prometheus_url is not None
        verification = Verification(
            "verification",
            VerificationArgs(
                stack=settings.stack,
                database=database,
                dsn=dsn,
                expectations=expectations,
                containers=containers,
                schema_version=schema_version,
                migration_checksums=migration_checksums,
                migration_files=migration_files,
                extension_version=extension_version,
                db_image=db_image,
                settings=public_settings(settings),
                run_id=ver.run_id,
                prometheus_url=prometheus_url,
                pushgateway_url=pushgateway_url,
                grafana_url=grafana_url,
                grafana_user=str(settings.raw.get("grafanaAdminUser") or ""),
                grafana_password=grafana_password,
                dashboard_uid=dashboard.DASHBOARD_UID if grafana_url is not None else "",
                dashboard_title=dashboard.DASHBOARD_TITLE if grafana_url is not None else "",
                dashboard_panels=dashboard.ORIGINAL_PANELS if grafana_url is not None else (),
                monitoring_files=file_digests(monitoring_files),
                exporter_jobs=metrics.EXPORTER_JOBS if monitored else (),
                # A built-in exporter metric: the custom queries do not move it between jobs.
                scrape_error_jobs=(
                    prometheus_config.job_for_metric(SCRAPE_ERROR_METRIC, ()) if monitored else ()
                ),
                backup_source=ver.backup_source,
                backup_age=ver.backup_age,
                warn_only=ver.warn_only,
                settle_seconds=ver.settle_seconds,
                timeout_seconds=ver.timeout_seconds,
            ),
            opts=pulumi.ResourceOptions(depends_on=list(after)),
        )
    benchmark = None
    if bench.enabled:
        benchmark = Benchmark(
            "benchmark",
            BenchmarkArgs(
                stack=settings.stack,
                dsn=dsn,
                thresholds={
                    "maxQueryP95Ms": float(bench.max_query_p95_ms),
                    "minCompressionRatio": bench.min_compression_percent / 100.0,
                    "minIngestRowsPerSecond": float(bench.min_ingest_rows_per_second),
                },
                gate=bench.gates(settings),
                db_image=db_image,
                schema_version=schema_version,
                run_id=bench.run_id,
                rows=bench.rows,
                batch_size=bench.batch_size,
                workers=bench.workers,
                query_runs=bench.query_runs,
                warmup_runs=bench.warmup_runs,
                time_budget_seconds=bench.time_budget_seconds,
                max_regression_percent=bench.max_regression_percent,
                gate_on_regression=bench.gate_on_regression,
                pushgateway_url=pushgateway_url,
                verification_status=verification.status if verification is not None else None,
            ),
            opts=pulumi.ResourceOptions(
                depends_on=[verification] if verification is not None else list(after)
            ),
        )
    return Checks(
        verification=verification,
        benchmark=benchmark,
        gate=build_gate(settings, verification, benchmark, gate_after),
    )


def file_digests(files: Mapping[str, str]) -> dict[str, str]:
    """File name -> sha256 of its text."""
    import hashlib

    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sorted(files.items())}


def build_gate(
    settings: Settings,
    verification: Verification | None,
    benchmark: Benchmark | None,
    gate_after: Sequence[pulumi.Resource],
) -> DeployGate | None:
    """The DeployGate of the checks that are enabled (None when neither is)."""
    checks = [r for r in (verification, benchmark) if r is not None]
    if not checks:
        return None
    return DeployGate(
        "deploy-gate",
        DeployGateArgs(
            stack=settings.stack,
            verification=(
                {"status": verification.status, "report": verification.report}
                if verification is not None
                else None
            ),
            benchmark=(
                {"status": benchmark.status, "findings": benchmark.findings}
                if benchmark is not None
                else None
            ),
        ),
        opts=pulumi.ResourceOptions(depends_on=[*checks, *gate_after]),
    )
