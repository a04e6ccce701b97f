"""Monitoring against real services: TimescaleDB with the migrated MS5.0 schema, the real
postgres_exporter with the generated queries, a real Pushgateway with sample batch results, and a
real Prometheus scraping with the generated configuration and rules.

Checks: no scrape errors; every exporter metric is kept by exactly one job (or deliberately
dropped); every PromQL expression of the rules and the dashboard parses and returns data (unless
listed as expected-empty with a reason); every metric name they use exists; every rule evaluates
without error; the SQL panels run as Grafana's read-only role.

The Prometheus configuration is the generated one with one test-only change: every job is scraped
every 2 s (``interval_override_seconds``) so rates have data within seconds.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from monitoring_services import start_exporter, start_prometheus
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import ms5_testenv
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import run as run_migrations
from ms5_components.monitoring import (
    dashboard,
    exporter_queries,
    metrics,
    prometheus_config,
    rules,
)
from ms5_components.monitoring.config import FileInputs, GeneratedFiles, generate_files
from ms5_components.monitoring.role import RoleProps, disable_role, ensure_role

pytestmark = pytest.mark.integration

SCRAPE_SECONDS = 2
DATA_TIMEOUT = 120.0

# Custom queries that legitimately return no rows: no continuous aggregate (Apache build), no
# job whose last run failed (a healthy licensed server).
MAY_BE_EMPTY = frozenset({"timescaledb_continuous_aggregate", "timescaledb_job_last_error"})

# Metric names that Prometheus itself creates for every target.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


@dataclass(frozen=True)
class Stack:
    """The running services and the generated files."""

    admin_dsn: str
    database: str
    exporter_role: RoleProps
    grafana_role: RoleProps
    files: GeneratedFiles
    queries: tuple[exporter_queries.CustomQuery, ...]
    exporter: ms5_testenv.HttpService
    prometheus: ms5_testenv.HttpService
    pushgateway_url: str
    dashboard_inputs: dashboard.DashboardInputs
    alerts: rules.AlertSettings


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def _query(stack: Stack, expr: str) -> dict[str, object]:
    url = f"{stack.prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return dict(json.loads(_get(url)))
    except urllib.error.HTTPError as exc:  # 400: the expression does not parse
        return dict(json.loads(exc.read().decode()))


def _metric_names(text: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _push_samples(url: str) -> None:
    """Sample results of every batch metric, pushed like the later issues' jobs will."""
    now = time.time()
    values = {
        metrics.BACKUP_LAST_SUCCESS.name: now - 3600,
        metrics.BACKUP_LAST_RUN_SUCCESS.name: 1,
        metrics.BACKUP_SIZE.name: 123_456_789,
        metrics.BACKUP_DURATION.name: 42.5,
        metrics.RESTORE_DRILL_LAST_SUCCESS.name: now - 86_400,
        metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name: 1,
        metrics.RESTORE_DRILL_DURATION.name: 12.5,
        metrics.BENCHMARK_THROUGHPUT.name: 950_000,
        metrics.BENCHMARK_THROUGHPUT_BASELINE.name: 1_000_000,
        metrics.BENCHMARK_LATENCY.name: 0.09,
        metrics.BENCHMARK_LATENCY_BASELINE.name: 0.1,
        metrics.BENCHMARK_LAST_RUN.name: now,
    }
    label_values = {
        "database": "ms5",
        "benchmark": "ingest_copy",
        "quantile": "0.95",
    }
    bodies: dict[str, list[str]] = {}
    for metric in metrics.PUSHED_METRICS:
        labels = dict(label_values)
        if metric.labels == ("benchmark", "quantile"):
            labels["benchmark"] = "oee_daily"
        rendered = ",".join(f'{k}="{labels[k]}"' for k in metric.labels)
        bodies.setdefault(metric.push_job, []).extend(
            [
                f"# HELP {metric.name} {metric.help}",
                f"# TYPE {metric.name} {metric.kind}",
                f"{metric.name}{{{rendered}}} {values[metric.name]}",
            ]
        )
    for job, lines in bodies.items():
        request = urllib.request.Request(
            f"{url}/metrics/job/{job}",
            data=("\n".join(lines) + "\n").encode(),
            method="PUT",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 202)


def _activity(dsn: str) -> None:
    """Some telemetry rows, so hypertables have chunks and the statistics move."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ms5.machines (machine_id, site, line_id, name)"
            " VALUES ('m1', 'plant', 'line-1', 'press 1') ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value)"
            " SELECT t, 'm1', 'temperature', random() * 80"
            " FROM generate_series(now() - interval '2 days', now(), interval '1 minute') t"
        )
        conn.execute("ANALYZE ms5.machine_metrics")
        conn.execute("SELECT count(*) FROM ms5.machine_metrics WHERE time > now() - interval '1h'")


@pytest.fixture(scope="module")
def stack(
    testenv: ms5_testenv.ServiceEnv,
    pg_server: ms5_testenv.PostgresServer,
    pushgateway_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:10]
    database = f"ms5_mon_{suffix}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database))
        )
    admin_dsn = make_conninfo(pg_server.dsn, dbname=database)
    exporter_role = RoleProps(
        admin_dsn=admin_dsn,
        role=f"ms5_exporter_{suffix}",
        password=uuid.uuid4().hex,
        database=database,
        member_of=("pg_monitor",),
        connection_limit=5,
        statement_timeout_ms=15_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    grafana_role = RoleProps(
        admin_dsn=admin_dsn,
        role=f"ms5_grafana_{suffix}",
        password=uuid.uuid4().hex,
        database=database,
        member_of=("pg_monitor", "pg_read_all_data"),
        connection_limit=10,
        statement_timeout_ms=30_000,
        lock_timeout_ms=1_000,
        idle_in_transaction_timeout_ms=60_000,
    )
    services: list[ms5_testenv.HttpService] = []
    try:
        run_migrations(admin_dsn, load_directory(repository_migrations_dir()))
        ensure_role(exporter_role)
        ensure_role(grafana_role)
        _activity(admin_dsn)
        _push_samples(pushgateway_url)

        version = exporter_queries.parse_timescaledb_version(pg_server.timescaledb_version or "")
        alerts = rules.AlertSettings()
        files = generate_files(
            FileInputs(
                timescaledb_version=version,
                database=database,
                db_host="127.0.0.1",
                db_port=pg_server.port,
                exporter_host="unused",
                prometheus_host="unused",
                pushgateway_host="unused",
                stack="test",
                alerts=alerts,
            )
        )
        queries = exporter_queries.custom_queries(timescaledb_version=version)
        work = tmp_path_factory.mktemp("monitoring")
        exporter = start_exporter(
            testenv,
            port=pg_server.port,
            database=database,
            role=exporter_role,
            files=files,
            work=work,
        )
        services.append(exporter)
        prometheus = start_prometheus(
            testenv,
            exporter_port=exporter.port,
            pushgateway_url=pushgateway_url,
            files=files,
            queries=queries,
            work=work,
            scrape_seconds=SCRAPE_SECONDS,
            self_target="127.0.0.1:1",
        )
        services.append(prometheus)
        yield Stack(
            admin_dsn=admin_dsn,
            database=database,
            exporter_role=exporter_role,
            grafana_role=grafana_role,
            files=files,
            queries=queries,
            exporter=exporter,
            prometheus=prometheus,
            pushgateway_url=pushgateway_url,
            dashboard_inputs=dashboard.DashboardInputs(
                database=database,
                backup_max_age_hours=alerts.backup_max_age_hours,
                storage_budget_bytes=alerts.storage_budget_bytes,
            ),
            alerts=alerts,
        )
    finally:
        for service in reversed(services):
            testenv.stop(service)
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            for props in (exporter_role, grafana_role):
                # The database (and its CONNECT grant) is gone; nothing else depends on the role.
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(props.role)))


# ------------------------------------------------------------------------------------------------
# What to check
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """One PromQL expression to check, where it comes from, and whether it may be empty."""

    origin: str
    expr: str
    expected_empty: str | None


def rule_expressions(alerts: rules.AlertSettings) -> list[Expression]:
    """Signals (must have data), full alert expressions (must parse), recording rules."""
    out = [
        Expression(f"record {r.record}", r.expr, r.expected_empty) for r in rules.RECORDING_RULES
    ]
    for alert in rules.alert_rules(alerts):
        for tier in alert.tiers:
            out.append(
                Expression(
                    f"{alert.name} {tier.severity} signal",
                    alert.signal_for(tier),
                    alert.expected_empty,
                )
            )
            out.append(
                Expression(
                    f"{alert.name} {tier.severity} expr",
                    alert.expr(tier),
                    "an alert expression is empty unless the alert fires",
                )
            )
        if alert.guard is not None:
            out.append(Expression(f"{alert.name} guard", alert.guard.signal, None))
    return out


def dashboard_expressions(stack: Stack) -> list[Expression]:
    """Every Prometheus query of the built dashboard JSON, variables substituted."""
    document = dashboard.build_dashboard(stack.dashboard_inputs)
    reasons = dashboard.expected_empty(stack.dashboard_inputs)
    out = []
    for title, target in dashboard.panel_targets(document):
        expr = target.get("expr")
        if not isinstance(expr, str):
            continue
        out.append(
            Expression(
                f"panel {title!r}",
                dashboard.promql_for_check(expr, database=stack.database),
                reasons.get(expr),
            )
        )
    return out


_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


def promql_metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regexes) used by a PromQL expression."""
    regexes = set(re.findall(r'__name__\s*=~\s*"([^"]*)"', expr))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text):
        token = match.group(1)
        if token.lower() not in _KEYWORDS:
            names.add(token)
    return names, regexes


def _wait_for_data(stack: Stack, expressions: list[Expression]) -> dict[str, dict[str, object]]:
    """Query each expression until it returns data (or the deadline); the last answers."""
    deadline = time.monotonic() + DATA_TIMEOUT
    answers: dict[str, dict[str, object]] = {}
    pending = list(expressions)
    while True:
        still = []
        for item in pending:
            answer = _query(stack, item.expr)
            answers[item.expr] = answer
            data = answer.get("data")
            result = data.get("result") if isinstance(data, dict) else None
            if answer.get("status") == "success" and not result and item.expected_empty is None:
                still.append(item)
        pending = still
        if not pending or time.monotonic() > deadline:
            return answers
        time.sleep(SCRAPE_SECONDS)


def _result(answer: dict[str, object]) -> list[object]:
    data = answer.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    return list(result) if isinstance(result, list) else []


@pytest.fixture(scope="module")
def answers(stack: Stack) -> dict[str, dict[str, object]]:
    """Every rule and dashboard expression, asked once the data is there."""
    expressions = rule_expressions(stack.alerts) + dashboard_expressions(stack)
    return _wait_for_data(stack, expressions)


# ------------------------------------------------------------------------------------------------
# The exporter
# ------------------------------------------------------------------------------------------------


def test_exporter_scrape_reports_no_errors(stack: Stack) -> None:
    started = time.monotonic()
    text = _get(f"{stack.exporter.url}/metrics", timeout=30)
    elapsed = time.monotonic() - started
    samples = {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["pg_up"] == "1"
    assert samples["pg_exporter_last_scrape_error"] == "0"
    collectors = {k: v for k, v in samples.items() if k.startswith("pg_scrape_collector_success")}
    assert collectors, "no built-in collector ran"
    assert all(v == "1" for v in collectors.values()), collectors
    load_errors = [v for k, v in samples.items() if k.startswith("pg_exporter_user_queries_load")]
    assert load_errors == ["0"]
    enabled = {c.name for c in exporter_queries.COLLECTORS if c.enabled}
    ran = {re.search(r'collector="([^"]+)"', k).group(1) for k in collectors}  # type: ignore[union-attr]
    assert ran == enabled
    assert stack.exporter.process is not None
    log = stack.exporter.process.log_tail(400)
    errors = [line for line in log.splitlines() if "level=ERROR" in line]
    assert not errors, "\n".join(errors)
    print(f"\nexporter scrape: {elapsed:.3f} s, {len(samples)} series")
    assert elapsed < 10


def test_every_custom_query_runs_as_the_monitoring_role(stack: Stack) -> None:
    text = _get(f"{stack.exporter.url}/metrics", timeout=30)
    emitted = _metric_names(text)
    props = stack.exporter_role
    with psycopg.connect(
        make_conninfo(
            stack.admin_dsn, user=props.role, password=props.password, dbname=stack.database
        )
    ) as conn:
        for query in stack.queries:
            cur = conn.execute(query.sql)  # type: ignore[arg-type]
            assert cur.description is not None
            assert [d.name for d in cur.description] == [c.name for c in query.columns]
            rows = cur.fetchall()
            assert len(rows) <= 2 * exporter_queries.DEFAULT_TOP_N + 1, query.namespace
            if rows:
                assert set(query.metric_names) <= emitted, query.namespace
            else:
                assert query.namespace in MAY_BE_EMPTY, f"{query.namespace} returned no rows"
        conn.rollback()


def test_every_exporter_metric_is_kept_by_exactly_one_job_or_dropped(stack: Stack) -> None:
    emitted = _metric_names(_get(f"{stack.exporter.url}/metrics", timeout=30))
    problems = []
    for name in sorted(emitted):
        jobs = prometheus_config.job_for_metric(name, stack.queries)
        dropped = prometheus_config.is_dropped(name)
        if len(jobs) > 1 or (not jobs and not dropped) or (jobs and dropped and len(jobs) != 1):
            problems.append(f"{name}: jobs={jobs} dropped={dropped}")
    assert not problems, "\n".join(problems)


def test_four_exporter_jobs_and_pushgateway_are_up(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = _result(_query(stack, 'up{job!="prometheus"}'))
        up = {r["metric"]["job"]: r["value"][1] for r in result}  # type: ignore[index]
        wanted = {*metrics.EXPORTER_JOBS, metrics.JOB_PUSHGATEWAY}
        if set(up) >= wanted and all(up[j] == "1" for j in wanted):
            break
        assert time.monotonic() < deadline, up
        time.sleep(SCRAPE_SECONDS)
    # Each job stores only its share: e.g. pg_up only under core, compression only under its job.
    jobs = {
        r["metric"]["job"]  # type: ignore[index]
        for r in _result(_query(stack, "pg_up"))
    }
    assert jobs == {metrics.JOB_CORE}
    jobs = {
        r["metric"]["job"]  # type: ignore[index]
        for r in _result(_query(stack, "timescaledb_compression_before_bytes"))
    }
    assert jobs == {metrics.JOB_COMPRESSION}
    instances = {
        r["metric"]["instance"]  # type: ignore[index]
        for r in _result(_query(stack, '{job=~"timescaledb-.*"}'))
    }
    assert instances == {prometheus_config.INSTANCE_LABEL}


# ------------------------------------------------------------------------------------------------
# PromQL of the rules and the dashboard
# ------------------------------------------------------------------------------------------------


def test_every_expression_parses_and_returns_data(
    stack: Stack, answers: dict[str, dict[str, object]]
) -> None:
    expressions = rule_expressions(stack.alerts) + dashboard_expressions(stack)
    parse_errors = []
    empty = []
    allowed_empty = []
    for item in expressions:
        answer = answers[item.expr]
        if answer.get("status") != "success":
            parse_errors.append(f"{item.origin}: {answer.get('error')}\n    {item.expr}")
        elif not _result(answer):
            if item.expected_empty is None:
                empty.append(f"{item.origin}: {item.expr}")
            else:
                allowed_empty.append(f"{item.origin}: {item.expected_empty}")
    assert not parse_errors, "\n".join(parse_errors)
    assert not empty, "no data:\n" + "\n".join(empty)
    print(
        f"\n{len(expressions)} expressions checked; expected-empty: {len(allowed_empty)}\n  "
        + "\n  ".join(sorted(set(allowed_empty)))
    )


def test_original_panels_are_present_and_return_data(
    stack: Stack, answers: dict[str, dict[str, object]]
) -> None:
    document = dashboard.build_dashboard(stack.dashboard_inputs)
    titles = [t for t, _ in dashboard.panel_targets(document)]
    for title in dashboard.ORIGINAL_PANELS:
        assert title in titles, title
    for title, target in dashboard.panel_targets(document):
        if title not in dashboard.ORIGINAL_PANELS:
            continue
        expr = dashboard.promql_for_check(str(target["expr"]), database=stack.database)
        assert _result(answers[expr]), f"panel {title!r}: no data for {expr}"


def test_every_metric_name_used_exists(stack: Stack) -> None:
    exporter_names = _metric_names(_get(f"{stack.exporter.url}/metrics", timeout=30))
    gateway_names = _metric_names(_get(f"{stack.pushgateway_url}/metrics"))
    recorded = {r.record for r in rules.RECORDING_RULES}
    # Declared by a custom query that legitimately returns no rows on this server (checked by
    # test_every_custom_query_runs_as_the_monitoring_role).
    declared_empty = {
        name for q in stack.queries if q.namespace in MAY_BE_EMPTY for name in q.metric_names
    }
    known = exporter_names | gateway_names | recorded | SYNTHETIC | declared_empty
    expressions = rule_expressions(stack.alerts) + dashboard_expressions(stack)
    variable_query = "label_values(pg_database_size_bytes, datname)"
    expressions.append(Expression("variable datname", "pg_database_size_bytes", None))
    assert "pg_database_size_bytes" in variable_query
    unknown = []
    for item in expressions:
        names, regexes = promql_metric_names(item.expr)
        unknown += [f"{item.origin}: {n}" for n in sorted(names - known)]
        for regex in regexes:
            if not any(re.fullmatch(regex, n) for n in exporter_names):
                unknown.append(f"{item.origin}: no metric matches {regex}")
    assert not unknown, "\n".join(unknown)


def test_prometheus_evaluates_every_rule_without_error(
    stack: Stack, answers: dict[str, dict[str, object]]
) -> None:
    assert answers  # the data is there: the rules have been evaluated
    document = json.loads(_get(f"{stack.prometheus.url}/api/v1/rules"))
    groups = document["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    expected = len(rules.RECORDING_RULES) + sum(
        len(a.tiers) for a in rules.alert_rules(stack.alerts)
    )
    assert len(loaded) == expected
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in loaded if r["health"] != "ok"]
    assert not unhealthy, "\n".join(unhealthy)


def test_healthy_stack_fires_no_database_alert(
    stack: Stack, answers: dict[str, dict[str, object]]
) -> None:
    assert answers
    document = json.loads(_get(f"{stack.prometheus.url}/api/v1/alerts"))
    firing = {
        a["labels"]["alertname"] for a in document["data"]["alerts"] if a["state"] == "firing"
    }
    # Growth is predicted from seconds of data, so it is not judged here.
    quiet = {"Ms5DatabaseDown", "Ms5ExporterDown", "Ms5ExporterScrapeErrors", "Ms5BackupTooOld"}
    assert not firing & quiet, firing


# ------------------------------------------------------------------------------------------------
# SQL panels and the roles
# ------------------------------------------------------------------------------------------------


def test_sql_panels_run_as_the_read_only_grafana_role(stack: Stack) -> None:
    document = dashboard.build_dashboard(stack.dashboard_inputs)
    sql_targets = [(t, q) for t, q in dashboard.panel_targets(document) if "rawSql" in q]
    assert len(sql_targets) >= 2
    props = stack.grafana_role
    dsn = make_conninfo(
        stack.admin_dsn, user=props.role, password=props.password, dbname=stack.database
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        for title, target in sql_targets:
            rows = conn.execute(str(target["rawSql"])).fetchall()  # type: ignore[arg-type]
            assert rows, f"SQL panel {title!r} returned no rows"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE ms5.grafana_must_not_write (x int)")


def test_monitoring_role_is_least_privilege(stack: Stack) -> None:
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " rolcanlogin, rolconnlimit,"
            " pg_has_role(rolname, 'pg_monitor', 'MEMBER'),"
            " pg_has_role(rolname, 'pg_read_all_data', 'MEMBER'),"
            " array_to_string(rolconfig, ',')"
            " FROM pg_roles WHERE rolname = %s",
            (stack.exporter_role.role,),
        ).fetchone()
    assert row is not None
    superuser, createdb, createrole, replication, bypassrls, login, limit, monitor, reads, cfg = row
    assert (superuser, createdb, createrole, replication, bypassrls) == (False,) * 5
    assert login and limit == 5 and monitor and not reads
    assert "default_transaction_read_only=on" in cfg
    assert "statement_timeout=15000ms" in cfg


def test_role_password_change_is_applied_and_delete_revokes_login(
    pg_server: ms5_testenv.PostgresServer,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    admin = make_conninfo(pg_server.dsn, dbname="postgres")
    props = RoleProps(
        admin_dsn=admin,
        role=f"ms5_rotate_{suffix}",
        password="first-password-0123456789",
        database="postgres",
        member_of=("pg_monitor", "pg_read_all_stats"),
        connection_limit=2,
        statement_timeout_ms=5_000,
        lock_timeout_ms=500,
        idle_in_transaction_timeout_ms=10_000,
    )

    def login(password: str) -> bool:
        try:
            with psycopg.connect(
                make_conninfo(admin, user=props.role, password=password), connect_timeout=5
            ):
                return True
        except psycopg.OperationalError:
            return False

    try:
        ensure_role(props)
        ensure_role(props)  # idempotent
        assert login(props.password)
        rotated = RoleProps(**{**props.__dict__, "password": "second-password-0123456789"})
        changed = RoleProps(**{**rotated.__dict__, "member_of": ("pg_monitor",)})
        ensure_role(changed, revoke=props.member_of)
        assert login(rotated.password)
        assert not login(props.password)
        with psycopg.connect(admin, autocommit=True) as conn:
            stats = conn.execute(
                "SELECT pg_has_role(%s, 'pg_read_all_stats', 'USAGE')"
                " AND NOT pg_has_role(%s, 'pg_monitor', 'MEMBER')",
                (props.role, props.role),
            ).fetchone()
            direct = conn.execute(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
                (props.role,),
            ).fetchone()
        assert stats == (False,)  # still pg_monitor member (which includes read_all_stats)
        assert direct == (1,)  # only pg_monitor is granted directly now
        disable_role(changed)
        disable_role(changed)  # idempotent
        assert not login(rotated.password)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (props.role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(props.role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(props.role)))


def test_role_errors_never_show_the_password_or_dsn(pg_server: ms5_testenv.PostgresServer) -> None:
    from ms5_components.errors import MonitoringError

    params = conninfo_to_dict(pg_server.dsn)
    bad_dsn = make_conninfo(pg_server.dsn, dbname="postgres", password="wrong-admin-password")
    props = RoleProps(
        admin_dsn=bad_dsn,
        role="ms5_never_created",
        password="secret-password-0123456789",
        database="postgres",
        member_of=("pg_monitor",),
        connection_limit=2,
        statement_timeout_ms=5_000,
        lock_timeout_ms=500,
        idle_in_transaction_timeout_ms=10_000,
    )
    with pytest.raises(MonitoringError) as caught:
        ensure_role(props)
    message = str(caught.value)
    assert "ms5_never_created" in message
    for secret in ("secret-password-0123456789", "wrong-admin-password", bad_dsn):
        assert secret not in message
    assert str(params.get("password")) not in message
