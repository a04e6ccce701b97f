"""The verification's rules that need no server: an unreadable database is never warn only, a
missing scrape-error sample fails, the re-run inputs cover the monitoring files, the backup age
limit follows the schedule, defaults come from the settings table, next steps name the real
containers, and the jobs query is composed, not formatted."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness import unwrap
from ms5_components.backups.plan import (
    BackupAgeLimit,
    backup_age_limit,
    schedule_period_seconds,
)
from ms5_components.settings import _backup_schedule, default_of, int_default_of, load_settings
from ms5_components.verification.checks import (
    Containers,
    DatabaseExtensions,
    HttpAnswer,
    check_exporter,
    check_extensions,
    check_grafana,
    check_pushgateway,
)
from ms5_components.verification.expectations import Expectations
from ms5_components.verification.provider import (
    DIFF_KEYS,
    VerificationArgs,
    VerificationProvider,
    changed_keys,
)
from ms5_components.verification.report import CHECKS, DATABASE_UNREADABLE, Report
from ms5_components.verification.runner import (
    VerificationTarget,
    _interval_or_text,
    _jobs_sql,
    verify,
)
from ms5_components.verification.wiring import VerificationSettings

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
CONTAINERS = Containers(
    database="ms5-t-timescaledb",
    exporter="ms5-t-postgres-exporter",
    prometheus="ms5-t-prometheus",
    pushgateway="ms5-t-pushgateway",
    grafana="ms5-t-grafana",
    backup_scheduler="ms5-t-backup-scheduler",
)
JOBS = ("timescaledb-core", "timescaledb-hypertables")
PROM = "http://127.0.0.1:9"


# ---- a: a database that cannot be read fails, whatever the stack lets warn -----------------------


def test_an_unreachable_database_fails_under_its_own_check_even_if_every_check_warns_only() -> None:
    password = "never-shown-pw-77"
    target = VerificationTarget(
        dsn=f"host=127.0.0.1 port=1 dbname=ms5 user=u password={password} connect_timeout=2",
        database="ms5",
        expectations=Expectations(),
        containers=CONTAINERS,
        backup_age=BackupAgeLimit(seconds=3600, rule="r"),
        warn_only=CHECKS,
        checks=("extension", "hypertables"),
    )
    report = verify(target)
    assert report.status == "fail", report.render()
    [finding] = report.failures()
    assert (finding.check, finding.object) == (DATABASE_UNREADABLE, "database ms5")
    assert finding.message.startswith("could not be read, so nothing in it was verified: ")
    assert "docker logs ms5-t-timescaledb" in finding.next_step
    assert password not in report.render()


def test_the_unreadable_database_check_is_not_a_warn_only_choice() -> None:
    assert DATABASE_UNREADABLE not in CHECKS
    findings = check_extensions(
        [DatabaseExtensions(database="other", installed={}, default={}, error="refused")],
        app_database="ms5",
        required=("timescaledb",),
        container="ms5-t-timescaledb",
    )
    report = Report.build(findings, warn_only=(*CHECKS, DATABASE_UNREADABLE))
    assert [(f.check, f.object, f.status) for f in report.findings] == [
        (DATABASE_UNREADABLE, "database other", "fail")
    ]


def test_an_installed_extension_the_server_no_longer_offers_fails_naming_its_database() -> None:
    findings = check_extensions(
        [
            DatabaseExtensions(
                database="ms5",
                installed={"timescaledb": "2.19.3"},
                default={"timescaledb": "2.19.3"},
            ),
            DatabaseExtensions(database="reports", installed={"postgis": "3.5.0"}, default={}),
        ],
        app_database="ms5",
        required=("timescaledb",),
        container="ms5-t-timescaledb",
    )
    failed = [(f.object, f.message, f.next_step) for f in findings if f.status == "fail"]
    assert len(failed) == 1
    where, message, next_step = failed[0]
    assert "reports" in where and "postgis" in where
    assert message == (
        "installed 3.5.0, but the server offers no version of it (pg_available_extensions): "
        "the image lacks the extension"
    )
    assert "DROP EXTENSION postgis in reports" in next_step


# ---- b: the exporter's scrape-error sample must be there -------------------------------------


def _targets(health: dict[str, str]) -> HttpAnswer:
    active = [
        {"labels": {"job": job, "instance": "x:9187"}, "health": h} for job, h in health.items()
    ]
    return HttpAnswer(url=PROM, status=200, body=json.dumps({"data": {"activeTargets": active}}))


def _vector(samples: dict[str, float]) -> HttpAnswer:
    result = [{"metric": {"job": job}, "value": [0, str(v)]} for job, v in samples.items()]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return HttpAnswer(url=PROM, status=200, body=json.dumps(body))


def _exporter(health: dict[str, str], errors: dict[str, float]) -> list[tuple[str, str, str]]:
    findings = check_exporter(
        _targets(health),
        _vector(dict.fromkeys(health, 1.0)),
        _vector(errors),
        exporter_jobs=JOBS,
        scrape_error_jobs=JOBS,
        containers=CONTAINERS,
        prometheus_url=PROM,
    )
    return [(f.status, f.object, f.next_step) for f in findings]


def test_a_missing_scrape_error_sample_fails_naming_the_job() -> None:
    up = dict.fromkeys(JOBS, "up")
    assert [s for s, _, _ in _exporter(up, dict.fromkeys(JOBS, 0.0))] == ["ok"]
    missing = _exporter(up, {"timescaledb-core": 0.0})
    assert [(s, o) for s, o, _ in missing] == [
        ("fail", "pg_exporter_last_scrape_error (job timescaledb-hypertables)")
    ]
    assert (
        f"{PROM}/targets" in missing[0][2]
        and "docker logs ms5-t-postgres-exporter" in (missing[0][2])
    )
    assert [(s, o) for s, o, _ in _exporter(up, {})] == [
        ("fail", f"pg_exporter_last_scrape_error (job {job})") for job in JOBS
    ]
    # A job not scraped yet is a warning of its target, not a missing sample too.
    unscraped = _exporter(
        {"timescaledb-core": "up", "timescaledb-hypertables": "unknown"}, {"timescaledb-core": 0}
    )
    assert [(s, o) for s, o, _ in unscraped] == [
        ("warn", "job timescaledb-hypertables"),
        ("ok", "postgres_exporter"),
    ]


def test_the_program_expects_the_sample_from_the_job_that_keeps_it(program) -> None:
    from ms5_components.monitoring import metrics

    inputs = _verification_inputs(program("staging"))
    assert inputs["scrapeErrorJobs"] == [metrics.JOB_CORE]
    assert inputs["exporterJobs"] == list(metrics.EXPORTER_JOBS)


def test_a_scrape_error_names_its_job() -> None:
    up = dict.fromkeys(JOBS, "up")
    [(status, obj, _)] = _exporter(up, {"timescaledb-core": 1.0, "timescaledb-hypertables": 0.0})
    assert (status, obj) == ("fail", "pg_exporter_last_scrape_error (job timescaledb-core)")


# ---- c: what the verification checks is in its diff --------------------------------------------


def _verification_inputs(run: object) -> dict[str, object]:
    return unwrap(run.one(VERIFICATION).inputs)


def test_a_changed_monitoring_file_reruns_the_verification(program, monkeypatch) -> None:
    from ms5_components.monitoring import config, dashboard

    before = _verification_inputs(program("staging"))
    files = before["monitoringFiles"]
    assert isinstance(files, dict)
    assert {"prometheus/prometheus.yml", "grafana/dashboards/ms5-timescaledb.json"} <= set(files)
    assert not any(name.endswith("_test.yml") for name in files)
    provider = VerificationProvider()
    assert provider.diff("id", before, before).changes is False

    render_rules = config.rules.render_rules
    monkeypatch.setattr(
        config.rules, "render_rules", lambda alerts: render_rules(alerts) + "# changed\n"
    )
    rules_changed = _verification_inputs(program("staging"))
    assert changed_keys(DIFF_KEYS, before, rules_changed) == ["monitoringFiles"]
    assert provider.diff("id", before, rules_changed).changes is True
    monkeypatch.undo()

    monkeypatch.setattr(dashboard, "DASHBOARD_TITLE", "MS5.0 renamed")
    monkeypatch.setattr(dashboard, "ORIGINAL_PANELS", dashboard.ORIGINAL_PANELS[:-1])
    renamed = _verification_inputs(program("staging"))
    assert {"dashboardTitle", "dashboardPanels"} <= set(changed_keys(DIFF_KEYS, before, renamed))


# ---- d: the backup age limit follows the schedule -----------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "period"),
    [
        ("02:30", 86_400),
        ("00:00", 86_400),
        ("every 5m", 300),
        ("every 90m", 5_400),
        ("every 6h", 21_600),
    ],
)
def test_schedule_periods(schedule: str, period: int) -> None:
    assert _backup_schedule(schedule) == schedule  # a schedule the settings accept
    assert schedule_period_seconds(schedule) == period


def test_an_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="expected HH:MM"):
        schedule_period_seconds("hourly")


def test_the_backup_age_limit_is_one_period_plus_the_backup_time_budget() -> None:
    limit = backup_age_limit(
        scheduled=True, schedule="every 6h", timeout_seconds=3_600, max_age_hours=26
    )
    assert limit == BackupAgeLimit(
        seconds=25_200,
        rule="ms5:backupSchedule 'every 6h' (6 h) + ms5:backupTimeoutSeconds 3600 (1 h)",
    )
    unscheduled = backup_age_limit(
        scheduled=False, schedule="every 6h", timeout_seconds=3_600, max_age_hours=30
    )
    assert unscheduled.seconds == 30 * 3600 and "ms5:backupMaxAgeHours 30" in unscheduled.rule


def test_the_stack_settings_give_the_verification_the_schedules_limit() -> None:
    hourly = VerificationSettings.from_settings(
        load_settings(
            {"ms5:backupSchedule": "every 1h", "ms5:backupTimeoutSeconds": "1800"}, stack="t"
        )
    )
    assert hourly.backup_age.seconds == 3_600 + 1_800
    daily = VerificationSettings.from_settings(load_settings({}, stack="t"))
    assert daily.backup_age.seconds == 86_400 + int_default_of("backupTimeoutSeconds")
    off = VerificationSettings.from_settings(
        load_settings({"ms5:backupSchedulerEnabled": "false"}, stack="t")
    )
    assert off.backup_age.seconds == int_default_of("backupMaxAgeHours") * 3600


def test_the_limit_reaches_the_verification_inputs(program) -> None:
    inputs = _verification_inputs(program("staging", {"ms5:backupSchedule": "every 2h"}))
    rule = str(inputs["backupAgeRule"])
    assert rule.startswith("ms5:backupSchedule 'every 2h' (2 h)")
    assert inputs["backupMaxAgeSeconds"] == 7_200 + int_default_of("backupTimeoutSeconds")


# ---- e: defaults are the settings table's --------------------------------------------------------


def test_the_verification_has_no_defaults_of_its_own_for_settings() -> None:
    fields = {f.name: f for f in dataclasses.fields(VerificationArgs)}
    for name in ("backup_source", "backup_age", "settle_seconds", "timeout_seconds"):
        assert fields[name].default is dataclasses.MISSING, name
        assert fields[name].default_factory is dataclasses.MISSING, name
    target = {f.name: f.default for f in dataclasses.fields(VerificationTarget)}
    assert target["settle_seconds"] == int_default_of("verificationSettleSeconds")
    assert target["timeout_seconds"] == int_default_of("verificationTimeoutSeconds")
    assert "backup_max_age_hours" not in target


def test_an_unset_stack_gets_the_settings_defaults(program) -> None:
    inputs = _verification_inputs(program("staging"))
    settings = load_settings({}, stack="t")
    ver = VerificationSettings.from_settings(settings)
    assert ver.backup_source == default_of("verificationBackupSource") == "pushgateway"
    assert inputs["settleSeconds"] == ver.settle_seconds
    assert inputs["timeoutSeconds"] == ver.timeout_seconds


# ---- f: next steps name the stack's real containers ----------------------------------------------


def test_the_inputs_carry_the_container_names_of_the_stack(program) -> None:
    run = program("staging")
    containers = _verification_inputs(run)["containers"]
    expected = {
        "database": "timescaledb-container",
        "exporter": "monitoring-exporter-container",
        "prometheus": "monitoring-prometheus-container",
        "pushgateway": "monitoring-prometheus-pushgateway",
        "grafana": "monitoring-grafana-container",
    }
    for role, resource in expected.items():
        assert containers[role] == run.by_name(resource).plain("name"), role
    assert containers["prometheus"] == "ms5-staging-prometheus"
    scheduler = run.by_name("backups-backup-scheduler")
    assert containers["backupScheduler"] == scheduler.plain("name")
    # Named, not waited for: only the DeployGate waits for the scheduler.
    assert not run.depends_on(run.one(VERIFICATION), scheduler)


def test_next_steps_name_the_container_to_look_at() -> None:
    down = HttpAnswer(url="http://127.0.0.1:9/-/ready", error="connection refused")
    [gateway] = check_pushgateway(down, url="http://g", container=CONTAINERS.pushgateway)
    assert "`docker logs ms5-t-pushgateway`" in gateway.next_step
    garbled = HttpAnswer(url="http://gr/api/dashboards/uid/u", status=200, body="not json")
    health = HttpAnswer(url="http://gr/api/health", status=200, body='{"database": "ok"}')
    findings = check_grafana(
        health, garbled, url="http://gr", uid="u", title="t", panels=(), container="ms5-t-grafana"
    )
    [board] = [f for f in findings if f.status == "fail"]
    assert board.next_step == (
        "http://gr/api/dashboards/uid/u must answer the dashboard's JSON: see "
        "`docker logs ms5-t-grafana`"
    )
    exporter = check_exporter(
        _targets({"timescaledb-core": "down"}),
        _vector({"timescaledb-core": 0.0}),
        _vector({}),
        exporter_jobs=("timescaledb-core",),
        scrape_error_jobs=("timescaledb-core",),
        containers=CONTAINERS,
        prometheus_url=PROM,
    )
    assert all("docker logs ms5-t-postgres-exporter" in f.next_step for f in exporter)
    for finding in [gateway, board, *exporter]:
        assert "<stack>" not in finding.next_step


# ---- g: the jobs query is composed -------------------------------------------------------------


def test_the_jobs_query_quotes_the_config_keys_as_literals() -> None:
    assert _interval_or_text("x'y").as_string(None) == (
        "CASE WHEN j.config ->> 'x''y' ~ '^-?[0-9]+$' THEN j.config ->> 'x''y' "
        "ELSE (j.config ->> 'x''y')::interval::text END"
    )
    text = _jobs_sql().as_string(None)
    for key in ("compress_after", "drop_after", "start_offset", "end_offset"):
        assert f"(j.config ->> '{key}')::interval::text" in text
    assert "{" not in text
