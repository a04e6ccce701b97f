"""The checks: observed facts in, findings out (pure: the runner collects the facts).

Each function takes what the runner read (catalog rows, HTTP answers already parsed) and the
expectations, and returns one :class:`~.report.Finding` per object, so a report names exactly what
is wrong and what to do next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ms5_components.verification.expectations import Expectations
from ms5_components.verification.report import (
    DATABASE_UNREADABLE,
    Finding,
    fail,
    not_applicable,
    ok,
    warn,
)

FULL_LICENSE = "timescale"
SCHEMA_HISTORY = "ms5_meta.schema_history"

# --------------------------------------------------------------------------------------------------
# Observed facts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Containers:
    """The stack's Docker container names, as the stack created them (next steps name them)."""

    database: str
    exporter: str = ""
    prometheus: str = ""
    pushgateway: str = ""
    grafana: str = ""
    backup_scheduler: str = ""
    """Empty when the stack runs no backup scheduler."""


def logs(container: str) -> str:
    """The command that shows a container's log."""
    return f"`docker logs {container}`"


def unreadable_database(database: str, error: str, *, container: str) -> Finding:
    """A database the verification could not read (never warn only: nothing in it was checked).
    ``error`` must already be scrubbed of secrets."""
    return fail(
        DATABASE_UNREADABLE,
        f"database {database}",
        f"could not be read, so nothing in it was verified: {error}",
        f"check that the database container {container} is running and healthy (`docker ps "
        f"--filter name={container}`, {logs(container)}) and accepts connections from the "
        "deploying host, then `pulumi up` again",
    )


@dataclass(frozen=True, kw_only=True)
class DatabaseExtensions:
    """The extensions one database has, and what the server offers."""

    database: str
    installed: Mapping[str, str]
    """extension -> installed version."""
    default: Mapping[str, str]
    """extension -> default (available) version."""
    error: str = ""
    """Why the database could not be read (empty when it was)."""


@dataclass(frozen=True, kw_only=True)
class ObservedSchema:
    """The TimescaleDB objects of the application database (intervals as the server prints
    ``<interval>::text``)."""

    license: str
    hypertables: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """``schema.table`` -> (time column, chunk interval)."""
    indexes: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    """``schema.index`` -> (``schema.table``, valid)."""
    compression: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    """Hypertables with columnstore/compression enabled -> (segment by, order by)."""
    compression_jobs: Mapping[str, str] = field(default_factory=dict)
    """relation -> compress_after of its policy."""
    retention_jobs: Mapping[str, str] = field(default_factory=dict)
    """relation (a continuous aggregate by its view name) -> drop_after."""
    continuous_aggregates: frozenset[str] = frozenset()
    """``schema.view`` of every continuous aggregate."""
    views: frozenset[str] = frozenset()
    """``schema.view`` of every plain view."""
    refresh_jobs: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    """continuous aggregate -> (start offset, end offset, schedule interval)."""


@dataclass(frozen=True, kw_only=True)
class Job:
    """A TimescaleDB background job and its last run."""

    job_id: int
    proc: str
    target: str
    """``schema.table`` the job works on ('' for server-wide jobs)."""
    last_run_status: str
    """``Success``, ``Failed`` or '' (never run)."""
    total_failures: int = 0
    error: str = ""
    """The server's message of the last failed run (``timescaledb_information.job_errors``)."""
    sqlstate: str = ""
    crashed_runs: int = 0
    """Runs that ended without a result (the worker died, or the server stopped mid-run), when
    the last run is one of them; 0 otherwise."""


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    """One HTTP GET: status and body, or the error that prevented it."""

    url: str
    status: int | None = None
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def problem(self) -> str:
        if self.error:
            return f"GET {self.url} failed: {self.error}"
        return f"GET {self.url} answered HTTP {self.status}: {self.body.strip()[:200]}"


@dataclass(frozen=True, kw_only=True)
class BackupInfo:
    """One published backup on the backup volume."""

    name: str
    finished_epoch: int
    verified: bool
    """False: published without a manifest, or marked as failed verification later."""


# --------------------------------------------------------------------------------------------------
# Database checks
# --------------------------------------------------------------------------------------------------


def check_extensions(
    databases: Sequence[DatabaseExtensions],
    *,
    app_database: str,
    required: Sequence[str],
    container: str,
) -> list[Finding]:
    """The application database has every required extension; every other database that has
    one of them installed has it too, each at the server's default version
    (``pg_available_extensions.default_version``). Every finding names its database."""
    out: list[Finding] = []
    for db in databases:
        if db.error:
            out.append(unreadable_database(db.database, db.error, container=container))
            continue
        wanted = set(required) if db.database == app_database else set()
        for ext in sorted(wanted | set(db.installed)):
            where = f"database {db.database}: extension {ext}"
            installed = db.installed.get(ext)
            default = db.default.get(ext)
            if installed is None:
                out.append(
                    fail(
                        "extension",
                        where,
                        "not installed (a migration declares it)",
                        f"run `pulumi up` (the MigrationSet creates it) or CREATE EXTENSION {ext} "
                        f"in {db.database}",
                    )
                )
            elif default is None:
                out.append(
                    fail(
                        "extension",
                        where,
                        f"installed {installed}, but the server offers no version of it "
                        "(pg_available_extensions): the image lacks the extension",
                        f"deploy an image that ships {ext} (ms5:dbImage), or DROP EXTENSION {ext} "
                        f"in {db.database} if nothing uses it",
                    )
                )
            elif installed != default:
                out.append(
                    fail(
                        "extension",
                        where,
                        f"installed {installed}, the server's default is {default}",
                        f"ALTER EXTENSION {ext} UPDATE in {db.database} (the MigrationSet does it "
                        "when the image changes: `pulumi up`)",
                    )
                )
            else:
                out.append(ok("extension", where, f"installed at the default version {installed}"))
    return out


def _norm_order(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace('"', "")).strip().lower()


def _interval(normalize: Mapping[str, str], text: str) -> str:
    return normalize.get(text, text)


def check_schema(
    expected: Expectations, observed: ObservedSchema, *, normalize: Mapping[str, str]
) -> list[Finding]:
    """Hypertables, indexes, columnstore and retention policies and continuous aggregates
    exactly as the migrations declare them. On a server without the Timescale license the
    licensed features are expected absent (the migrations skipped them with a recorded WARNING)
    and are reported as not applicable; finding one anyway is reported too."""
    full = observed.license == FULL_LICENSE
    out: list[Finding] = []

    def gone(check: str, obj: str, what: str, source: str) -> Finding:
        return fail(
            check,
            obj,
            f"{what} (declared by {source})",
            f"check {SCHEMA_HISTORY} for {source}: if it is recorded as applied, the object was "
            "changed by hand; recreate it as the migration does, or restore the last good backup",
        )

    for h in expected.hypertables:
        found = observed.hypertables.get(h.relation)
        want = _interval(normalize, h.chunk_interval)
        if found is None:
            out.append(gone("hypertables", h.relation, "not a hypertable", h.source))
        elif found[0] != h.time_column or found[1] != want:
            out.append(
                fail(
                    "hypertables",
                    h.relation,
                    f"partitioned by {found[0]} every {found[1]}; {h.source} declares "
                    f"{h.time_column} every {want}",
                    "set_chunk_time_interval() to the declared interval (new chunks only), or put "
                    "the new interval in a migration",
                )
            )
        else:
            out.append(ok("hypertables", h.relation, f"by {found[0]}, chunks of {found[1]}"))

    for i in expected.indexes:
        schema = i.relation.split(".", 1)[0]
        key = f"{schema}.{i.name}"
        found_index = observed.indexes.get(key)
        if found_index is None:
            out.append(gone("indexes", key, f"index on {i.relation} missing", i.source))
        elif found_index[0] != i.relation:
            out.append(
                fail(
                    "indexes",
                    key,
                    f"is on {found_index[0]}, {i.source} declares it on {i.relation}",
                    "drop the stray index and recreate it as the migration does",
                )
            )
        elif not found_index[1]:
            out.append(
                fail(
                    "indexes",
                    key,
                    "invalid (a CREATE INDEX CONCURRENTLY failed part-way)",
                    f"DROP INDEX CONCURRENTLY {key}, then `pulumi up` re-runs {i.source}",
                )
            )
        else:
            out.append(ok("indexes", key, f"valid, on {i.relation}"))

    licence_note = (
        f'this server has the "{observed.license}" license: the migration skipped it with a '
        f"recorded WARNING ({SCHEMA_HISTORY})"
    )
    for c in expected.columnstore:
        job_after = observed.compression_jobs.get(c.relation)
        enabled = observed.compression.get(c.relation)
        if not full:
            if enabled is None and job_after is None:
                out.append(not_applicable("columnstore", c.relation, licence_note))
            else:
                out.append(
                    warn(
                        "columnstore",
                        c.relation,
                        "columnstore found although the server has no Timescale license",
                    )
                )
            continue
        want_after = _interval(normalize, c.compress_after)
        problems = []
        if enabled is None:
            problems.append("columnstore (compression) not enabled")
        else:
            segment, order = enabled
            if tuple(segment) != c.segment_by:
                problems.append(
                    f"segment by {', '.join(segment) or '(none)'}, declared "
                    f"{', '.join(c.segment_by)}"
                )
            if _norm_order(order) != _norm_order(c.order_by):
                problems.append(f"order by {order}, declared {c.order_by}")
        if job_after is None:
            problems.append("no columnstore policy")
        elif job_after != want_after:
            problems.append(f"policy converts after {job_after}, declared {want_after}")
        if problems:
            out.append(
                fail(
                    "columnstore",
                    c.relation,
                    "; ".join(problems) + f" (declared by {c.source})",
                    f"call ms5_admin.set_columnstore for {c.relation} in a new migration (it "
                    "replaces a policy whose interval differs)",
                )
            )
        else:
            out.append(ok("columnstore", c.relation, f"enabled, converts after {want_after}"))

    for r in expected.retention:
        found_after = observed.retention_jobs.get(r.relation)
        if not full:
            out.append(
                not_applicable("retention", r.relation, licence_note)
                if found_after is None
                else warn("retention", r.relation, "retention policy found without the license")
            )
            continue
        want = _interval(normalize, r.drop_after)
        if found_after is None:
            out.append(gone("retention", r.relation, "no retention policy", r.source))
        elif found_after != want:
            out.append(
                fail(
                    "retention",
                    r.relation,
                    f"drops after {found_after}, {r.source} declares {want}",
                    f"call ms5_admin.set_retention for {r.relation} in a new migration",
                )
            )
        else:
            out.append(ok("retention", r.relation, f"drops chunks older than {want}"))

    refresh = {p.view: p for p in expected.refresh_policies}
    for cagg in expected.continuous_aggregates:
        view = cagg.view
        if not full:
            if view in observed.views:
                out.append(
                    not_applicable(
                        "continuous_aggregates",
                        view,
                        f"a plain view (computed at query time): {licence_note}",
                    )
                )
            elif view in observed.continuous_aggregates:
                out.append(ok("continuous_aggregates", view, "a continuous aggregate"))
            else:
                out.append(
                    gone(
                        "continuous_aggregates",
                        view,
                        "neither a continuous aggregate nor its plain-view fallback",
                        cagg.source,
                    )
                )
            continue
        if view not in observed.continuous_aggregates:
            what = (
                "a plain view, not a continuous aggregate" if view in observed.views else "missing"
            )
            out.append(
                fail(
                    "continuous_aggregates",
                    view,
                    f"{what} (declared by {cagg.source})",
                    "call ms5_admin.create_continuous_aggregate again in a new migration (it "
                    "converts the plain view)",
                )
            )
            continue
        policy = refresh.get(view)
        found_policy = observed.refresh_jobs.get(view)
        if policy is None:
            out.append(ok("continuous_aggregates", view, "a continuous aggregate"))
            continue
        want_policy = (
            _interval(normalize, policy.start_offset),
            _interval(normalize, policy.end_offset),
            _interval(normalize, policy.schedule_interval),
        )
        if found_policy is None:
            out.append(
                gone(
                    "continuous_aggregates",
                    view,
                    "continuous aggregate without its refresh policy",
                    policy.source,
                )
            )
        elif tuple(found_policy) != want_policy:
            out.append(
                fail(
                    "continuous_aggregates",
                    view,
                    "refresh policy (start, end, every) is "
                    f"{', '.join(found_policy)}; {policy.source} declares {', '.join(want_policy)}",
                    f"call ms5_admin.set_refresh_policy for {view} in a new migration",
                )
            )
        else:
            out.append(
                ok(
                    "continuous_aggregates",
                    view,
                    f"continuous aggregate refreshed every {want_policy[2]}",
                )
            )
    return out


def check_jobs(jobs: Sequence[Job]) -> list[Finding]:
    """Every background job whose last run failed is reported with the server's message."""
    out: list[Finding] = []
    failing = [j for j in jobs if j.last_run_status.lower() == "failed"]
    for job in failing:
        target = f" on {job.target}" if job.target else ""
        state = f" [SQLSTATE {job.sqlstate}]" if job.sqlstate else ""
        message = job.error or "failed (no error recorded in timescaledb_information.job_errors)"
        out.append(
            fail(
                "jobs",
                f"job {job.job_id} ({job.proc}{target})",
                f"last run failed{state}: {message} ({job.total_failures} failed runs)",
                f"see SELECT * FROM timescaledb_information.job_errors WHERE job_id = {job.job_id}"
                f"; a run by hand (CALL run_job({job.job_id})) shows whether the job itself works",
            )
        )
    crashed = [j for j in jobs if j.crashed_runs and j not in failing]
    for job in crashed:
        # A warning, not a failure: a server stopped during a run (the image's first
        # initialisation stops its temporary server while the scheduler may be starting a job)
        # leaves the same trace as a worker that died; the job runs again at its next start.
        target = f" on {job.target}" if job.target else ""
        out.append(
            warn(
                "jobs",
                f"job {job.job_id} ({job.proc}{target})",
                f"last run did not finish: the worker ended without a result ({job.crashed_runs} "
                "such runs): the server stopped during the run, or the worker crashed",
                f"see the server log at the run's start (timescaledb_information.job_stats."
                f"last_run_started_at); CALL run_job({job.job_id}) shows whether the job works",
            )
        )
    if not failing and not crashed:
        out.append(ok("jobs", "background jobs", f"{len(jobs)} jobs, none failing"))
    return out


# --------------------------------------------------------------------------------------------------
# Monitoring checks
# --------------------------------------------------------------------------------------------------


def _targets(answer: HttpAnswer) -> list[Mapping[str, Any]]:
    data = answer.json()
    if not isinstance(data, Mapping):
        return []
    targets = (data.get("data") or {}).get("activeTargets") or []
    return [t for t in targets if isinstance(t, Mapping)]


def _target_name(target: Mapping[str, Any]) -> str:
    labels = target.get("labels") or {}
    return f"target {labels.get('job', '?')} {labels.get('instance', target.get('scrapeUrl', '?'))}"


def _prometheus_config(container: str) -> str:
    from ms5_components.monitoring.config import PROMETHEUS_CONFIG_PATH

    return f"`docker exec {container} cat {PROMETHEUS_CONFIG_PATH}`"


def check_prometheus(
    ready: HttpAnswer, targets: HttpAnswer, rules: HttpAnswer, *, url: str, container: str
) -> list[Finding]:
    """Prometheus ready, every target up, every rule healthy."""
    if not ready.ok:
        return [
            fail(
                "prometheus",
                url,
                f"not ready: {ready.problem()}",
                f"see {logs(container)}: Prometheus is ready once it has loaded its data and a "
                f"valid configuration ({_prometheus_config(container)})",
            )
        ]
    out = [ok("prometheus", url, "ready")]
    if not targets.ok:
        out.append(
            fail(
                "prometheus",
                f"{url} targets",
                targets.problem(),
                f"Prometheus is ready but {url}/api/v1/targets did not answer: see "
                f"{logs(container)}",
            )
        )
    else:
        active = _targets(targets)
        if not active:
            out.append(
                fail(
                    "prometheus",
                    f"{url} targets",
                    "no active scrape target",
                    "the loaded prometheus.yml has no scrape_configs: compare "
                    f"{_prometheus_config(container)} with the generated one "
                    f"(tools/gen_monitoring.py) and see {logs(container)}",
                )
            )
        for target in active:
            name = _target_name(target)
            if target.get("health") == "up":
                out.append(ok("prometheus", name, "up"))
            elif target.get("health") == "unknown":
                # Not scraped yet (a long interval, right after a start): not down either.
                out.append(
                    warn(
                        "prometheus",
                        name,
                        "not scraped yet (its scrape interval has not come round since start)",
                        "run the verification again later (ms5:verificationRunId)",
                    )
                )
            else:
                out.append(
                    fail(
                        "prometheus",
                        name,
                        f"{target.get('health', 'unknown')}: "
                        f"{target.get('lastError') or 'not scraped yet'}",
                        f"check that {target.get('scrapeUrl', 'the target')} answers from the "
                        f"Prometheus container {container} (is the target's container running and "
                        "healthy?)",
                    )
                )
    if not rules.ok:
        out.append(
            fail(
                "prometheus",
                f"{url} rules",
                rules.problem(),
                f"Prometheus is ready but {url}/api/v1/rules did not answer: see {logs(container)}",
            )
        )
        return out
    data = rules.json()
    groups = ((data or {}).get("data") or {}).get("groups") or [] if isinstance(data, dict) else []
    count = 0
    for group in groups:
        for rule in group.get("rules") or []:
            count += 1
            health = rule.get("health")
            if health not in ("ok", "unknown"):
                out.append(
                    fail(
                        "prometheus",
                        f"rule {group.get('name')}/{rule.get('name')}",
                        f"{health}: {rule.get('lastError') or ''}".strip(),
                        f"fix the expression of rule {rule.get('name')} in "
                        "ms5_components/monitoring/rules.py (promtool check rules on the "
                        "generated file) and redeploy",
                    )
                )
    if count == 0:
        out.append(
            fail(
                "prometheus",
                f"{url} rules",
                "no rule loaded",
                f"check rule_files in {_prometheus_config(container)} and that the rule file it "
                f"names is in the container; see {logs(container)}",
            )
        )
    else:
        bad = sum(1 for f in out if f.object.startswith("rule ") and f.status == "fail")
        if not bad:
            out.append(ok("prometheus", f"{url} rules", f"{count} rules healthy"))
    return out


def _vector(answer: HttpAnswer) -> list[tuple[Mapping[str, str], float]]:
    data = answer.json()
    if not isinstance(data, Mapping) or data.get("status") != "success":
        return []
    out = []
    for item in (data.get("data") or {}).get("result") or []:
        try:
            out.append((item.get("metric") or {}, float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def check_exporter(
    targets: HttpAnswer,
    pg_up: HttpAnswer,
    scrape_error: HttpAnswer,
    *,
    exporter_jobs: Sequence[str],
    scrape_error_jobs: Sequence[str],
    containers: Containers,
    prometheus_url: str,
) -> list[Finding]:
    """postgres_exporter up (as Prometheus sees it: every exporter job's target up) and
    connected to the database with no scrape errors (``pg_up`` 1, and a
    ``pg_exporter_last_scrape_error`` sample of 0 from each of ``scrape_error_jobs``, the jobs
    that keep that metric, whose target is up)."""
    out: list[Finding] = []
    exporter, prometheus = containers.exporter, containers.prometheus
    next_step = (
        f"see {logs(exporter)}: a refused login means the exporter role's password "
        "(MonitoringRole) differs from the database's; a failing query names itself there"
    )
    if not targets.ok:
        return [fail("exporter", "postgres_exporter", targets.problem(), next_step)]
    by_job: dict[str, Mapping[str, Any]] = {}
    for found in _targets(targets):
        job = (found.get("labels") or {}).get("job")
        if job in exporter_jobs:
            by_job[str(job)] = found
    for job in exporter_jobs:
        target = by_job.get(job)
        if target is None:
            out.append(
                fail(
                    "exporter",
                    f"job {job}",
                    "no scrape target for this job in Prometheus",
                    f"check the scrape_configs entry of job {job} in "
                    f"{_prometheus_config(prometheus)} and {prometheus_url}/targets",
                )
            )
        elif target.get("health") == "unknown":
            out.append(
                warn(
                    "exporter",
                    f"job {job}",
                    "not scraped yet (its scrape interval has not come round since start)",
                    "run the verification again later (ms5:verificationRunId)",
                )
            )
        elif target.get("health") != "up":
            out.append(
                fail(
                    "exporter",
                    f"job {job}",
                    f"exporter target {target.get('health')}: {target.get('lastError') or ''}",
                    next_step,
                )
            )
    up = _vector(pg_up)
    if not pg_up.ok or not up:
        out.append(
            fail(
                "exporter",
                "pg_up",
                "no pg_up sample in Prometheus (exporter not scraped)"
                if pg_up.ok
                else pg_up.problem(),
                next_step,
            )
        )
    elif any(v != 1 for _, v in up):
        out.append(
            fail("exporter", "pg_up", "the exporter cannot connect to the database", next_step)
        )
    out.extend(
        _scrape_errors(
            scrape_error,
            scraped=[j for j in scrape_error_jobs if (by_job.get(j) or {}).get("health") == "up"],
            exporter=exporter,
            prometheus_url=prometheus_url,
        )
    )
    if not any(f.status == "fail" for f in out):
        up_jobs = sum(1 for t in by_job.values() if t.get("health") == "up")
        out.append(
            ok(
                "exporter",
                "postgres_exporter",
                f"up in {up_jobs} of {len(exporter_jobs)} jobs, no errors",
            )
        )
    return out


def _scrape_errors(
    answer: HttpAnswer, *, scraped: Sequence[str], exporter: str, prometheus_url: str
) -> list[Finding]:
    """``pg_exporter_last_scrape_error`` of every exporter job whose target is up: a missing
    sample fails like an error (the exporter's health is then unknown), named by its job. Jobs
    whose target is missing or not scraped yet are reported by the target check instead."""
    metric = "pg_exporter_last_scrape_error"
    if not answer.ok:
        return [
            fail(
                "exporter",
                metric,
                answer.problem(),
                f"Prometheus did not answer the query: see {logs(exporter)} and "
                f"{prometheus_url}/targets",
            )
        ]
    by_job: dict[str, list[float]] = {}
    for labels, value in _vector(answer):
        by_job.setdefault(str(labels.get("job", "")), []).append(value)
    out: list[Finding] = []
    for job in scraped:
        values = by_job.get(job)
        if not values:
            out.append(
                fail(
                    "exporter",
                    f"{metric} (job {job})",
                    f"no {metric} sample of job {job} in Prometheus although its target is up: "
                    "whether the exporter's queries succeed is unknown",
                    f"open {prometheus_url}/targets: the target of job {job} must be "
                    f"postgres_exporter (its /metrics has {metric}); see {logs(exporter)}",
                )
            )
        elif any(v != 0 for v in values):
            out.append(
                fail(
                    "exporter",
                    f"{metric} (job {job})",
                    "the last scrape had errors (a query failed)",
                    f"see {logs(exporter)} for the failing query; check the queries file against "
                    "the TimescaleDB version",
                )
            )
    return out


def check_pushgateway(ready: HttpAnswer, *, url: str, container: str) -> list[Finding]:
    if ready.ok:
        return [ok("pushgateway", url, "ready")]
    return [
        fail(
            "pushgateway",
            url,
            ready.problem(),
            f"check the Pushgateway container {container}: {logs(container)}",
        )
    ]


def check_grafana(
    health: HttpAnswer,
    dashboard: HttpAnswer,
    *,
    url: str,
    uid: str,
    title: str,
    panels: Sequence[str],
    container: str,
) -> list[Finding]:
    """Grafana's /api/health says its database is ok; the dashboard ``uid`` is provisioned with
    its title and every expected panel."""
    out: list[Finding] = []
    body = health.json() if health.ok else None
    if not health.ok or not isinstance(body, Mapping):
        out.append(
            fail(
                "grafana",
                url,
                health.problem() if not health.ok else "/api/health did not answer JSON",
                f"check the Grafana container {container}: {logs(container)}",
            )
        )
    elif body.get("database") != "ok":
        out.append(
            fail(
                "grafana",
                url,
                f"/api/health reports database {body.get('database')!r}",
                f"see {logs(container)}: Grafana keeps its database on its data volume "
                "(full disk, wrong owner)",
            )
        )
    else:
        out.append(ok("grafana", url, f"healthy (version {body.get('version', '?')})"))
    obj = f"dashboard {uid}"
    if dashboard.status == 404:
        out.append(
            fail(
                "dashboard",
                obj,
                "not provisioned (404)",
                f"see {logs(container)} for the dashboard provisioning error (the provider file "
                "and the dashboard JSON are uploaded into the container)",
            )
        )
        return out
    if dashboard.status in (401, 403):
        out.append(
            fail(
                "dashboard",
                obj,
                f"HTTP {dashboard.status}: the admin login was refused",
                "the Grafana admin password in state differs from Grafana's: restart the Grafana "
                "container (it resets the admin password at start)",
            )
        )
        return out
    doc = dashboard.json() if dashboard.ok else None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("dashboard"), Mapping):
        out.append(
            fail(
                "dashboard",
                obj,
                dashboard.problem(),
                f"{url}/api/dashboards/uid/{uid} must answer the dashboard's JSON: see "
                f"{logs(container)}",
            )
        )
        return out
    board = doc["dashboard"]
    found_panels: set[str] = set()
    for panel in board.get("panels") or []:
        found_panels.add(str(panel.get("title")))
        for inner in panel.get("panels") or []:
            found_panels.add(str(inner.get("title")))
    missing = [p for p in panels if p not in found_panels]
    if board.get("uid") != uid or board.get("title") != title:
        out.append(
            fail(
                "dashboard",
                obj,
                f"found uid {board.get('uid')!r} titled {board.get('title')!r}, expected {title!r}",
                "redeploy Grafana with the generated dashboard",
            )
        )
    elif missing:
        out.append(
            fail(
                "dashboard",
                obj,
                f"panels missing: {', '.join(missing)}",
                "redeploy Grafana with the generated dashboard (the provisioned file is stale)",
            )
        )
    else:
        out.append(ok("dashboard", obj, f"provisioned ({len(found_panels)} panels)"))
    return out


def check_backup(
    backups: Sequence[BackupInfo] | None,
    *,
    now: float,
    max_age_seconds: int,
    limit_rule: str,
    source: str,
    scheduler: str = "",
    error: str = "",
) -> list[Finding]:
    """The newest verified backup exists and is not older than the schedule allows
    (``max_age_seconds``, derived by :func:`ms5_components.backups.plan.backup_age_limit`, whose
    rule ``limit_rule`` describes). ``scheduler`` is the backup scheduler's container ('' when
    the stack runs none)."""
    where = (
        f"see the backup scheduler's log ({logs(scheduler)})"
        if scheduler
        else "see the log of the last deploy's Backup resource (`pulumi up` takes one)"
    )
    if error:
        return [
            fail(
                "backup",
                source,
                f"backups could not be listed: {error}",
                f"check that {source} answers from the deploying host",
            )
        ]
    if backups is None:
        return [
            warn(
                "backup",
                source,
                "no backup source configured for this stack",
                "deploy the backup capability (Backup resource) so the verification can read it",
            )
        ]
    verified = sorted((b for b in backups if b.verified), key=lambda b: b.finished_epoch)
    if not verified:
        return [
            fail(
                "backup",
                source,
                "no verified backup",
                "take a backup now (the Backup resource runs on `pulumi up`; or the backup "
                f"scheduler); {where}",
            )
        ]
    newest = verified[-1]
    age_hours = (now - newest.finished_epoch) / 3600
    out: list[Finding] = []
    newer_unverified = [
        b for b in backups if not b.verified and b.finished_epoch > newest.finished_epoch
    ]
    if newer_unverified:
        out.append(
            warn(
                "backup",
                newer_unverified[-1].name,
                "newer than the newest verified backup but not verified",
                f"its verification failed: {where}",
            )
        )
    limit_hours = max_age_seconds / 3600
    if now - newest.finished_epoch > max_age_seconds:
        out.append(
            fail(
                "backup",
                newest.name,
                f"newest verified backup is {age_hours:.1f} h old (limit {limit_hours:g} h: "
                f"{limit_rule})",
                f"{where}; take a backup now",
            )
        )
    else:
        out.append(
            ok(
                "backup",
                newest.name,
                f"newest verified backup, {age_hours:.1f} h old (limit {limit_hours:g} h)",
            )
        )
    return out
