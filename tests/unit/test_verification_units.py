"""Verification and benchmark without services: the expectations derived from the migration SQL,
the pure checks, the report, the benchmark data and verdicts, the settings and the program."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from harness import unwrap
from ms5_components.benchmark.plan import (
    COPY_HEADER,
    INGEST,
    BenchmarkResult,
    CompressionResult,
    DataShape,
    IngestResult,
    Latency,
    QueryResult,
    Thresholds,
    encode_batches,
    evaluate,
    percentile,
)
from ms5_components.benchmark.provider import BenchmarkProvider
from ms5_components.errors import SettingsErrors
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory, parse_migration
from ms5_components.settings import load_settings
from ms5_components.verification.checks import (
    BackupInfo,
    HttpAnswer,
    Job,
    ObservedSchema,
    check_backup,
    check_jobs,
    check_prometheus,
    check_schema,
)
from ms5_components.verification.expectations import Expectations, derive
from ms5_components.verification.provider import VerificationProvider, scrub_secrets
from ms5_components.verification.report import CHECKS, Report, fail, ok

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
BENCHMARK = "pulumi-python:dynamic/ms5:Benchmark"
MIGRATIONS = "pulumi-python:dynamic/ms5:MigrationSet"
PORTAL_BUG = 'cannot drop portal "" while it is being set up'


# ---- expectations from the migration files -------------------------------------------------------


def test_expectations_come_from_the_migration_sql() -> None:
    exp = derive(load_directory(repository_migrations_dir()))
    assert exp.extensions == ("pg_stat_statements", "timescaledb")
    assert {(h.relation, h.chunk_interval) for h in exp.hypertables} == {
        ("ms5.machine_metrics", "2 hours"),
        ("ms5.production_counts", "7 days"),
        ("ms5.oee_measurements", "30 days"),
        ("ms5.downtime_events", "90 days"),
        ("ms5.energy_readings", "7 days"),
    }
    metrics = next(c for c in exp.columnstore if c.relation == "ms5.machine_metrics")
    assert metrics.segment_by == ("machine_id", "metric")
    assert (metrics.order_by, metrics.compress_after) == ("time DESC", "1 day")
    assert {r.relation: r.drop_after for r in exp.retention}["ms5.machine_metrics_1m"] == "180 days"
    assert len(exp.continuous_aggregates) == 6 and len(exp.refresh_policies) == 6
    assert "machines_line_idx" in {i.name for i in exp.indexes}
    assert Expectations.from_input(json.loads(json.dumps(exp.to_input()))) == exp


def test_a_later_migration_replaces_a_policy_declaration() -> None:
    migrations = [
        *load_directory(repository_migrations_dir()),
        parse_migration(
            "V0099__longer.sql",
            "SELECT ms5_admin.set_retention('ms5.machine_metrics', INTERVAL '180 days');\n",
        ),
    ]
    exp = derive(migrations)
    [retention] = [r for r in exp.retention if r.relation == "ms5.machine_metrics"]
    assert (retention.drop_after, retention.source) == ("180 days", "V0099__longer.sql")


def test_function_bodies_declare_nothing(tmp_path: Path) -> None:
    # V0001 defines the helpers; only calls with literal arguments declare something.
    [first] = [m for m in load_directory(repository_migrations_dir()) if m.version == "1"]
    exp = derive([first])
    assert exp.extensions == ("timescaledb",)
    assert exp.hypertables == () and exp.columnstore == () and exp.retention == ()


# ---- the pure checks -----------------------------------------------------------------------------


EXP = derive(load_directory(repository_migrations_dir()))


def test_schema_check_on_apache_reports_licensed_features_as_not_applicable() -> None:
    observed = ObservedSchema(
        license="apache",
        hypertables={h.relation: (h.time_column, h.chunk_interval) for h in EXP.hypertables},
        indexes={f"ms5.{i.name}": (i.relation, True) for i in EXP.indexes},
        views=frozenset(c.view for c in EXP.continuous_aggregates),
    )
    report = Report.build(check_schema(EXP, observed, normalize={}))
    assert report.status == "ok"
    assert {f.status for f in report.by_check("retention")} == {"not_applicable"}
    assert all("apache" in f.message for f in report.by_check("columnstore"))


def test_schema_check_on_full_license_names_what_differs() -> None:
    observed = ObservedSchema(
        license="timescale",
        hypertables={h.relation: (h.time_column, h.chunk_interval) for h in EXP.hypertables},
        indexes={},
        compression={"ms5.machine_metrics": (("machine_id",), '"time" DESC')},
        compression_jobs={"ms5.machine_metrics": "2 days"},
        retention_jobs={},
        continuous_aggregates=frozenset(),
    )
    report = Report.build(check_schema(EXP, observed, normalize={"1 day": "1 day"}))
    [mm] = [f for f in report.by_check("columnstore") if f.object == "ms5.machine_metrics"]
    assert mm.status == "fail"
    assert "segment by machine_id, declared machine_id, metric" in mm.message
    assert "policy converts after 2 days, declared 1 day" in mm.message
    assert "ms5_admin.set_columnstore" in mm.next_step
    assert {f.status for f in report.by_check("retention")} == {"fail"}
    assert all("V0004" in f.message or "V0005" in f.message for f in report.by_check("retention"))


def test_each_failing_job_carries_the_servers_message() -> None:
    findings = check_jobs(
        [
            Job(job_id=1, proc="policy_telemetry", target="", last_run_status="Success"),
            Job(
                job_id=1000,
                proc="policy_compression",
                target="ms5.machine_metrics",
                last_run_status="Failed",
                total_failures=3,
                error=PORTAL_BUG,
                sqlstate="24000",
            ),
        ]
    )
    [finding] = findings
    assert finding.object == "job 1000 (policy_compression on ms5.machine_metrics)"
    assert finding.message == f"last run failed [SQLSTATE 24000]: {PORTAL_BUG} (3 failed runs)"
    assert "CALL run_job(1000)" in finding.next_step


def test_a_job_whose_last_run_crashed_is_a_warning_naming_it() -> None:
    """The server stopped (or the worker died) during the run: no result was recorded, so the
    job is neither Success nor Failed; it is reported, as a warning, not as "none failing"."""
    findings = check_jobs(
        [
            Job(
                job_id=3,
                proc="policy_job_stat_history_retention",
                target="",
                last_run_status="",
                crashed_runs=1,
            ),
            Job(job_id=4, proc="policy_retention", target="ms5.x", last_run_status=""),
        ]
    )
    [finding] = findings
    assert finding.status == "warn"
    assert finding.object == "job 3 (policy_job_stat_history_retention)"
    assert finding.message.startswith("last run did not finish: the worker ended without a result")
    assert "(1 such runs)" in finding.message
    assert "CALL run_job(3)" in finding.next_step
    assert [
        f.status for f in check_jobs([Job(job_id=4, proc="p", target="", last_run_status="")])
    ] == ["ok"]


def test_prometheus_target_down_and_unhealthy_rule() -> None:
    url = "http://127.0.0.1:9"
    targets = HttpAnswer(
        url=url,
        status=200,
        body=json.dumps(
            {
                "data": {
                    "activeTargets": [
                        {"labels": {"job": "pushgateway", "instance": "pg:9091"}, "health": "up"},
                        {
                            "labels": {"job": "timescaledb-core", "instance": "x:9187"},
                            "health": "down",
                            "lastError": "connection refused",
                            "scrapeUrl": "http://x:9187/metrics",
                        },
                    ]
                }
            }
        ),
    )
    rules = HttpAnswer(
        url=url,
        status=200,
        body=json.dumps(
            {
                "data": {
                    "groups": [
                        {"name": "g", "rules": [{"name": "R", "health": "err", "lastError": "bad"}]}
                    ]
                }
            }
        ),
    )
    report = Report.build(
        check_prometheus(
            HttpAnswer(url=url, status=200), targets, rules, url=url, container="ms5-t-prometheus"
        )
    )
    assert [f.line() for f in report.failures()] == [
        "[FAIL] prometheus: rule g/R: err: bad -> next: fix the expression of rule R in "
        "ms5_components/monitoring/rules.py (promtool check rules on the generated file) and "
        "redeploy",
        "[FAIL] prometheus: target timescaledb-core x:9187: down: connection refused -> next: "
        "check that http://x:9187/metrics answers from the Prometheus container "
        "ms5-t-prometheus (is the target's container running and healthy?)",
    ]
    down = check_prometheus(
        HttpAnswer(url=url, error="connection refused"),
        targets,
        rules,
        url=url,
        container="ms5-t-prometheus",
    )
    assert [f.status for f in down] == ["fail"]
    assert "`docker logs ms5-t-prometheus`" in down[0].next_step


def test_backup_checks() -> None:
    now = 1_000_000.0
    limit = {"max_age_seconds": 26 * 3600, "limit_rule": "the rule"}
    assert check_backup(None, now=now, source="-", **limit)[0].status == "warn"
    assert check_backup([], now=now, source="s", **limit)[0].status == "fail"
    fresh = [BackupInfo(name="b1", finished_epoch=int(now - 3600), verified=True)]
    assert [f.status for f in check_backup(fresh, now=now, source="s", **limit)] == ["ok"]
    stale = [BackupInfo(name="b0", finished_epoch=int(now - 27 * 3600), verified=True)]
    [finding] = check_backup(
        stale, now=now, source="s", scheduler="ms5-t-backup-scheduler", **limit
    )
    assert finding.status == "fail" and "27.0 h old (limit 26 h: the rule)" in finding.message
    assert "`docker logs ms5-t-backup-scheduler`" in finding.next_step


def test_warn_only_downgrades_failures_of_those_checks() -> None:
    findings = [fail("jobs", "job 1", "failed", "x"), ok("extension", "db", "fine")]
    assert Report.build(findings).status == "fail"
    soft = Report.build(findings, warn_only=("jobs",))
    assert soft.status == "warn" and soft.findings[0].check == "extension"


def test_secrets_are_scrubbed_from_messages() -> None:
    props = {"dsn": "host=h user=u password=very-secret-pw-1 dbname=d", "grafanaPassword": "gp-2"}
    assert scrub_secrets("x very-secret-pw-1 y gp-2", props) == "x *** y ***"


def test_verification_provider_check_names_bad_inputs() -> None:
    result = VerificationProvider().check(
        {}, {"warnOnly": ["jobs", "nope"], "backupSource": "s3://x", "dsn": "x"}
    )
    props = sorted(f.property for f in result.failures)
    assert props == ["backupSource", "warnOnly"]


# ---- benchmark plan ------------------------------------------------------------------------------


def test_binary_copy_batches_hold_every_row() -> None:
    shape = DataShape(rows=1234, machines=3, metrics=2)
    batches = encode_batches(shape, 500)
    assert len(batches) == 3
    assert all(b.startswith(COPY_HEADER) and b.endswith(struct.pack("!h", -1)) for b in batches)
    # Each row: field count, then 4 length-prefixed fields; count the rows of the last batch.
    data = batches[-1][len(COPY_HEADER) : -2]
    rows, pos = 0, 0
    while pos < len(data):
        (fields,) = struct.unpack_from("!h", data, pos)
        assert fields == 4
        pos += 2
        for _ in range(fields):
            (length,) = struct.unpack_from("!i", data, pos)
            pos += 4 + length
        rows += 1
    assert rows == 1234 - 1000
    assert encode_batches(shape, 500) == batches  # deterministic


def test_percentiles() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)


def _result(rate: float, p95: float, ratio: float | None) -> BenchmarkResult:
    latency = Latency(p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95, runs=5)
    return BenchmarkResult(
        stack="s",
        license="timescale" if ratio is not None else "apache",
        ingest=IngestResult(rows=int(rate), seconds=1.0, batches=latency, workers=1, batch_size=1),
        queries=(QueryResult(name="query_lastpoint", description="d", latency=latency),),
        compression=CompressionResult(before_bytes=100, after_bytes=int(100 * (1 - ratio)))
        if ratio is not None
        else CompressionResult(note="not applicable"),
        seconds=2.0,
        scratch_schema="x",
    )


def test_thresholds_default_to_the_old_scripts_floors() -> None:
    t = Thresholds()
    assert (t.min_ingest_rows_per_second, t.max_query_p95_ms, t.min_compression_ratio) == (
        1000.0,
        100.0,
        0.70,
    )
    report = evaluate(_result(999, 101, 0.69), t)
    assert sorted(f.check for f in report.failures()) == ["compression", "ingest", "query"]
    assert evaluate(_result(5000, 10, None), t).status == "ok"


def test_regressions_warn_or_gate() -> None:
    previous = {(INGEST, "rows_per_second"): 10_000.0, ("query_lastpoint", "p95_ms"): 10.0}
    result = _result(5000, 20, 0.8)
    soft = evaluate(result, Thresholds(), previous=previous, max_regression_percent=25)
    assert soft.status == "warn"
    assert {f.object for f in soft.by_check("regression")} == {INGEST, "query_lastpoint"}
    hard = evaluate(
        result, Thresholds(), previous=previous, max_regression_percent=25, gate_on_regression=True
    )
    assert hard.status == "fail"


def test_benchmark_provider_check() -> None:
    bad = BenchmarkProvider().check(
        {},
        {
            "thresholds": {
                "minIngestRowsPerSecond": 1,
                "maxQueryP95Ms": 1,
                "minCompressionRatio": 70,
            },
            "gate": "yes",
            "rows": 5,
        },
    )
    assert sorted(f.property for f in bad.failures) == [
        "gate",
        "rows",
        "thresholds.minCompressionRatio",
    ]


# ---- settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_errors() -> None:
    settings = load_settings({}, stack="staging")
    assert settings.raw["verificationWarnOnly"] == ()
    assert settings.raw["benchmarkGate"] == "auto"
    with pytest.raises(SettingsErrors) as info:
        load_settings(
            {"ms5:verificationWarnOnly": '["jobs", "jobz"]', "ms5:verificationBackupSource": "s3"},
            stack="staging",
        )
    text = str(info.value)
    assert "ms5:verificationWarnOnly" in text and "jobz" in text
    assert "ms5:verificationBackupSource" in text
    assert set(CHECKS) >= {"jobs", "backup", "grafana"}


# ---- the program under mocks ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_program_wires_verification_last_and_the_benchmark_after_it(program, stack):
    run = program(stack)
    verification = run.one(VERIFICATION)
    benchmark = run.one(BENCHMARK)
    assert run.depends_on(verification, run.one(MIGRATIONS))
    for name in (
        "timescaledb-container",
        "monitoring-exporter-container",
        "monitoring-grafana-container",
    ):
        assert run.depends_on(verification, run.by_name(name)), name
    assert run.depends_on(benchmark, verification)
    assert verification.is_secret("dsn") and verification.is_secret("grafanaPassword")
    assert benchmark.is_secret("dsn")
    assert benchmark.plain("gate") is (stack == "production")
    assert sorted(benchmark.plain("thresholds")) == [
        "maxQueryP95Ms",
        "minCompressionRatio",
        "minIngestRowsPerSecond",
    ]
    assert benchmark.plain("thresholds")["minCompressionRatio"] == 0.7
    expectations = verification.plain("expectations")
    assert len(expectations["hypertables"]) == 5
    assert "lastGood" in run.exports and "verificationReport" in run.exports
    assert "benchmarkResults" in run.exports
    visible = json.dumps(
        unwrap(
            {
                k: v
                for k, v in verification.inputs.items()
                if k not in ("dsn", "grafanaPassword", "__provider")
            }
        )
    )
    assert "password=" not in visible


def test_settings_change_reruns_the_verification(program):
    first = program("staging").one(VERIFICATION)
    second = program("staging", {"ms5:dbMaxConnections": 150}).one(VERIFICATION)
    assert first.plain("settingsHash") != second.plain("settingsHash")
    provider = VerificationProvider()
    olds, news = unwrap(first.inputs), unwrap(second.inputs)
    assert provider.diff("id", olds, olds).changes is False
    assert provider.diff("id", olds, news).changes is True
    on_demand = unwrap(
        program("staging", {"ms5:verificationRunId": "again-1"}).one(VERIFICATION).inputs
    )
    assert provider.diff("id", olds, on_demand).changes is True


def test_disabled_checks_leave_the_program(program):
    run = program("staging", {"ms5:verificationEnabled": False, "ms5:benchmarkEnabled": False})
    assert run.by_type(VERIFICATION) == [] and run.by_type(BENCHMARK) == []


def _vector_answer(*values: float) -> HttpAnswer:
    result = [{"metric": {"job": "timescaledb-core"}, "value": [0, str(v)]} for v in values]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return HttpAnswer(url="http://127.0.0.1:9/q", status=200, body=json.dumps(body))


def test_the_verification_waits_for_the_exporter_to_reconnect_after_a_restore() -> None:
    """A restore (or a database restart) cuts the exporter's connections: its next scrape
    reconnects, so the settle time waits for it instead of judging the scrape that failed."""
    from ms5_components.verification.runner import settling

    url = "http://127.0.0.1:9"
    ready = HttpAnswer(url=url, status=200)
    targets = HttpAnswer(
        url=url,
        status=200,
        body=json.dumps(
            {
                "data": {
                    "activeTargets": [
                        {"labels": {"job": "timescaledb-core"}, "health": "up"},
                        {
                            "labels": {"job": "timescaledb-compression"},
                            "health": "unknown",
                            "scrapeInterval": "5m",
                        },
                    ]
                }
            }
        ),
    )
    jobs = ("timescaledb-core",)

    def judge(pg_up: HttpAnswer, errors: HttpAnswer) -> bool:
        return settling(ready, targets, pg_up, errors, settle_seconds=60, exporter_jobs=jobs)

    assert judge(_vector_answer(1), _vector_answer(0)) is False
    assert judge(_vector_answer(0), _vector_answer(1)) is True
    assert judge(_vector_answer(1), _vector_answer(1)) is True
    assert judge(_vector_answer(), _vector_answer()) is True
    # Without exporter jobs to judge, the exporter's samples do not hold the verification.
    assert (
        settling(
            ready,
            targets,
            _vector_answer(0),
            _vector_answer(1),
            settle_seconds=60,
            exporter_jobs=(),
        )
        is False
    )
    # Prometheus not ready yet: unsettled whatever the samples say.
    not_ready = HttpAnswer(url=url, error="connection refused")
    assert (
        settling(
            not_ready,
            targets,
            _vector_answer(1),
            _vector_answer(0),
            settle_seconds=60,
            exporter_jobs=jobs,
        )
        is True
    )
