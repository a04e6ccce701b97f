"""Prometheus recording and alerting rules, and their promtool unit tests, built as data.

An :class:`AlertRule` is a *signal* (a PromQL expression that measures one thing, in a human unit:
percent, seconds, hours) compared with a threshold per severity :class:`Tier`. Keeping the signal
separate lets the integration tests ask a real Prometheus for each signal and require data, while
the full expression (``(signal) > threshold``) is normally empty. Summaries and descriptions use a
tiny template language that renders both to Prometheus' Go templates and, for the unit tests, to
the exact text Prometheus will produce:

- ``{value}`` — the signal's value with one decimal (``{{ printf "%.1f" $value }}``);
- ``{labels.NAME}`` — a label of the alert (``{{ $labels.NAME }}``);
- ``{threshold}`` — the tier's threshold, filled in at generation time;
- ``{lookup.NAME}`` — a label of another series that matches the alert's labels (a
  :class:`Lookup` of the rule, e.g. the server's error message of a failing job), or the
  lookup's fallback text when there is none.

Each alert carries :class:`AlertCase` examples (input series, an evaluation time, which tiers fire
and with which labels); :func:`render_rule_tests` turns them into ``promtool test rules`` input, so
every alert is shown to fire when it should and to stay quiet otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import yaml

from ms5_components.errors import MonitoringError
from ms5_components.monitoring import metrics

Severity = Literal["warning", "critical"]
Op = Literal[">", "<", ">=", "<=", "=="]

RUNBOOK_DOC = "docs/monitoring.md"
"""The runbook: one section per alert, anchored by the alert name in lower case."""

_PLACEHOLDER = re.compile(
    r"\{(value|threshold|labels\.([a-z_][a-z0-9_]*)|lookup\.([a-z_][a-z0-9_]*))\}"
)


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """A label of another series shown in an alert's text (``{lookup.NAME}``)."""

    metric: str
    """The series to look up."""
    match: tuple[str, ...]
    """Alert labels the series must have with the same values."""
    label: str
    """The label of the found series that is shown."""
    missing: str
    """Shown when no such series exists."""

    def go_template(self) -> str:
        """Prometheus' template: query the series, print the label of the first one found."""
        selector = ",".join(f"{name}=%q" for name in self.match)
        args = " ".join(f"$labels.{name}" for name in self.match)
        return (
            f'{{{{ with printf "{self.metric}{{{selector}}}" {args} | query }}}}'
            f'{{{{ . | first | label "{self.label}" }}}}{{{{ else }}}}{self.missing}{{{{ end }}}}'
        )


def _go_template(text: str, threshold: str, lookups: Mapping[str, Lookup]) -> str:
    def sub(match: re.Match[str]) -> str:
        if match.group(1) == "value":
            return '{{ printf "%.1f" $value }}'
        if match.group(1) == "threshold":
            return threshold
        if match.group(3) is not None:
            return lookups[match.group(3)].go_template()
        return "{{ $labels." + match.group(2) + " }}"

    return _PLACEHOLDER.sub(sub, text)


def _expected_text(
    text: str,
    threshold: str,
    labels: Mapping[str, str],
    value: float | None,
    lookups: Mapping[str, str] | None = None,
) -> str:
    def sub(match: re.Match[str]) -> str:
        if match.group(1) == "value":
            if value is None:
                raise MonitoringError(f"a test case of {text!r} needs the expected value")
            return f"{value:.1f}"
        if match.group(1) == "threshold":
            return threshold
        if match.group(3) is not None:
            return (lookups or {})[match.group(3)]
        name = match.group(2)
        return labels.get(name, "")

    return _PLACEHOLDER.sub(sub, text)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True, kw_only=True)
class Tier:
    """One severity of an alert."""

    severity: Severity
    """Label ``severity``."""
    threshold: float
    """The signal is compared with this value."""
    for_minutes: int
    """How long the condition must hold before the alert fires."""
    signal: str | None = None
    """A tier-specific signal (e.g. a shorter prediction horizon); the alert's when None."""


@dataclass(frozen=True, kw_only=True)
class Condition:
    """An extra condition ANDed to every tier (e.g. "enough activity to judge a ratio")."""

    signal: str
    """PromQL measuring the guarded quantity."""
    op: Op
    """Comparison."""
    threshold: float
    """Compared value."""

    @property
    def expr(self) -> str:
        """The condition as PromQL."""
        return f"({self.signal}) {self.op} {_number(self.threshold)}"


@dataclass(frozen=True, kw_only=True)
class Series:
    """An input series of a promtool unit test."""

    series: str
    """Metric name and labels, e.g. ``pg_up{instance="timescaledb"}``."""
    values: str
    """promtool expanding notation, one sample per test interval (``1x10 0x20``)."""


@dataclass(frozen=True, kw_only=True)
class AlertCase:
    """One scenario: given these series, at this time, these tiers fire (possibly none)."""

    title: str
    """What the scenario shows."""
    series: tuple[Series, ...]
    """Input series (1 minute apart)."""
    eval_minutes: int
    """When the alerts are checked."""
    firing: tuple[Severity, ...]
    """Tiers expected to fire; empty: none."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of the firing alert besides alertname and severity."""
    value: float | None = None
    """The signal's value then (needed when the text shows ``{value}``)."""
    lookups: Mapping[str, str] = field(default_factory=dict)
    """Expected text of each ``{lookup.NAME}`` (the lookup's ``missing`` text when absent)."""
    step_minutes: int = 1
    """Sample spacing and rule-evaluation interval; 60 for scenarios spanning days."""


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One alert with its severity tiers, texts and unit-test scenarios."""

    name: str
    """Alert name (CamelCase, ``Ms5`` prefix); also the runbook anchor in lower case."""
    group: str
    """Rule group."""
    signal: str
    """PromQL measuring the quantity, in the unit named by :attr:`unit`."""
    op: Op
    """How the signal is compared with each tier's threshold."""
    tiers: tuple[Tier, ...]
    """Severities, each with its threshold and duration."""
    unit: str
    """Unit of the signal (docs)."""
    summary: str
    """One line (template)."""
    description: str
    """What is wrong and what it risks (template)."""
    cases: tuple[AlertCase, ...]
    """Unit-test scenarios; at least one that fires and one that does not."""
    guard: Condition | None = None
    """Extra condition ANDed to every tier."""
    expected_empty: str | None = None
    """Why the signal may return no data on a healthy server (integration check), else None."""
    lookups: Mapping[str, Lookup] = field(default_factory=dict)
    """Series whose labels the texts show (``{lookup.NAME}``)."""

    @property
    def runbook_url(self) -> str:
        """Link to the runbook section."""
        return f"{RUNBOOK_DOC}#{self.name.lower()}"

    def signal_for(self, tier: Tier) -> str:
        """The signal a tier compares."""
        return tier.signal or self.signal

    def expr(self, tier: Tier) -> str:
        """The full alert expression of a tier."""
        expr = f"({self.signal_for(tier)}) {self.op} {_number(tier.threshold)}"
        if self.guard is not None:
            expr = f"{expr} and {self.guard.expr}"
        return expr

    def tier(self, severity: Severity) -> Tier:
        """The tier of a severity."""
        for tier in self.tiers:
            if tier.severity == severity:
                return tier
        raise MonitoringError(f"alert {self.name} has no {severity} tier")


@dataclass(frozen=True, kw_only=True)
class RecordingRule:
    """A recording rule."""

    record: str
    """Name of the recorded series (``level:metric:operation``)."""
    expr: str
    """PromQL."""
    description: str
    """What it measures (docs)."""
    expected_empty: str | None = None
    """Why it may return no data on a healthy server, else None."""


@dataclass(frozen=True, kw_only=True)
class AlertSettings:
    """The stack settings the rules depend on."""

    backup_max_age_hours: int = 26
    """A backup older than this warns; twice this is critical."""
    restore_drill_max_age_hours: int = 192
    """A restore drill older than this warns; twice this is critical."""
    storage_budget_bytes: int = 50 * 1024**3
    """Disk the database (data + WAL) may use; percentages of it drive the storage alerts."""


# ------------------------------------------------------------------------------------------------
# Helpers for test series
# ------------------------------------------------------------------------------------------------

_INSTANCE = "timescaledb"


def _s(name: str, job: str, values: str, **labels: str) -> Series:
    all_labels = {"instance": _INSTANCE, "job": job, **labels}
    rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(all_labels.items()))
    return Series(series=f"{name}{{{rendered}}}", values=values)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _pushed(name: str, push_job: str, values: str, **labels: str) -> Series:
    # The Pushgateway's empty ``instance`` is no label at all in Prometheus.
    all_labels = {"job": push_job, **labels}
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return Series(series=f"{name}{{{rendered}}}", values=values)


_CORE = metrics.JOB_CORE
_HT = metrics.JOB_HYPERTABLES
# What every job run by TimescaleDB's scheduler fails with on PostgreSQL 17.12.
_PORTAL_ERROR = 'cannot drop portal "" while it is being set up'

_COMP = metrics.JOB_COMPRESSION
_PERF = metrics.JOB_PERFORMANCE
_EXPORTER_JOBS_RE = "timescaledb-.*"

# ------------------------------------------------------------------------------------------------
# Recording rules
# ------------------------------------------------------------------------------------------------

_USER_DBS = 'datname!~"template.*"'

RECORDING_RULES: tuple[RecordingRule, ...] = (
    RecordingRule(
        record="ms5:pg_connections:ratio",
        expr="sum by (instance) (pg_stat_database_numbackends)"
        " / on (instance) max by (instance) (pg_settings_max_connections)",
        description="Backends connected, as a fraction of max_connections.",
    ),
    RecordingRule(
        record="ms5:pg_cache_hit:ratio_rate5m",
        expr=f"sum by (instance, datname) (rate(pg_stat_database_blks_hit{{{_USER_DBS}}}[5m]))"
        f" / (sum by (instance, datname) (rate(pg_stat_database_blks_hit{{{_USER_DBS}}}[5m]))"
        f" + sum by (instance, datname) (rate(pg_stat_database_blks_read{{{_USER_DBS}}}[5m])))",
        description="Share of block reads served from shared buffers, per database (NaN when "
        "idle).",
    ),
    RecordingRule(
        record="ms5:pg_blocks_accessed:rate5m",
        expr=f"sum by (instance, datname) (rate(pg_stat_database_blks_hit{{{_USER_DBS}}}[5m])"
        f" + rate(pg_stat_database_blks_read{{{_USER_DBS}}}[5m]))",
        description="Blocks accessed per second, per database (cache ratio guard).",
    ),
    RecordingRule(
        record="ms5:storage_bytes",
        expr="sum by (instance) (pg_database_size_bytes)"
        " + on (instance) sum by (instance) (pg_wal_size_bytes)",
        description="Bytes the server stores: all databases plus WAL.",
    ),
)


# ------------------------------------------------------------------------------------------------
# Alerts
# ------------------------------------------------------------------------------------------------


def alert_rules(settings: AlertSettings) -> tuple[AlertRule, ...]:
    """Every alert, with thresholds from ``settings``."""
    budget = settings.storage_budget_bytes
    gib = 1024**3
    backup_h = settings.backup_max_age_hours
    drill_h = settings.restore_drill_max_age_hours
    db_labels = {"instance": _INSTANCE, "job": _CORE}
    return (
        # ---------------------------------------------------------------- availability
        AlertRule(
            name="Ms5DatabaseDown",
            group="ms5-availability",
            signal=f'pg_up{{job="{_CORE}"}}',
            op="==",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=1),
                Tier(severity="critical", threshold=0, for_minutes=5),
            ),
            unit="1 = reachable, 0 = not",
            summary="TimescaleDB {labels.instance} is unreachable",
            description="postgres_exporter cannot connect to the database (pg_up = 0): the "
            "server is down, refuses the monitoring role, or is out of connections.",
            cases=(
                AlertCase(
                    title="down for 3 minutes: warning",
                    series=(_s("pg_up", _CORE, "1x10 0x10"),),
                    eval_minutes=13,
                    firing=("warning",),
                    labels=db_labels,
                ),
                AlertCase(
                    title="down for 8 minutes: warning and critical",
                    series=(_s("pg_up", _CORE, "1x10 0x10"),),
                    eval_minutes=18,
                    firing=("warning", "critical"),
                    labels=db_labels,
                ),
                AlertCase(
                    title="up: quiet",
                    series=(_s("pg_up", _CORE, "1x20"),),
                    eval_minutes=18,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5ExporterDown",
            group="ms5-availability",
            signal=f'up{{job=~"{_EXPORTER_JOBS_RE}"}}',
            op="==",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=2),
                Tier(severity="critical", threshold=0, for_minutes=10),
            ),
            unit="1 = scraped, 0 = not",
            summary="Prometheus cannot scrape postgres_exporter (job {labels.job})",
            description="The exporter container is down or unreachable from Prometheus; every "
            "database alert is blind until it is back.",
            cases=(
                AlertCase(
                    title="scrapes failing for 5 minutes: warning",
                    series=(_s("up", _CORE, "1x5 0x20"),),
                    eval_minutes=10,
                    firing=("warning",),
                    labels=db_labels,
                ),
                AlertCase(
                    title="scrapes failing for 15 minutes: critical too",
                    series=(_s("up", _CORE, "1x5 0x20"),),
                    eval_minutes=20,
                    firing=("warning", "critical"),
                    labels=db_labels,
                ),
                AlertCase(
                    title="scraped: quiet",
                    series=(_s("up", _CORE, "1x20"),),
                    eval_minutes=20,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5PushgatewayDown",
            group="ms5-availability",
            signal=f'up{{job="{metrics.JOB_PUSHGATEWAY}"}}',
            op="==",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=5),
                Tier(severity="critical", threshold=0, for_minutes=30),
            ),
            unit="1 = scraped, 0 = not",
            summary="Prometheus cannot scrape the Pushgateway",
            description="Backup, restore-drill and benchmark results are not collected; their "
            "alerts are blind.",
            cases=(
                AlertCase(
                    title="down 10 minutes: warning",
                    series=(
                        Series(
                            series='up{instance="pushgateway:9091",job="pushgateway"}',
                            values="1x5 0x40",
                        ),
                    ),
                    eval_minutes=15,
                    firing=("warning",),
                    labels={"instance": "pushgateway:9091", "job": "pushgateway"},
                ),
                AlertCase(
                    title="down 35 minutes: critical too",
                    series=(
                        Series(
                            series='up{instance="pushgateway:9091",job="pushgateway"}',
                            values="1x5 0x40",
                        ),
                    ),
                    eval_minutes=40,
                    firing=("warning", "critical"),
                    labels={"instance": "pushgateway:9091", "job": "pushgateway"},
                ),
                AlertCase(
                    title="up: quiet",
                    series=(
                        Series(
                            series='up{instance="pushgateway:9091",job="pushgateway"}',
                            values="1x40",
                        ),
                    ),
                    eval_minutes=40,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5ExporterScrapeErrors",
            group="ms5-availability",
            signal="max by (instance) (pg_exporter_last_scrape_error)"
            " + on (instance) sum by (instance) (1 - pg_scrape_collector_success)"
            " + on (instance) max by (instance) (pg_exporter_user_queries_load_error)",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=5),
                Tier(severity="critical", threshold=0, for_minutes=30),
            ),
            unit="failing parts (custom queries, collectors, queries file)",
            summary="postgres_exporter on {labels.instance} reports {value} failing part(s)",
            description="A custom query, a built-in collector or the queries file fails; the "
            "metrics it provides are missing or stale. The exporter's log names the query.",
            cases=(
                AlertCase(
                    title="a collector failing for 10 minutes: warning",
                    series=(
                        _s("pg_exporter_last_scrape_error", _CORE, "0x30"),
                        _s(
                            "pg_scrape_collector_success",
                            _CORE,
                            "1x5 0x25",
                            collector="stat_statements",
                        ),
                        _s(
                            "pg_exporter_user_queries_load_error",
                            _CORE,
                            "0x30",
                            filename="/etc/postgres_exporter/queries.yml",
                        ),
                    ),
                    eval_minutes=15,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=1.0,
                ),
                AlertCase(
                    title="custom query and collector failing for 35 minutes: critical too",
                    series=(
                        _s("pg_exporter_last_scrape_error", _CORE, "1x40"),
                        _s("pg_scrape_collector_success", _CORE, "0x40", collector="locks"),
                        _s(
                            "pg_exporter_user_queries_load_error",
                            _CORE,
                            "0x40",
                            filename="/etc/postgres_exporter/queries.yml",
                        ),
                    ),
                    eval_minutes=35,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                    value=2.0,
                ),
                AlertCase(
                    title="all parts succeed: quiet",
                    series=(
                        _s("pg_exporter_last_scrape_error", _CORE, "0x30"),
                        _s("pg_scrape_collector_success", _CORE, "1x30", collector="locks"),
                        _s(
                            "pg_exporter_user_queries_load_error",
                            _CORE,
                            "0x30",
                            filename="/etc/postgres_exporter/queries.yml",
                        ),
                    ),
                    eval_minutes=20,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5ExporterScrapeSlow",
            group="ms5-availability",
            signal=f'max by (instance, job) (scrape_duration_seconds{{job=~"{_EXPORTER_JOBS_RE}"}})',
            op=">",
            tiers=(
                Tier(severity="warning", threshold=5, for_minutes=15),
                Tier(severity="critical", threshold=15, for_minutes=5),
            ),
            unit="seconds",
            summary="Scraping postgres_exporter ({labels.job}) takes {value} s",
            description="The exporter's queries are slow (catalog bloat, lock waits, too many "
            "objects); above the 20 s scrape timeout the job's metrics disappear.",
            cases=(
                AlertCase(
                    title="8 s scrapes for 20 minutes: warning",
                    series=(_s("scrape_duration_seconds", _HT, "0.5x5 8x30"),),
                    eval_minutes=25,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "job": _HT},
                    value=8.0,
                ),
                AlertCase(
                    title="18 s scrapes for 20 minutes: critical too",
                    series=(_s("scrape_duration_seconds", _HT, "0.5x5 18x30"),),
                    eval_minutes=25,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "job": _HT},
                    value=18.0,
                ),
                AlertCase(
                    title="sub-second scrapes: quiet",
                    series=(_s("scrape_duration_seconds", _HT, "0.4x30"),),
                    eval_minutes=25,
                    firing=(),
                ),
            ),
        ),
        # ---------------------------------------------------------------- activity
        AlertRule(
            name="Ms5ConnectionsHigh",
            group="ms5-activity",
            signal="100 * ms5:pg_connections:ratio",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=75, for_minutes=5),
                Tier(severity="critical", threshold=90, for_minutes=2),
            ),
            unit="percent of max_connections",
            summary="{labels.instance} uses {value}% of max_connections",
            description="Connections are above {threshold}% of max_connections; new sessions "
            "will be refused when it reaches 100%.",
            cases=(
                AlertCase(
                    title="80 of 100 connections: warning",
                    series=(
                        _s("pg_stat_database_numbackends", _CORE, "10x5 80x20", datname="ms5"),
                        _s("pg_settings_max_connections", _CORE, "100x25"),
                    ),
                    eval_minutes=15,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=80.0,
                ),
                AlertCase(
                    title="95 of 100 connections: critical too",
                    series=(
                        _s("pg_stat_database_numbackends", _CORE, "10x5 95x20", datname="ms5"),
                        _s("pg_settings_max_connections", _CORE, "100x25"),
                    ),
                    eval_minutes=15,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                    value=95.0,
                ),
                AlertCase(
                    title="50 of 100 connections: quiet",
                    series=(
                        _s("pg_stat_database_numbackends", _CORE, "50x25", datname="ms5"),
                        _s("pg_settings_max_connections", _CORE, "100x25"),
                    ),
                    eval_minutes=15,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5CacheHitRatioLow",
            group="ms5-activity",
            signal="100 * ms5:pg_cache_hit:ratio_rate5m",
            op="<",
            tiers=(
                Tier(severity="warning", threshold=95, for_minutes=15),
                Tier(severity="critical", threshold=90, for_minutes=15),
            ),
            guard=Condition(signal="ms5:pg_blocks_accessed:rate5m", op=">", threshold=10),
            unit="percent of block reads served from shared buffers",
            summary="Cache hit ratio of {labels.datname} is {value}%",
            description="Fewer than {threshold}% of block reads hit shared buffers for 15 "
            "minutes: the working set no longer fits in memory (raise the memory limit) or a "
            "query scans more than it should.",
            cases=(
                AlertCase(
                    title="93% hits: warning",
                    series=(
                        _s("pg_stat_database_blks_hit", _CORE, "0+930x40", datname="ms5"),
                        _s("pg_stat_database_blks_read", _CORE, "0+70x40", datname="ms5"),
                    ),
                    eval_minutes=30,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=93.0,
                ),
                AlertCase(
                    title="85% hits: critical too",
                    series=(
                        _s("pg_stat_database_blks_hit", _CORE, "0+850x40", datname="ms5"),
                        _s("pg_stat_database_blks_read", _CORE, "0+150x40", datname="ms5"),
                    ),
                    eval_minutes=30,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=85.0,
                ),
                AlertCase(
                    title="99% hits: quiet",
                    series=(
                        _s("pg_stat_database_blks_hit", _CORE, "0+990x40", datname="ms5"),
                        _s("pg_stat_database_blks_read", _CORE, "0+10x40", datname="ms5"),
                    ),
                    eval_minutes=30,
                    firing=(),
                ),
                AlertCase(
                    title="50% hits on an idle database: quiet (guard)",
                    series=(
                        _s("pg_stat_database_blks_hit", _CORE, "0+60x40", datname="ms5"),
                        _s("pg_stat_database_blks_read", _CORE, "0+60x40", datname="ms5"),
                    ),
                    eval_minutes=30,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5Deadlocks",
            group="ms5-activity",
            signal="sum by (instance, datname) (increase(pg_stat_database_deadlocks[15m]))",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=0),
                Tier(severity="critical", threshold=5, for_minutes=0),
            ),
            unit="deadlocks in the last 15 minutes",
            summary="Deadlocks in {labels.datname}",
            description="More than {threshold} deadlock(s) in 15 minutes: transactions were "
            "aborted. Writers take locks in different orders; the server log has both queries.",
            cases=(
                AlertCase(
                    title="one deadlock: warning",
                    series=(_s("pg_stat_database_deadlocks", _CORE, "0x10 1x20", datname="ms5"),),
                    eval_minutes=15,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                ),
                AlertCase(
                    title="ten deadlocks: critical too",
                    series=(_s("pg_stat_database_deadlocks", _CORE, "0x10 10x20", datname="ms5"),),
                    eval_minutes=15,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                ),
                AlertCase(
                    title="no new deadlock for 15 minutes: quiet",
                    series=(_s("pg_stat_database_deadlocks", _CORE, "3x40", datname="ms5"),),
                    eval_minutes=30,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5LongTransaction",
            group="ms5-activity",
            signal="max by (instance) (pg_long_running_transactions_oldest_timestamp_seconds)",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=300, for_minutes=1),
                Tier(severity="critical", threshold=1800, for_minutes=1),
            ),
            unit="seconds",
            summary="A transaction on {labels.instance} has been open for {value} s",
            description="The oldest open transaction is older than {threshold} s: it holds "
            "locks, blocks vacuum (bloat, wraparound) and can stall migrations and backups.",
            cases=(
                AlertCase(
                    title="10 minutes: warning",
                    series=(
                        _s(
                            "pg_long_running_transactions_oldest_timestamp_seconds",
                            _CORE,
                            "0x5 600x10",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=600.0,
                ),
                AlertCase(
                    title="1 hour: critical too",
                    series=(
                        _s(
                            "pg_long_running_transactions_oldest_timestamp_seconds",
                            _CORE,
                            "0x5 3600x10",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                    value=3600.0,
                ),
                AlertCase(
                    title="short transactions: quiet",
                    series=(
                        _s(
                            "pg_long_running_transactions_oldest_timestamp_seconds",
                            _CORE,
                            "2x15",
                        ),
                    ),
                    eval_minutes=10,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5IdleInTransaction",
            group="ms5-activity",
            signal="max by (instance, datname) "
            '(pg_stat_activity_max_tx_duration{state=~"idle in transaction.*"})',
            op=">",
            tiers=(
                Tier(severity="warning", threshold=300, for_minutes=1),
                Tier(severity="critical", threshold=1800, for_minutes=1),
            ),
            unit="seconds",
            summary="A session in {labels.datname} is idle in transaction for {value} s",
            description="A client opened a transaction and stopped talking for more than "
            "{threshold} s; it holds its locks and snapshot until it commits or is terminated.",
            cases=(
                AlertCase(
                    title="10 minutes idle in transaction: warning",
                    series=(
                        _s(
                            "pg_stat_activity_max_tx_duration",
                            _CORE,
                            "0x5 600x10",
                            datname="ms5",
                            state="idle in transaction",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=600.0,
                ),
                AlertCase(
                    title="40 minutes idle in transaction (aborted): critical too",
                    series=(
                        _s(
                            "pg_stat_activity_max_tx_duration",
                            _CORE,
                            "0x5 2400x10",
                            datname="ms5",
                            state="idle in transaction (aborted)",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=2400.0,
                ),
                AlertCase(
                    title="a long *active* query is not idle in transaction: quiet",
                    series=(
                        _s(
                            "pg_stat_activity_max_tx_duration",
                            _CORE,
                            "3600x15",
                            datname="ms5",
                            state="active",
                        ),
                    ),
                    eval_minutes=10,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5TransactionIdWraparound",
            group="ms5-activity",
            signal="100 * max by (instance, datname) ({__name__=~"
            '"pg_database_wraparound_age_(datfrozenxid|datminmxid)_seconds"}) / 2147483648',
            op=">",
            tiers=(
                Tier(severity="warning", threshold=25, for_minutes=10),
                Tier(severity="critical", threshold=50, for_minutes=10),
            ),
            unit="percent of the 2^31 transaction-ID (or multixact) horizon",
            summary="{labels.datname} has used {value}% of its transaction-ID horizon",
            description="The oldest unfrozen transaction ID (or multixact) is {threshold}% of "
            "the way to wraparound; at about 100% PostgreSQL stops accepting writes. "
            "Anti-wraparound vacuum is not keeping up.",
            cases=(
                AlertCase(
                    title="30%: warning",
                    series=(
                        _s(
                            "pg_database_wraparound_age_datfrozenxid_seconds",
                            _CORE,
                            "1000x5 644245094x20",
                            datname="ms5",
                        ),
                        _s(
                            "pg_database_wraparound_age_datminmxid_seconds",
                            _CORE,
                            "0x25",
                            datname="ms5",
                        ),
                    ),
                    eval_minutes=20,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=100 * 644245094 / 2147483648,
                ),
                AlertCase(
                    title="multixact age at 60%: critical too",
                    series=(
                        _s(
                            "pg_database_wraparound_age_datfrozenxid_seconds",
                            _CORE,
                            "1000x25",
                            datname="ms5",
                        ),
                        _s(
                            "pg_database_wraparound_age_datminmxid_seconds",
                            _CORE,
                            "0x5 1288490189x20",
                            datname="ms5",
                        ),
                    ),
                    eval_minutes=20,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "datname": "ms5"},
                    value=100 * 1288490189 / 2147483648,
                ),
                AlertCase(
                    title="200 million (the autovacuum default): quiet",
                    series=(
                        _s(
                            "pg_database_wraparound_age_datfrozenxid_seconds",
                            _CORE,
                            "200000000x25",
                            datname="ms5",
                        ),
                        _s(
                            "pg_database_wraparound_age_datminmxid_seconds",
                            _CORE,
                            "0x25",
                            datname="ms5",
                        ),
                    ),
                    eval_minutes=20,
                    firing=(),
                ),
            ),
        ),
        # ---------------------------------------------------------------- capacity
        AlertRule(
            name="Ms5StorageHigh",
            group="ms5-capacity",
            signal=f"100 * ms5:storage_bytes / {budget}",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=80, for_minutes=5),
                Tier(severity="critical", threshold=90, for_minutes=5),
            ),
            unit="percent of the storage budget (alertStorageBudgetGb)",
            summary="{labels.instance} stores {value}% of its storage budget",
            description="Databases plus WAL use more than {threshold}% of the configured "
            "storage budget; when the volume fills, PostgreSQL stops.",
            cases=(
                AlertCase(
                    title="85% of the budget: warning",
                    series=(
                        _s(
                            "pg_database_size_bytes",
                            _CORE,
                            f"{int(budget * 0.8)}x20",
                            datname="ms5",
                        ),
                        _s("pg_wal_size_bytes", _PERF, f"{int(budget * 0.05)}x20"),
                    ),
                    eval_minutes=10,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=100 * (int(budget * 0.8) + int(budget * 0.05)) / budget,
                ),
                AlertCase(
                    title="95% of the budget: critical too",
                    series=(
                        _s(
                            "pg_database_size_bytes",
                            _CORE,
                            f"{int(budget * 0.9)}x20",
                            datname="ms5",
                        ),
                        _s("pg_wal_size_bytes", _PERF, f"{int(budget * 0.05)}x20"),
                    ),
                    eval_minutes=10,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                    value=100 * (int(budget * 0.9) + int(budget * 0.05)) / budget,
                ),
                AlertCase(
                    title="half the budget: quiet",
                    series=(
                        _s("pg_database_size_bytes", _CORE, f"{budget // 2}x20", datname="ms5"),
                        _s("pg_wal_size_bytes", _PERF, f"{gib // 64}x20"),
                    ),
                    eval_minutes=10,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5DatabaseGrowth",
            group="ms5-capacity",
            signal=f"100 * predict_linear(ms5:storage_bytes[6h], 7 * 86400) / {budget}",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=100, for_minutes=30),
                Tier(
                    severity="critical",
                    threshold=100,
                    for_minutes=30,
                    signal=f"100 * predict_linear(ms5:storage_bytes[6h], 86400) / {budget}",
                ),
            ),
            unit="percent of the storage budget predicted in 7 days (critical: in 1 day)",
            summary="{labels.instance} grows fast enough to exceed its storage budget",
            description="At the growth rate of the last 6 hours the database and WAL exceed the "
            "storage budget within 7 days (warning) or 1 day (critical).",
            cases=(
                AlertCase(
                    # 10% of the budget per hour from 10%: full within a day.
                    title="growing 10% of the budget per hour: warning and critical",
                    series=(
                        _s(
                            "pg_database_size_bytes",
                            _CORE,
                            f"{budget // 10}+{budget // 600}x120",
                            datname="ms5",
                        ),
                        _s("pg_wal_size_bytes", _PERF, "0x120"),
                    ),
                    eval_minutes=90,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                ),
                AlertCase(
                    # 0.2% of the budget per hour from 10%: ~44% in 7 days, full in ~19 days.
                    title="slow growth: quiet",
                    series=(
                        _s(
                            "pg_database_size_bytes",
                            _CORE,
                            f"{budget // 10}+{budget // 30000}x120",
                            datname="ms5",
                        ),
                        _s("pg_wal_size_bytes", _PERF, "0x120"),
                    ),
                    eval_minutes=90,
                    firing=(),
                ),
                AlertCase(
                    # 1% of the budget per hour from 10%: ~100+168% in 7 days, ~34% in a day.
                    title="growing 1% of the budget per hour: warning only",
                    series=(
                        _s(
                            "pg_database_size_bytes",
                            _CORE,
                            f"{budget // 10}+{budget // 6000}x120",
                            datname="ms5",
                        ),
                        _s("pg_wal_size_bytes", _PERF, "0x120"),
                    ),
                    eval_minutes=90,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                ),
            ),
        ),
        AlertRule(
            name="Ms5WalPileUp",
            group="ms5-capacity",
            signal="100 * max by (instance) (pg_wal_size_bytes)"
            " / on (instance) max by (instance) (pg_settings_max_wal_size_bytes)",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=150, for_minutes=15),
                Tier(severity="critical", threshold=300, for_minutes=15),
            ),
            unit="percent of max_wal_size",
            summary="pg_wal on {labels.instance} holds {value}% of max_wal_size",
            description="WAL is retained far beyond max_wal_size: a replication slot, failing "
            "archiving or stuck checkpoints keep segments; the disk fills.",
            cases=(
                AlertCase(
                    title="2 GiB of WAL with max_wal_size 1 GiB: warning",
                    series=(
                        _s("pg_wal_size_bytes", _PERF, f"{gib // 2}x5 {2 * gib}x30"),
                        _s("pg_settings_max_wal_size_bytes", _CORE, f"{gib}x35"),
                    ),
                    eval_minutes=25,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=200.0,
                ),
                AlertCase(
                    title="4 GiB of WAL with max_wal_size 1 GiB: critical too",
                    series=(
                        _s("pg_wal_size_bytes", _PERF, f"{gib // 2}x5 {4 * gib}x30"),
                        _s("pg_settings_max_wal_size_bytes", _CORE, f"{gib}x35"),
                    ),
                    eval_minutes=25,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE},
                    value=400.0,
                ),
                AlertCase(
                    title="WAL within max_wal_size: quiet",
                    series=(
                        _s("pg_wal_size_bytes", _PERF, f"{gib // 2}x35"),
                        _s("pg_settings_max_wal_size_bytes", _CORE, f"{gib}x35"),
                    ),
                    eval_minutes=25,
                    firing=(),
                ),
            ),
        ),
        # ---------------------------------------------------------------- timescaledb
        AlertRule(
            name="Ms5TimescaleJobFailing",
            group="ms5-timescaledb",
            signal="timescaledb_job_consecutive_failures"
            " unless on (instance, job_id) (timescaledb_job_license_blocked == 1)",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=5),
                Tier(severity="critical", threshold=2, for_minutes=5),
            ),
            unit="consecutive failed runs",
            summary="TimescaleDB job {labels.job_id} ({labels.proc_name}) failed {value} "
            "time(s) in a row",
            description="A background job (compression, retention, continuous-aggregate "
            "refresh) has failed more than {threshold} time(s) in a row. The server's last "
            "error: {lookup.error}",
            expected_empty="on the Apache build the only job (job-history retention) is "
            "license-blocked and excluded; with the Timescale license on PostgreSQL 17.12 every "
            "scheduled job fails and this has data",
            lookups={
                "error": Lookup(
                    metric="timescaledb_job_last_error_info",
                    match=("instance", "job_id"),
                    label="message",
                    missing="none recorded (see timescaledb_information.job_errors)",
                )
            },
            cases=(
                AlertCase(
                    title="one failure: warning",
                    series=(
                        _s(
                            "timescaledb_job_consecutive_failures",
                            _HT,
                            "0x5 1x20",
                            job_id="1000",
                            proc_name="policy_compression",
                            hypertable="public.machine_metrics",
                        ),
                        _s(
                            "timescaledb_job_license_blocked",
                            _HT,
                            "0x25",
                            job_id="1000",
                            proc_name="policy_compression",
                            hypertable="public.machine_metrics",
                        ),
                    ),
                    eval_minutes=15,
                    firing=("warning",),
                    labels={
                        "instance": _INSTANCE,
                        "job": _HT,
                        "job_id": "1000",
                        "proc_name": "policy_compression",
                        "hypertable": "public.machine_metrics",
                    },
                    value=1.0,
                ),
                AlertCase(
                    title="three failures in a row: critical too",
                    series=(
                        _s(
                            "timescaledb_job_consecutive_failures",
                            _HT,
                            "0x5 3x20",
                            job_id="1001",
                            proc_name="policy_retention",
                            hypertable="public.energy",
                        ),
                        _s(
                            "timescaledb_job_license_blocked",
                            _HT,
                            "0x25",
                            job_id="1001",
                            proc_name="policy_retention",
                            hypertable="public.energy",
                        ),
                    ),
                    eval_minutes=15,
                    firing=("warning", "critical"),
                    labels={
                        "instance": _INSTANCE,
                        "job": _HT,
                        "job_id": "1001",
                        "proc_name": "policy_retention",
                        "hypertable": "public.energy",
                    },
                    value=3.0,
                ),
                AlertCase(
                    title="licensed server, every scheduled job failing: the server's error, "
                    "not a license block",
                    series=(
                        _s(
                            "timescaledb_job_consecutive_failures",
                            _HT,
                            "0x2 1x3 4x20",
                            job_id="1002",
                            proc_name="policy_refresh_continuous_aggregate",
                            hypertable="ms5.machine_metrics_1m",
                        ),
                        _s(
                            "timescaledb_job_license_blocked",
                            _HT,
                            "0x25",
                            job_id="1002",
                            proc_name="policy_refresh_continuous_aggregate",
                            hypertable="ms5.machine_metrics_1m",
                        ),
                        _s(
                            "timescaledb_job_last_error_info",
                            _HT,
                            "_x2 1x23",
                            job_id="1002",
                            proc_name="policy_refresh_continuous_aggregate",
                            hypertable="ms5.machine_metrics_1m",
                            sqlerrcode="24000",
                            message=_PORTAL_ERROR,
                        ),
                        _s("timescaledb_info", _HT, "1x25", version="2.19.3", license="timescale"),
                    ),
                    eval_minutes=15,
                    firing=("warning", "critical"),
                    labels={
                        "instance": _INSTANCE,
                        "job": _HT,
                        "job_id": "1002",
                        "proc_name": "policy_refresh_continuous_aggregate",
                        "hypertable": "ms5.machine_metrics_1m",
                    },
                    value=4.0,
                    lookups={"error": _PORTAL_ERROR},
                ),
                AlertCase(
                    title="failing only for lack of the license: quiet",
                    series=(
                        _s(
                            "timescaledb_job_consecutive_failures",
                            _HT,
                            "4x25",
                            job_id="3",
                            proc_name="policy_job_stat_history_retention",
                            hypertable="",
                        ),
                        _s(
                            "timescaledb_job_license_blocked",
                            _HT,
                            "1x25",
                            job_id="3",
                            proc_name="policy_job_stat_history_retention",
                            hypertable="",
                        ),
                    ),
                    eval_minutes=15,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5HypertablesWithoutCompressionPolicy",
            group="ms5-timescaledb",
            signal="sum by (instance) (timescaledb_hypertable_without_compression_policy)"
            ' and on (instance) timescaledb_info{license!="apache"}',
            op=">",
            tiers=(Tier(severity="warning", threshold=0, for_minutes=60),),
            unit="hypertables",
            summary="{value} hypertable(s) on {labels.instance} have no compression policy",
            description="With the Timescale license, every hypertable should compress old "
            "chunks; without a policy the rowstore grows without bound. (Not raised on the "
            "Apache build, which cannot compress.) No critical tier: the storage alerts "
            "escalate.",
            expected_empty="the test server runs the Apache build; the alert is for "
            "Timescale-licensed servers only",
            cases=(
                AlertCase(
                    title="two hypertables without policy on a licensed server: warning",
                    series=(
                        _s(
                            "timescaledb_hypertable_without_compression_policy",
                            _HT,
                            "2x90",
                            hypertable="public.energy",
                        ),
                        _s("timescaledb_info", _HT, "1x90", version="2.19.3", license="timescale"),
                    ),
                    eval_minutes=80,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=2.0,
                ),
                AlertCase(
                    title="the same on the Apache build: quiet",
                    series=(
                        _s(
                            "timescaledb_hypertable_without_compression_policy",
                            _HT,
                            "2x90",
                            hypertable="public.energy",
                        ),
                        _s("timescaledb_info", _HT, "1x90", version="2.19.3", license="apache"),
                    ),
                    eval_minutes=80,
                    firing=(),
                ),
                AlertCase(
                    title="every hypertable has a policy: quiet",
                    series=(
                        _s(
                            "timescaledb_hypertable_without_compression_policy",
                            _HT,
                            "0x90",
                            hypertable="public.energy",
                        ),
                        _s("timescaledb_info", _HT, "1x90", version="2.19.3", license="timescale"),
                    ),
                    eval_minutes=80,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5HypertablesWithoutRetentionPolicy",
            group="ms5-timescaledb",
            signal="sum by (instance) (timescaledb_hypertable_without_retention_policy)"
            ' and on (instance) timescaledb_info{license!="apache"}',
            op=">",
            tiers=(Tier(severity="warning", threshold=0, for_minutes=60),),
            unit="hypertables",
            summary="{value} hypertable(s) on {labels.instance} have no retention policy",
            description="With the Timescale license, raw time-series should be dropped after "
            "their retention period; without a policy they are kept forever. (Not raised on "
            "the Apache build.) No critical tier: the storage alerts escalate.",
            expected_empty="the test server runs the Apache build; the alert is for "
            "Timescale-licensed servers only",
            cases=(
                AlertCase(
                    title="one hypertable without policy on a licensed server: warning",
                    series=(
                        _s(
                            "timescaledb_hypertable_without_retention_policy",
                            _HT,
                            "1x90",
                            hypertable="public.energy",
                        ),
                        _s("timescaledb_info", _HT, "1x90", version="2.19.3", license="timescale"),
                    ),
                    eval_minutes=80,
                    firing=("warning",),
                    labels={"instance": _INSTANCE},
                    value=1.0,
                ),
                AlertCase(
                    title="only 30 minutes so far: quiet",
                    series=(
                        _s(
                            "timescaledb_hypertable_without_retention_policy",
                            _HT,
                            "0x50 1x40",
                            hypertable="public.energy",
                        ),
                        _s("timescaledb_info", _HT, "1x90", version="2.19.3", license="timescale"),
                    ),
                    eval_minutes=80,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5UncompressedChunksOverdue",
            group="ms5-timescaledb",
            signal="sum by (instance, hypertable) (timescaledb_compression_overdue_chunks)",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=60),
                Tier(severity="critical", threshold=10, for_minutes=60),
            ),
            unit="chunks",
            summary="{value} chunk(s) of {labels.hypertable} are overdue for compression",
            description="Chunks older than the compression policy's compress_after (plus two "
            "schedule intervals) are still uncompressed: the policy job fails or cannot keep up.",
            cases=(
                AlertCase(
                    title="two overdue chunks for over an hour: warning",
                    series=(
                        _s(
                            "timescaledb_compression_overdue_chunks",
                            _COMP,
                            "0x10 2x80",
                            hypertable="public.machine_metrics",
                        ),
                    ),
                    eval_minutes=80,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "hypertable": "public.machine_metrics"},
                    value=2.0,
                ),
                AlertCase(
                    title="twelve overdue chunks: critical too",
                    series=(
                        _s(
                            "timescaledb_compression_overdue_chunks",
                            _COMP,
                            "0x10 12x80",
                            hypertable="public.machine_metrics",
                        ),
                    ),
                    eval_minutes=80,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "hypertable": "public.machine_metrics"},
                    value=12.0,
                ),
                AlertCase(
                    title="overdue only briefly (the policy caught up): quiet",
                    series=(
                        _s(
                            "timescaledb_compression_overdue_chunks",
                            _COMP,
                            "0x10 3x20 0x60",
                            hypertable="public.machine_metrics",
                        ),
                    ),
                    eval_minutes=80,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5ContinuousAggregateLag",
            group="ms5-timescaledb",
            signal="max by (instance, view) (timescaledb_continuous_aggregate_lag_seconds) / 3600",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=6, for_minutes=15),
                Tier(severity="critical", threshold=24, for_minutes=15),
            ),
            unit="hours behind now",
            summary="Continuous aggregate {labels.view} is {value} h behind",
            description="The materialized data of the continuous aggregate ends more than "
            "{threshold} h ago: its refresh policy fails or is missing; dashboards built on it "
            "show stale numbers.",
            expected_empty="the Apache build (test server) cannot create continuous aggregates",
            cases=(
                AlertCase(
                    title="8 hours behind: warning",
                    series=(
                        _s(
                            "timescaledb_continuous_aggregate_lag_seconds",
                            _HT,
                            "3600x5 28800x30",
                            view="public.oee_hourly",
                        ),
                    ),
                    eval_minutes=30,
                    firing=("warning",),
                    labels={"instance": _INSTANCE, "view": "public.oee_hourly"},
                    value=8.0,
                ),
                AlertCase(
                    title="2 days behind: critical too",
                    series=(
                        _s(
                            "timescaledb_continuous_aggregate_lag_seconds",
                            _HT,
                            "3600x5 172800x30",
                            view="public.oee_hourly",
                        ),
                    ),
                    eval_minutes=30,
                    firing=("warning", "critical"),
                    labels={"instance": _INSTANCE, "view": "public.oee_hourly"},
                    value=48.0,
                ),
                AlertCase(
                    title="1 hour behind: quiet",
                    series=(
                        _s(
                            "timescaledb_continuous_aggregate_lag_seconds",
                            _HT,
                            "3600x35",
                            view="public.oee_hourly",
                        ),
                    ),
                    eval_minutes=30,
                    firing=(),
                ),
            ),
        ),
        # ---------------------------------------------------------------- batch jobs
        AlertRule(
            name="Ms5BackupTooOld",
            group="ms5-batch",
            signal=f"(time() - max by (database) ({metrics.BACKUP_LAST_SUCCESS.name}"
            " or on () vector(0))) / 3600",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=backup_h, for_minutes=5),
                Tier(severity="critical", threshold=2 * backup_h, for_minutes=5),
            ),
            unit="hours since the last verified backup (never: hours since 1970)",
            summary="The last verified backup of {labels.database} is {value} h old",
            description="No verified backup has been published for more than {threshold} h "
            "(backupMaxAgeHours); a failure now loses more data than agreed. An alert without "
            "a database label means no backup was ever recorded.",
            cases=(
                AlertCase(
                    title=f"last backup {backup_h + 4} h ago: warning",
                    series=(
                        _pushed(
                            metrics.BACKUP_LAST_SUCCESS.name,
                            metrics.PUSH_JOB_BACKUP,
                            f"3600x{backup_h + 6}",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=(backup_h + 5) * 60,
                    step_minutes=60,
                    firing=("warning",),
                    labels={"database": "ms5"},
                    value=float(backup_h + 4),
                ),
                AlertCase(
                    title="never backed up: warning and critical",
                    series=(
                        _pushed(
                            metrics.BACKUP_SIZE.name,
                            metrics.PUSH_JOB_BACKUP,
                            "0x10",
                            database="ms5",
                        ),
                    ),
                    # time() counts from 0 in promtool; in production "never" is ~55 years.
                    eval_minutes=(2 * backup_h + 2) * 60,
                    step_minutes=60,
                    firing=("warning", "critical"),
                    labels={},
                    value=float(2 * backup_h + 2),
                ),
                AlertCase(
                    title="backed up an hour ago: quiet",
                    series=(
                        _pushed(
                            metrics.BACKUP_LAST_SUCCESS.name,
                            metrics.PUSH_JOB_BACKUP,
                            "3600x3",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=120,
                    step_minutes=60,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5BackupFailed",
            group="ms5-batch",
            signal=f"min by (database) ({metrics.BACKUP_LAST_RUN_SUCCESS.name})",
            op="==",
            tiers=(Tier(severity="warning", threshold=0, for_minutes=0),),
            unit="1 = last run succeeded, 0 = failed",
            summary="The last backup run of {labels.database} failed",
            description="The backup runner published nothing; earlier backups are untouched. "
            "Ms5BackupTooOld escalates if the next runs fail too (hence no critical tier).",
            cases=(
                AlertCase(
                    title="last run failed: warning",
                    series=(
                        _pushed(
                            metrics.BACKUP_LAST_RUN_SUCCESS.name,
                            metrics.PUSH_JOB_BACKUP,
                            "1x5 0x10",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning",),
                    labels={"database": "ms5"},
                    value=0.0,
                ),
                AlertCase(
                    title="last run succeeded: quiet",
                    series=(
                        _pushed(
                            metrics.BACKUP_LAST_RUN_SUCCESS.name,
                            metrics.PUSH_JOB_BACKUP,
                            "0x5 1x10",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=10,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5RestoreDrillFailed",
            group="ms5-batch",
            signal=f"min by (database) ({metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name})",
            op="==",
            tiers=(
                Tier(severity="warning", threshold=0, for_minutes=0),
                Tier(severity="critical", threshold=0, for_minutes=360),
            ),
            unit="1 = last drill succeeded, 0 = failed",
            summary="The restore drill of {labels.database} failed",
            description="Restoring the newest backup into a scratch database failed: the "
            "backups may not be restorable. Critical when still failing after 6 hours.",
            cases=(
                AlertCase(
                    title="just failed: warning",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            "1x5 0x400",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=10,
                    firing=("warning",),
                    labels={"database": "ms5"},
                    value=0.0,
                ),
                AlertCase(
                    title="still failing 6 hours later: critical too",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            "1x5 0x400",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=370,
                    firing=("warning", "critical"),
                    labels={"database": "ms5"},
                    value=0.0,
                ),
                AlertCase(
                    title="drill passed: quiet",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            "1x20",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=10,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5RestoreDrillTooOld",
            group="ms5-batch",
            signal=f"(time() - max by (database) ({metrics.RESTORE_DRILL_LAST_SUCCESS.name}"
            " or on () vector(0))) / 3600",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=drill_h, for_minutes=5),
                Tier(severity="critical", threshold=2 * drill_h, for_minutes=5),
            ),
            unit="hours since the last successful restore drill",
            summary="The last successful restore drill of {labels.database} is {value} h old",
            description="No restore drill has succeeded for more than {threshold} h "
            "(restoreDrillMaxAgeHours): nobody knows whether the backups restore.",
            cases=(
                AlertCase(
                    title=f"last drill {drill_h + 2} h ago: warning",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            f"3600x{drill_h + 4}",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=(drill_h + 3) * 60,
                    step_minutes=60,
                    firing=("warning",),
                    labels={"database": "ms5"},
                    value=float(drill_h + 2),
                ),
                AlertCase(
                    title=f"last drill {2 * drill_h + 2} h ago: critical too",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            f"3600x{2 * drill_h + 4}",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=(2 * drill_h + 3) * 60,
                    step_minutes=60,
                    firing=("warning", "critical"),
                    labels={"database": "ms5"},
                    value=float(2 * drill_h + 2),
                ),
                AlertCase(
                    title="drilled yesterday: quiet",
                    series=(
                        _pushed(
                            metrics.RESTORE_DRILL_LAST_SUCCESS.name,
                            metrics.PUSH_JOB_RESTORE_DRILL,
                            "3600x26",
                            database="ms5",
                        ),
                    ),
                    eval_minutes=25 * 60,
                    step_minutes=60,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5BenchmarkThroughputRegression",
            group="ms5-batch",
            signal=f"100 * {metrics.BENCHMARK_THROUGHPUT.name}"
            f" / {metrics.BENCHMARK_THROUGHPUT_BASELINE.name}",
            op="<",
            tiers=(
                Tier(severity="warning", threshold=80, for_minutes=0),
                Tier(severity="critical", threshold=50, for_minutes=0),
            ),
            unit="percent of the baseline throughput",
            summary="Benchmark {labels.benchmark} ingests at {value}% of its baseline",
            description="The last run of the ingest benchmark is below {threshold}% of its "
            "accepted baseline: a configuration, schema or version change slowed ingestion.",
            cases=(
                AlertCase(
                    title="70% of the baseline: warning",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "700000x10",
                            benchmark="ingest_copy",
                        ),
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "1000000x10",
                            benchmark="ingest_copy",
                        ),
                    ),
                    eval_minutes=5,
                    firing=("warning",),
                    labels={"benchmark": "ingest_copy", "job": "ms5_benchmark"},
                    value=70.0,
                ),
                AlertCase(
                    title="40% of the baseline: critical too",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "400000x10",
                            benchmark="ingest_copy",
                        ),
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "1000000x10",
                            benchmark="ingest_copy",
                        ),
                    ),
                    eval_minutes=5,
                    firing=("warning", "critical"),
                    labels={"benchmark": "ingest_copy", "job": "ms5_benchmark"},
                    value=40.0,
                ),
                AlertCase(
                    title="95% of the baseline: quiet",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "950000x10",
                            benchmark="ingest_copy",
                        ),
                        _pushed(
                            metrics.BENCHMARK_THROUGHPUT_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "1000000x10",
                            benchmark="ingest_copy",
                        ),
                    ),
                    eval_minutes=5,
                    firing=(),
                ),
            ),
        ),
        AlertRule(
            name="Ms5BenchmarkLatencyRegression",
            group="ms5-batch",
            signal=f"100 * {metrics.BENCHMARK_LATENCY.name}"
            f" / {metrics.BENCHMARK_LATENCY_BASELINE.name}",
            op=">",
            tiers=(
                Tier(severity="warning", threshold=125, for_minutes=0),
                Tier(severity="critical", threshold=200, for_minutes=0),
            ),
            unit="percent of the baseline latency",
            summary="Benchmark {labels.benchmark} (q{labels.quantile}) takes {value}% of its "
            "baseline latency",
            description="The last run of the query benchmark is slower than {threshold}% of its "
            "accepted baseline: check plans, chunk sizes and memory settings.",
            cases=(
                AlertCase(
                    title="150% of the baseline: warning",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_LATENCY.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.15x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                        _pushed(
                            metrics.BENCHMARK_LATENCY_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.1x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                    ),
                    eval_minutes=5,
                    firing=("warning",),
                    labels={
                        "benchmark": "oee_daily",
                        "quantile": "0.95",
                        "job": "ms5_benchmark",
                    },
                    value=100 * 0.15 / 0.1,
                ),
                AlertCase(
                    title="300% of the baseline: critical too",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_LATENCY.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.3x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                        _pushed(
                            metrics.BENCHMARK_LATENCY_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.1x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                    ),
                    eval_minutes=5,
                    firing=("warning", "critical"),
                    labels={
                        "benchmark": "oee_daily",
                        "quantile": "0.95",
                        "job": "ms5_benchmark",
                    },
                    value=100 * 0.3 / 0.1,
                ),
                AlertCase(
                    title="as fast as the baseline: quiet",
                    series=(
                        _pushed(
                            metrics.BENCHMARK_LATENCY.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.1x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                        _pushed(
                            metrics.BENCHMARK_LATENCY_BASELINE.name,
                            metrics.PUSH_JOB_BENCHMARK,
                            "0.1x10",
                            benchmark="oee_daily",
                            quantile="0.95",
                        ),
                    ),
                    eval_minutes=5,
                    firing=(),
                ),
            ),
        ),
    )


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

_GROUP_ORDER = (
    "ms5-availability",
    "ms5-activity",
    "ms5-capacity",
    "ms5-timescaledb",
    "ms5-batch",
)


def _validate(alerts: tuple[AlertRule, ...]) -> None:
    names = [a.name for a in alerts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MonitoringError(f"alert names must be unique; repeated: {duplicates}")
    for alert in alerts:
        if alert.group not in _GROUP_ORDER:
            raise MonitoringError(f"alert {alert.name}: unknown group {alert.group!r}")
        severities = [t.severity for t in alert.tiers]
        if len(set(severities)) != len(severities) or not severities:
            raise MonitoringError(f"alert {alert.name}: needs one tier per severity")
        if not any(c.firing for c in alert.cases) or not any(not c.firing for c in alert.cases):
            raise MonitoringError(
                f"alert {alert.name}: needs a test case that fires and one that stays quiet"
            )
        used = {
            m.group(3)
            for text in (alert.summary, alert.description)
            for m in _PLACEHOLDER.finditer(text)
            if m.group(3) is not None
        }
        if used != set(alert.lookups):
            raise MonitoringError(
                f"alert {alert.name}: lookups used {sorted(used)} but declared "
                f"{sorted(alert.lookups)}"
            )
        for case in alert.cases:
            if set(case.lookups) - used:
                raise MonitoringError(
                    f"alert {alert.name}, case {case.title!r}: unknown lookups "
                    f"{sorted(set(case.lookups) - used)}"
                )
            if case.eval_minutes % case.step_minutes:
                raise MonitoringError(
                    f"alert {alert.name}, case {case.title!r}: eval time is not a multiple of "
                    "its step"
                )
            unknown = set(case.firing) - set(severities)
            if unknown:
                raise MonitoringError(
                    f"alert {alert.name}, case {case.title!r}: no tier {sorted(unknown)}"
                )


def rules_document(settings: AlertSettings) -> dict[str, object]:
    """The rules file as plain data."""
    alerts = alert_rules(settings)
    _validate(alerts)
    groups: list[dict[str, object]] = [
        {
            "name": "ms5-recording",
            "rules": [{"record": r.record, "expr": r.expr} for r in RECORDING_RULES],
        }
    ]
    for group in _GROUP_ORDER:
        rules: list[dict[str, object]] = []
        for alert in (a for a in alerts if a.group == group):
            for tier in alert.tiers:
                threshold = _number(tier.threshold)
                rules.append(
                    {
                        "alert": alert.name,
                        "expr": alert.expr(tier),
                        "for": f"{tier.for_minutes}m",
                        "labels": {"severity": tier.severity},
                        "annotations": {
                            "summary": _go_template(alert.summary, threshold, alert.lookups),
                            "description": _go_template(
                                alert.description, threshold, alert.lookups
                            ),
                            "runbook_url": alert.runbook_url,
                        },
                    }
                )
        groups.append({"name": group, "rules": rules})
    return {"groups": groups}


def render_rules(settings: AlertSettings) -> str:
    """The rules file text (sorted keys)."""
    header = "# Generated by ms5_components.monitoring.rules; do not edit.\n"
    return header + yaml.safe_dump(rules_document(settings), sort_keys=True, width=100)


RULE_TEST_FILES: Mapping[int, str] = {
    1: "ms5-alerts.test.yml",
    60: "ms5-alerts.hourly.test.yml",
}
"""promtool test files by evaluation step: minute-scale and day-scale scenarios are kept apart
(evaluating every minute over 16 days of a restore-drill scenario would take minutes)."""


def rule_tests_document(
    settings: AlertSettings, rules_file: str, *, step_minutes: int = 1
) -> dict[str, object]:
    """``promtool test rules`` input for the scenarios of one step (see :class:`AlertCase`)."""
    alerts = alert_rules(settings)
    _validate(alerts)
    tests: list[dict[str, object]] = []
    for alert in alerts:
        for case in alert.cases:
            if case.step_minutes != step_minutes:
                continue
            exp_alerts: list[dict[str, object]] = []
            looked_up = {
                name: case.lookups.get(name, lookup.missing)
                for name, lookup in alert.lookups.items()
            }
            for severity in case.firing:
                threshold = _number(alert.tier(severity).threshold)
                exp_alerts.append(
                    {
                        "exp_labels": {**case.labels, "severity": severity},
                        "exp_annotations": {
                            "summary": _expected_text(
                                alert.summary, threshold, case.labels, case.value, looked_up
                            ),
                            "description": _expected_text(
                                alert.description, threshold, case.labels, case.value, looked_up
                            ),
                            "runbook_url": alert.runbook_url,
                        },
                    }
                )
            tests.append(
                {
                    "name": f"{alert.name}: {case.title}",
                    "interval": f"{step_minutes}m",
                    "input_series": [{"series": s.series, "values": s.values} for s in case.series],
                    "alert_rule_test": [
                        {
                            "eval_time": f"{case.eval_minutes}m",
                            "alertname": alert.name,
                            "exp_alerts": exp_alerts,
                        }
                    ],
                }
            )
    return {
        "rule_files": [rules_file],
        "evaluation_interval": f"{step_minutes}m",
        "tests": tests,
    }


def render_rule_tests(settings: AlertSettings, rules_file: str) -> dict[str, str]:
    """The promtool unit-test files (name -> text, sorted keys)."""
    header = "# Generated by ms5_components.monitoring.rules; do not edit.\n"
    steps = {c.step_minutes for a in alert_rules(settings) for c in a.cases}
    unknown = steps - set(RULE_TEST_FILES)
    if unknown:
        raise MonitoringError(f"no promtool test file for step(s) {sorted(unknown)} minutes")
    return {
        RULE_TEST_FILES[step]: header
        + yaml.safe_dump(
            rule_tests_document(settings, rules_file, step_minutes=step), sort_keys=True, width=100
        )
        for step in sorted(steps)
    }
