"""prometheus.yml built from typed data (never a text template), serialized with sorted keys.

The four exporter jobs the old system had (core 30 s, hypertables 60 s, compression 300 s,
performance 30 s) scrape the one postgres_exporter; each keeps only its share of the metrics
(``metric_relabel_configs`` keep-lists), so every series is stored once, at its job's interval.
:func:`job_for_metric` answers which job keeps a name; the integration tests check the shares
against what the real exporter emits (each name kept by exactly one job, or deliberately dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import yaml

from ms5_components.errors import MonitoringError
from ms5_components.monitoring import metrics
from ms5_components.monitoring.exporter_queries import CustomQuery

RelabelAction = Literal["replace", "keep", "drop", "labeldrop", "labelkeep"]


@dataclass(frozen=True, kw_only=True)
class Relabel:
    """One relabel rule (``relabel_configs`` or ``metric_relabel_configs``)."""

    action: RelabelAction = "replace"
    """What the rule does."""
    source_labels: tuple[str, ...] = ()
    """Labels whose values (joined by ``;``) are matched against :attr:`regex`."""
    regex: str | None = None
    """Anchored regular expression; Prometheus' default ``(.*)`` when None."""
    target_label: str | None = None
    """Label written by ``replace``."""
    replacement: str | None = None
    """Value written by ``replace``; Prometheus' default ``$1`` when None."""

    def to_data(self) -> dict[str, object]:
        """The YAML mapping."""
        data: dict[str, object] = {"action": self.action}
        if self.source_labels:
            data["source_labels"] = list(self.source_labels)
        if self.regex is not None:
            data["regex"] = self.regex
        if self.target_label is not None:
            data["target_label"] = self.target_label
        if self.replacement is not None:
            data["replacement"] = self.replacement
        return data


@dataclass(frozen=True, kw_only=True)
class ScrapeJob:
    """One ``scrape_configs`` entry with static targets."""

    name: str
    """``job_name``."""
    interval_seconds: int
    """``scrape_interval``."""
    timeout_seconds: int
    """``scrape_timeout`` (at most the interval)."""
    targets: tuple[str, ...]
    """``host:port`` of each target."""
    metrics_path: str = "/metrics"
    """Path scraped."""
    honor_labels: bool = False
    """Keep the target's own ``job``/``instance`` labels (the Pushgateway needs it)."""
    relabel: tuple[Relabel, ...] = ()
    """Target relabeling (before the scrape)."""
    metric_relabel: tuple[Relabel, ...] = ()
    """Sample relabeling (after the scrape), e.g. the job's keep-list."""

    def to_data(self) -> dict[str, object]:
        """The YAML mapping."""
        if self.timeout_seconds > self.interval_seconds:
            raise MonitoringError(
                f"scrape job {self.name}: timeout {self.timeout_seconds}s exceeds the interval "
                f"{self.interval_seconds}s"
            )
        data: dict[str, object] = {
            "job_name": self.name,
            "scrape_interval": f"{self.interval_seconds}s",
            "scrape_timeout": f"{self.timeout_seconds}s",
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": list(self.targets)}],
        }
        if self.honor_labels:
            data["honor_labels"] = True
        if self.relabel:
            data["relabel_configs"] = [r.to_data() for r in self.relabel]
        if self.metric_relabel:
            data["metric_relabel_configs"] = [r.to_data() for r in self.metric_relabel]
        return data


@dataclass(frozen=True, kw_only=True)
class PrometheusConfig:
    """The whole prometheus.yml."""

    scrape_interval_seconds: int
    """Global default scrape interval."""
    evaluation_interval_seconds: int
    """How often rules are evaluated."""
    external_labels: Mapping[str, str]
    """Labels added to every alert and series leaving this Prometheus."""
    rule_files: tuple[str, ...]
    """Rule file paths as seen by Prometheus."""
    jobs: tuple[ScrapeJob, ...]
    """Scrape jobs."""

    def to_data(self) -> dict[str, object]:
        """The YAML document as plain data."""
        names = [job.name for job in self.jobs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MonitoringError(f"scrape job names must be unique; repeated: {duplicates}")
        return {
            "global": {
                "scrape_interval": f"{self.scrape_interval_seconds}s",
                "evaluation_interval": f"{self.evaluation_interval_seconds}s",
                "external_labels": dict(self.external_labels),
            },
            "rule_files": list(self.rule_files),
            "scrape_configs": [job.to_data() for job in self.jobs],
        }

    def render(self) -> str:
        """prometheus.yml text: sorted keys, stable across runs."""
        header = "# Generated by ms5_components.monitoring.prometheus_config; do not edit.\n"
        return header + yaml.safe_dump(self.to_data(), sort_keys=True, width=100)


# ------------------------------------------------------------------------------------------------
# Which exporter job keeps which metric
# ------------------------------------------------------------------------------------------------

INSTANCE_LABEL = "timescaledb"
"""Value of ``instance`` on every exporter series: the database, not the exporter's address."""

# Settings the rules and the dashboard use; the other ~300 pg_settings_* series are dropped.
_KEPT_SETTINGS = (
    "max_connections",
    "superuser_reserved_connections",
    "reserved_connections",
    "shared_buffers_bytes",
    "max_wal_size_bytes",
    "autovacuum_freeze_max_age",
    "autovacuum_multixact_freeze_max_age",
    "statement_timeout_seconds",
)

_BUILTIN_SHARES: Mapping[str, tuple[str, ...]] = {
    metrics.JOB_CORE: (
        "pg_up",
        "pg_static",
        "pg_postmaster_start_time_seconds",
        "pg_database_.+",
        "pg_stat_database_.+",
        "pg_stat_activity_.+",
        "pg_locks_count",
        "pg_long_running_transactions.*",
        "pg_roles_.+",
        "pg_replication_slot_.+",
        "pg_stat_archiver_.+",
        f"pg_settings_({'|'.join(_KEPT_SETTINGS)})",
        "pg_exporter_.+",
        "pg_scrape_collector_.+",
        "postgres_exporter_build_info",
        "process_.+",
    ),
    metrics.JOB_HYPERTABLES: (),
    metrics.JOB_COMPRESSION: (),
    metrics.JOB_PERFORMANCE: (
        "pg_stat_statements_.+",
        "pg_stat_bgwriter_.+",
        "pg_stat_checkpointer_.+",
        "pg_wal_.+",
    ),
}

DROPPED_METRICS: tuple[str, ...] = (
    "go_.+",
    "promhttp_.+",
    "postgres_exporter_config_.+",
    "pg_settings_.+",
)
"""Exporter metrics no job keeps: Go runtime, HTTP handler, and the unused server settings."""

JOB_INTERVALS: Mapping[str, int] = {
    metrics.JOB_CORE: 30,
    metrics.JOB_HYPERTABLES: 60,
    metrics.JOB_COMPRESSION: 300,
    metrics.JOB_PERFORMANCE: 30,
}
"""Scrape interval (seconds) of each exporter job: the intervals users had."""


def exporter_shares(queries: tuple[CustomQuery, ...]) -> dict[str, tuple[str, ...]]:
    """Per exporter job, the anchored name patterns it keeps (built-ins + its custom queries)."""
    shares = {job: list(patterns) for job, patterns in _BUILTIN_SHARES.items()}
    for query in queries:
        if query.scrape_job not in shares:
            raise MonitoringError(
                f"custom query {query.namespace} names unknown scrape job {query.scrape_job!r}"
            )
        shares[query.scrape_job].extend(re.escape(name) for name in query.metric_names)
    return {job: tuple(patterns) for job, patterns in shares.items()}


def job_for_metric(name: str, queries: tuple[CustomQuery, ...]) -> tuple[str, ...]:
    """The exporter jobs that keep metric ``name`` (exactly one for a well-partitioned name)."""
    return tuple(
        job
        for job, patterns in exporter_shares(queries).items()
        if any(re.fullmatch(p, name) for p in patterns)
    )


def is_dropped(name: str) -> bool:
    """Whether ``name`` is one of :data:`DROPPED_METRICS` (and kept by no job)."""
    return any(re.fullmatch(p, name) for p in DROPPED_METRICS)


@dataclass(frozen=True, kw_only=True)
class Targets:
    """Where Prometheus finds what it scrapes, as seen from the Prometheus process."""

    exporter: str
    """``host:port`` of postgres_exporter."""
    pushgateway: str
    """``host:port`` of the Pushgateway."""
    prometheus: str
    """``host:port`` of Prometheus itself."""


@dataclass(frozen=True, kw_only=True)
class ConfigInputs:
    """Everything :func:`build_config` needs."""

    targets: Targets
    """Scrape targets."""
    rule_files: tuple[str, ...]
    """Rule file paths inside the Prometheus container."""
    external_labels: Mapping[str, str] = field(default_factory=dict)
    """E.g. ``{"stack": "staging"}``."""
    exporter_timeout_seconds: int = 20
    """Scrape timeout of the exporter jobs (every query runs within it)."""
    interval_override_seconds: int | None = None
    """Tests only: every job and the rule evaluation at this interval (same jobs and filters)."""


def build_config(inputs: ConfigInputs, queries: tuple[CustomQuery, ...]) -> PrometheusConfig:
    """The Prometheus configuration for one stack."""
    shares = exporter_shares(queries)
    set_instance = Relabel(target_label="instance", replacement=INSTANCE_LABEL)
    jobs: list[ScrapeJob] = []
    for job in metrics.EXPORTER_JOBS:
        interval = inputs.interval_override_seconds or JOB_INTERVALS[job]
        keep = "|".join(shares[job])
        jobs.append(
            ScrapeJob(
                name=job,
                interval_seconds=interval,
                timeout_seconds=min(inputs.exporter_timeout_seconds, interval),
                targets=(inputs.targets.exporter,),
                relabel=(set_instance,),
                metric_relabel=(
                    Relabel(action="keep", source_labels=("__name__",), regex=f"({keep})"),
                    # The exporter's own "server" label repeats the DSN host; instance names it.
                    Relabel(action="labeldrop", regex="server"),
                ),
            )
        )
    other_interval = inputs.interval_override_seconds or 60
    jobs.append(
        ScrapeJob(
            name=metrics.JOB_PUSHGATEWAY,
            interval_seconds=other_interval,
            timeout_seconds=min(10, other_interval),
            targets=(inputs.targets.pushgateway,),
            honor_labels=True,
        )
    )
    jobs.append(
        ScrapeJob(
            name=metrics.JOB_PROMETHEUS,
            interval_seconds=other_interval,
            timeout_seconds=min(10, other_interval),
            targets=(inputs.targets.prometheus,),
        )
    )
    return PrometheusConfig(
        scrape_interval_seconds=inputs.interval_override_seconds or 30,
        evaluation_interval_seconds=inputs.interval_override_seconds or 30,
        external_labels={"platform": "ms5", **inputs.external_labels},
        rule_files=inputs.rule_files,
        jobs=tuple(jobs),
    )
