"""The Verification, Benchmark and DeployGate providers run the way the engine runs them: the
serialized ``__provider`` taken from the program, loaded by ``python -I -m pulumi.dynamic`` in a
clean directory outside the repository, then called over gRPC against the real TimescaleDB
server. A red result is recorded in the outputs; the DeployGate fails with its report."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from harness import run_program, unwrap
from rehearsal import RehearsalError, provider_host
from stacks import overrides_for

VERIFICATION_URN = "urn:pulumi:staging::ms5::pulumi-python:dynamic/ms5:Verification::verification"
BENCHMARK_URN = "urn:pulumi:staging::ms5::pulumi-python:dynamic/ms5:Benchmark::benchmark"
GATE_URN = "urn:pulumi:staging::ms5::pulumi-python:dynamic/ms5:DeployGate::deploy-gate"
DIFF_NONE, DIFF_SOME = 1, 2


def _program_inputs(type_suffix: str) -> dict[str, Any]:
    run = run_program("staging", overrides_for("staging"))
    [reg] = [r for r in run.registrations.values() if r.type.endswith(type_suffix)]
    inputs = unwrap(reg.inputs)
    assert isinstance(inputs["__provider"], str) and inputs["__provider"]
    return inputs


def test_verification_from_the_program_runs_in_a_clean_host(migrated_database: str) -> None:
    news = {
        **_program_inputs(":Verification"),
        "dsn": migrated_database,
        "database": conninfo_to_dict(migrated_database)["dbname"],
        "schemaVersion": "7",
        "dbImage": "sha256:" + "1" * 64,
        # The database checks only: the monitoring services have their own integration tests.
        "prometheusUrl": "",
        "pushgatewayUrl": "",
        "grafanaUrl": "",
        "backupSource": "none",
        "warnOnly": ["jobs"],
    }
    with provider_host() as host:
        checked, failures = host.check(VERIFICATION_URN, {}, news)
        assert failures == []
        id_, outs = host.create(VERIFICATION_URN, checked)
        assert id_ == "ms5-verification-staging"
        assert outs["status"] == "warn"  # no backup source configured, failing jobs warn only
        assert outs["lastGood"]["schemaVersion"] == "7"
        assert outs["lastGood"]["settings"]["dbPort"] == "5433"
        objects = {(r["check"], r["object"]) for r in outs["report"]}
        assert ("hypertables", "ms5.machine_metrics") in objects
        assert "dsn" not in outs and "grafanaPassword" not in outs
        assert outs["rerunReason"] == ""
        # Same inputs: no diff, so a no-op `up` runs nothing.
        assert host.diff(VERIFICATION_URN, id_, outs, checked).changes == DIFF_NONE
        with psycopg.connect(migrated_database, autocommit=True) as conn:
            conn.execute("DROP TABLE ms5.oee_measurements CASCADE")
        again = {**checked, "runId": "again", "schemaVersion": "8"}
        red = host.update(VERIFICATION_URN, id_, outs, again)
        # The red run is recorded: the report names the object and the next step, and the
        # last good deploy is still the green one.
        assert red["status"] == "fail"
        [finding] = [
            r for r in red["report"] if r["status"] == "fail" and r["check"] == "hypertables"
        ]
        assert (finding["check"], finding["object"]) == ("hypertables", "ms5.oee_measurements")
        assert finding["message"].startswith("not a hypertable") and finding["nextStep"]
        assert red["lastGood"] == outs["lastGood"]
        assert red["rerunReason"]
        # With the same inputs again, the next `up` runs it again (the reason is the diff).
        assert host.diff(VERIFICATION_URN, id_, red, again).changes == DIFF_SOME
        gate_news = {
            **_program_inputs(":DeployGate"),
            "verification": {"status": red["status"], "report": red["report"]},
            "benchmark": None,
        }
        checked_gate, failures = host.check(GATE_URN, {}, gate_news)
        assert failures == []
        with pytest.raises(RehearsalError) as info:
            host.create(GATE_URN, checked_gate)
    message = str(info.value)
    assert "Verification ms5-verification-staging: FAIL" in message
    assert "[FAIL] hypertables: ms5.oee_measurements: not a hypertable" in message
    assert "-> next: " in message
    password = str(conninfo_to_dict(migrated_database).get("password") or "")
    assert password and password not in message
    assert password not in str(red)


def test_a_green_gate_passes_in_a_clean_host() -> None:
    news = {
        **_program_inputs(":DeployGate"),
        "verification": {"status": "warn", "report": []},
        "benchmark": {"status": "skipped", "findings": []},
    }
    with provider_host() as host:
        checked, failures = host.check(GATE_URN, {}, news)
        assert failures == []
        id_, outs = host.create(GATE_URN, checked)
        assert id_ == "ms5-deploy-gate-staging"
        assert host.diff(GATE_URN, id_, outs, checked).changes == DIFF_NONE
        red = {**checked, "verification": {"status": "fail", "report": []}}
        assert host.diff(GATE_URN, id_, outs, red).changes == DIFF_SOME


def test_benchmark_from_the_program_runs_in_a_clean_host(migrated_database: str) -> None:
    news = {
        **_program_inputs(":Benchmark"),
        "dsn": migrated_database,
        "rows": 20_000,
        "queryRuns": 3,
        "warmupRuns": 1,
        "pushgatewayUrl": "",
        "thresholds": {
            "maxQueryP95Ms": 1000.0,
            "minCompressionRatio": 0.0,
            "minIngestRowsPerSecond": 1000.0,
        },
    }
    assert news["gate"] is False  # staging warns
    with provider_host() as host:
        checked, failures = host.check(BENCHMARK_URN, {}, news)
        assert failures == []
        id_, outs = host.create(BENCHMARK_URN, checked)
        assert id_ == "ms5-benchmark-staging"
        assert outs["results"]["ingest"]["rows"] == 20_000
        assert outs["status"] in ("ok", "warn")
        gated = {
            **checked,
            "gate": True,
            "thresholds": {**checked["thresholds"], "minIngestRowsPerSecond": 1e12},
        }
        failed = host.update(BENCHMARK_URN, id_, outs, gated)
        # Recorded, not raised: the DeployGate fails the deploy on it.
        assert failed["status"] == "fail" and failed["rerunReason"]
        [ingest] = [f for f in failed["findings"] if f["check"] == "ingest"]
        assert ingest["status"] == "fail" and "below the floor" in ingest["message"]
        assert host.diff(BENCHMARK_URN, id_, failed, gated).changes == DIFF_SOME
        # A red verification of the same deploy: nothing measured, and it runs again later.
        skipped = host.update(BENCHMARK_URN, id_, failed, {**gated, "verificationStatus": "fail"})
        assert skipped["status"] == "skipped" and skipped["results"] == {}
        gate_news = {
            **_program_inputs(":DeployGate"),
            "verification": None,
            "benchmark": {"status": failed["status"], "findings": failed["findings"]},
        }
        checked_gate, _ = host.check(GATE_URN, {}, gate_news)
        with pytest.raises(RehearsalError) as info:
            host.create(GATE_URN, checked_gate)
    assert "Benchmark ms5-benchmark-staging: FAIL" in str(info.value)
    assert "[FAIL] ingest: ingest_copy:" in str(info.value)
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ms5\\_bench\\_%'"
        ).fetchone()
        runs = conn.execute(
            "SELECT count(DISTINCT time) FROM ms5_meta.benchmark_results WHERE stack = 'staging'"
        ).fetchone()
    assert left == (0,)
    assert runs == (2,)
