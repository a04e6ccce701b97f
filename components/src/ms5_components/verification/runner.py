"""The runner: reads the server and the monitoring HTTP APIs, then runs the pure checks.

It only reads. Every database session is opened with ``default_transaction_read_only=on`` (and a
``statement_timeout``), so no statement it sends can change the database; the HTTP calls are
GETs. Prometheus is asked again for a short while (``settle_seconds``) while a target has not been
scraped yet, because the verification runs right after the containers start.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ms5_components.backups.plan import BackupAgeLimit
from ms5_components.settings import int_default_of
from ms5_components.verification.checks import (
    BackupInfo,
    Containers,
    DatabaseExtensions,
    HttpAnswer,
    Job,
    ObservedSchema,
    check_backup,
    check_exporter,
    check_extensions,
    check_grafana,
    check_jobs,
    check_prometheus,
    check_pushgateway,
    check_schema,
    unreadable_database,
)
from ms5_components.verification.expectations import Expectations
from ms5_components.verification.report import Finding, Report

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

APPLICATION_NAME = "ms5-verification"


# --------------------------------------------------------------------------------------------------
# Backups: where the newest backup is read from
# --------------------------------------------------------------------------------------------------


class BackupSource(Protocol):
    """Lists the published backups of one database."""

    def describe(self) -> str:
        """Where the backups are read from (for the report)."""
        ...

    def list(self, database: str) -> list[BackupInfo]:
        """Every published backup of ``database``; raises OSError/ValueError when unreadable."""
        ...


@dataclass(frozen=True)
class BackupDirectory:
    """The backup volume's layout: one directory ``<database>-<YYYYmmddTHHMMSSZ>`` per published
    backup holding ``manifest.json`` (``finished_epoch``); a ``VERIFICATION-FAILED`` marker in it
    means the backup failed a later verification; ``.tmp-*`` directories are backups being
    written (ignored)."""

    path: Path

    def describe(self) -> str:
        return f"backup directory {self.path}"

    def list(self, database: str) -> list[BackupInfo]:
        import re

        name_re = re.compile(re.escape(database) + r"-[0-9]{8}T[0-9]{6}Z")
        out = []
        for entry in sorted(self.path.iterdir()):
            if not entry.is_dir() or not name_re.fullmatch(entry.name):
                continue
            manifest = entry / "manifest.json"
            verified = manifest.is_file() and not (entry / "VERIFICATION-FAILED").exists()
            epoch = 0
            if manifest.is_file():
                data = json.loads(manifest.read_text(encoding="utf-8"))
                epoch = int(data.get("finished_epoch") or 0)
            else:
                stamp = entry.name[len(database) + 1 :]
                epoch = int(time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone)
            out.append(BackupInfo(name=entry.name, finished_epoch=epoch, verified=verified))
        return out


@dataclass(frozen=True)
class PushgatewayBackups:
    """The backup runner's pushed result: ``ms5_backup_last_success_timestamp_seconds`` (the
    time the last *verified* backup was published) for the database."""

    url: str
    timeout_seconds: float = 10.0

    def describe(self) -> str:
        return f"Pushgateway {self.url} (ms5_backup_last_success_timestamp_seconds)"

    def list(self, database: str) -> list[BackupInfo]:
        from ms5_components.monitoring import metrics

        answer = http_get(f"{self.url}/api/v1/metrics", timeout=self.timeout_seconds)
        if not answer.ok:
            raise OSError(answer.problem())
        data = answer.json()
        out = []
        for group in (data or {}).get("data") or []:
            family = group.get(metrics.BACKUP_LAST_SUCCESS.name)
            if not isinstance(family, Mapping):
                continue
            for sample in family.get("metrics") or []:
                labels = sample.get("labels") or {}
                if labels.get("database") != database:
                    continue
                epoch = int(float(sample.get("value") or 0))
                out.append(
                    BackupInfo(
                        name=f"{database} backup published at {epoch}",
                        finished_epoch=epoch,
                        verified=True,
                    )
                )
        return out


# --------------------------------------------------------------------------------------------------
# What to verify
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GrafanaTarget:
    url: str
    user: str
    password: str = field(repr=False)
    dashboard_uid: str
    dashboard_title: str
    panels: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class VerificationTarget:
    """Everything one verification run reads."""

    dsn: str = field(repr=False)
    """Superuser (or read-all) DSN of the application database, reachable from this host."""
    database: str
    expectations: Expectations
    containers: Containers
    """The stack's container names (the next steps name them)."""
    backup_age: BackupAgeLimit
    """How old the newest verified backup may be
    (:func:`~ms5_components.backups.plan.backup_age_limit`)."""
    prometheus_url: str | None = None
    pushgateway_url: str | None = None
    grafana: GrafanaTarget | None = None
    exporter_jobs: tuple[str, ...] = ()
    scrape_error_jobs: tuple[str, ...] = ()
    """The exporter jobs that keep ``pg_exporter_last_scrape_error`` (each must have a sample)."""
    backups: BackupSource | None = None
    warn_only: tuple[str, ...] = ()
    settle_seconds: float = float(int_default_of("verificationSettleSeconds"))
    """How long to wait for Prometheus to have scraped every target (right after a deploy)."""
    timeout_seconds: float = float(int_default_of("verificationTimeoutSeconds"))
    """Timeout of each HTTP request and statement."""
    checks: tuple[str, ...] | None = None
    """Run only these checks (None: all that have a target)."""


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


def http_get(url: str, *, timeout: float = 10.0, auth: tuple[str, str] | None = None) -> HttpAnswer:
    """GET ``url``; never raises (the error is in the answer). Credentials are never echoed."""
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - URLs from settings
    request.add_header("Accept", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URLs from settings
            return HttpAnswer(url=url, status=response.status, body=response.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace") if exc.fp is not None else ""
        return HttpAnswer(url=url, status=exc.code, body=body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpAnswer(url=url, error=str(reason))


def _query_url(prometheus: str, expr: str) -> str:
    return f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})


# --------------------------------------------------------------------------------------------------
# The database (read only)
# --------------------------------------------------------------------------------------------------


def connect_read_only(
    dsn: str, *, dbname: str | None = None, timeout_seconds: float = 10.0
) -> psycopg.Connection[tuple[Any, ...]]:
    """A session in which every transaction is read only: no statement can change the database."""
    import psycopg

    kwargs: dict[str, Any] = {}
    if dbname is not None:
        kwargs["dbname"] = dbname
    ms = int(timeout_seconds * 1000)
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=max(2, int(timeout_seconds)),
        application_name=APPLICATION_NAME,
        options=f"-c default_transaction_read_only=on -c statement_timeout={ms}",
        **kwargs,
    )


_HYPERTABLES_SQL = """
SELECT format('%s.%s', d.hypertable_schema, d.hypertable_name), d.column_name,
       coalesce(d.time_interval::text, d.integer_interval::text)
FROM timescaledb_information.dimensions d
WHERE d.dimension_number = 1 AND d.hypertable_schema NOT LIKE '\\_timescaledb%'
"""
_INDEXES_SQL = """
SELECT format('%s.%s', n.nspname, ci.relname), format('%s.%s', tn.nspname, t.relname), i.indisvalid
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = ci.relnamespace
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE '\\_timescaledb%'
"""
_COMPRESSION_SQL = """
SELECT format('%s.%s', n.nspname, c.relname), coalesce(s.segmentby, ''), coalesce(s.orderby, '')
FROM timescaledb_information.hypertable_compression_settings s
JOIN pg_catalog.pg_class c ON c.oid = s.hypertable
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN timescaledb_information.hypertables h
  ON h.hypertable_schema = n.nspname AND h.hypertable_name = c.relname
WHERE h.compression_enabled
"""
_CAGGS_SQL = """
SELECT format('%s.%s', view_schema, view_name),
       format('%s.%s', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
"""
_VIEWS_SQL = """
SELECT format('%s.%s', schemaname, viewname) FROM pg_catalog.pg_views
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
  AND schemaname NOT LIKE '\\_timescaledb%' AND schemaname <> 'timescaledb_information'
  AND schemaname <> 'timescaledb_experimental'
"""


def _interval_or_text(key: str) -> sql.Composed:
    """``config ->> key`` of a job as the server prints it: an integer offset as is (integer
    hypertables), anything else as an interval's text."""
    from psycopg import sql

    value = sql.SQL("j.config ->> {}").format(sql.Literal(key))
    return sql.SQL(
        "CASE WHEN {value} ~ '^-?[0-9]+$' THEN {value} ELSE ({value})::interval::text END"
    ).format(value=value)


def _jobs_sql() -> sql.Composed:
    from psycopg import sql

    return sql.SQL(_JOBS_TEMPLATE).format(
        **{key: _interval_or_text(key) for key in _JOB_CONFIG_KEYS}
    )


_JOB_CONFIG_KEYS = ("compress_after", "drop_after", "start_offset", "end_offset")
_JOBS_TEMPLATE = """
SELECT j.job_id, j.proc_name,
       CASE WHEN j.hypertable_name IS NULL THEN ''
            ELSE format('%s.%s', j.hypertable_schema, j.hypertable_name) END,
       coalesce(s.last_run_status, ''), coalesce(s.total_failures, 0),
       {compress_after}, {drop_after},
       {start_offset}, {end_offset},
       j.schedule_interval::text,
       e.sqlerrcode, e.err_message,
       CASE WHEN s.last_run_status IS NULL AND s.job_status IS DISTINCT FROM 'Running'
            THEN greatest(s.total_runs - s.total_successes - s.total_failures, 0)
            ELSE 0 END
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN LATERAL (
    SELECT x.sqlerrcode, x.err_message FROM timescaledb_information.job_errors x
    WHERE x.job_id = j.job_id ORDER BY x.finish_time DESC NULLS LAST LIMIT 1
) e ON true
ORDER BY j.job_id
"""


def observe_schema(
    conn: psycopg.Connection[tuple[Any, ...]], intervals: Iterable[str]
) -> tuple[ObservedSchema, list[Job], dict[str, str]]:
    """The TimescaleDB objects and jobs of the connected database, and the server's own text
    for each expected interval (``'2 hours'`` -> ``02:00:00``)."""
    texts = sorted(set(intervals))
    normalize: dict[str, str] = {}
    if texts:
        rows = conn.execute(
            "SELECT t, t::interval::text FROM unnest(%s::text[]) AS t", (texts,)
        ).fetchall()
        normalize = {str(a): str(b) for a, b in rows}
    row = conn.execute(
        "SELECT coalesce(current_setting('timescaledb.license', true), '')"
    ).fetchone()
    license_ = str(row[0]) if row else ""
    hypertables = {
        str(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(_HYPERTABLES_SQL).fetchall()
    }
    indexes = {str(r[0]): (str(r[1]), bool(r[2])) for r in conn.execute(_INDEXES_SQL).fetchall()}
    compression = {
        str(r[0]): (tuple(p.strip() for p in str(r[1]).split(",") if p.strip()), str(r[2]))
        for r in conn.execute(_COMPRESSION_SQL).fetchall()
    }
    caggs = {str(r[1]): str(r[0]) for r in conn.execute(_CAGGS_SQL).fetchall()}
    views = {str(r[0]) for r in conn.execute(_VIEWS_SQL).fetchall()}
    compression_jobs: dict[str, str] = {}
    retention_jobs: dict[str, str] = {}
    refresh_jobs: dict[str, tuple[str, str, str]] = {}
    jobs: list[Job] = []
    for r in conn.execute(_jobs_sql()).fetchall():
        job_id, proc, target, status, failures = r[0], str(r[1]), str(r[2]), str(r[3]), r[4]
        target = caggs.get(target, target)
        if proc in ("policy_compression", "policy_columnstore") and r[5] is not None:
            compression_jobs[target] = str(r[5])
        elif proc == "policy_retention" and r[6] is not None:
            retention_jobs[target] = str(r[6])
        elif proc == "policy_refresh_continuous_aggregate":
            refresh_jobs[target] = (str(r[7]), str(r[8]), str(r[9]))
        jobs.append(
            Job(
                job_id=int(job_id),
                proc=proc,
                target=target,
                last_run_status=status,
                total_failures=int(failures or 0),
                sqlstate=str(r[10] or ""),
                error=str(r[11] or ""),
                crashed_runs=int(r[12] or 0),
            )
        )
    schema = ObservedSchema(
        license=license_,
        hypertables=hypertables,
        indexes=indexes,
        compression=compression,
        compression_jobs=compression_jobs,
        retention_jobs=retention_jobs,
        continuous_aggregates=frozenset(caggs.values()),
        views=frozenset(views - set(caggs.values())),
        refresh_jobs=refresh_jobs,
    )
    return schema, jobs, normalize


_EXTENSIONS_SQL = """
SELECT e.extname, e.extversion, a.default_version
FROM pg_catalog.pg_extension e
LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = e.extname
"""


def observe_extensions(
    dsn: str, *, app_database: str, required: Sequence[str], timeout_seconds: float
) -> list[DatabaseExtensions]:
    """The extensions of every database that accepts connections (templates excluded)."""
    import psycopg

    from ms5_components.migrations.runner import scrub

    with connect_read_only(dsn, timeout_seconds=timeout_seconds) as conn:
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT datname FROM pg_catalog.pg_database"
                " WHERE datallowconn AND NOT datistemplate ORDER BY datname"
            ).fetchall()
        ]
        defaults = {
            str(r[0]): str(r[1])
            for r in conn.execute(
                "SELECT name, default_version FROM pg_catalog.pg_available_extensions"
                " WHERE name = ANY(%s)",
                (list(required),),
            ).fetchall()
        }
    out = []
    for name in names:
        try:
            with connect_read_only(dsn, dbname=name, timeout_seconds=timeout_seconds) as conn:
                rows = conn.execute(_EXTENSIONS_SQL).fetchall()
        except psycopg.OperationalError as exc:
            if "does not exist" in str(exc):
                continue  # dropped while we listed
            out.append(
                DatabaseExtensions(
                    database=name, installed={}, default={}, error=scrub(str(exc), dsn)
                )
            )
            continue
        installed = {str(r[0]): str(r[1]) for r in rows if str(r[0]) != "plpgsql"}
        default = dict(defaults)
        default.update({str(r[0]): str(r[2]) for r in rows if r[2] is not None})
        if name != app_database:
            # Other databases are held to the default version of what they have installed.
            installed = {k: v for k, v in installed.items() if k in required}
        out.append(DatabaseExtensions(database=name, installed=installed, default=default))
    return out


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


def _wanted(target: VerificationTarget, *checks: str) -> bool:
    return target.checks is None or any(c in target.checks for c in checks)


def _database_findings(target: VerificationTarget) -> list[Finding]:
    import psycopg

    from ms5_components.migrations.runner import scrub

    out: list[Finding] = []
    exp = target.expectations
    try:
        if _wanted(target, "extension"):
            out.extend(
                check_extensions(
                    observe_extensions(
                        target.dsn,
                        app_database=target.database,
                        required=exp.extensions,
                        timeout_seconds=target.timeout_seconds,
                    ),
                    app_database=target.database,
                    required=exp.extensions,
                    container=target.containers.database,
                )
            )
        schema_checks = ("hypertables", "indexes", "columnstore", "retention")
        if _wanted(target, *schema_checks, "continuous_aggregates", "jobs"):
            with connect_read_only(target.dsn, timeout_seconds=target.timeout_seconds) as conn:
                schema, jobs, normalize = observe_schema(conn, exp.intervals())
            out.extend(check_schema(exp, schema, normalize=normalize))
            out.extend(check_jobs(jobs))
    except psycopg.Error as exc:
        out.append(
            unreadable_database(
                target.database,
                scrub(str(exc), target.dsn),
                container=target.containers.database,
            )
        )
    return out


def _monitoring_findings(target: VerificationTarget) -> list[Finding]:
    out: list[Finding] = []
    timeout = target.timeout_seconds
    prom = target.prometheus_url
    if prom and _wanted(target, "prometheus", "exporter"):
        deadline = time.monotonic() + target.settle_seconds
        while True:
            ready = http_get(f"{prom}/-/ready", timeout=timeout)
            targets = http_get(f"{prom}/api/v1/targets?state=active", timeout=timeout)
            rules = http_get(f"{prom}/api/v1/rules", timeout=timeout)
            pg_up = http_get(_query_url(prom, "pg_up"), timeout=timeout)
            scrape_error = http_get(
                _query_url(prom, "pg_exporter_last_scrape_error"), timeout=timeout
            )
            unsettled = settling(
                ready,
                targets,
                pg_up,
                scrape_error,
                settle_seconds=target.settle_seconds,
                exporter_jobs=target.exporter_jobs,
            )
            if not unsettled or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if _wanted(target, "prometheus"):
            out.extend(
                check_prometheus(
                    ready, targets, rules, url=prom, container=target.containers.prometheus
                )
            )
        if _wanted(target, "exporter") and target.exporter_jobs:
            out.extend(
                check_exporter(
                    targets,
                    pg_up,
                    scrape_error,
                    exporter_jobs=target.exporter_jobs,
                    scrape_error_jobs=target.scrape_error_jobs,
                    containers=target.containers,
                    prometheus_url=prom,
                )
            )
    gateway = target.pushgateway_url
    if gateway and _wanted(target, "pushgateway"):
        out.extend(
            check_pushgateway(
                http_get(f"{gateway}/-/ready", timeout=timeout),
                url=gateway,
                container=target.containers.pushgateway,
            )
        )
    grafana = target.grafana
    if grafana is not None and _wanted(target, "grafana", "dashboard"):
        auth = (grafana.user, grafana.password)
        health = http_get(f"{grafana.url}/api/health", timeout=timeout)
        board = http_get(
            f"{grafana.url}/api/dashboards/uid/{urllib.parse.quote(grafana.dashboard_uid)}",
            timeout=timeout,
            auth=auth,
        )
        out.extend(
            check_grafana(
                health,
                board,
                url=grafana.url,
                uid=grafana.dashboard_uid,
                title=grafana.dashboard_title,
                panels=grafana.panels,
                container=target.containers.grafana,
            )
        )
    return out


def _seconds(duration: str) -> float:
    """A Prometheus duration (``30s``, ``5m``, ``1m30s``, ``1h``) in seconds; inf if unreadable."""
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts:
        return float("inf")
    return sum(int(n) * units[u] for n, u in parts)


def settling(
    ready: HttpAnswer,
    targets: HttpAnswer,
    pg_up: HttpAnswer,
    scrape_error: HttpAnswer,
    *,
    settle_seconds: float,
    exporter_jobs: Sequence[str],
) -> bool:
    """Whether Prometheus's view may still change within the settle time, right after a deploy:
    Prometheus not ready; a target due within the settle time not scraped yet (one with a longer
    interval - compression: 300 s - is reported as not scraped yet instead); no ``pg_up`` yet;
    or the exporter's last scrape could not reach the database or had a failing query (its
    connections were cut by a database restart, replacement or restore right before: the next
    scrape reconnects). A fault that lasts is judged when the settle time is over."""
    if not ready.ok or any(
        t.get("health") == "unknown"
        and _seconds(str(t.get("scrapeInterval") or "0s")) <= settle_seconds
        for t in _active(targets)
    ):
        return True
    if not exporter_jobs:
        return False
    if not pg_up.ok or not (pg_up.json() or {}).get("data", {}).get("result"):
        return True
    return any(v != 1 for v in _values(pg_up)) or any(v != 0 for v in _values(scrape_error))


def _values(answer: HttpAnswer) -> list[float]:
    data = answer.json()
    if not isinstance(data, Mapping) or data.get("status") != "success":
        return []
    out = []
    for item in (data.get("data") or {}).get("result") or []:
        try:
            out.append(float(item["value"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def _active(answer: HttpAnswer) -> list[Mapping[str, Any]]:
    data = answer.json()
    if not isinstance(data, Mapping):
        return []
    return [t for t in (data.get("data") or {}).get("activeTargets") or [] if isinstance(t, dict)]


def _backup_findings(target: VerificationTarget, now: Callable[[], float]) -> list[Finding]:
    if not _wanted(target, "backup"):
        return []
    source = target.backups
    listed: list[BackupInfo] | None = None
    error = ""
    if source is not None:
        try:
            listed = source.list(target.database)
        except (OSError, ValueError) as exc:
            listed, error = [], str(exc)
    return check_backup(
        listed,
        now=now(),
        max_age_seconds=target.backup_age.seconds,
        limit_rule=target.backup_age.rule,
        source=source.describe() if source is not None else "-",
        scheduler=target.containers.backup_scheduler,
        error=error,
    )


def verify(target: VerificationTarget, *, now: Callable[[], float] = time.time) -> Report:
    """Run every check against ``target``; never changes anything."""
    findings = [
        *_database_findings(target),
        *_monitoring_findings(target),
        *_backup_findings(target, now),
    ]
    return Report.build(findings, warn_only=target.warn_only)


def backup_source_from(spec: str, *, pushgateway_url: str | None) -> BackupSource | None:
    """``ms5:verificationBackupSource``: ``none``, ``pushgateway`` or ``dir:<path>``."""
    if spec == "pushgateway":
        return PushgatewayBackups(pushgateway_url) if pushgateway_url else None
    if spec.startswith("dir:"):
        return BackupDirectory(Path(spec[4:]).expanduser())
    return None
