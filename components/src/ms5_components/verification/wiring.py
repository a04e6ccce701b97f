"""The verification and benchmark part of a stack (what ``stack.py``'s section calls).

Order: the ``Verification`` depends on every resource of the stack built so far; the
``Benchmark`` depends on the ``Verification`` (and measures nothing when it is red); the
``DeployGate`` comes last, after both and after every other resource of the stack, and fails the
deploy on a red result once both have recorded it. Nothing depends on the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi

from ms5_components.benchmark.provider import Benchmark, BenchmarkArgs
from ms5_components.settings import Settings
from ms5_components.verification.gate import DeployGate, DeployGateArgs
from ms5_components.verification.provider import (
    Verification,
    VerificationArgs,
    public_settings,
)


@dataclass(frozen=True, kw_only=True)
class VerificationSettings:
    """The validated ``verification*`` settings of one stack."""

    enabled: bool
    warn_only: tuple[str, ...]
    run_id: str
    backup_source: str
    settle_seconds: int
    timeout_seconds: int
    backup_max_age_hours: int

    @classmethod
    def from_settings(cls, settings: Settings) -> VerificationSettings:
        raw = settings.raw
        return cls(
            enabled=bool(raw.get("verificationEnabled", True)),
            warn_only=tuple(str(c) for c in raw.get("verificationWarnOnly") or ()),  # type: ignore[attr-defined]
            run_id=str(raw.get("verificationRunId") or ""),
            backup_source=str(raw.get("verificationBackupSource") or "none"),
            settle_seconds=_int(raw.get("verificationSettleSeconds"), 60),
            timeout_seconds=_int(raw.get("verificationTimeoutSeconds"), 10),
            backup_max_age_hours=_int(raw.get("backupMaxAgeHours"), 26),
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
        gate = str(raw.get("benchmarkGate") or "auto")
        return cls(
            enabled=bool(raw.get("benchmarkEnabled", True)),
            run_id=str(raw.get("benchmarkRunId") or ""),
            rows=_int(raw.get("benchmarkRows"), 100_000),
            batch_size=_int(raw.get("benchmarkBatchSize"), 5_000),
            workers=_int(raw.get("benchmarkWorkers"), 2),
            query_runs=_int(raw.get("benchmarkQueryRuns"), 20),
            warmup_runs=_int(raw.get("benchmarkWarmupRuns"), 3),
            min_ingest_rows_per_second=_int(raw.get("benchmarkMinIngestRowsPerSecond"), 1_000),
            max_query_p95_ms=_int(raw.get("benchmarkMaxQueryP95Ms"), 100),
            min_compression_percent=_int(raw.get("benchmarkMinCompressionPercent"), 70),
            gate="fail" if gate == "fail" else ("warn" if gate == "warn" else "auto"),
            max_regression_percent=_int(raw.get("benchmarkMaxRegressionPercent"), 25),
            gate_on_regression=bool(raw.get("benchmarkGateOnRegression", False)),
            time_budget_seconds=_int(raw.get("benchmarkTimeBudgetSeconds"), 60),
        )

    def gates(self, settings: Settings) -> bool:
        """Whether a missed threshold fails the deploy: fail, or auto in production."""
        return self.gate == "fail" or (self.gate == "auto" and settings.is_production)


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


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
    after: Sequence[pulumi.Resource],
    gate_after: Sequence[pulumi.Resource] = (),
) -> Checks:
    """Create the Verification (after ``after``), the Benchmark (after the Verification) and
    the DeployGate (after both and ``gate_after``: the resources neither waits for)."""
    from ms5_components.monitoring import dashboard, metrics

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
                exporter_jobs=metrics.EXPORTER_JOBS if monitored else (),
                backup_source=ver.backup_source,
                backup_max_age_hours=ver.backup_max_age_hours,
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
