"""Builders of the monitoring files (no services): structure, determinism, docs, settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ms5_components.errors import MonitoringError, SettingsErrors
from ms5_components.monitoring import dashboard, exporter_queries, metrics, prometheus_config, rules
from ms5_components.monitoring.config import FileInputs, MonitoringSettings, generate_files
from ms5_components.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _inputs(**overrides: object) -> FileInputs:
    values: dict[str, object] = {
        "timescaledb_version": (2, 19, 3),
        "database": "ms5",
        "db_host": "ms5-staging-timescaledb",
        "exporter_host": "ms5-staging-postgres-exporter",
        "prometheus_host": "ms5-staging-prometheus",
        "pushgateway_host": "ms5-staging-pushgateway",
        "stack": "staging",
    }
    values.update(overrides)
    return FileInputs(**values)  # type: ignore[arg-type]


def test_generation_is_deterministic_and_sorted():
    first = generate_files(_inputs()).by_name()
    second = generate_files(_inputs()).by_name()
    assert first == second
    for name, text in first.items():
        if name.endswith((".yml", ".yaml")):
            data = yaml.safe_load(text)
            assert yaml.safe_dump(data, sort_keys=True, width=100) in text, name
        if name.endswith(".json"):
            assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_prometheus_has_the_four_jobs_with_the_old_intervals():
    queries = exporter_queries.custom_queries(timescaledb_version=(2, 19, 3))
    data = yaml.safe_load(generate_files(_inputs()).prometheus_config)
    jobs = {j["job_name"]: j for j in data["scrape_configs"]}
    assert {k: jobs[k]["scrape_interval"] for k in metrics.EXPORTER_JOBS} == {
        "timescaledb-core": "30s",
        "timescaledb-hypertables": "60s",
        "timescaledb-compression": "300s",
        "timescaledb-performance": "30s",
    }
    for name in metrics.EXPORTER_JOBS:
        job = jobs[name]
        assert job["static_configs"] == [{"targets": ["ms5-staging-postgres-exporter:9187"]}]
        assert job["relabel_configs"] == [
            {"action": "replace", "target_label": "instance", "replacement": "timescaledb"}
        ]
        keep = job["metric_relabel_configs"][0]
        assert keep["action"] == "keep" and keep["source_labels"] == ["__name__"]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert data["rule_files"] == ["/etc/prometheus/rules/ms5-alerts.yml"]
    # Every custom metric belongs to exactly one job.
    for query in queries:
        for name in query.metric_names:
            assert prometheus_config.job_for_metric(name, queries) == (query.scrape_job,)


def test_scrape_timeout_never_exceeds_interval():
    with pytest.raises(MonitoringError, match="exceeds the interval"):
        prometheus_config.ScrapeJob(
            name="x", interval_seconds=10, timeout_seconds=20, targets=("a:1",)
        ).to_data()


def test_custom_queries_are_bounded_and_version_gated():
    queries = exporter_queries.custom_queries(timescaledb_version=(2, 19, 3), top_n=7)
    bounded = [q for q in queries if "rank <=" in q.sql]
    assert len(bounded) == 6
    assert all("rank <= 7" in q.sql for q in bounded)
    assert all(
        q.cache_seconds > 0
        for q in queries
        if q.scrape_job != metrics.JOB_CORE and q.scrape_job != metrics.JOB_PERFORMANCE
    )
    new = {q.namespace: q.sql for q in queries}
    old = {
        q.namespace: q.sql for q in exporter_queries.custom_queries(timescaledb_version=(2, 11, 0))
    }
    # The watermark comes from the catalog table every role may read: cagg_watermark() would
    # need SELECT on each aggregate (its data) for the exporter's role.
    for sqls in (new, old):
        assert "cagg_watermark" not in sqls["timescaledb_continuous_aggregate"]
        assert (
            "_timescaledb_catalog.continuous_aggs_watermark"
            in sqls["timescaledb_continuous_aggregate"]
        )
    assert "_timescaledb_functions.to_timestamp" in new["timescaledb_continuous_aggregate"]
    assert "_timescaledb_internal.to_timestamp" in old["timescaledb_continuous_aggregate"]
    # No per-hypertable size or stats function: one pass over the catalog views.
    assert "hypertable_size(" not in new["timescaledb_hypertable"]
    assert "_stats(" not in new["timescaledb_compression"]
    with pytest.raises(MonitoringError, match="older than"):
        exporter_queries.custom_queries(timescaledb_version=(2, 10, 3))
    with pytest.raises(MonitoringError, match="top_n"):
        exporter_queries.custom_queries(timescaledb_version=(2, 19, 3), top_n=0)
    rendered = yaml.safe_load(exporter_queries.render_queries_yaml(queries))
    assert rendered["pg_stat_wal"]["runonserver"] == ">=14.0.0"


def test_version_from_image_tag():
    assert exporter_queries.parse_timescaledb_version("2.19.3-pg17") == (2, 19, 3)
    assert exporter_queries.parse_timescaledb_version("2.20") == (2, 20, 0)
    with pytest.raises(MonitoringError):
        exporter_queries.parse_timescaledb_version("latest-pg17")


def test_collectors_are_explicit():
    flags = exporter_queries.exporter_flags(queries_path="/q", config_path="/c")
    names = [c.name for c in exporter_queries.COLLECTORS]
    assert len(names) == len(set(names))
    for collector in exporter_queries.COLLECTORS:
        assert collector.flag in flags
        assert collector.reason
    assert "--collector.stat_statements" in flags
    assert "--no-collector.stat_user_tables" in flags
    assert not any("listen" in f for f in flags)


def test_every_alert_has_tiers_texts_and_cases():
    alerts = rules.alert_rules(rules.AlertSettings())
    assert len(alerts) >= 20
    names = {a.name for a in alerts}
    for required in [
        "Ms5DatabaseDown",
        "Ms5ExporterDown",
        "Ms5ExporterScrapeErrors",
        "Ms5ConnectionsHigh",
        "Ms5CacheHitRatioLow",
        "Ms5Deadlocks",
        "Ms5LongTransaction",
        "Ms5IdleInTransaction",
        "Ms5TransactionIdWraparound",
        "Ms5DatabaseGrowth",
        "Ms5StorageHigh",
        "Ms5WalPileUp",
        "Ms5TimescaleJobFailing",
        "Ms5HypertablesWithoutCompressionPolicy",
        "Ms5HypertablesWithoutRetentionPolicy",
        "Ms5UncompressedChunksOverdue",
        "Ms5BackupTooOld",
        "Ms5RestoreDrillFailed",
        "Ms5BenchmarkThroughputRegression",
        "Ms5BenchmarkLatencyRegression",
    ]:
        assert required in names
    two_tier = [a for a in alerts if {t.severity for t in a.tiers} == {"warning", "critical"}]
    assert len(two_tier) >= len(alerts) - 4
    document = rules.rules_document(rules.AlertSettings())
    for group in document["groups"]:  # type: ignore[union-attr]
        for rule in group["rules"]:
            if "alert" in rule:
                assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
                assert rule["labels"]["severity"] in {"warning", "critical"}


def test_connection_thresholds_are_75_and_90_percent():
    alert = next(
        a for a in rules.alert_rules(rules.AlertSettings()) if a.name == "Ms5ConnectionsHigh"
    )
    assert {t.severity: t.threshold for t in alert.tiers} == {"warning": 75, "critical": 90}


def test_backup_threshold_follows_the_setting():
    alert = next(
        a
        for a in rules.alert_rules(rules.AlertSettings(backup_max_age_hours=12))
        if a.name == "Ms5BackupTooOld"
    )
    assert {t.severity: t.threshold for t in alert.tiers} == {"warning": 12, "critical": 24}


def test_runbook_has_a_section_per_alert():
    text = (ROOT / "docs" / "monitoring.md").read_text()
    headings = {m.lower() for m in re.findall(r"^### (Ms5\w+)\s*$", text, re.M)}
    for alert in rules.alert_rules(rules.AlertSettings()):
        assert alert.name.lower() in headings, alert.name
        assert alert.runbook_url == f"docs/monitoring.md#{alert.name.lower()}"


def test_dashboard_has_the_original_eleven_and_more():
    document = dashboard.build_dashboard(dashboard.DashboardInputs())
    assert document["refresh"] == "10s"
    panels = [p for p in document["panels"] if p["type"] != "row"]  # type: ignore[union-attr]
    titles = [p["title"] for p in panels]
    first_row = titles[: len(dashboard.ORIGINAL_PANELS)]
    assert sorted(first_row) == sorted(dashboard.ORIGINAL_PANELS)
    for extra in [
        "WAL activity",
        "Transaction-ID wraparound",
        "Long transactions",
        "Background jobs",
        "Backups",
        "Benchmark results",
    ]:
        assert extra in titles
    colored = set()
    for panel in panels:
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["color"]["mode"] == "thresholds"
        steps = defaults["thresholds"]["steps"]
        if len(steps) > 1:
            colors = {s["color"] for s in steps}
            assert "red" in colors and steps[0]["value"] is None
            colored.add(panel["title"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in {dashboard.PROMETHEUS_UID, dashboard.POSTGRES_UID}
    assert colored >= {
        "Cache hit ratio",
        "Active connections",
        "Hypertable chunks",
        "Database size",
        "Query latency",
        "Deadlocks",
        "WAL on disk",
        "Transaction-ID wraparound",
        "Long transactions",
        "Background jobs",
        "Backups",
        "Benchmark results",
    }


def test_pushed_metric_contract_is_used_by_rules_and_dashboard():
    text = generate_files(_inputs()).prometheus_rules + generate_files(_inputs()).grafana_dashboard
    for metric in metrics.PUSHED_METRICS:
        if metric.name in (metrics.BENCHMARK_LAST_RUN.name,):
            continue  # informational: shown by nothing yet
        assert metric.name in text, metric.name


def _settings(**config: str):
    raw = {"ms5:environment": "staging", **{f"ms5:{k}": v for k, v in config.items()}}
    return load_settings(raw, stack="staging")


def test_monitoring_settings_defaults():
    mon = MonitoringSettings.from_settings(_settings())
    assert mon.enabled
    assert mon.exporter_image.reference == "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"
    assert mon.prometheus_image.tag == "v2.53.3"
    assert mon.exporter_password is None and mon.grafana_admin_password is None
    assert mon.alert_settings.storage_budget_bytes == 50 * 1024**3


def test_grafana_admin_password_admin_is_refused_without_echo():
    with pytest.raises(SettingsErrors) as caught:
        _settings(grafanaAdminPassword="admin")
    assert "grafanaAdminPassword" in str(caught.value)
    assert "'admin'" not in str(caught.value)


def test_production_needs_monitoring_image_digests():
    with pytest.raises(SettingsErrors) as caught:
        load_settings(
            {
                "ms5:environment": "production",
                "ms5:dbImage": "timescale/timescaledb:2.19.3-pg17@sha256:" + "0" * 64,
            },
            stack="production",
        )
    message = str(caught.value)
    for key in ("exporterImage", "prometheusImage", "pushgatewayImage", "grafanaImage"):
        assert f"ms5:{key}" in message
